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
//! to load and delete; docs/FORMAT-producer-state.md).

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

// These limits belong with the others in `crate::limits`; they live here until that file is merged.

/// Batches remembered per producer for deduplication. A producer has at most this many batches in flight
/// per partition (Kafka's cap on `max.in.flight.requests.per.connection` with idempotence, which Rill's
/// client, with one in flight, stays well under), so any retry is one of its last this many batches.
pub const PRODUCER_BATCHES_KEPT: usize = 5;
/// A producer id that has written nothing to a partition for this long (by its batches' timestamps) is
/// forgotten there. Long enough that a producer paused over a long weekend or through an outage keeps its
/// deduplication; short enough that ids of producers that went away do not pile up (Kafka's
/// `transactional.id.expiration.ms` default, which also governed producer ids before Kafka 3.4).
pub const PRODUCER_ID_IDLE_MS_MAX_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;
/// Producer ids one partition tracks at most; a leader refuses new ones beyond it until idle ones expire.
/// About 140 bytes of snapshot and a few hundred bytes of memory each, so 100,000 costs tens of MB at worst,
/// far more distinct live producers than one partition sees in practice, while a storm of short-lived
/// producers cannot grow the state without bound.
pub const PRODUCER_IDS_PER_PARTITION_MAX: usize = 100_000;

const _: () = assert!(PRODUCER_BATCHES_KEPT >= 1);
