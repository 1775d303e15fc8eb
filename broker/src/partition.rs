//! One partition on this broker: its log behind a lock, its offsets published to waiters, and group commit.
//!
//! Appends write to the page cache under the lock; fsyncs run without it. Under the `fsync` policy one flush
//! task per partition repeatedly syncs everything appended since its last sync (group commit), so concurrent
//! producers share fsyncs, and the high watermark follows the flushed offset. Under `interval` and `os` the
//! high watermark is the log end.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rill_proto::batch::BatchHeader;
use rill_storage::{AppendInfo, Durability, Log, ReadResult, StorageError};
use tokio::sync::watch;

use crate::topic_config::TopicConfig;

/// Offsets of a partition as last published. Waiters (acks=all, long-poll fetches) watch these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start: u64,
    pub high_watermark: u64,
    pub log_end: u64,
    /// Set once the partition can no longer be written.
    pub failed: Option<Offline>,
}

/// Why a partition stopped taking requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offline {
    TopicDeleted,
    ShuttingDown,
    /// An fsync failed: nothing more can be made durable here.
    StorageFailed(String),
}

impl std::fmt::Display for Offline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Offline::TopicDeleted => f.write_str("its topic was deleted"),
            Offline::ShuttingDown => f.write_str("the broker is shutting down"),
            Offline::StorageFailed(reason) => write!(f, "storage failed: {reason}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("partition {0} is offline: {1}")]
    Offline(String, Offline),
    #[error("timed out after {0} ms waiting for the write to become durable")]
    Timeout(u64),
}

pub struct Partition {
    pub topic: String,
    pub index: u32,
    pub topic_id: u64,
    pub config: TopicConfig,
    pub dir: PathBuf,
    leader_epoch: i32,
    log: RwLock<Log>,
    offsets: watch::Sender<PartitionOffsets>,
    flushing: AtomicBool,
    last_interval_flush_ms: AtomicI64,
}

/// Where a partition lives and what it is: everything but its log.
pub struct PartitionIdentity {
    pub topic: String,
    pub index: u32,
    pub topic_id: u64,
    pub config: TopicConfig,
    pub dir: PathBuf,
    pub leader_epoch: i32,
}

impl Partition {
    pub fn new(id: PartitionIdentity, log: Log) -> Arc<Self> {
        let offsets = PartitionOffsets {
            log_start: log.log_start_offset(),
            high_watermark: log.flushed_offset(),
            log_end: log.end_offset(),
            failed: None,
        };
        let (offsets, _) = watch::channel(offsets);
        let partition = Arc::new(Partition {
            topic: id.topic,
            index: id.index,
            topic_id: id.topic_id,
            config: id.config,
            dir: id.dir,
            leader_epoch: id.leader_epoch,
            log: RwLock::new(log),
            offsets,
            flushing: AtomicBool::new(false),
            last_interval_flush_ms: AtomicI64::new(0),
        });
        partition.publish();
        partition
    }

    pub fn name(&self) -> String {
        format!("{}/{}", self.topic, self.index)
    }

    pub fn offsets(&self) -> PartitionOffsets {
        self.offsets.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<PartitionOffsets> {
        self.offsets.subscribe()
    }

    fn read_log(&self) -> std::sync::RwLockReadGuard<'_, Log> {
        self.log.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_log(&self) -> std::sync::RwLockWriteGuard<'_, Log> {
        self.log.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Recomputes the published offsets from the log.
    fn publish(&self) {
        let (log_start, flushed, log_end) = {
            let log = self.read_log();
            (log.log_start_offset(), log.flushed_offset(), log.end_offset())
        };
        let durable = match self.config.log.durability {
            Durability::Fsync => flushed,
            Durability::Interval { .. } | Durability::Os => log_end,
        };
        self.offsets.send_modify(|o| {
            assert!(durable <= log_end, "high watermark {durable} above log end {log_end}");
            // The high watermark never moves backwards (truncation below it is a broken invariant).
            assert!(durable >= o.high_watermark || durable < log_start, "high watermark regressed");
            o.log_start = log_start;
            o.high_watermark = durable.max(log_start);
            o.log_end = log_end;
        });
    }

    fn check_online(&self) -> Result<(), PartitionError> {
        match &self.offsets.borrow().failed {
            Some(reason) => Err(PartitionError::Offline(self.name(), reason.clone())),
            None => Ok(()),
        }
    }

    /// Appends validated batches in order. If any append fails, the ones before it are cut off again, so a
    /// produce request is all or nothing. Returns the first and last offsets written.
    pub fn append(self: &Arc<Self>, batches: &[(BatchHeader, &[u8])], now_ms: i64) -> Result<(u64, u64), PartitionError> {
        self.check_online()?;
        let mut first = None;
        let mut last: Option<AppendInfo> = None;
        {
            let mut log = self.write_log();
            let start = log.end_offset();
            for (_, batch) in batches {
                match log.append(batch, self.leader_epoch, now_ms) {
                    Ok(info) => {
                        first.get_or_insert(info.base_offset);
                        last = Some(info);
                    }
                    Err(e) => {
                        if log.end_offset() > start
                            && let Err(undo) = log.truncate_to(start)
                        {
                            tracing::error!(partition = %self.name(), error = %undo, "could not undo a partial produce");
                        }
                        return Err(e.into());
                    }
                }
            }
        }
        self.publish();
        if self.config.log.durability == Durability::Fsync {
            self.request_flush();
        }
        let last = last.expect("append is called with at least one batch");
        Ok((first.expect("set with last"), last.last_offset))
    }

    /// Waits until `last_offset` is below the high watermark, i.e. durable under the topic's policy.
    pub async fn wait_committed(&self, last_offset: u64, timeout_ms: u64) -> Result<(), PartitionError> {
        let mut rx = self.offsets.subscribe();
        let wait = rx.wait_for(|o| o.high_watermark > last_offset || o.failed.is_some());
        match tokio::time::timeout(Duration::from_millis(timeout_ms), wait).await {
            Ok(Ok(o)) => match &o.failed {
                Some(why) if o.high_watermark <= last_offset => Err(PartitionError::Offline(self.name(), why.clone())),
                _ => Ok(()),
            },
            Ok(Err(_)) => Err(PartitionError::Offline(self.name(), Offline::ShuttingDown)),
            Err(_) => Err(PartitionError::Timeout(timeout_ms)),
        }
    }

    /// Starts the partition's flush task unless it runs already. The task syncs whatever is unflushed, then
    /// looks again, so appends made during one fsync are covered by the next (group commit).
    pub fn request_flush(self: &Arc<Self>) {
        if self.flushing.swap(true, Ordering::SeqCst) {
            return;
        }
        let partition = self.clone();
        tokio::spawn(async move { partition.flush_loop().await });
    }

    async fn flush_loop(self: Arc<Self>) {
        loop {
            let job = self.read_log().flush_job();
            let Some(job) = job else {
                self.flushing.store(false, Ordering::SeqCst);
                // An append may have found `flushing` still set and left its flush to this task: look once more.
                let more = self.read_log().flush_job().is_some();
                if more && !self.flushing.swap(true, Ordering::SeqCst) {
                    continue;
                }
                return;
            };
            let upto = job.upto();
            match tokio::task::spawn_blocking(move || job.run()).await {
                Ok(Ok(())) => {
                    self.write_log().mark_flushed(upto);
                    self.publish();
                }
                Ok(Err(e)) => return self.fail(Offline::StorageFailed(format!("fsync failed: {e}"))),
                Err(e) => return self.fail(Offline::StorageFailed(format!("fsync task failed: {e}"))),
            }
        }
    }

    /// Takes the partition offline: after a failed fsync the page cache may have dropped the data, so no
    /// later fsync can be trusted to make it durable (PostgreSQL's "fsyncgate" lesson).
    fn fail(&self, reason: Offline) {
        tracing::error!(partition = %self.name(), %reason, "partition taken offline");
        self.flushing.store(false, Ordering::SeqCst);
        self.offsets.send_modify(|o| o.failed = Some(reason));
    }

    /// Reads whole batches from `offset` up to the high watermark.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<ReadResult, StorageError> {
        let high_watermark = self.offsets.borrow().high_watermark;
        self.read_log().read(offset, max_bytes, high_watermark)
    }

    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(u64, i64)>, StorageError> {
        let high_watermark = self.offsets.borrow().high_watermark;
        let found = self.read_log().offset_for_timestamp(timestamp_ms)?;
        Ok(found.filter(|(offset, _)| *offset < high_watermark))
    }

    /// Periodic upkeep: interval flushes, age-based rolls, retention.
    pub fn maintain(self: &Arc<Self>, now_ms: i64, retention_due: bool) {
        if let Durability::Interval { interval_ms } = self.config.log.durability {
            let last = self.last_interval_flush_ms.load(Ordering::Relaxed);
            if now_ms.saturating_sub(last) >= interval_ms as i64 {
                self.last_interval_flush_ms.store(now_ms, Ordering::Relaxed);
                self.request_flush();
            }
        }
        if !retention_due {
            return;
        }
        let result = {
            let mut log = self.write_log();
            log.roll_if_due(now_ms).and_then(|_| log.enforce_retention(now_ms))
        };
        match result {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::info!(partition = %self.name(), deleted, "retention deleted segments");
                self.publish();
            }
            Err(e) => tracing::warn!(partition = %self.name(), error = %e, "retention failed"),
        }
    }

    /// Persists the recovery point so a restart after a crash scans only what came after it.
    pub fn checkpoint(&self) {
        if let Err(e) = self.write_log().write_checkpoint() {
            tracing::warn!(partition = %self.name(), error = %e, "checkpoint failed");
        }
    }

    /// Marks the partition unusable for new requests (topic deleted or broker stopping).
    pub fn retire(&self, reason: Offline) {
        self.offsets.send_modify(|o| {
            o.failed.get_or_insert(reason);
        });
    }

    /// Flushes, checkpoints and writes the clean-shutdown marker, consuming the partition's log.
    pub fn close(self: Arc<Self>) -> Result<(), StorageError> {
        let name = self.name();
        match Arc::try_unwrap(self) {
            Ok(partition) => partition.log.into_inner().unwrap_or_else(|p| p.into_inner()).close(),
            Err(shared) => {
                // A request still holds the partition: flush and checkpoint what it has; without the marker
                // the next start re-validates the tail, which is always safe.
                tracing::warn!(partition = %name, "partition still in use at close; skipping clean-shutdown marker");
                let mut log = shared.write_log();
                log.flush()?;
                log.write_checkpoint()
            }
        }
    }

    /// Removes the partition's directory (the topic was deleted).
    pub fn delete(self: Arc<Self>) -> anyhow::Result<()> {
        match Arc::try_unwrap(self) {
            Ok(partition) => Ok(partition.log.into_inner().unwrap_or_else(|p| p.into_inner()).delete()?),
            Err(shared) => {
                // A request still holds the log. Unlinking its files is safe: open handles and memory maps stay
                // valid until the last holder drops them, and the partition is retired so nothing new is written.
                shared.retire(Offline::TopicDeleted);
                std::fs::remove_dir_all(&shared.dir).or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                })?;
                Ok(())
            }
        }
    }
}
