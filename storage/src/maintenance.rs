//! The `Log` operations that reshape it: truncation (follower divergence), rolling by age, retention by age
//! and size, and the timestamp lookup that walks segments by their time indexes.

use std::collections::BTreeSet;

use crate::checkpoint::{self, CHECKPOINT_FILE};
use crate::error::StorageError;
use crate::log::Log;
use crate::segment::{self, Segment};

impl Log {
    /// Drops every batch at and above `offset`, which must be a batch boundary at or above the log start;
    /// an offset at or past the end changes nothing. Durable when it returns: fsyncs the cut files and writes
    /// the checkpoint. When readers still hold bytes of the cut segment, its kept prefix is copied to a new file
    /// renamed over the old one (their mappings keep the old file) instead of shrinking it under them.
    ///
    /// # Errors
    ///
    /// `OffsetOutOfRange` below the log start, `NotBatchBoundary` inside a batch, `Io`.
    pub fn truncate_to(&mut self, offset: u64) -> Result<(), StorageError> {
        let log_end = self.end_offset();
        if offset >= log_end {
            return Ok(());
        }
        if offset < self.log_start_offset {
            return Err(StorageError::OffsetOutOfRange { offset, log_start: self.log_start_offset, log_end });
        }
        let (&base, target) = self.segments.range(..=offset).next_back().expect("offset at or above the log start");
        // Refuse a cut inside a batch before destroying anything.
        target.position_of(offset)?;
        self.forget_claims_above(offset)?;
        let later: Vec<u64> = self.segments.range(base + 1..).map(|(&b, _)| b).collect();
        for later_base in later.into_iter().rev() {
            self.segments.remove(&later_base);
            self.unsynced_sealed.remove(&later_base);
            segment::delete_segment_files(&*self.backend, &self.dir, later_base)?;
        }
        self.unsynced_sealed.remove(&base);
        let backend = std::sync::Arc::clone(&self.backend);
        let target = self.segments.get_mut(&base).expect("still present");
        target.unseal();
        target.truncate_to(&*backend, offset)?;
        self.backend.sync_dir(&self.dir).map_err(|e| StorageError::io("fsync directory", &self.dir, e))?;
        assert_eq!(self.end_offset(), offset, "truncation ends the log at the requested offset");
        tracing::info!(dir = %self.dir.display(), offset, old_end = log_end, "truncated log");
        self.write_checkpoint()
    }

    /// Empties the log and restarts it at `offset` (for a follower whose log lies wholly outside its leader's).
    /// Fsyncs and writes the checkpoint.
    pub fn truncate_fully_and_start_at(&mut self, offset: u64) -> Result<(), StorageError> {
        self.forget_claims_above(0)?;
        let bases: Vec<u64> = self.segments.keys().copied().collect();
        self.segments.clear();
        self.unsynced_sealed.clear();
        // Newest first, so a crash part-way leaves a contiguous prefix of the old log, never a gap.
        for base in bases.into_iter().rev() {
            segment::delete_segment_files(&*self.backend, &self.dir, base)?;
        }
        let fresh = Segment::create(&*self.backend, &self.dir, offset, self.config.new_segment_key())?;
        fresh.sync_all()?;
        self.segments.insert(offset, fresh);
        self.segments_created += 1;
        self.backend.sync_dir(&self.dir).map_err(|e| StorageError::io("fsync directory", &self.dir, e))?;
        self.flush.reset(offset);
        self.flush.record(offset, offset, self.segments_created);
        self.log_start_offset = offset;
        self.flushed_offset = offset;
        tracing::info!(dir = %self.dir.display(), offset, "log emptied and restarted");
        self.write_checkpoint()
    }

    /// Before cutting the log at `offset`: voids flush claims above it (jobs in flight may have synced before
    /// bytes later written below their `upto`), and removes an on-disk checkpoint that claims more, so a crash
    /// mid-way falls back to a full scan of the last segment rather than trusting bytes that are gone.
    fn forget_claims_above(&mut self, offset: u64) -> Result<(), StorageError> {
        self.flush.truncated(offset);
        self.flushed_offset = self.flushed_offset.min(offset);
        if self.checkpointed_recovery_point.is_some_and(|point| point > offset) {
            let path = self.dir.join(CHECKPOINT_FILE);
            self.backend.remove_file(&path).map_err(|e| StorageError::io("remove stale checkpoint", &path, e))?;
            self.backend.sync_dir(&self.dir).map_err(|e| StorageError::io("fsync directory", &self.dir, e))?;
            self.checkpointed_recovery_point = None;
        }
        Ok(())
    }

    /// Rolls the active segment if it is older than `segment_ms_max` (by its first append). Returns whether
    /// it rolled. Under `Durability::Os` the roll fsyncs the sealed segment.
    pub fn roll_if_due(&mut self, now_ms: i64) -> Result<bool, StorageError> {
        if !self.is_roll_due(now_ms) {
            return Ok(false);
        }
        self.roll()?;
        Ok(true)
    }

    /// Deletes whole sealed segments, oldest first, while the oldest is past `retention_ms` (by its newest
    /// record) or the log is bigger than `retention_bytes`, and advances the log start past them. Never
    /// deletes the active segment, nor a segment not yet entirely durable. Fsyncs: the new log start is
    /// checkpointed before any file is removed, so a crash cannot resurrect a shorter start.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<u64, StorageError> {
        let doomed = self.retention_candidates(now_ms);
        let Some(&newest_doomed) = doomed.last() else { return Ok(0) };
        let new_start = self.segments[&newest_doomed].next_offset();
        assert!(new_start <= self.flushed_offset, "retention removes only durable segments");
        let old_start = self.log_start_offset;
        self.log_start_offset = new_start;
        if let Err(e) = self.write_checkpoint() {
            self.log_start_offset = old_start;
            return Err(e);
        }
        for base in &doomed {
            self.segments.remove(base);
            self.unsynced_sealed.remove(base);
            segment::delete_segment_files(&*self.backend, &self.dir, *base)?;
        }
        self.backend.sync_dir(&self.dir).map_err(|e| StorageError::io("fsync directory", &self.dir, e))?;
        assert_eq!(self.segments.keys().next(), Some(&new_start), "the log starts at its first segment");
        tracing::info!(dir = %self.dir.display(), segments = doomed.len(), new_start, "retention deleted segments");
        Ok(doomed.len() as u64)
    }

    fn retention_candidates(&self, now_ms: i64) -> Vec<u64> {
        let mut doomed = Vec::new();
        let mut remaining_bytes = self.size_bytes();
        let active_base = self.active().base_offset();
        for (&base, segment) in self.segments.range(..active_base) {
            if segment.next_offset() > self.flushed_offset {
                break;
            }
            // A segment without a recorded timestamp (damaged time index) is kept rather than guessed old.
            let too_old = self.config.retention_ms.is_some_and(|age_ms_max| {
                segment.max_timestamp_ms() != i64::MIN
                    && now_ms.saturating_sub(segment.max_timestamp_ms()) > age_ms_max.min(i64::MAX as u64) as i64
            });
            let too_big = self.config.retention_bytes.is_some_and(|bytes_max| remaining_bytes > bytes_max);
            if !(too_old || too_big) {
                break;
            }
            doomed.push(base);
            remaining_bytes -= segment.size_bytes();
        }
        doomed
    }

    /// The first offset whose record timestamp is at or after `timestamp_ms`, with that timestamp, or None when
    /// every record is older. Uses each segment's time index, then scans at most from one index entry.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(u64, i64)>, StorageError> {
        for segment in self.segments.values() {
            if let Some(found) = segment.find_timestamp(timestamp_ms)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Base offsets of the segments, oldest first (for tests and tools).
    pub fn segment_bases(&self) -> Vec<u64> {
        self.segments.keys().copied().collect()
    }

    /// Sealed segments still waiting for an fsync, by base offset.
    pub fn unsynced_segments(&self) -> BTreeSet<u64> {
        self.unsynced_sealed.clone()
    }

    /// Whether a clean-shutdown marker is on disk now (it should not be while the log is open).
    pub fn has_clean_marker(&self) -> Result<bool, StorageError> {
        let path = self.dir.join(checkpoint::CLEAN_SHUTDOWN_FILE);
        self.backend.exists(&path).map_err(|e| StorageError::io("stat", path, e))
    }
}
