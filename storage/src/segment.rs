//! One segment: a `.log` file of back-to-back record batches starting at `base_offset`, with its offset and
//! time indexes. Appends, the recovery scan, reads, timestamp lookups and truncation at the segment level.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rill_proto::batch::{self, BatchHeader};

use crate::backend::{Backend, StorageFile};
use crate::encryption::{self, ATTR_STORED_ENCRYPTED, KEY_RECORD_SUFFIX, KeyRecord, SegmentKey};
use crate::error::StorageError;
use crate::index::{
    IndexFile, OFFSET_ENTRY_BYTES, OffsetEntry, OffsetIndexView, TIME_ENTRY_BYTES, TimeEntry, TimeIndexView,
};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const OFFSET_INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Marks a file being written to replace another; left over only by a crash, and removed at open.
pub(crate) const TMP_SUFFIX: &str = "tmp";
/// The most offsets one segment spans: relative offsets (offset − base) are u32 in the index files.
const SEGMENT_OFFSETS_MAX: u64 = 1 << 32;

/// `00000000000000000042.log` and friends: the base offset, zero padded so names sort like offsets.
pub(crate) fn segment_path(dir: &Path, base_offset: u64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}"))
}

/// Reads a segment base offset back from a file name, if it is one of ours with that suffix.
pub(crate) fn parse_segment_name(name: &str, suffix: &str) -> Option<u64> {
    let stem = name.strip_suffix(suffix)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Removes a segment's files; missing ones are fine (a crash may have removed some already). The key record
/// goes last, so a crash part-way never leaves an encrypted `.log` without the record that names its key
/// (a record without its `.log` is removed at open).
pub(crate) fn delete_segment_files(backend: &dyn Backend, dir: &Path, base_offset: u64) -> Result<(), StorageError> {
    for suffix in [LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX, KEY_RECORD_SUFFIX] {
        let path = segment_path(dir, base_offset, suffix);
        match backend.remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("remove segment file", path, e)),
        }
    }
    Ok(())
}

/// Shrinks a file to `len` without ever pulling bytes from under a reader's mapping: when readers still hold
/// bytes past `len`, the kept prefix is copied to a new file that is renamed over the old name, so the readers
/// keep the old inode. Returns the handle to use from now on. Does not sync.
pub(crate) fn shrink_file(
    backend: &dyn Backend,
    path: &Path,
    file: &Arc<dyn StorageFile>,
    len: u64,
) -> Result<Arc<dyn StorageFile>, StorageError> {
    match file.set_len(len) {
        Ok(()) => return Ok(Arc::clone(file)),
        Err(e) if e.kind() == io::ErrorKind::ResourceBusy => {}
        Err(e) => return Err(StorageError::io("truncate", path, e)),
    }
    let tmp =
        path.with_extension(format!("{}.{TMP_SUFFIX}", path.extension().and_then(|e| e.to_str()).unwrap_or_default()));
    let prefix = file.read(0, len as usize).map_err(|e| StorageError::io("read for copy", path, e))?;
    let _ = backend.remove_file(&tmp);
    let copy = backend.open(&tmp, true).map_err(|e| StorageError::io("create", &tmp, e))?;
    copy.write_at(0, &[&prefix]).map_err(|e| StorageError::io("write", &tmp, e))?;
    copy.sync().map_err(|e| StorageError::io("fsync", &tmp, e))?;
    backend.rename(&tmp, path).map_err(|e| StorageError::io("rename over", path, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    backend.sync_dir(dir).map_err(|e| StorageError::io("fsync directory", dir, e))?;
    Ok(copy)
}

/// How much of a segment to trust when opening it as the active one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TrustedPrefix {
    /// Bytes of the `.log` known good (from a checkpoint or a clean shutdown).
    pub log_bytes: u64,
    /// Index entries known good; None trusts every whole entry that points below `log_bytes`.
    pub offset_entries: Option<usize>,
    pub time_entries: Option<usize>,
}

/// What a recovery scan of a segment's tail found.
#[derive(Debug, Default)]
pub(crate) struct TailScan {
    pub scanned_bytes: u64,
    pub truncated_bytes: u64,
    /// Why the scan stopped before the end of the file, if it did.
    pub torn: Option<String>,
}

pub(crate) struct Segment {
    base_offset: u64,
    log_path: PathBuf,
    log: Arc<dyn StorageFile>,
    /// Bytes of whole batches; the file may briefly be longer after a failed append.
    size_bytes: u64,
    next_offset: u64,
    offset_index: IndexFile,
    time_index: IndexFile,
    /// Largest batch max timestamp in the segment; i64::MIN while empty.
    max_timestamp_ms: i64,
    /// Position of the last offset index entry (0 without one): the next entry is due one interval later.
    last_indexed_position: u64,
    /// When the first batch was appended (or the segment reopened non-empty): the age that `segment_ms_max` limits.
    pub created_ms: Option<i64>,
    sealed: bool,
    /// The key this segment's batches are encrypted with (named by its key record); None for plaintext.
    key: Option<Arc<SegmentKey>>,
}

impl Segment {
    /// A segment that holds nothing yet; `create` and `open_active` fill it in.
    fn empty(
        base_offset: u64,
        log_path: PathBuf,
        log: Arc<dyn StorageFile>,
        offset_index: IndexFile,
        time_index: IndexFile,
        key: Option<Arc<SegmentKey>>,
    ) -> Segment {
        Segment {
            base_offset,
            log_path,
            log,
            size_bytes: 0,
            next_offset: base_offset,
            offset_index,
            time_index,
            max_timestamp_ms: i64::MIN,
            last_indexed_position: 0,
            created_ms: None,
            sealed: false,
            key,
        }
    }

    /// Creates an empty segment, discarding any stale files of the same name. With a key, its key record is
    /// written and made durable (file and directory entry) before the `.log` exists, so no `.log` ever lacks
    /// the record that says how to read it; without one, a stale record is removed durably first.
    pub fn create(
        backend: &dyn Backend,
        dir: &Path,
        base_offset: u64,
        key: Option<Arc<SegmentKey>>,
    ) -> Result<Segment, StorageError> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        write_key_record(backend, dir, &log_path, key.as_deref())?;
        let log = backend.open(&log_path, true).map_err(|e| StorageError::io("create segment", &log_path, e))?;
        log.set_len(0).map_err(|e| StorageError::io("reset segment", &log_path, e))?;
        let offset_index = open_index(backend, dir, base_offset, OFFSET_INDEX_SUFFIX, Some(0), false)?;
        let time_index = open_index(backend, dir, base_offset, TIME_INDEX_SUFFIX, Some(0), false)?;
        Ok(Segment::empty(base_offset, log_path, log, offset_index, time_index, key))
    }

    /// Opens a sealed segment without reading its data: `next_offset` is the following segment's base. Only a
    /// segment whose time index is missing (every sealed segment has at least its final entry) is read whole,
    /// to rebuild both indexes.
    pub fn open_sealed(
        backend: &dyn Backend,
        dir: &Path,
        base_offset: u64,
        next_offset: u64,
        index_interval_bytes: u32,
        key: Option<Arc<SegmentKey>>,
    ) -> Result<Segment, StorageError> {
        assert!(next_offset > base_offset, "a sealed segment holds at least one offset");
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        // Every offset of a segment lies less than 2^32 past its base (index entries hold u32 relative offsets
        // and the log rolls before that), and a sealed segment's end is the next segment's name: names further
        // apart are damage, refused here before a lookup converts such an offset (found by the `log_dir` fuzz
        // target: `locate` panicked on a relative offset above u32::MAX).
        if next_offset - base_offset > SEGMENT_OFFSETS_MAX {
            let reason = format!("the next segment starts at {next_offset}, more than 2^32 offsets after it");
            return Err(StorageError::Corrupt { segment: log_path, offset: base_offset, reason });
        }
        let log = backend.open(&log_path, false).map_err(|e| StorageError::io("open segment", &log_path, e))?;
        let size_bytes = log.len().map_err(|e| StorageError::io("stat segment", &log_path, e))?;
        let offset_index = open_index(backend, dir, base_offset, OFFSET_INDEX_SUFFIX, None, true)?;
        let time_index = open_index(backend, dir, base_offset, TIME_INDEX_SUFFIX, None, true)?;
        let max_timestamp_ms = TimeIndexView(time_index.bytes()).last().map_or(i64::MIN, |e| e.timestamp_ms);
        let last_indexed_position = OffsetIndexView(offset_index.bytes()).last().map_or(0, |e| u64::from(e.position));
        let mut segment = Segment {
            base_offset,
            log_path,
            log,
            size_bytes,
            next_offset,
            offset_index,
            time_index,
            max_timestamp_ms,
            last_indexed_position,
            created_ms: None,
            sealed: true,
            key,
        };
        if segment.time_index.entries() == 0 && size_bytes > 0 {
            tracing::warn!(segment = %segment.log_path.display(), "time index missing; rebuilding both indexes");
            segment.rebuild_sealed_indexes(index_interval_bytes)?;
        }
        Ok(segment)
    }

    /// Rebuilds the indexes of a sealed segment from its batch headers and syncs them.
    fn rebuild_sealed_indexes(&mut self, index_interval_bytes: u32) -> Result<(), StorageError> {
        let (size_bytes, next_offset) = (self.size_bytes, self.next_offset);
        self.offset_index.unseal();
        self.time_index.unseal();
        self.offset_index.truncate_entries(0)?;
        self.time_index.truncate_entries(0)?;
        self.sealed = false;
        self.size_bytes = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp_ms = i64::MIN;
        self.last_indexed_position = 0;
        let view = self.read_log(0, size_bytes)?;
        for item in batch::split_batches(&view) {
            let expected = self.next_offset;
            let (header, range) = item.map_err(|e| self.corrupt(expected, self.size_bytes, e.to_string()))?;
            if header.base_offset != expected {
                let reason = format!("batch has base offset {}", header.base_offset);
                return Err(self.corrupt(expected, range.start as u64, reason));
            }
            self.index_batch(range.start as u64, &header, index_interval_bytes)?;
        }
        if self.next_offset != next_offset {
            let reason =
                format!("segment ends at offset {}, the next segment starts at {next_offset}", self.next_offset);
            return Err(self.corrupt(self.next_offset, self.size_bytes, reason));
        }
        self.seal()?;
        self.offset_index.sync()?;
        self.time_index.sync()
    }

    /// Opens a segment to append to, trusting `trusted` and computing the state an append needs from the
    /// indexes plus a short walk of headers after the last index entry. Bytes after the trusted prefix stay
    /// in the file for `recover_tail` to validate (or cut).
    pub fn open_active(
        backend: &dyn Backend,
        dir: &Path,
        base_offset: u64,
        trusted: TrustedPrefix,
        key: Option<Arc<SegmentKey>>,
    ) -> Result<Segment, StorageError> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let log = backend.open(&log_path, true).map_err(|e| StorageError::io("open segment", &log_path, e))?;
        let offset_index = open_index(backend, dir, base_offset, OFFSET_INDEX_SUFFIX, trusted.offset_entries, false)?;
        let time_index = open_index(backend, dir, base_offset, TIME_INDEX_SUFFIX, trusted.time_entries, false)?;
        let mut segment = Segment::empty(base_offset, log_path, log, offset_index, time_index, key);
        segment.cut_indexes_and_rebuild_state(trusted.log_bytes)?;
        Ok(segment)
    }

    /// Drops index entries at or past `log_bytes` and recomputes size, next offset and max timestamp for a
    /// segment whose first `log_bytes` bytes are whole, trusted batches.
    fn cut_indexes_and_rebuild_state(&mut self, log_bytes: u64) -> Result<(), StorageError> {
        let keep = OffsetIndexView(self.offset_index.bytes()).count_below_position(log_bytes);
        self.offset_index.truncate_entries(keep)?;
        let (from_position, from_offset) = match OffsetIndexView(self.offset_index.bytes()).last() {
            Some(e) => (u64::from(e.position), self.base_offset + u64::from(e.relative_offset)),
            None => (0, self.base_offset),
        };
        let (next_offset, walked_max) = self.walk_trusted(from_position, from_offset, log_bytes)?;
        let keep = TimeIndexView(self.time_index.bytes()).count_below_offset(next_offset - self.base_offset);
        self.time_index.truncate_entries(keep)?;
        // Every batch before the last offset entry is covered by the last time entry (time entries are written
        // at offset entries whenever the maximum grows), so the walk after it completes the maximum.
        let indexed_max = TimeIndexView(self.time_index.bytes()).last().map_or(i64::MIN, |e| e.timestamp_ms);
        self.size_bytes = log_bytes;
        self.next_offset = next_offset;
        self.max_timestamp_ms = indexed_max.max(walked_max);
        self.last_indexed_position = from_position;
        Ok(())
    }

    /// Walks the headers of trusted batches in `from_position..to_position`, checking only that they are
    /// contiguous; returns the offset after the last one and their largest max timestamp.
    fn walk_trusted(&self, from_position: u64, from_offset: u64, to_position: u64) -> Result<(u64, i64), StorageError> {
        let view = self.read_log(from_position, to_position)?;
        let mut expected = from_offset;
        let mut max_timestamp_ms = i64::MIN;
        for item in batch::split_batches(&view) {
            let (header, range) = item.map_err(|e| self.corrupt(expected, from_position, e.to_string()))?;
            if header.base_offset != expected {
                let at = from_position + range.start as u64;
                return Err(self.corrupt(expected, at, format!("batch has base offset {}", header.base_offset)));
            }
            expected = header.next_offset();
            max_timestamp_ms = max_timestamp_ms.max(header.max_timestamp);
        }
        Ok((expected, max_timestamp_ms))
    }

    /// Validates the bytes after `size_bytes` batch by batch (header, length, CRC, offset continuity), indexing
    /// each good batch, and cuts the file at the first torn or corrupt one.
    pub fn recover_tail(&mut self, backend: &dyn Backend, index_interval_bytes: u32) -> Result<TailScan, StorageError> {
        assert!(!self.sealed, "recovery scans only the segment being opened for appends");
        let file_len = self.log.len().map_err(|e| StorageError::io("stat segment", &self.log_path, e))?;
        let mut scan = TailScan::default();
        if file_len > self.size_bytes {
            let start = self.size_bytes;
            let view = self.read_log(start, file_len)?;
            let mut at = 0usize;
            let mut scratch = Vec::new();
            while at < view.len() {
                let rest = &view[at..];
                let position = start + at as u64;
                let header = match self.check_tail_batch(rest, position, &mut scratch) {
                    Ok(header) => header,
                    Err(reason) => {
                        scan.torn = Some(reason);
                        break;
                    }
                };
                self.index_batch(position, &header, index_interval_bytes)?;
                at += header.size();
            }
            scan.scanned_bytes = file_len - start;
        }
        if file_len > self.size_bytes {
            scan.truncated_bytes = file_len - self.size_bytes;
            // Readers of a previous instance of this log in the same process may still map the torn bytes.
            self.log = shrink_file(backend, &self.log_path, &self.log, self.size_bytes)?;
        }
        Ok(scan)
    }

    /// Checks one batch at the start of `rest` found by the recovery scan; the error says why it is torn. In
    /// an encrypted segment the GCM tag is checked too (decrypting into `scratch`): the segment's key was
    /// matched to its record by fingerprint before the scan, so a failing tag here is damage, not a wrong key
    /// (the partition leader epoch, outside the CRC but inside the AAD, can be garbled by a torn write).
    fn check_tail_batch(&self, rest: &[u8], position: u64, scratch: &mut Vec<u8>) -> Result<BatchHeader, String> {
        let header = BatchHeader::parse(rest).map_err(|e| e.to_string())?;
        if rest.len() < header.size() {
            return Err(format!("batch needs {} bytes, {} remain", header.size(), rest.len()));
        }
        batch::check_crc(&rest[..header.size()]).map_err(|e| e.to_string())?;
        if let Some(key) = &self.key {
            scratch.clear();
            encryption::open_batch(key, &rest[..header.size()], scratch)?;
        }
        if header.base_offset != self.next_offset {
            return Err(format!("base offset {} where {} was expected", header.base_offset, self.next_offset));
        }
        if header.last_offset() - self.base_offset > u64::from(u32::MAX) || position > u64::from(u32::MAX) {
            return Err("batch lies beyond what the segment can index".into());
        }
        Ok(header)
    }

    /// Appends one batch given as its (possibly patched) 61-byte header and the rest, then indexes it; in an
    /// encrypted segment the stored form is the sealed batch (`SegmentKey::seal`). On an error the segment is
    /// as before (the file is cut back to its old length).
    pub fn append(
        &mut self,
        head: &[u8],
        rest: &[u8],
        header: &BatchHeader,
        index_interval_bytes: u32,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        assert!(!self.sealed, "append to the sealed segment {}", self.log_path.display());
        assert_eq!(header.base_offset, self.next_offset, "offsets must be contiguous");
        let position = self.size_bytes;
        let sealed_batch;
        let (bufs, stored_header): ([&[u8]; 2], BatchHeader) = match &self.key {
            None => ([head, rest], *header),
            Some(key) => {
                sealed_batch = key.seal(head, rest);
                let stored = BatchHeader::parse(&sealed_batch).expect("a sealed batch has a valid header");
                assert_eq!(
                    (stored.base_offset, stored.last_offset_delta, stored.max_timestamp),
                    (header.base_offset, header.last_offset_delta, header.max_timestamp),
                    "sealing keeps the readable header"
                );
                ([&sealed_batch, &[]], stored)
            }
        };
        let result = self
            .log
            .write_at(position, &bufs)
            .map_err(|e| StorageError::io("append to segment", &self.log_path, e))
            .and_then(|()| self.index_batch(position, &stored_header, index_interval_bytes));
        if let Err(e) = result {
            // Take the partial batch back out. If even that fails, the bytes past size_bytes are overwritten by
            // the next append, never read, and cut by recovery or close.
            if let Err(cut) = self.log.set_len(position) {
                tracing::warn!(segment = %self.log_path.display(), error = %cut, "could not cut a failed append");
            }
            return Err(e);
        }
        self.created_ms.get_or_insert(now_ms);
        Ok(())
    }

    /// Records a batch written at `position`: index entries when due, then size, next offset, max timestamp.
    fn index_batch(
        &mut self,
        position: u64,
        header: &BatchHeader,
        index_interval_bytes: u32,
    ) -> Result<(), StorageError> {
        let due = position >= self.last_indexed_position + u64::from(index_interval_bytes);
        let max_timestamp_ms = self.max_timestamp_ms.max(header.max_timestamp);
        if due {
            let relative_offset = u32::try_from(header.base_offset - self.base_offset).expect("checked by the caller");
            let position32 = u32::try_from(position).expect("positions stay below SEGMENT_BYTES_LIMIT");
            let entries_before = self.offset_index.entries();
            self.offset_index.append(&OffsetEntry { relative_offset, position: position32 }.encode())?;
            let last_time = TimeIndexView(self.time_index.bytes()).last().map_or(i64::MIN, |e| e.timestamp_ms);
            if max_timestamp_ms > last_time {
                let relative_offset = u32::try_from(header.last_offset() - self.base_offset).expect("checked");
                let entry = TimeEntry { timestamp_ms: max_timestamp_ms, relative_offset };
                if let Err(e) = self.time_index.append(&entry.encode()) {
                    self.offset_index.truncate_entries(entries_before)?;
                    return Err(e);
                }
            }
            self.last_indexed_position = position;
        }
        self.max_timestamp_ms = max_timestamp_ms;
        self.size_bytes = position + header.size() as u64;
        self.next_offset = header.next_offset();
        Ok(())
    }

    /// Stops appends: writes the final time index entry (so the last entry holds the segment's maximum, which
    /// retention and timestamp lookups rely on) and reads the indexes through mappings from now on.
    pub fn seal(&mut self) -> Result<(), StorageError> {
        assert!(!self.sealed, "sealed twice: {}", self.log_path.display());
        let last_time = TimeIndexView(self.time_index.bytes()).last().map_or(i64::MIN, |e| e.timestamp_ms);
        if self.next_offset > self.base_offset && self.max_timestamp_ms > last_time {
            let relative_offset = u32::try_from(self.next_offset - 1 - self.base_offset).expect("checked at append");
            self.time_index.append(&TimeEntry { timestamp_ms: self.max_timestamp_ms, relative_offset }.encode())?;
        }
        self.offset_index.seal()?;
        self.time_index.seal()?;
        self.sealed = true;
        Ok(())
    }

    /// Makes a sealed segment appendable again, for a truncation that reaches into it.
    pub fn unseal(&mut self) {
        self.offset_index.unseal();
        self.time_index.unseal();
        self.sealed = false;
    }

    /// Drops every batch at and after `offset`, which must be a batch boundary in this active segment, and
    /// syncs the result.
    pub fn truncate_to(&mut self, backend: &dyn Backend, offset: u64) -> Result<(), StorageError> {
        assert!(!self.sealed, "truncate a sealed segment: unseal it first");
        let position = self.position_of(offset)?;
        self.offset_index
            .truncate_entries(OffsetIndexView(self.offset_index.bytes()).count_below_position(position))?;
        self.time_index
            .truncate_entries(TimeIndexView(self.time_index.bytes()).count_below_offset(offset - self.base_offset))?;
        self.log = shrink_file(backend, &self.log_path, &self.log, position)?;
        self.cut_indexes_and_rebuild_state(position)?;
        assert_eq!(self.next_offset, offset, "truncation must land on the requested boundary");
        self.sync_all()
    }

    /// The file position of the batch starting at `offset` (or the end, for `next_offset`).
    pub fn position_of(&self, offset: u64) -> Result<u64, StorageError> {
        assert!((self.base_offset..=self.next_offset).contains(&offset), "offset outside the segment");
        if offset == self.next_offset {
            return Ok(self.size_bytes);
        }
        let (view, start, header, at) = self.locate(offset)?;
        drop(view);
        if header.base_offset != offset {
            return Err(StorageError::NotBatchBoundary {
                offset,
                batch_base: header.base_offset,
                batch_last: header.last_offset(),
            });
        }
        Ok(start + at as u64)
    }

    /// Finds the batch containing `offset` (which must be below `next_offset`): the segment bytes from the
    /// nearest index entry, that entry's position, the batch header, and where it starts in the bytes.
    fn locate(&self, offset: u64) -> Result<(Bytes, u64, BatchHeader, usize), StorageError> {
        assert!(offset >= self.base_offset && offset < self.next_offset, "offset outside the segment");
        let relative = u32::try_from(offset - self.base_offset).expect("segments span at most u32 offsets");
        let (start, mut expected) = match OffsetIndexView(self.offset_index.bytes()).floor(relative) {
            Some(e) => (u64::from(e.position), self.base_offset + u64::from(e.relative_offset)),
            None => (0, self.base_offset),
        };
        // A sealed segment's index is trusted without reading the segment, so a damaged one can point past
        // the file's end (found by the `index_files` fuzz target: the subtraction in `read_log` overflowed).
        if start > self.size_bytes {
            let reason = format!("index entry points at byte {start}, past the segment's {} bytes", self.size_bytes);
            return Err(self.corrupt(expected, start, reason));
        }
        let view = self.read_log(start, self.size_bytes)?;
        let mut at = 0usize;
        loop {
            let header = self.parse_stored(&view, start, at, expected)?;
            if header.last_offset() >= offset {
                return Ok((view, start, header, at));
            }
            at += header.size();
            expected = header.next_offset();
        }
    }

    /// Parses the stored batch at `at` of `view` (which starts at file position `start`), checking that it is
    /// whole and has the expected base offset. The CRC is the caller's to check.
    fn parse_stored(&self, view: &Bytes, start: u64, at: usize, expected: u64) -> Result<BatchHeader, StorageError> {
        let position = start + at as u64;
        let header = BatchHeader::parse(&view[at..]).map_err(|e| self.corrupt(expected, position, e.to_string()))?;
        if header.base_offset != expected {
            let reason = format!("batch has base offset {}", header.base_offset);
            return Err(self.corrupt(expected, position, reason));
        }
        if view.len() - at < header.size() {
            return Err(self.corrupt(expected, position, "batch runs past the end of the segment".into()));
        }
        // A sealed segment's end offset is the next segment's base, taken from its name without reading the
        // batches; one whose last batch runs past it would make reads return nothing below the log end (found
        // by the `log_dir` fuzz target: `leader_epochs_from_batches` asserted progress).
        if header.last_offset() >= self.next_offset {
            let reason =
                format!("batch ends at offset {}, past the segment's end {}", header.last_offset(), self.next_offset);
            return Err(self.corrupt(expected, position, reason));
        }
        Ok(header)
    }

    /// Whole batches from the one containing `offset`, at most `max_bytes` (but at least one), none with a last
    /// offset at or above `upper_bound`, each with its CRC checked. Returns them and the offset after them.
    pub fn read(&self, offset: u64, max_bytes: usize, upper_bound: u64) -> Result<(Bytes, u64), StorageError> {
        let (view, start, located, first) = self.locate(offset)?;
        let mut end = first;
        let mut expected = located.base_offset;
        let mut next = offset;
        while end < view.len() {
            let header = match self.parse_stored(&view, start, end, expected) {
                Ok(header) => header,
                Err(e) if end == first => return Err(e),
                Err(_) => break,
            };
            if header.last_offset() >= upper_bound || (end > first && end - first + header.size() > max_bytes) {
                break;
            }
            if let Err(e) = batch::check_crc(&view[end..end + header.size()]) {
                let error = self.corrupt(header.base_offset, start + end as u64, e.to_string());
                if end == first {
                    return Err(error);
                }
                break;
            }
            end += header.size();
            expected = header.next_offset();
            next = expected;
        }
        match &self.key {
            // A plaintext segment holding an encrypted batch has lost its key record: never serve ciphertext.
            None => match first_flagged(&view[first..end]) {
                None => Ok((view.slice(first..end), next)),
                Some((offset, 0)) => {
                    let reason = "an encrypted batch in a segment without a key record".to_string();
                    Err(self.corrupt(offset, start + first as u64, reason))
                }
                Some((offset, at)) => Ok((view.slice(first..first + at), offset)),
            },
            Some(key) => self.decrypt(key, &view[first..end], next),
        }
    }

    /// Decrypts the CRC-checked stored batches of a read (a copy: encrypted reads are never zero-copy). A batch
    /// failing authentication ends the result before it, or fails the read if it is the first.
    fn decrypt(&self, key: &SegmentKey, stored: &[u8], next: u64) -> Result<(Bytes, u64), StorageError> {
        let mut out = Vec::with_capacity(stored.len());
        let mut next_offset = next;
        for item in batch::split_batches(stored) {
            let (header, range) = item.expect("whole batches were checked");
            if let Err(reason) = encryption::open_batch(key, &stored[range], &mut out) {
                if out.is_empty() {
                    return Err(self.encryption_error(key, reason));
                }
                tracing::error!(segment = %self.log_path.display(), %reason, "encrypted batch not served");
                next_offset = header.base_offset;
                break;
            }
        }
        Ok((Bytes::from(out), next_offset))
    }

    fn encryption_error(&self, key: &SegmentKey, reason: String) -> StorageError {
        tracing::error!(segment = %self.log_path.display(), key_id = key.id(), %reason, "cannot decrypt batch");
        StorageError::Encryption { segment: self.log_path.clone(), key_id: key.id().to_string(), reason }
    }

    /// One stored batch as its plaintext (decrypted in an encrypted segment).
    fn plaintext(&self, stored: Bytes, position: u64) -> Result<Bytes, StorageError> {
        match &self.key {
            None => match first_flagged(&stored) {
                None => Ok(stored),
                Some((offset, _)) => {
                    let reason = "an encrypted batch in a segment without a key record".to_string();
                    Err(self.corrupt(offset, position, reason))
                }
            },
            Some(key) => {
                let mut out = Vec::with_capacity(stored.len());
                encryption::open_batch(key, &stored, &mut out).map_err(|reason| self.encryption_error(key, reason))?;
                Ok(Bytes::from(out))
            }
        }
    }

    /// The first record at or after `timestamp_ms` in this segment: its offset and timestamp.
    pub fn find_timestamp(&self, timestamp_ms: i64) -> Result<Option<(u64, i64)>, StorageError> {
        if self.next_offset == self.base_offset || self.max_timestamp_ms < timestamp_ms {
            return Ok(None);
        }
        // Records up to a time entry below the target are all too old: start after the last such entry.
        let from = TimeIndexView(self.time_index.bytes())
            .last_below(timestamp_ms)
            .map_or(self.base_offset, |e| self.base_offset + u64::from(e.relative_offset) + 1);
        if from >= self.next_offset {
            return Ok(None);
        }
        let (view, start, located, mut at) = self.locate(from)?;
        let mut expected = located.base_offset;
        while at < view.len() {
            let header = self.parse_stored(&view, start, at, expected)?;
            let range = at..at + header.size();
            if header.max_timestamp >= timestamp_ms {
                let stored = view.slice(range.clone());
                batch::check_crc(&stored)
                    .map_err(|e| self.corrupt(header.base_offset, start + at as u64, e.to_string()))?;
                let stored = self.plaintext(stored, start + at as u64)?;
                let records = batch::decode_records(&stored)
                    .map_err(|e| self.corrupt(header.base_offset, start + at as u64, e.to_string()))?;
                // Stored batches were validated once, on append; one damaged since with its CRC intact can
                // carry offset deltas past its header's, which would answer an offset outside the log (found
                // by the `log_dir` fuzz target).
                if records.iter().any(|r| r.offset > header.last_offset()) {
                    let reason = "record offset deltas run past the batch's last offset".to_string();
                    return Err(self.corrupt(header.base_offset, start + at as u64, reason));
                }
                if let Some(record) = records.iter().find(|r| r.timestamp_ms >= timestamp_ms) {
                    return Ok(Some((record.offset, record.timestamp_ms)));
                }
            }
            at = range.end;
            expected = header.next_offset();
        }
        Ok(None)
    }

    /// Reads `from..to` of the `.log` (a mapping slice on the real backend).
    fn read_log(&self, from: u64, to: u64) -> Result<Bytes, StorageError> {
        self.log.read(from, (to - from) as usize).map_err(|e| StorageError::io("read segment", &self.log_path, e))
    }

    /// Builds a Corrupt error and reports it: corruption needs an operator, so it is logged where it is found.
    fn corrupt(&self, offset: u64, position: u64, reason: String) -> StorageError {
        tracing::error!(segment = %self.log_path.display(), offset, position, %reason, "corrupt batch; not serving it");
        StorageError::Corrupt {
            segment: self.log_path.clone(),
            offset,
            reason: format!("at byte {position}: {reason}"),
        }
    }

    /// Syncs the `.log` and both indexes.
    pub fn sync_all(&self) -> Result<(), StorageError> {
        self.log.sync().map_err(|e| StorageError::io("fsync segment", &self.log_path, e))?;
        self.offset_index.sync()?;
        self.time_index.sync()
    }

    /// Cuts the `.log` file to `size_bytes` if a failed append left bytes after it (before a clean shutdown).
    pub fn trim_file(&mut self, backend: &dyn Backend) -> Result<(), StorageError> {
        let len = self.log.len().map_err(|e| StorageError::io("stat segment", &self.log_path, e))?;
        if len > self.size_bytes {
            self.log = shrink_file(backend, &self.log_path, &self.log, self.size_bytes)?;
        }
        Ok(())
    }

    /// The three files a full sync of this segment covers.
    pub fn files(&self) -> [Arc<dyn StorageFile>; 3] {
        [Arc::clone(&self.log), Arc::clone(self.offset_index.file()), Arc::clone(self.time_index.file())]
    }

    pub fn log_file(&self) -> &Arc<dyn StorageFile> {
        &self.log
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The key the segment is encrypted with, None for plaintext.
    pub fn key(&self) -> Option<&Arc<SegmentKey>> {
        self.key.as_ref()
    }

    pub fn base_offset(&self) -> u64 {
        self.base_offset
    }

    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.next_offset == self.base_offset
    }

    pub fn max_timestamp_ms(&self) -> i64 {
        self.max_timestamp_ms
    }

    /// Index entry counts that a checkpoint at `offset` (a batch boundary at `position`) may claim.
    pub fn index_entries_below(&self, offset: u64, position: u64) -> (usize, usize) {
        (
            OffsetIndexView(self.offset_index.bytes()).count_below_position(position),
            TimeIndexView(self.time_index.bytes()).count_below_offset(offset - self.base_offset),
        )
    }

    pub fn index_files(&self) -> [&IndexFile; 2] {
        [&self.offset_index, &self.time_index]
    }
}

fn open_index(
    backend: &dyn Backend,
    dir: &Path,
    base_offset: u64,
    suffix: &str,
    entries: Option<usize>,
    sealed: bool,
) -> Result<IndexFile, StorageError> {
    let entry_bytes = if suffix == OFFSET_INDEX_SUFFIX { OFFSET_ENTRY_BYTES } else { TIME_ENTRY_BYTES };
    IndexFile::open(backend, &segment_path(dir, base_offset, suffix), entry_bytes, entries, sealed)
}

/// The base offset and position of the first batch flagged as encrypted in `stored` (whole batches), if any.
fn first_flagged(stored: &[u8]) -> Option<(u64, usize)> {
    batch::split_batches(stored)
        .flatten()
        .find(|(header, _)| header.attributes & ATTR_STORED_ENCRYPTED != 0)
        .map(|(header, range)| (header.base_offset, range.start))
}

/// Writes the key record of a new segment and makes it durable before its `.log` is created, or, for a
/// plaintext segment, removes a stale one durably.
fn write_key_record(
    backend: &dyn Backend,
    dir: &Path,
    log_path: &Path,
    key: Option<&SegmentKey>,
) -> Result<(), StorageError> {
    let path = encryption::key_record_path(log_path);
    let sync_dir = || backend.sync_dir(dir).map_err(|e| StorageError::io("fsync directory", dir, e));
    match key {
        None => match backend.remove_file(&path) {
            Ok(()) => sync_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io("remove stale key record", path, e)),
        },
        Some(key) => {
            let bytes = KeyRecord::of(key).encode();
            let file = backend.open(&path, true).map_err(|e| StorageError::io("create key record", &path, e))?;
            file.set_len(0).map_err(|e| StorageError::io("reset key record", &path, e))?;
            file.write_at(0, &[&bytes]).map_err(|e| StorageError::io("write key record", &path, e))?;
            file.sync().map_err(|e| StorageError::io("fsync key record", &path, e))?;
            sync_dir()
        }
    }
}
