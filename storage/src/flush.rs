//! Group commit: `FlushJob` fsyncs a log's files without the partition lock, and `FlushProgress` records what
//! completed jobs made durable, so `mark_flushed` never claims more than a sync actually covered.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend::{Backend, StorageFile};
use crate::error::StorageError;

/// What completed flush jobs made durable, shared between the log and its jobs.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FlushProgress {
    /// Bumped by every truncation: a job taken before it may have synced before bytes now at lower offsets
    /// were written, so its claim no longer holds.
    pub generation: u64,
    /// Every offset below this is durable.
    pub durable_upto: u64,
    /// Sealed segments ending at or below this offset have had all their files synced.
    pub sealed_synced_through: u64,
    /// Segment creations covered by a directory sync.
    pub dir_synced_count: u64,
}

#[derive(Default)]
pub(crate) struct FlushShared(Mutex<FlushProgress>);

impl FlushShared {
    pub fn new(durable_upto: u64) -> Arc<FlushShared> {
        Arc::new(FlushShared(Mutex::new(FlushProgress { durable_upto, ..FlushProgress::default() })))
    }

    fn lock(&self) -> MutexGuard<'_, FlushProgress> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> FlushProgress {
        *self.lock()
    }

    /// Records a truncation at `offset`: claims above it and every job in flight become void.
    pub fn truncated(&self, offset: u64) {
        let mut progress = self.lock();
        progress.generation += 1;
        progress.durable_upto = progress.durable_upto.min(offset);
        progress.sealed_synced_through = progress.sealed_synced_through.min(offset);
    }

    /// Records a sync made under the log's own lock (roll under `Durability::Os`, recovery, close).
    pub fn record(&self, durable_upto: u64, sealed_synced_through: u64, dir_synced_count: u64) {
        let mut progress = self.lock();
        progress.durable_upto = progress.durable_upto.max(durable_upto);
        progress.sealed_synced_through = progress.sealed_synced_through.max(sealed_synced_through);
        progress.dir_synced_count = progress.dir_synced_count.max(dir_synced_count);
    }

    /// Resets the claims after the log was emptied and restarted at `offset`.
    pub fn reset(&self, offset: u64) {
        let mut progress = self.lock();
        progress.generation += 1;
        progress.durable_upto = offset;
        progress.sealed_synced_through = offset;
    }
}

/// A file the job touches, with its path for error messages.
pub(crate) type JobFile = (PathBuf, Arc<dyn StorageFile>);

/// A batch of fsyncs covering every offset below `upto()`. Take it under the partition lock with
/// `Log::flush_job`, `run` it without the lock (it blocks), then call `Log::mark_flushed(job.upto())`.
pub struct FlushJob {
    pub(crate) upto: u64,
    pub(crate) generation: u64,
    pub(crate) files: Vec<JobFile>,
    /// End offset of the newest sealed segment whose files this job syncs (0 when none).
    pub(crate) sealed_through: u64,
    pub(crate) dir_sync: Option<(Arc<dyn Backend>, PathBuf, u64)>,
    pub(crate) shared: Arc<FlushShared>,
    /// Segment files whose page cache is trimmed to the last `cache_window_bytes` after the syncs.
    pub(crate) release: Option<(u64, Vec<JobFile>)>,
}

impl fmt::Debug for FlushJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlushJob").field("upto", &self.upto).field("files", &self.files.len()).finish()
    }
}

impl FlushJob {
    /// Every offset below this is durable once `run` succeeds.
    pub fn upto(&self) -> u64 {
        self.upto
    }

    /// Performs the fsyncs. Blocking: call it outside the partition lock (e.g. in `spawn_blocking`).
    ///
    /// # Errors
    ///
    /// The first failed fsync; nothing is claimed durable then, and a later job retries.
    pub fn run(&self) -> Result<(), StorageError> {
        for (path, file) in &self.files {
            file.sync().map_err(|e| StorageError::io("fsync", path, e))?;
        }
        let dir_synced_count = match &self.dir_sync {
            Some((backend, dir, count)) => {
                backend.sync_dir(dir).map_err(|e| StorageError::io("fsync directory", dir, e))?;
                *count
            }
            None => 0,
        };
        let mut progress = self.shared.lock();
        if progress.generation == self.generation {
            progress.durable_upto = progress.durable_upto.max(self.upto);
            progress.sealed_synced_through = progress.sealed_synced_through.max(self.sealed_through);
        }
        progress.dir_synced_count = progress.dir_synced_count.max(dir_synced_count);
        drop(progress);
        if let Some((window, files)) = &self.release {
            for (path, file) in files {
                // A hint: failing to drop cached pages loses nothing, so it is only logged.
                let released = file.len().and_then(|len| file.release_cache(len.saturating_sub(*window)));
                if let Err(e) = released {
                    tracing::debug!(path = %path.display(), error = %e, "could not release cached pages");
                }
            }
        }
        Ok(())
    }
}
