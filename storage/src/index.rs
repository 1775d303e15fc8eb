//! The sparse offset index (`.index`) and time index (`.timeindex`) of a segment: entry codecs, the file with
//! its contents (an in-memory copy while the segment is active, the backend's mapping once sealed), and the
//! binary searches over it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::backend::{Backend, StorageFile};
use crate::error::StorageError;

/// Offset index entry: relative offset (u32, big-endian) then file position (u32, big-endian).
pub(crate) const OFFSET_ENTRY_BYTES: usize = 8;
/// Time index entry: timestamp in ms (i64, big-endian) then relative offset (u32, big-endian).
pub(crate) const TIME_ENTRY_BYTES: usize = 12;

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// One offset index entry: the batch whose base offset is `base + relative_offset` starts at `position`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl OffsetEntry {
    pub fn encode(&self) -> [u8; OFFSET_ENTRY_BYTES] {
        let mut out = [0; OFFSET_ENTRY_BYTES];
        out[0..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        out[4..8].copy_from_slice(&self.position.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8], index: usize) -> OffsetEntry {
        let at = index * OFFSET_ENTRY_BYTES;
        OffsetEntry { relative_offset: be_u32(bytes, at), position: be_u32(bytes, at + 4) }
    }
}

/// One time index entry: every record up to and including relative offset `relative_offset` has a timestamp
/// of at most `timestamp_ms`, and one of them has exactly that timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp_ms: i64,
    pub relative_offset: u32,
}

impl TimeEntry {
    pub fn encode(&self) -> [u8; TIME_ENTRY_BYTES] {
        let mut out = [0; TIME_ENTRY_BYTES];
        out[0..8].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        out[8..12].copy_from_slice(&self.relative_offset.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8], index: usize) -> TimeEntry {
        let at = index * TIME_ENTRY_BYTES;
        TimeEntry {
            timestamp_ms: i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes")),
            relative_offset: be_u32(bytes, at + 8),
        }
    }
}

enum Contents {
    /// The active segment's index, mirrored in memory so lookups need no remapping after every append.
    Active(Vec<u8>),
    /// A sealed segment's index, read through the backend (a memory map on the real one).
    Sealed(Bytes),
}

/// An index file of either kind; `entry_bytes` tells which.
pub(crate) struct IndexFile {
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    entry_bytes: usize,
    contents: Contents,
}

impl IndexFile {
    /// Opens (creating if needed) an index file and keeps its first `entries` entries, or all whole entries
    /// when `entries` is None. Anything after them is cut off: it was never claimed durable.
    pub fn open(
        backend: &dyn Backend,
        path: &Path,
        entry_bytes: usize,
        entries: Option<usize>,
        sealed: bool,
    ) -> Result<IndexFile, StorageError> {
        let file = backend.open(path, true).map_err(|e| StorageError::io("open index", path, e))?;
        let file_len = file.len().map_err(|e| StorageError::io("stat index", path, e))? as usize;
        let whole = file_len / entry_bytes;
        let keep = entries.map_or(whole, |n| n.min(whole));
        let keep_bytes = keep * entry_bytes;
        if keep_bytes < file_len {
            file.set_len(keep_bytes as u64).map_err(|e| StorageError::io("trim index", path, e))?;
        }
        let mapped = file.read(0, keep_bytes).map_err(|e| StorageError::io("read index", path, e))?;
        let contents = if sealed { Contents::Sealed(mapped) } else { Contents::Active(mapped.to_vec()) };
        Ok(IndexFile { path: path.to_path_buf(), file, entry_bytes, contents })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> &Arc<dyn StorageFile> {
        &self.file
    }

    pub fn bytes(&self) -> &[u8] {
        match &self.contents {
            Contents::Active(v) => v,
            Contents::Sealed(b) => b,
        }
    }

    pub fn entries(&self) -> usize {
        self.bytes().len() / self.entry_bytes
    }

    /// Appends one encoded entry. Only an active index grows.
    pub fn append(&mut self, entry: &[u8]) -> Result<(), StorageError> {
        assert_eq!(entry.len(), self.entry_bytes, "index entry of the wrong size");
        let Contents::Active(mirror) = &mut self.contents else {
            panic!("append to the sealed index {}", self.path.display());
        };
        let pos = mirror.len() as u64;
        if let Err(e) = self.file.write_at(pos, &[entry]) {
            // Cut any partial entry so a clean shutdown never finds it; a later append overwrites it anyway.
            let _ = self.file.set_len(pos);
            return Err(StorageError::io("append index entry", &self.path, e));
        }
        mirror.extend_from_slice(entry);
        Ok(())
    }

    /// Keeps the first `entries` entries. Only an active index shrinks.
    pub fn truncate_entries(&mut self, entries: usize) -> Result<(), StorageError> {
        let Contents::Active(mirror) = &mut self.contents else {
            panic!("truncate of the sealed index {}", self.path.display());
        };
        let keep_bytes = entries * self.entry_bytes;
        if keep_bytes >= mirror.len() {
            return Ok(());
        }
        self.file.set_len(keep_bytes as u64).map_err(|e| StorageError::io("truncate index", &self.path, e))?;
        mirror.truncate(keep_bytes);
        Ok(())
    }

    /// Switches to reading through the backend's mapping and frees the in-memory copy.
    pub fn seal(&mut self) -> Result<(), StorageError> {
        if let Contents::Active(mirror) = &self.contents {
            let mapped = self.file.read(0, mirror.len()).map_err(|e| StorageError::io("map index", &self.path, e))?;
            self.contents = Contents::Sealed(mapped);
        }
        Ok(())
    }

    /// Makes the index growable again (after a truncation reopened its segment). Dropping the mapping first
    /// lets a later shrink of the file proceed.
    pub fn unseal(&mut self) {
        if let Contents::Sealed(mapped) = &self.contents {
            self.contents = Contents::Active(mapped.to_vec());
        }
    }

    pub fn sync(&self) -> Result<(), StorageError> {
        self.file.sync().map_err(|e| StorageError::io("fsync index", &self.path, e))
    }
}

/// Views an offset index's bytes as entries.
pub(crate) struct OffsetIndexView<'a>(pub &'a [u8]);

impl OffsetIndexView<'_> {
    pub fn len(&self) -> usize {
        self.0.len() / OFFSET_ENTRY_BYTES
    }

    pub fn get(&self, index: usize) -> OffsetEntry {
        OffsetEntry::decode(self.0, index)
    }

    pub fn last(&self) -> Option<OffsetEntry> {
        self.len().checked_sub(1).map(|i| self.get(i))
    }

    /// The last entry whose relative offset is at most `relative_offset`: where a scan for it starts.
    pub fn floor(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let after = partition_point(self.len(), |i| self.get(i).relative_offset <= relative_offset);
        after.checked_sub(1).map(|i| self.get(i))
    }

    /// How many entries point below `position`.
    pub fn count_below_position(&self, position: u64) -> usize {
        partition_point(self.len(), |i| u64::from(self.get(i).position) < position)
    }
}

/// Views a time index's bytes as entries.
pub(crate) struct TimeIndexView<'a>(pub &'a [u8]);

impl TimeIndexView<'_> {
    pub fn len(&self) -> usize {
        self.0.len() / TIME_ENTRY_BYTES
    }

    pub fn get(&self, index: usize) -> TimeEntry {
        TimeEntry::decode(self.0, index)
    }

    pub fn last(&self) -> Option<TimeEntry> {
        self.len().checked_sub(1).map(|i| self.get(i))
    }

    /// The last entry whose timestamp is below `timestamp_ms`: every record up to its offset is too old.
    pub fn last_below(&self, timestamp_ms: i64) -> Option<TimeEntry> {
        let after = partition_point(self.len(), |i| self.get(i).timestamp_ms < timestamp_ms);
        after.checked_sub(1).map(|i| self.get(i))
    }

    /// How many entries cover only offsets below `relative_offset`.
    pub fn count_below_offset(&self, relative_offset: u64) -> usize {
        partition_point(self.len(), |i| u64::from(self.get(i).relative_offset) < relative_offset)
    }
}

/// First index in `0..len` for which `pred` is false, given that `pred` is true then false (binary search).
fn partition_point(len: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (0, len);
    while low < high {
        let mid = low + (high - low) / 2;
        if pred(mid) { low = mid + 1 } else { high = mid }
    }
    low
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_index(entries: &[(u32, u32)]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|&(relative_offset, position)| OffsetEntry { relative_offset, position }.encode())
            .collect()
    }

    #[test]
    fn offset_floor_finds_the_last_entry_at_or_below() {
        let bytes = offset_index(&[(0, 0), (10, 4096), (25, 8200)]);
        let view = OffsetIndexView(&bytes);
        assert_eq!(view.floor(0).unwrap().position, 0);
        assert_eq!(view.floor(9).unwrap().position, 0);
        assert_eq!(view.floor(10).unwrap().position, 4096);
        assert_eq!(view.floor(1000).unwrap().position, 8200);
        assert_eq!(OffsetIndexView(&offset_index(&[(5, 100)])).floor(4), None);
        assert_eq!(view.count_below_position(4096), 1);
        assert_eq!(view.count_below_position(4097), 2);
    }

    #[test]
    fn entries_encode_big_endian() {
        assert_eq!(
            OffsetEntry { relative_offset: 0x0102_0304, position: 0x0506_0708 }.encode(),
            [1, 2, 3, 4, 5, 6, 7, 8]
        );
        let time = TimeEntry { timestamp_ms: 0x1122_3344_5566_7788, relative_offset: 9 }.encode();
        assert_eq!(time, [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0, 0, 0, 9]);
    }

    #[test]
    fn time_last_below_skips_entries_at_or_above() {
        let bytes: Vec<u8> = [(100, 3), (200, 7), (300, 12)]
            .iter()
            .flat_map(|&(timestamp_ms, relative_offset)| TimeEntry { timestamp_ms, relative_offset }.encode())
            .collect();
        let view = TimeIndexView(&bytes);
        assert_eq!(view.last_below(100), None);
        assert_eq!(view.last_below(201).unwrap().relative_offset, 7);
        assert_eq!(view.last_below(i64::MAX).unwrap().relative_offset, 12);
        assert_eq!(view.count_below_offset(8), 2);
    }
}
