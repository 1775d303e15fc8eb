//! Producer-state snapshot files (`<end offset, 20 digits>.snapshot`) in the partition directory. The broker
//! decides what they hold (docs/FORMAT.md, "Producer-state snapshot"); storage writes them atomically, lists,
//! reads and deletes them, so that every file of a partition goes through the `Backend`.

use std::io;

use crate::checkpoint::replace_file;
use crate::error::StorageError;
use crate::log::Log;

const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// A snapshot larger than this is treated as damaged rather than read into memory.
pub const PRODUCER_SNAPSHOT_BYTES_MAX: u64 = 256 * 1024 * 1024;

fn file_name(end_offset: u64) -> String {
    format!("{end_offset:020}{SNAPSHOT_SUFFIX}")
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

impl Log {
    /// Writes the snapshot that covers every batch below `end_offset`, atomically and durably.
    ///
    /// # Errors
    ///
    /// `Io` when it cannot be written; an older snapshot with the same offset then stays in place.
    pub fn write_producer_snapshot(&self, end_offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let name = file_name(end_offset);
        let tmp = format!("{name}.tmp");
        replace_file(&*self.backend, &self.dir, &name, &tmp, bytes)
    }

    /// The end offsets of the snapshots present, ascending.
    ///
    /// # Errors
    ///
    /// `Io` when the directory cannot be listed.
    pub fn producer_snapshot_offsets(&self) -> Result<Vec<u64>, StorageError> {
        let names = self.backend.list_dir(&self.dir).map_err(|e| StorageError::io("list", &self.dir, e))?;
        let mut offsets: Vec<u64> = names.iter().filter_map(|n| parse_name(n)).collect();
        offsets.sort_unstable();
        Ok(offsets)
    }

    /// The bytes of the snapshot at `end_offset`, or `None` if there is none.
    ///
    /// # Errors
    ///
    /// `Corrupt` for an oversized file; `Io`.
    pub fn read_producer_snapshot(&self, end_offset: u64) -> Result<Option<bytes::Bytes>, StorageError> {
        let path = self.dir.join(file_name(end_offset));
        let file = match self.backend.open(&path, false) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io("open", path, e)),
        };
        let len = file.len().map_err(|e| StorageError::io("stat", &path, e))?;
        if len > PRODUCER_SNAPSHOT_BYTES_MAX {
            return Err(StorageError::Corrupt {
                segment: path,
                offset: end_offset,
                reason: format!("{len} bytes long"),
            });
        }
        file.read(0, len as usize).map(Some).map_err(|e| StorageError::io("read", &path, e))
    }

    /// Deletes the snapshot at `end_offset` (no error if it is already gone).
    ///
    /// # Errors
    ///
    /// `Io` when it cannot be removed.
    pub fn delete_producer_snapshot(&self, end_offset: u64) -> Result<(), StorageError> {
        let path = self.dir.join(file_name(end_offset));
        match self.backend.remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io("remove", path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::{FaultyBackend, LogConfig};

    #[test]
    fn snapshots_are_written_listed_read_and_deleted_and_survive_reopen() {
        let backend = Arc::new(FaultyBackend::new());
        let dir = Path::new("/p/t-0");
        let (log, _) = Log::open(backend.clone(), dir, LogConfig::default(), 0).unwrap();
        assert_eq!(log.producer_snapshot_offsets().unwrap(), Vec::<u64>::new());
        log.write_producer_snapshot(40, b"forty").unwrap();
        log.write_producer_snapshot(7, b"seven").unwrap();
        log.write_producer_snapshot(40, b"forty again").unwrap();
        assert_eq!(log.producer_snapshot_offsets().unwrap(), vec![7, 40]);
        log.close().unwrap();
        let (log, _) = Log::open(backend, dir, LogConfig::default(), 0).unwrap();
        assert_eq!(log.read_producer_snapshot(40).unwrap().as_deref(), Some(&b"forty again"[..]));
        assert_eq!(log.read_producer_snapshot(8).unwrap(), None);
        log.delete_producer_snapshot(7).unwrap();
        log.delete_producer_snapshot(7).unwrap();
        assert_eq!(log.producer_snapshot_offsets().unwrap(), vec![40]);
    }

    #[test]
    fn only_well_formed_names_count_as_snapshots() {
        assert_eq!(parse_name(&file_name(12)), Some(12));
        assert_eq!(parse_name("12.snapshot"), None);
        assert_eq!(parse_name("0000000000000000001x.snapshot"), None);
        assert_eq!(parse_name("00000000000000000012.snapshot.tmp"), None);
    }
}
