//! `Log::open`: finds the segments, reads the checkpoint and clean-shutdown marker, and validates only the
//! tail after the recovery point, cutting the log at the first torn or corrupt batch.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use crate::backend::Backend;
use crate::checkpoint::{self, CHECKPOINT_TMP_FILE, CLEAN_SHUTDOWN_FILE, Checkpoint, CheckpointStatus};
use crate::config::LogConfig;
use crate::encryption::{self, KEY_RECORD_SUFFIX, SegmentKey};
use crate::error::StorageError;
use crate::flush::FlushShared;
use crate::log::Log;
use crate::segment::{self, LOG_SUFFIX, OFFSET_INDEX_SUFFIX, Segment, TIME_INDEX_SUFFIX, TMP_SUFFIX, TrustedPrefix};

/// What `Log::open` found and did.
#[derive(Clone, Debug)]
pub struct RecoveryReport {
    /// Bytes validated batch by batch (header, length, CRC, offset continuity).
    pub scanned_bytes: u64,
    /// Bytes cut off as torn or corrupt, dropped later segments included.
    pub truncated_bytes: u64,
    /// The previous run closed the log cleanly, so nothing was scanned.
    pub clean_shutdown: bool,
    pub checkpoint: CheckpointStatus,
    /// Offset where validation started (the recovery point, or a segment base after a full scan); None if clean.
    pub scan_from_offset: Option<u64>,
    /// Why the scan cut the log, if it did.
    pub torn_reason: Option<String>,
    /// Segments removed because they followed the torn point.
    pub segments_dropped: usize,
    pub segments: usize,
    pub log_start_offset: u64,
    pub end_offset: u64,
}

/// Where open starts to distrust the files.
struct ScanPlan {
    /// Index into the sorted segment bases.
    segment: usize,
    trusted: TrustedPrefix,
}

/// The key of each segment by base offset (None: plaintext), resolved before recovery touches anything.
type SegmentKeys = BTreeMap<u64, Option<Arc<SegmentKey>>>;

const UNTRUSTED: TrustedPrefix = TrustedPrefix { log_bytes: 0, offset_entries: Some(0), time_entries: Some(0) };

impl Log {
    /// Opens (creating if needed) the partition log in `dir`. After a clean shutdown it trusts the files and
    /// scans nothing; otherwise it validates from the checkpoint's recovery point to the end (the whole last
    /// segment when the checkpoint is missing or unusable), cuts at the first torn or corrupt batch, rebuilds
    /// the indexes of what it scanned, fsyncs it and writes a fresh checkpoint. Either way it removes the
    /// clean-shutdown marker durably before returning.
    ///
    /// Every segment's key record is read and its key found in the keyring before anything is scanned: a
    /// segment that cannot be decrypted fails the open and is never truncated for it.
    ///
    /// # Errors
    ///
    /// `InvalidConfig` (also for encryption without a keyring); `Encryption` for a segment whose key is not
    /// loaded (no keyring, unknown key id, another key under its id); `Corrupt` for a damaged key record; `Io`.
    pub fn open(
        backend: Arc<dyn Backend>,
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<(Log, RecoveryReport), StorageError> {
        config.validate()?;
        config.check_keys()?;
        backend.create_dir_all(dir).map_err(|e| StorageError::io("create partition directory", dir, e))?;
        let mut bases = list_segments(&*backend, dir)?;
        let (checkpoint, mut status) = checkpoint::read_checkpoint(&*backend, dir)?;
        let marker_path = dir.join(CLEAN_SHUTDOWN_FILE);
        let marker = backend.exists(&marker_path).map_err(|e| StorageError::io("stat", &marker_path, e))?;
        let mut log = Log {
            backend: Arc::clone(&backend),
            dir: dir.to_path_buf(),
            config,
            segments: BTreeMap::new(),
            log_start_offset: 0,
            flushed_offset: 0,
            unsynced_sealed: BTreeSet::new(),
            segments_created: 0,
            flush: FlushShared::new(0),
            checkpointed_recovery_point: checkpoint.map(|c| c.recovery_point),
            written_behind: (0, 0),
        };
        let mut report = RecoveryReport {
            scanned_bytes: 0,
            truncated_bytes: 0,
            clean_shutdown: false,
            checkpoint: status.clone(),
            scan_from_offset: None,
            torn_reason: None,
            segments_dropped: 0,
            segments: 0,
            log_start_offset: 0,
            end_offset: 0,
        };
        if bases.is_empty() {
            let start = checkpoint.map_or(0, |c| c.log_start_offset);
            log.segments.insert(start, Segment::create(&*backend, dir, start, log.config.new_segment_key())?);
            log.segments_created = 1;
            log.log_start_offset = start;
            log.finish_unclean_open(start)?;
        } else {
            drop_segments_below_start(&*backend, dir, &mut bases, checkpoint.as_ref())?;
            let keys = segment_keys(&*backend, dir, &bases, log.config.keyring.as_deref())?;
            log.log_start_offset = bases[0];
            let clean = marker && log.open_clean(&bases, &keys, checkpoint.as_ref(), now_ms)?;
            if clean {
                report.clean_shutdown = true;
            } else {
                let plan = scan_plan(&*backend, dir, &bases, checkpoint.as_ref(), &mut status)?;
                log.open_with_scan(&bases, &keys, plan, &mut report, now_ms)?;
            }
        }
        checkpoint::remove_clean_marker(&*backend, dir)?;
        report.checkpoint = status;
        report.segments = log.segments.len();
        report.log_start_offset = log.log_start_offset;
        report.end_offset = log.end_offset();
        tracing::info!(dir = %dir.display(), ?report, "opened log");
        Ok((log, report))
    }

    /// Opens after a clean shutdown without scanning, when the checkpoint matches the files exactly.
    /// Returns false (having changed nothing) when it does not, so the caller scans instead.
    fn open_clean(
        &mut self,
        bases: &[u64],
        keys: &SegmentKeys,
        checkpoint: Option<&Checkpoint>,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let (Some(checkpoint), Some(&last)) = (checkpoint, bases.last()) else { return Ok(false) };
        let log_len = file_len(&*self.backend, &segment::segment_path(&self.dir, last, LOG_SUFFIX))?;
        if checkpoint.segment_base != last || log_len != Some(checkpoint.segment_position) {
            return Ok(false);
        }
        let trusted = TrustedPrefix {
            log_bytes: checkpoint.segment_position,
            offset_entries: Some(checkpoint.offset_index_entries as usize),
            time_entries: Some(checkpoint.time_index_entries as usize),
        };
        let Ok(mut active) = Segment::open_active(&*self.backend, &self.dir, last, trusted, keys[&last].clone()) else {
            return Ok(false);
        };
        if active.next_offset() != checkpoint.recovery_point {
            return Ok(false);
        }
        if !active.is_empty() {
            active.created_ms = Some(now_ms);
        }
        self.open_sealed_before(bases, keys, bases.len() - 1)?;
        self.segments.insert(last, active);
        self.flushed_offset = checkpoint.recovery_point;
        self.flush = FlushShared::new(checkpoint.recovery_point);
        Ok(true)
    }

    /// Opens the segments before `bases[upto]` as sealed and trusted.
    fn open_sealed_before(&mut self, bases: &[u64], keys: &SegmentKeys, upto: usize) -> Result<(), StorageError> {
        for i in 0..upto {
            let interval = self.config.index_interval_bytes;
            let key = keys[&bases[i]].clone();
            let sealed = Segment::open_sealed(&*self.backend, &self.dir, bases[i], bases[i + 1], interval, key)?;
            self.segments.insert(bases[i], sealed);
        }
        Ok(())
    }

    /// Validates from `plan` to the end, cutting at the first torn or corrupt batch.
    fn open_with_scan(
        &mut self,
        bases: &[u64],
        keys: &SegmentKeys,
        plan: ScanPlan,
        report: &mut RecoveryReport,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        self.open_sealed_before(bases, keys, plan.segment)?;
        let backend = Arc::clone(&self.backend);
        // The last scanned segment, kept out of the map until we know whether another follows it.
        let mut previous: Option<Segment> = None;
        for (i, &base) in bases.iter().enumerate().skip(plan.segment) {
            let follows = previous.as_ref().is_none_or(|p| p.next_offset() == base);
            if !follows || report.torn_reason.is_some() {
                // Everything from here on follows a torn point or a gap: it cannot be part of the log.
                if report.torn_reason.is_none() {
                    report.torn_reason = Some(format!("segment {base} does not follow the one before it"));
                }
                for &dropped in &bases[i..] {
                    let path = segment::segment_path(&self.dir, dropped, LOG_SUFFIX);
                    report.truncated_bytes += file_len(&*backend, &path)?.unwrap_or(0);
                    segment::delete_segment_files(&*backend, &self.dir, dropped)?;
                    report.segments_dropped += 1;
                }
                break;
            }
            let trusted = if i == plan.segment { plan.trusted } else { UNTRUSTED };
            let key = &keys[&base];
            let mut current = match Segment::open_active(&*backend, &self.dir, base, trusted, key.clone()) {
                Ok(current) => current,
                // The trusted prefix does not hold up (a checkpoint out of step with the files): scan it all.
                Err(StorageError::Corrupt { reason, .. }) if trusted.log_bytes > 0 => {
                    tracing::warn!(%reason, "checkpointed prefix is inconsistent; scanning the whole segment");
                    Segment::open_active(&*backend, &self.dir, base, UNTRUSTED, key.clone())?
                }
                Err(e) => return Err(e),
            };
            report.scan_from_offset.get_or_insert(current.next_offset());
            let tail = current.recover_tail(&*backend, self.config.index_interval_bytes)?;
            report.scanned_bytes += tail.scanned_bytes;
            report.truncated_bytes += tail.truncated_bytes;
            if let Some(reason) = tail.torn {
                let position = current.size_bytes();
                tracing::warn!(segment = %current.log_path().display(), position, %reason, "cut torn tail");
                report.torn_reason = Some(reason);
            }
            if let Some(mut sealed) = previous.take() {
                sealed.seal()?;
                self.segments.insert(sealed.base_offset(), sealed);
            }
            previous = Some(current);
        }
        let mut active = previous.expect("the plan names an existing segment");
        if !active.is_empty() {
            active.created_ms = Some(now_ms);
        }
        self.segments.insert(active.base_offset(), active);
        self.finish_unclean_open(bases[plan.segment])
    }

    /// After a scan: the surviving bytes may exist only in the page cache (a process crash keeps them there),
    /// and the scan rewrote the indexes of every segment from `scanned_from_base` on, so fsync those segments
    /// before calling them durable, then checkpoint.
    fn finish_unclean_open(&mut self, scanned_from_base: u64) -> Result<(), StorageError> {
        for segment in self.segments.range(scanned_from_base..).map(|(_, s)| s) {
            segment.sync_all()?;
        }
        self.backend.sync_dir(&self.dir).map_err(|e| StorageError::io("fsync directory", &self.dir, e))?;
        let end = self.end_offset();
        self.flushed_offset = end;
        self.flush = FlushShared::new(end);
        self.write_checkpoint()
    }
}

/// Segment base offsets in `dir`, sorted, after removing leftovers of interrupted file replacements and
/// index files whose segment is gone.
fn list_segments(backend: &dyn Backend, dir: &Path) -> Result<Vec<u64>, StorageError> {
    let names = backend.list_dir(dir).map_err(|e| StorageError::io("list partition directory", dir, e))?;
    let mut bases: Vec<u64> = names.iter().filter_map(|n| segment::parse_segment_name(n, LOG_SUFFIX)).collect();
    bases.sort_unstable();
    for name in &names {
        let orphan_index = [OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX, KEY_RECORD_SUFFIX]
            .iter()
            .filter_map(|suffix| segment::parse_segment_name(name, suffix))
            .any(|base| bases.binary_search(&base).is_err());
        let leftover = name.ends_with(&format!(".{TMP_SUFFIX}")) || name == CHECKPOINT_TMP_FILE;
        if orphan_index || leftover {
            let path = dir.join(name);
            backend.remove_file(&path).map_err(|e| StorageError::io("remove leftover", &path, e))?;
        }
    }
    Ok(bases)
}

/// Reads every segment's key record and finds its key, failing on the first that cannot be read.
fn segment_keys(
    backend: &dyn Backend,
    dir: &Path,
    bases: &[u64],
    keyring: Option<&encryption::Keyring>,
) -> Result<SegmentKeys, StorageError> {
    let mut keys = SegmentKeys::new();
    for &base in bases {
        let log_path = segment::segment_path(dir, base, LOG_SUFFIX);
        let record_path = encryption::key_record_path(&log_path);
        let key = match encryption::read_key_record(backend, &record_path, base)? {
            None => None,
            Some(record) => Some(encryption::resolve_key(&record, keyring, &log_path)?),
        };
        keys.insert(base, key);
    }
    Ok(keys)
}

/// Deletes segments wholly below the checkpointed log start (retention checkpoints before it deletes, so a
/// crash in between leaves them behind).
fn drop_segments_below_start(
    backend: &dyn Backend,
    dir: &Path,
    bases: &mut Vec<u64>,
    checkpoint: Option<&Checkpoint>,
) -> Result<(), StorageError> {
    let wanted_start = checkpoint.map_or(bases[0], |c| c.log_start_offset);
    let first_kept = bases.iter().rposition(|&base| base <= wanted_start).unwrap_or(0);
    for base in bases.drain(..first_kept) {
        segment::delete_segment_files(backend, dir, base)?;
    }
    Ok(())
}

/// Chooses where validation starts: at the checkpoint's recovery point when the checkpoint fits the files,
/// else at the start of the last segment (and says why in `status`).
fn scan_plan(
    backend: &dyn Backend,
    dir: &Path,
    bases: &[u64],
    checkpoint: Option<&Checkpoint>,
    status: &mut CheckpointStatus,
) -> Result<ScanPlan, StorageError> {
    let full_scan_of_last = ScanPlan { segment: bases.len() - 1, trusted: UNTRUSTED };
    let Some(checkpoint) = checkpoint else { return Ok(full_scan_of_last) };
    let Ok(segment) = bases.binary_search(&checkpoint.segment_base) else {
        *status = CheckpointStatus::Inconsistent(format!("segment {} is missing", checkpoint.segment_base));
        return Ok(full_scan_of_last);
    };
    let log_len = file_len(backend, &segment::segment_path(dir, checkpoint.segment_base, LOG_SUFFIX))?.unwrap_or(0);
    if log_len < checkpoint.segment_position {
        *status = CheckpointStatus::Inconsistent(format!(
            "segment {} holds {log_len} bytes, the checkpoint claims {}",
            checkpoint.segment_base, checkpoint.segment_position
        ));
        return Ok(full_scan_of_last);
    }
    Ok(ScanPlan {
        segment,
        trusted: TrustedPrefix {
            log_bytes: checkpoint.segment_position,
            offset_entries: Some(checkpoint.offset_index_entries as usize),
            time_entries: Some(checkpoint.time_index_entries as usize),
        },
    })
}

fn file_len(backend: &dyn Backend, path: &Path) -> Result<Option<u64>, StorageError> {
    match backend.open(path, false) {
        Ok(file) => Ok(Some(file.len().map_err(|e| StorageError::io("stat", path, e))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io("open", path, e)),
    }
}
