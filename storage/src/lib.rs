//! Rill's partition storage: a log of Kafka v2 record batches kept in segment files with sparse offset and
//! time indexes, group-commit flushing, checkpointed crash recovery that scans only the tail, and retention.
//!
//! The log touches files only through the [`Backend`] trait: [`FsBackend`] is the real one (reads are
//! zero-copy slices of memory maps), [`FaultyBackend`] an in-memory one that simulates crashes, torn writes
//! and full disks for tests. The byte layouts are in `docs/FORMAT.md`.

mod backend;
mod checkpoint;
mod config;
mod error;
mod faulty;
mod flush;
mod index;
mod log;
mod maintenance;
mod recovery;
mod segment;

pub use rill_proto::batch;

pub use backend::{Backend, FsBackend, StorageFile};
pub use checkpoint::CheckpointStatus;
pub use config::{
    Durability, INDEX_INTERVAL_BYTES_DEFAULT, INDEX_INTERVAL_BYTES_MIN, LogConfig, SEGMENT_BYTES_DEFAULT,
    SEGMENT_BYTES_LIMIT, SEGMENT_BYTES_MIN,
};
pub use error::StorageError;
pub use faulty::FaultyBackend;
pub use flush::FlushJob;
pub use log::{AppendInfo, Log, ReadResult};
pub use recovery::RecoveryReport;
