//! `Log`: one partition's ordered chain of segments with appends, reads, flushing and checkpoints. Recovery
//! (`Log::open`) lives in `recovery.rs`; truncation, rolling by age, retention and timestamp lookup in
//! `maintenance.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rill_proto::batch::{self, BATCH_HEADER_BYTES, BatchHeader};

use crate::backend::Backend;
use crate::checkpoint::{self, Checkpoint};
use crate::config::{Durability, LogConfig};
use crate::error::StorageError;
use crate::flush::{FlushJob, FlushShared};
use crate::segment::{self, Segment};

/// Where an appended batch landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: u64,
    pub last_offset: u64,
    pub max_timestamp: i64,
}

/// Whole stored batches, back to back, and the offset to read next.
#[derive(Clone, Debug)]
pub struct ReadResult {
    /// One segment's batches: a zero-copy slice of its bytes, or for an encrypted segment a decrypted copy.
    pub records: Bytes,
    /// Last returned batch's last offset + 1, or the requested offset when nothing was returned.
    pub next_offset: u64,
}

/// One partition's log. Not internally synchronised: the broker keeps it behind a per-partition mutex, so
/// every method is quick (page-cache writes only) except those documented as doing fsyncs or scans.
pub struct Log {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    /// By base offset; never empty, contiguous (each segment's next offset is the following base), and the
    /// last one is the active segment.
    pub(crate) segments: BTreeMap<u64, Segment>,
    pub(crate) log_start_offset: u64,
    pub(crate) flushed_offset: u64,
    /// Sealed segments not yet known to be fully synced (data and indexes), by base offset.
    pub(crate) unsynced_sealed: BTreeSet<u64>,
    /// Segments created by this process, so flush jobs know when the directory needs a sync.
    pub(crate) segments_created: u64,
    pub(crate) flush: Arc<FlushShared>,
    /// The recovery point that the checkpoint file on disk claims, if there is one.
    pub(crate) checkpointed_recovery_point: Option<u64>,
    /// Under `Durability::Os` with a cache window: the active segment (by base offset) and the position up to
    /// which its writeback was started (`write_behind`).
    pub(crate) written_behind: (u64, u64),
}

/// Under `Durability::Os` with a cache window, writeback is started in steps of this many bytes.
const WRITE_BEHIND_STEP_BYTES: u64 = 8 << 20;

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("log_start_offset", &self.log_start_offset)
            .field("end_offset", &self.end_offset())
            .field("flushed_offset", &self.flushed_offset)
            .field("segments", &self.segments.len())
            .finish()
    }
}

impl Log {
    pub fn log_start_offset(&self) -> u64 {
        self.log_start_offset
    }

    /// The log end offset (LEO): the offset the next appended record gets.
    pub fn end_offset(&self) -> u64 {
        self.active().next_offset()
    }

    /// Every offset below this is durable (covered by an fsync).
    pub fn flushed_offset(&self) -> u64 {
        self.flushed_offset
    }

    /// Bytes of batches stored in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size_bytes).sum()
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration; it applies from the next append, roll or retention pass.
    ///
    /// # Panics
    ///
    /// If `config.validate()` fails: validate configurations where they enter the system.
    pub fn set_config(&mut self, config: LogConfig) {
        if let Err(e) = config.validate().and_then(|()| config.check_keys()) {
            panic!("Log::set_config: {e}");
        }
        self.config = config;
    }

    pub(crate) fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("a log always has an active segment")
    }

    pub(crate) fn active_mut(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("a log always has an active segment")
    }

    /// Appends one batch, already validated by the caller with `rill_proto::batch::validate`, at the log end.
    /// Stamps the base offset and `leader_epoch` into the stored copy (both outside the CRC) without copying
    /// the payload, and rolls the segment first if it would grow past `segment_bytes_max` or is too old.
    /// Writes to the page cache only (a roll under `Durability::Os` also fsyncs the sealed segment).
    ///
    /// # Errors
    ///
    /// `InvalidBatch` if the bytes are not exactly one batch; `Io` (e.g. disk full), in which case nothing of
    /// the batch remains in the log.
    pub fn append(&mut self, batch: &[u8], leader_epoch: i32, now_ms: i64) -> Result<AppendInfo, StorageError> {
        let mut header = parse_whole(batch)?;
        header.base_offset = self.end_offset();
        let mut head = [0u8; BATCH_HEADER_BYTES];
        head.copy_from_slice(&batch[..BATCH_HEADER_BYTES]);
        batch::set_base_offset(&mut head, header.base_offset);
        batch::set_partition_leader_epoch(&mut head, leader_epoch);
        self.append_parts(&head, &batch[BATCH_HEADER_BYTES..], &header, now_ms)
    }

    /// Appends a batch that already carries its offsets, as a follower copying its leader does. Its base
    /// offset must equal `end_offset()`; the bytes are stored verbatim.
    ///
    /// # Errors
    ///
    /// As `append`, and `InvalidBatch` when the batch does not start at the log end.
    pub fn append_replicated(&mut self, batch: &[u8], now_ms: i64) -> Result<AppendInfo, StorageError> {
        let header = parse_whole(batch)?;
        let end = self.end_offset();
        if header.base_offset != end {
            return Err(StorageError::InvalidBatch(format!(
                "replicated batch starts at offset {}, but the log ends at {end}",
                header.base_offset
            )));
        }
        self.append_parts(&batch[..BATCH_HEADER_BYTES], &batch[BATCH_HEADER_BYTES..], &header, now_ms)
    }

    fn append_parts(
        &mut self,
        head: &[u8],
        rest: &[u8],
        header: &BatchHeader,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        let base_offset = header.base_offset;
        // `append` stamps the log end as the base offset, and a segment named past i64::MAX makes that end
        // larger than any parsed header's, so add without overflowing (found by the `log_dir` fuzz target).
        let last_offset = header.base_offset.checked_add(u64::from(header.last_offset_delta));
        if last_offset.is_none_or(|last| last > i64::MAX as u64) {
            return Err(StorageError::InvalidBatch("offsets would pass i64::MAX".into()));
        }
        self.start_segment_for_key_if_needed()?;
        let overhead =
            if self.active().key().is_some() { crate::encryption::ENCRYPTED_BATCH_OVERHEAD_BYTES } else { 0 };
        self.roll_if_needed((header.size() + overhead) as u64, header.last_offset(), now_ms)?;
        let interval = self.config.index_interval_bytes;
        self.active_mut().append(head, rest, header, interval, now_ms)?;
        if self.config.durability == Durability::Os
            && let Some(window) = self.config.cache_window_bytes
        {
            self.write_behind(window);
        }
        let end = self.end_offset();
        assert_eq!(end, header.next_offset(), "the log end must follow the appended batch");
        assert!(end > base_offset, "offsets strictly increase");
        assert!(self.flushed_offset <= end && self.log_start_offset <= end);
        Ok(AppendInfo { base_offset, last_offset: header.last_offset(), max_timestamp: header.max_timestamp })
    }

    /// The cache window under `Durability::Os`, where no flush job runs: once the active segment has grown a
    /// step past the window, starts the kernel's writeback of the bytes more than the window behind its end
    /// (without waiting), and drops the cached pages up to where the previous step started writeback, which
    /// a step's worth of appends has given the kernel time to write. Pages still dirty are not dropped, and
    /// nothing is claimed durable: the policy's guarantee is unchanged. Failures are hints lost, only logged.
    fn write_behind(&mut self, window: u64) {
        let base = self.active().base_offset();
        if self.written_behind.0 != base {
            // A new active segment: nothing of it is written behind yet.
            self.written_behind = (base, 0);
        }
        let started = self.written_behind.1;
        let active = self.active();
        let target = active.size_bytes().saturating_sub(window);
        if target < started + WRITE_BEHIND_STEP_BYTES {
            return;
        }
        let file = active.log_file();
        let hinted = file.start_writeback(started, target - started).and_then(|()| file.release_cache(started));
        if let Err(e) = hinted {
            tracing::debug!(path = %active.log_path().display(), error = %e, "write-behind hint failed");
        }
        self.written_behind = (base, target);
    }

    /// A segment holds batches under one key (or none): when the configuration wants another form than the
    /// active segment's (encryption turned on or off, or the active key rotated), the log rolls to a new
    /// segment first, or, if the active one is still empty, recreates it in the wanted form.
    fn start_segment_for_key_if_needed(&mut self) -> Result<(), StorageError> {
        let wanted = self.config.new_segment_key();
        let same = |a: &crate::encryption::SegmentKey, b: &crate::encryption::SegmentKey| {
            a.id() == b.id() && a.fingerprint() == b.fingerprint()
        };
        let matches = match (self.active().key(), &wanted) {
            (None, None) => true,
            (Some(a), Some(b)) => same(a, b),
            _ => false,
        };
        if matches {
            return Ok(());
        }
        let active = self.active();
        tracing::info!(
            dir = %self.dir.display(),
            from = active.key().map_or("plaintext", |k| k.id()),
            to = wanted.as_ref().map_or("plaintext", |k| k.id()),
            "new segment for a changed encryption setting"
        );
        if !active.is_empty() {
            return self.roll();
        }
        let base = active.base_offset();
        let fresh = Segment::create(&*self.backend, &self.dir, base, wanted)?;
        self.segments.insert(base, fresh);
        self.segments_created += 1;
        Ok(())
    }

    /// Rolls before an append of `batch_bytes` ending at `last_offset` if the active segment is full by size,
    /// by relative offset range (index entries hold u32), or by age.
    fn roll_if_needed(&mut self, batch_bytes: u64, last_offset: u64, now_ms: i64) -> Result<(), StorageError> {
        let active = self.active();
        if active.is_empty() {
            return Ok(());
        }
        let full = active.size_bytes() + batch_bytes > self.config.segment_bytes_max;
        let offsets_exhausted = last_offset - active.base_offset() > u64::from(u32::MAX);
        if full || offsets_exhausted || self.is_roll_due(now_ms) {
            self.roll()?;
        }
        Ok(())
    }

    pub(crate) fn is_roll_due(&self, now_ms: i64) -> bool {
        let active = self.active();
        match (self.config.segment_ms_max, active.created_ms) {
            (Some(age_ms_max), Some(created_ms)) if !active.is_empty() => {
                now_ms.saturating_sub(created_ms) >= age_ms_max.min(i64::MAX as u64) as i64
            }
            _ => false,
        }
    }

    /// Seals the active segment and starts a new one at the log end. The sealed segment is fsynced here under
    /// `Durability::Os` (nobody else would) and otherwise by the next flush job.
    pub(crate) fn roll(&mut self) -> Result<(), StorageError> {
        let new_base = self.end_offset();
        let old_base = self.active().base_offset();
        assert!(new_base > old_base, "only a non-empty segment is rolled");
        let fresh = Segment::create(&*self.backend, &self.dir, new_base, self.config.new_segment_key())?;
        if let Err(e) = self.active_mut().seal() {
            drop(fresh);
            let _ = segment::delete_segment_files(&*self.backend, &self.dir, new_base);
            return Err(e);
        }
        self.segments.insert(new_base, fresh);
        self.segments_created += 1;
        self.unsynced_sealed.insert(old_base);
        tracing::debug!(dir = %self.dir.display(), old_base, new_base, "rolled segment");
        if self.config.durability == Durability::Os {
            self.sync_sealed_and_dir()?;
            // Under Os every earlier segment was synced at its own roll, so all before the new base is durable.
            self.flush.record(new_base, new_base, self.segments_created);
            self.flushed_offset = self.flushed_offset.max(new_base);
        }
        Ok(())
    }

    /// Syncs every sealed segment not yet synced, and the directory.
    pub(crate) fn sync_sealed_and_dir(&mut self) -> Result<(), StorageError> {
        while let Some(&base) = self.unsynced_sealed.first() {
            self.segments[&base].sync_all()?;
            self.unsynced_sealed.remove(&base);
        }
        self.backend.sync_dir(&self.dir).map_err(|e| StorageError::io("fsync directory", &self.dir, e))?;
        self.flush.record(0, 0, self.segments_created);
        Ok(())
    }

    /// Whole batches from the one containing `offset`, up to `max_bytes` (at least one whole batch when any is
    /// available), none whose last offset is at or above `upper_bound`, from one segment only, as a zero-copy
    /// slice of its mapping (a decrypted copy for an encrypted segment). Every returned batch passed its CRC
    /// check, and in an encrypted segment its GCM tag too.
    ///
    /// # Errors
    ///
    /// `OffsetOutOfRange` for an offset below the log start or above the end; `Corrupt` when the first batch
    /// fails its checks, `Encryption` when it fails authentication (a later bad batch just ends the result
    /// early); `Io`.
    pub fn read(&self, offset: u64, max_bytes: usize, upper_bound: u64) -> Result<ReadResult, StorageError> {
        let log_end = self.end_offset();
        if offset < self.log_start_offset || offset > log_end {
            return Err(StorageError::OffsetOutOfRange { offset, log_start: self.log_start_offset, log_end });
        }
        if offset == log_end || offset >= upper_bound {
            return Ok(ReadResult { records: Bytes::new(), next_offset: offset });
        }
        let (_, segment) = self.segments.range(..=offset).next_back().expect("offset at or above the log start");
        let (records, next_offset) = segment.read(offset, max_bytes, upper_bound)?;
        assert!(next_offset >= offset && next_offset <= log_end.min(upper_bound).max(offset));
        Ok(ReadResult { records, next_offset })
    }

    /// A job that makes everything appended so far durable, or None when nothing is unflushed.
    pub fn flush_job(&self) -> Option<FlushJob> {
        let progress = self.flush.snapshot();
        let dir_dirty = self.segments_created > progress.dir_synced_count;
        let end = self.end_offset();
        if self.flushed_offset == end && self.unsynced_sealed.is_empty() && !dir_dirty {
            return None;
        }
        let mut files = Vec::new();
        let mut logs = Vec::new();
        let mut sealed_through = 0;
        for base in &self.unsynced_sealed {
            let sealed = &self.segments[base];
            let [log, offset_index, time_index] = sealed.files();
            let [offset_index_file, time_index_file] = sealed.index_files();
            files.push((sealed.log_path().to_path_buf(), Arc::clone(&log)));
            logs.push((sealed.log_path().to_path_buf(), log));
            files.push((offset_index_file.path().to_path_buf(), offset_index));
            files.push((time_index_file.path().to_path_buf(), time_index));
            sealed_through = sealed.next_offset();
        }
        let active = self.active();
        files.push((active.log_path().to_path_buf(), Arc::clone(active.log_file())));
        logs.push((active.log_path().to_path_buf(), Arc::clone(active.log_file())));
        let dir_sync = dir_dirty.then(|| (Arc::clone(&self.backend), self.dir.clone(), self.segments_created));
        Some(FlushJob {
            upto: end,
            generation: progress.generation,
            files,
            sealed_through,
            dir_sync,
            shared: Arc::clone(&self.flush),
            release: self.config.cache_window_bytes.map(|window| (window, logs)),
        })
    }

    /// Advances the flushed offset after a flush job ran. Never claims more than a completed job of the
    /// current truncation generation covered, so a stale or failed job's `upto` is harmless.
    pub fn mark_flushed(&mut self, upto: u64) {
        let progress = self.flush.snapshot();
        let end = self.end_offset();
        let durable = upto.min(progress.durable_upto).min(end);
        self.flushed_offset = self.flushed_offset.max(durable);
        let segments = &self.segments;
        self.unsynced_sealed.retain(|base| segments[base].next_offset() > progress.sealed_synced_through);
        assert!(self.flushed_offset <= end, "flushed offset above the log end");
    }

    /// Takes, runs and marks a flush job. Blocks on fsync.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        if let Some(job) = self.flush_job() {
            job.run()?;
            self.mark_flushed(job.upto());
        }
        Ok(())
    }

    /// Persists the log start offset and the recovery point (the flushed offset, with where its batch starts
    /// and how many index entries are durable) atomically, so recovery scans only what follows. Fsyncs the
    /// index files it claims and every sealed segment below the recovery point first.
    pub fn write_checkpoint(&mut self) -> Result<(), StorageError> {
        let flushed = self.flushed_offset;
        assert!(self.log_start_offset <= flushed, "the log start is always durable");
        let ready: Vec<u64> =
            self.unsynced_sealed.iter().copied().filter(|b| self.segments[b].next_offset() <= flushed).collect();
        for base in ready {
            self.segments[&base].sync_all()?;
            self.unsynced_sealed.remove(&base);
        }
        if self.segments_created > self.flush.snapshot().dir_synced_count {
            self.backend.sync_dir(&self.dir).map_err(|e| StorageError::io("fsync directory", &self.dir, e))?;
            self.flush.record(0, 0, self.segments_created);
        }
        let (&segment_base, segment) = self.segments.range(..=flushed).next_back().expect("flushed >= log start");
        let segment_position = segment.position_of(flushed)?;
        let (offset_entries, time_entries) = segment.index_entries_below(flushed, segment_position);
        for index in segment.index_files() {
            index.sync()?;
        }
        let checkpoint = Checkpoint {
            log_start_offset: self.log_start_offset,
            recovery_point: flushed,
            segment_base,
            segment_position,
            offset_index_entries: u32::try_from(offset_entries).expect("index entries fit u32"),
            time_index_entries: u32::try_from(time_entries).expect("index entries fit u32"),
        };
        checkpoint::write_checkpoint(&*self.backend, &self.dir, &checkpoint)?;
        self.checkpointed_recovery_point = Some(flushed);
        Ok(())
    }

    /// Stops the log cleanly: cuts any bytes a failed append left behind, flushes everything, writes the
    /// checkpoint and then the clean-shutdown marker, so the next open skips the recovery scan. Fsyncs.
    pub fn close(mut self) -> Result<(), StorageError> {
        let backend = Arc::clone(&self.backend);
        self.active_mut().trim_file(&*backend)?;
        self.flush()?;
        self.sync_sealed_and_dir()?;
        self.active().sync_all()?;
        self.write_checkpoint()?;
        checkpoint::write_clean_marker(&*self.backend, &self.dir)
    }

    /// Removes the partition directory with every segment and checkpoint in it.
    pub fn delete(self) -> Result<(), StorageError> {
        self.backend.remove_dir_all(&self.dir).map_err(|e| StorageError::io("remove partition directory", &self.dir, e))
    }
}

// The broker keeps each log behind a mutex shared across threads and runs flush jobs on blocking threads.
const _: fn() = || {
    fn send_sync_static<T: Send + Sync + 'static>() {}
    send_sync_static::<Log>();
    send_sync_static::<FlushJob>();
};

/// Parses the header of a buffer that must hold exactly one batch.
fn parse_whole(batch: &[u8]) -> Result<BatchHeader, StorageError> {
    let header = BatchHeader::parse(batch).map_err(|e| StorageError::InvalidBatch(e.to_string()))?;
    if header.size() != batch.len() {
        return Err(StorageError::InvalidBatch(format!(
            "batch length says {} bytes, the buffer holds {}",
            header.size(),
            batch.len()
        )));
    }
    Ok(header)
}
