//! Rill's partition storage: a log of Kafka v2 record batches kept in segment files with sparse offset and
//! time indexes, group-commit flushing, checkpointed crash recovery that scans only the tail, and retention.
//!
//! The log touches files only through the [`Backend`] trait: [`FsBackend`] is the real one (reads are
//! zero-copy slices of memory maps), [`FaultyBackend`] an in-memory one that simulates crashes, torn writes
//! and full disks for tests. The byte layouts are in `docs/FORMAT.md`.
//!
//! ```
//! use std::path::Path;
//! use std::sync::Arc;
//! use rill_storage::batch::{BatchBuilder, decode_records};
//! use rill_storage::{FaultyBackend, Log, LogConfig};
//!
//! let (mut log, report) = Log::open(Arc::new(FaultyBackend::new()), Path::new("/data/t-0"), LogConfig::default(), 0)?;
//! assert!(!report.clean_shutdown);
//! let mut builder = BatchBuilder::new();
//! builder.push(1_700_000_000_000, Some(b"key"), Some(b"value"), &[]);
//! let info = log.append(&builder.finish(), 3, 1_700_000_000_000)?;
//! assert_eq!((info.base_offset, log.end_offset()), (0, 1));
//!
//! // Group commit: take the job under the partition lock, run it outside, then mark it.
//! let job = log.flush_job().expect("one batch is unflushed");
//! job.run()?;
//! log.mark_flushed(job.upto());
//! assert_eq!(log.flushed_offset(), 1);
//!
//! let read = log.read(0, 1 << 20, log.flushed_offset())?;
//! assert_eq!(decode_records(&read.records)?[0].value.as_deref(), Some(&b"value"[..]));
//! log.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backend;
mod checkpoint;
mod config;
mod encryption;
mod error;
mod faulty;
mod flush;
/// Fuzz target bodies (`fuzz/`, and the stable test that replays them); not part of the API.
#[doc(hidden)]
pub mod fuzzing;
mod index;
mod log;
mod maintenance;
mod producer_snapshot;
mod recovery;
mod replica_checkpoint;
mod segment;

pub use rill_proto::batch;

pub use backend::{Backend, FsBackend, StorageFile};
pub use checkpoint::CheckpointStatus;
pub use config::{
    Durability, INDEX_INTERVAL_BYTES_DEFAULT, INDEX_INTERVAL_BYTES_MIN, LogConfig, SEGMENT_BYTES_DEFAULT,
    SEGMENT_BYTES_LIMIT, SEGMENT_BYTES_MIN,
};
pub use encryption::{
    ENCRYPTED_BATCH_OVERHEAD_BYTES, Encryption, KEY_BYTES, KEY_ID_BYTES_MAX, KeyRecord, Keyring, SegmentKey, parse_key,
};
pub use error::StorageError;
pub use faulty::FaultyBackend;
pub use flush::FlushJob;
pub use log::{AppendInfo, Log, ReadResult};
pub use producer_snapshot::PRODUCER_SNAPSHOT_BYTES_MAX;
pub use recovery::RecoveryReport;
pub use replica_checkpoint::{EpochEntry, LEADER_EPOCH_ENTRIES_MAX};
