//! The storage error type: every operating failure (IO, disk full, damaged files, bad requests) as a `Result`.

use std::io;
use std::path::PathBuf;

/// Errors returned by the log. Broken invariants are not errors: they panic, because they mean a bug.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A filesystem operation failed; `path` names the file or directory and `op` what was being done.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Stored bytes fail a check (CRC, header, offset continuity). The named segment needs attention: the
    /// batch at `offset` is never served.
    #[error("corrupt data in {segment} at offset {offset}: {reason}")]
    Corrupt { segment: PathBuf, offset: u64, reason: String },
    /// The requested offset is not in the log; valid offsets are `log_start..=log_end`.
    #[error("offset {offset} is out of range: the log holds offsets {log_start}..{log_end}")]
    OffsetOutOfRange { offset: u64, log_start: u64, log_end: u64 },
    /// A batch handed to an append is malformed or does not fit where it is being put.
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// `truncate_to` was asked to cut inside a batch; the log only truncates at batch boundaries.
    #[error("offset {offset} is inside the batch {batch_base}..={batch_last}; truncation needs a batch boundary")]
    NotBatchBoundary { offset: u64, batch_base: u64, batch_last: u64 },
    /// An encrypted segment cannot be read with the keys loaded (none loaded, an unknown key id, another key
    /// under that id), or one of its batches fails authentication. Nothing of it is served, and nothing is
    /// truncated because of it.
    #[error("encrypted segment {segment} (key id {key_id}): {reason}")]
    Encryption { segment: PathBuf, key_id: String, reason: String },
    /// A configuration value is outside its allowed range.
    #[error("invalid log configuration: {0}")]
    InvalidConfig(String),
}

impl StorageError {
    /// Wraps an IO error with the operation and the path it concerned.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> StorageError {
        StorageError::Io { op, path: path.into(), source }
    }

    /// True when the error is the disk being full, so a caller can say so to its operator.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StorageError::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
    }
}
