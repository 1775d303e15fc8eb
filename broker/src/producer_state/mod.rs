//! Idempotent-producer state of one partition as pure data and rules: for each producer id its epoch and its
//! last [`PRODUCER_BATCHES_KEPT`] batches, so that a retried batch is answered with its original offsets
//! instead of being appended twice, across retries, restarts and leader changes.
//!
//! The leader checks every batch before appending it (`ProducerStateTable::check`) and applies it after
//! (`apply`); followers apply every batch they replicate, so they hold the same state. The state is
//! snapshotted with the log (at segment rolls and clean shutdown) and rebuilt on recovery or after a
//! truncation from the latest snapshot at or below the log end, replaying the log from there. Nothing here
//! does IO or reads a clock. Files: `batch.rs` (a batch's producer fields, sequence arithmetic, the
//! verdict), `table.rs` (the table and its rules), `snapshot.rs` (snapshot bytes, file names, which snapshots
//! to load and delete; docs/FORMAT.md ("Producer-state snapshot")).

mod batch;
mod snapshot;
mod table;

#[cfg(test)]
mod tests;

pub use batch::{ProducerBatch, Verdict, advance_sequence, next_sequence};
pub use snapshot::{
    SNAPSHOT_BYTES_MAX, SNAPSHOT_MAGIC, SNAPSHOT_VERSION, parse_snapshot_file_name, snapshot_file_name,
    snapshot_to_load, snapshots_to_delete_on_retention, snapshots_to_delete_on_truncation,
};
pub use table::{AppendedBatch, BatchRecord, ProducerEntry, ProducerStateTable};

pub use crate::limits::{PRODUCER_BATCHES_KEPT, PRODUCER_ID_IDLE_MS_MAX_DEFAULT, PRODUCER_IDS_PER_PARTITION_MAX};

const _: () = assert!(PRODUCER_BATCHES_KEPT >= 1);
