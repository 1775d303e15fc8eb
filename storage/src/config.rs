//! Log configuration (`LogConfig`, `Durability`) and the storage limits, each with the reason for its value.

use std::sync::Arc;

use crate::encryption::{Encryption, Keyring, SegmentKey};
use crate::error::StorageError;

/// Largest allowed `segment_bytes_max`. Index entries store file positions as u32; keeping every batch start
/// below 2 GiB leaves room for one oversized batch (at most 2 GiB, see the batch length field) past the limit.
pub const SEGMENT_BYTES_LIMIT: u64 = 1 << 31;
/// Smallest allowed `segment_bytes_max`: below this, segments would hold almost nothing and the directory
/// would fill with files. Small enough for tests that want many rolls.
pub const SEGMENT_BYTES_MIN: u64 = 256;
/// Smallest allowed `index_interval_bytes`: denser indexes cost memory and IO without making reads faster
/// (a read already touches a whole batch).
pub const INDEX_INTERVAL_BYTES_MIN: u32 = 64;
/// Default segment size, as in Kafka: large enough that rolls are rare, small enough for retention to be fine grained.
pub const SEGMENT_BYTES_DEFAULT: u64 = 1 << 30;
/// Default index density: a lookup scans at most about one page of batch headers past its entry.
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;
/// Smallest memory map `FsBackend` makes of a file (it maps ahead of the file's end up to the next power of
/// two), so a small, growing segment is not remapped after every append that a read then wants.
pub(crate) const MAP_BYTES_MIN: u64 = 1 << 20;

const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_LIMIT);
const _: () = assert!(SEGMENT_BYTES_LIMIT <= u32::MAX as u64, "positions must fit an index entry's u32");
const _: () = assert!(INDEX_INTERVAL_BYTES_MIN as u64 <= SEGMENT_BYTES_MIN);

/// When appended bytes are made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The broker acknowledges only after an fsync covers the batch; appends share fsyncs through `flush_job`.
    Fsync,
    /// The broker flushes every `interval_ms`; a crash may lose up to that much acknowledged data.
    Interval { interval_ms: u64 },
    /// The log fsyncs only when it seals a segment and at close; the OS decides the rest.
    Os,
}

/// Per-partition log settings. Change them on a running log with `Log::set_config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll when the active segment would pass this many bytes (a single larger batch still gets a segment).
    pub segment_bytes_max: u64,
    /// Roll an active segment whose first append is older than this. A segment that is not empty when the log
    /// is opened counts its age from the open, since the time of its first append is not stored.
    pub segment_ms_max: Option<u64>,
    /// Delete sealed segments whose newest record is older than this.
    pub retention_ms: Option<u64>,
    /// Delete the oldest sealed segments while the log is bigger than this.
    pub retention_bytes: Option<u64>,
    /// One sparse index entry per this many log bytes.
    pub index_interval_bytes: u32,
    pub durability: Durability,
    /// After each flush job, ask the OS to drop the page cache of each synced segment's bytes more than this
    /// far behind its end; under `Durability::Os`, where no flush job runs, start the kernel's writeback of
    /// those bytes as the segment grows and drop them a step later (`None`: keep everything cached, as Kafka
    /// does). Bounds the page cache a partition holds, at the price of disk reads for consumers further
    /// behind; see docs/PERFORMANCE.md for why it speeds up writes on hosts where fresh memory is slow to
    /// touch.
    pub cache_window_bytes: Option<u64>,
    /// Whether new segments are encrypted. A change applies from the next segment: the log rolls to a new one
    /// at its next append (docs/FORMAT.md, "Encrypted segments"); segments already written keep their form.
    pub encryption: Encryption,
    /// The keys to write (the active one) and read (all) encrypted segments with; the broker's, shared by
    /// every log. Needed whenever a segment on disk is encrypted, whatever `encryption` says now.
    pub keyring: Option<Arc<Keyring>>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: SEGMENT_BYTES_DEFAULT,
            segment_ms_max: None,
            retention_ms: None,
            retention_bytes: None,
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            durability: Durability::Fsync,
            cache_window_bytes: None,
            encryption: Encryption::None,
            keyring: None,
        }
    }
}

impl LogConfig {
    /// Checks every value against its limit.
    ///
    /// # Errors
    ///
    /// `StorageError::InvalidConfig` naming the first value out of range.
    pub fn validate(&self) -> Result<(), StorageError> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_LIMIT).contains(&self.segment_bytes_max) {
            return Err(StorageError::InvalidConfig(format!(
                "segment_bytes_max {} must lie in {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_LIMIT}",
                self.segment_bytes_max
            )));
        }
        if self.index_interval_bytes < INDEX_INTERVAL_BYTES_MIN {
            return Err(StorageError::InvalidConfig(format!(
                "index_interval_bytes {} must be at least {INDEX_INTERVAL_BYTES_MIN}",
                self.index_interval_bytes
            )));
        }
        if self.segment_ms_max == Some(0) {
            return Err(StorageError::InvalidConfig("segment_ms_max must be positive".into()));
        }
        if let Durability::Interval { interval_ms: 0 } = self.durability {
            return Err(StorageError::InvalidConfig("durability interval_ms must be positive".into()));
        }
        Ok(())
    }

    /// Checks that the keys the configuration needs are there: `validate` checks values only, since a topic's
    /// settings are parsed where no keyring is at hand.
    ///
    /// # Errors
    ///
    /// `InvalidConfig` for `Encryption::Aes256Gcm` without a keyring.
    pub fn check_keys(&self) -> Result<(), StorageError> {
        if self.encryption == Encryption::Aes256Gcm && self.keyring.is_none() {
            return Err(StorageError::InvalidConfig(
                "encryption=aes-256-gcm needs an encryption key, and this broker has none \
                 (--encryption-key-file or RILL_ENCRYPTION_KEY)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The key a new segment is written with: the keyring's active key when the topic encrypts.
    pub(crate) fn new_segment_key(&self) -> Option<Arc<SegmentKey>> {
        match (self.encryption, &self.keyring) {
            (Encryption::Aes256Gcm, Some(keyring)) => Some(Arc::clone(keyring.active())),
            (Encryption::Aes256Gcm, None) => panic!("encryption without a keyring passed check_keys"),
            (Encryption::None, _) => None,
        }
    }
}
