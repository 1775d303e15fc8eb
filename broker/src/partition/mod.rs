//! One partition on this broker: its log, its replication state machine (`replication::Replica`) and the
//! shell that drives the machine: appends, group-commit fsyncs, metadata changes and ticks go in as events;
//! the commands that come out are carried out here (`shell.rs`).
//!
//! Lock order: `replica` before `log`. The replica lock is held while a step's commands run, so every
//! command of one step is done before the next event is stepped; appends write to the page cache only, and
//! fsyncs run outside both locks (`flush_loop`).

mod follower;
mod producers;
mod shell;

// The decoders the fuzz targets `producer_snapshot` and `grpc_request` reach through the partition.
pub(crate) use follower::to_answer;
pub(crate) use producers::load_producers;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use rill_proto::batch::BatchHeader;
use rill_storage::{Durability, Log, ReadResult, StorageError};
use tokio::sync::watch;

use crate::cluster_link::ClusterLink;
use crate::limits::{FETCH_BACKOFF_MS, PRODUCER_ID_IDLE_MS_MAX_DEFAULT};
use crate::metadata::PartitionState;
use crate::metrics::Metrics;
use crate::producer_state::{ProducerBatch, ProducerStateTable, Verdict};
use crate::replication::{self, Event, ProduceError, RecoveredLog, Replica, ReplicaConfig};
use crate::topic_config::TopicConfig;

/// Offsets and role of a partition as last published. Waiters (acks=all, long-poll fetches) watch these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start: u64,
    pub high_watermark: u64,
    pub log_end: u64,
    /// The leader epoch this broker last applied, and whether it acts as leader in it.
    pub leader_epoch: Option<u32>,
    pub is_leader: bool,
    /// Set once the partition can no longer be written.
    pub failed: Option<Offline>,
}

/// Why a partition stopped taking requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offline {
    TopicDeleted,
    ShuttingDown,
    /// A write or fsync failed: nothing more can be made durable here.
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
    #[error("timed out after {0} ms waiting for the write to be replicated and durable")]
    Timeout(u64),
    #[error("this broker is not the leader of {0}")]
    NotLeader(String),
    #[error("{partition} has {isr_size} in-sync replicas, fewer than min.insync.replicas={min_insync_replicas}")]
    NotEnoughReplicas { partition: String, isr_size: usize, min_insync_replicas: usize },
    /// An idempotent batch the producer state refuses.
    #[error("{partition}: {reason}")]
    Producer { partition: String, verdict: Verdict, reason: String },
    #[error("{0}")]
    InvalidRequest(String),
}

/// Where a partition lives and what it is: everything but its log.
pub struct PartitionIdentity {
    pub topic: String,
    pub index: u32,
    pub topic_id: u64,
    pub config: TopicConfig,
    pub dir: PathBuf,
    pub link: Arc<ClusterLink>,
    pub replica_lag_ms_max: u64,
    pub metrics: Metrics,
}

pub struct Partition {
    pub topic: String,
    pub index: u32,
    pub topic_id: u64,
    /// The topic's settings; replaced whole when the topic's (or the broker's default) config changes.
    config: std::sync::RwLock<Arc<TopicConfig>>,
    pub dir: PathBuf,
    /// This partition itself, for the tasks its commands start.
    me: Weak<Partition>,
    link: Arc<ClusterLink>,
    /// The records of the fetch answer being stepped, for its `AppendReplicated` command.
    pending_fetch: Mutex<Option<(u64, bytes::Bytes)>>,
    replica: Mutex<Replica>,
    /// Idempotent-producer state; locked after `replica` and before `log`.
    producers: Mutex<ProducerStateTable>,
    log: RwLock<Log>,
    offsets: watch::Sender<PartitionOffsets>,
    flushing: AtomicBool,
    last_interval_flush_ms: AtomicI64,
    /// The HW last written to `high-watermark.checkpoint`, so unchanged ones are not rewritten.
    checkpointed_high_watermark: AtomicU64,
    /// Signalled after every local append: an idempotent batch that arrived ahead of its predecessor (gRPC
    /// streams of one connection are served concurrently, so a producer's pipelined requests can overtake each
    /// other) waits here for the gap to fill before it is refused.
    appended: tokio::sync::Notify,
    metrics: Metrics,
    /// The log's size when its last flush job was taken, for the bytes each fsync covers.
    size_at_last_flush: AtomicU64,
    /// The partition's metadata as last applied, to log and count what each change does.
    seen_metadata: Mutex<Option<PartitionState>>,
}

fn storage_epochs(entries: &[replication::EpochEntry]) -> Vec<rill_storage::EpochEntry> {
    entries.iter().map(|e| rill_storage::EpochEntry { epoch: e.epoch, start_offset: e.start_offset }).collect()
}

/// The leader-epoch history from its checkpoint, rebuilt from the stored batches when the file is missing or
/// damaged (a log with records always has one once it has been led).
fn recover_epochs(log: &Log, name: &str) -> Result<replication::EpochHistory, StorageError> {
    let entries = match log.read_leader_epochs() {
        Ok(Some(entries)) => entries,
        Ok(None) if log.end_offset() == log.log_start_offset() => Vec::new(),
        other => {
            if let Err(e) = &other {
                tracing::warn!(partition = name, error = %e, "leader-epoch checkpoint unreadable; rebuilding it from the log");
            }
            let rebuilt = log.leader_epochs_from_batches()?;
            log.write_leader_epochs(&rebuilt)?;
            rebuilt
        }
    };
    let entries =
        entries.into_iter().map(|e| replication::EpochEntry { epoch: e.epoch, start_offset: e.start_offset }).collect();
    replication::EpochHistory::from_entries(entries).map_err(|reason| StorageError::Corrupt {
        segment: log.dir().to_path_buf(),
        offset: 0,
        reason,
    })
}

impl Partition {
    /// Wraps a recovered log: restores the leader-epoch history and HW checkpoints and builds the replica,
    /// which has no role until metadata is applied.
    pub fn new(id: PartitionIdentity, log: Log) -> Result<Arc<Self>, StorageError> {
        let name = format!("{}/{}", id.topic, id.index);
        let epochs = recover_epochs(&log, &name)?;
        let high_watermark = log.read_high_watermark().unwrap_or_else(|e| {
            tracing::warn!(partition = %name, error = %e, "high-watermark checkpoint unreadable; starting from the log start");
            None
        });
        let recovered = RecoveredLog {
            log_start_offset: log.log_start_offset(),
            log_end_offset: log.end_offset(),
            flushed_offset: log.flushed_offset(),
            high_watermark: high_watermark.unwrap_or(0),
            epochs,
        };
        let config = ReplicaConfig {
            broker_id: id.link.node_id(),
            replica_lag_ms_max: id.replica_lag_ms_max,
            min_insync_replicas: id.config.min_insync_replicas as usize,
            durability_fsync: id.config.log.durability == Durability::Fsync,
            fetch_backoff_ms: FETCH_BACKOFF_MS,
            unclean_leader_election: id.config.unclean_leader_election,
        };
        let producers = producers::load_producers(&log, log.end_offset(), &name)?;
        let (replica, commands) = Replica::new(config, recovered);
        let offsets = PartitionOffsets {
            log_start: log.log_start_offset(),
            high_watermark: replica.high_watermark(),
            log_end: log.end_offset(),
            leader_epoch: None,
            is_leader: false,
            failed: None,
        };
        let log_size = log.size_bytes();
        let partition = Arc::new_cyclic(|me| Partition {
            topic: id.topic,
            index: id.index,
            topic_id: id.topic_id,
            config: std::sync::RwLock::new(Arc::new(id.config)),
            dir: id.dir,
            me: me.clone(),
            link: id.link,
            pending_fetch: Mutex::new(None),
            checkpointed_high_watermark: AtomicU64::new(high_watermark.unwrap_or(0)),
            replica: Mutex::new(replica),
            producers: Mutex::new(producers),
            log: RwLock::new(log),
            offsets: watch::channel(offsets).0,
            flushing: AtomicBool::new(false),
            last_interval_flush_ms: AtomicI64::new(0),
            appended: tokio::sync::Notify::new(),
            metrics: id.metrics,
            size_at_last_flush: AtomicU64::new(log_size),
            seen_metadata: Mutex::new(None),
        });
        let mut replica = partition.lock_replica();
        partition.execute(&mut replica, commands);
        drop(replica);
        Ok(partition)
    }

    pub fn name(&self) -> String {
        format!("{}/{}", self.topic, self.index)
    }

    pub fn offsets(&self) -> PartitionOffsets {
        self.offsets.borrow().clone()
    }

    /// Where `epoch` ends in this replica's log (the start of the next later epoch, or the log end).
    /// The log's size on disk, in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.read_log().size_bytes()
    }

    /// Each follower's lag behind this leader: its id, records behind the leader's log end (`None` before
    /// its first fetch in this epoch), and ms since its log end last reached the leader's.
    pub fn follower_lags(&self, now_ms: i64) -> Vec<(u32, Option<u64>, u64)> {
        let replica = self.lock_replica();
        let log_end = replica.log_end_offset();
        let now_ms = now_ms.max(0) as u64;
        replica
            .followers()
            .into_iter()
            .map(|(id, end, caught_up_ms)| {
                (id, end.map(|e| log_end.saturating_sub(e)), now_ms.saturating_sub(caught_up_ms))
            })
            .collect()
    }

    pub fn epoch_end(&self, epoch: u32) -> replication::EpochEnd {
        let replica = self.lock_replica();
        replica.epoch_history().end_offset_for(epoch, replica.log_end_offset())
    }

    pub fn subscribe(&self) -> watch::Receiver<PartitionOffsets> {
        self.offsets.subscribe()
    }

    /// The topic's settings as of now.
    pub fn config(&self) -> Arc<TopicConfig> {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Applies changed topic settings without a restart: the log's (segment size and age, retention,
    /// durability, index interval, page-cache window, encryption of new segments) from its next append, roll
    /// or retention pass; the replica's (min ISR, durability, unclean election) from its next decision.
    pub fn reconfigure(&self, config: TopicConfig) {
        let mut config = config;
        config.log.keyring = self.config().log.keyring.clone();
        if let Err(e) = config.log.validate().and_then(|()| config.log.check_keys()) {
            tracing::error!(partition = %self.name(), error = %e, "topic config not applied; the old one stays");
            return;
        }
        self.write_log().set_config(config.log.clone());
        self.lock_replica().set_topic_settings(
            config.min_insync_replicas as usize,
            config.log.durability == Durability::Fsync,
            config.unclean_leader_election,
        );
        tracing::info!(
            partition = %self.name(), min_insync_replicas = config.min_insync_replicas,
            durability = ?config.log.durability, segment_bytes = config.log.segment_bytes_max,
            retention_ms = ?config.log.retention_ms, retention_bytes = ?config.log.retention_bytes,
            "topic config applied"
        );
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
    }

    fn lock_replica(&self) -> MutexGuard<'_, Replica> {
        self.replica.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_producers(&self) -> MutexGuard<'_, ProducerStateTable> {
        self.producers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read_log(&self) -> RwLockReadGuard<'_, Log> {
        self.log.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_log(&self) -> RwLockWriteGuard<'_, Log> {
        self.log.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes the replica's offsets and role; called with the replica lock held, after a step's commands.
    fn publish(&self, replica: &Replica) {
        let (log_start, log_end) = {
            let log = self.read_log();
            (log.log_start_offset(), log.end_offset())
        };
        let high_watermark = replica.high_watermark();
        assert!(high_watermark <= log_end, "high watermark {high_watermark} above log end {log_end}");
        self.offsets.send_if_modified(|o| {
            let next = PartitionOffsets {
                log_start,
                high_watermark,
                log_end,
                leader_epoch: replica.leader_epoch(),
                is_leader: replica.is_acting_leader(),
                failed: o.failed.clone(),
            };
            let changed = *o != next;
            *o = next;
            changed
        });
    }

    /// Steps one event and carries out its commands, under the replica lock. Returns the reply to a replica
    /// fetch, when the event was one.
    fn step(&self, event: Event) -> Option<replication::FetchReply> {
        let mut replica = self.lock_replica();
        let commands = replica.step(event);
        self.execute(&mut replica, commands)
    }

    fn check_online(&self) -> Result<(), PartitionError> {
        match &self.offsets.borrow().failed {
            Some(reason) => Err(PartitionError::Offline(self.name(), reason.clone())),
            None => Ok(()),
        }
    }

    /// Applies this partition's metadata: leadership in a new epoch, or following another broker.
    pub fn apply_metadata(&self, state: &PartitionState, broker_id: u32, now_ms: i64) {
        self.note_metadata_change(state, broker_id);
        self.step(metadata_event(state, broker_id, now_ms.max(0) as u64));
    }

    /// Logs (once) and counts what a metadata change does to this replica: a leadership taken, a new leader
    /// followed, or an ISR change of a partition led here (counted by its leader, so once in the cluster).
    /// Compared with the metadata this partition saw last, not with the replica, which may learn an accepted
    /// ISR from the controller's answer before the metadata record arrives.
    fn note_metadata_change(&self, state: &PartitionState, broker_id: u32) {
        let mut seen = self.seen_metadata.lock().unwrap_or_else(|p| p.into_inner());
        if seen.as_ref() == Some(state) {
            return;
        }
        let previous = seen.replace(state.clone());
        drop(seen);
        let offsets = self.offsets();
        let (log_end, high_watermark) = (offsets.log_end, offsets.high_watermark);
        let (partition, leader_epoch, partition_epoch, isr) =
            (self.name(), state.leader_epoch, state.partition_epoch, &state.isr);
        match previous {
            Some(before) if before.leader_epoch == state.leader_epoch => {
                let expanded = state.isr.iter().any(|id| !before.isr.contains(id));
                let shrunk = before.isr.iter().any(|id| !state.isr.contains(id));
                if state.leader != broker_id || !(expanded || shrunk) {
                    return;
                }
                if expanded {
                    self.metrics.isr_expands.inc();
                }
                if shrunk {
                    self.metrics.isr_shrinks.inc();
                }
                tracing::info!(%partition, leader_epoch, partition_epoch, before = ?before.isr, after = ?isr, high_watermark, "ISR changed");
            }
            _ if state.leader == broker_id => {
                self.metrics.leaderships_taken.inc();
                tracing::info!(%partition, leader_epoch, partition_epoch, ?isr, log_end, high_watermark, "leading the partition");
            }
            _ => {
                let leader = state.leader;
                tracing::info!(%partition, leader, leader_epoch, partition_epoch, ?isr, log_end, "following the partition's leader");
            }
        }
    }

    /// Appends validated batches as the leader, in order, stamped with the leader epoch. If any append fails,
    /// the ones before it are cut off again, so a produce request is all or nothing. Returns the first and last
    /// offsets written and the leader epoch they were written in.
    pub fn append(
        self: &Arc<Self>,
        batches: &[(BatchHeader, &[u8])],
        acks_all: bool,
        now_ms: i64,
    ) -> Result<(u64, u64, u32), PartitionError> {
        self.check_online()?;
        let mut replica = self.lock_replica();
        self.check_lease(&mut replica);
        replica.check_produce(acks_all).map_err(|e| match e {
            ProduceError::NotLeader => PartitionError::NotLeader(self.name()),
            ProduceError::NotEnoughReplicas { isr_size, min_insync_replicas } => {
                PartitionError::NotEnoughReplicas { partition: self.name(), isr_size, min_insync_replicas }
            }
        })?;
        let leader_epoch = replica.leader_epoch().expect("an acting leader has an epoch");
        let producer_batches: Vec<ProducerBatch> = batches.iter().map(|(h, _)| ProducerBatch::from_header(h)).collect();
        if batches.len() > 1 && producer_batches.iter().any(ProducerBatch::is_idempotent) {
            return Err(PartitionError::InvalidRequest(format!(
                "{}: an idempotent producer sends one batch per partition in a request, not {}",
                self.name(),
                batches.len()
            )));
        }
        let mut producers = self.lock_producers();
        if let [single] = producer_batches.as_slice() {
            match producers.check(single) {
                Verdict::Append => {}
                // A retry of a batch already in the log: its original offsets, nothing appended.
                Verdict::Duplicate { base_offset, last_offset } => return Ok((base_offset, last_offset, leader_epoch)),
                verdict => {
                    let reason = describe_verdict(&verdict, single);
                    return Err(PartitionError::Producer { partition: self.name(), verdict, reason });
                }
            }
        }
        let (first, last, log_end) = {
            let mut log = self.write_log();
            let start = log.end_offset();
            let mut first = None;
            let mut last = None;
            for ((header, batch), producer_batch) in batches.iter().zip(&producer_batches) {
                let segments_before = log.segment_count();
                let appended = log.append(batch, leader_epoch as i32, now_ms);
                if appended.is_ok() && log.segment_count() > segments_before {
                    // A new segment: snapshot the producer state as of its base offset (before this batch).
                    if let Err(e) = producers::write_snapshot(&log, &producers) {
                        tracing::warn!(partition = %self.name(), error = %e, "producer snapshot failed");
                    }
                }
                match appended {
                    Ok(info) => {
                        first.get_or_insert(info.base_offset);
                        last = Some(info.last_offset);
                        producers.apply(producer_batch, info.base_offset, info.last_offset, header.max_timestamp);
                    }
                    Err(e) => {
                        if log.end_offset() > start
                            && let Err(undo) = log.truncate_to(start)
                        {
                            tracing::error!(partition = %self.name(), error = %undo, "could not undo a partial produce");
                        }
                        producers.truncate_to(log.end_offset());
                        return Err(e.into());
                    }
                }
            }
            let first = first.expect("append is called with at least one batch");
            (first, last.expect("set with first"), log.end_offset())
        };
        drop(producers);
        let commands = replica.step(Event::Appended { log_end_offset: log_end });
        self.execute(&mut replica, commands);
        drop(replica);
        self.appended.notify_waiters();
        if self.config().log.durability == Durability::Fsync {
            self.request_flush();
        }
        Ok((first, last, leader_epoch))
    }

    /// A future that completes at the next local append. Create it before the check it guards, so an append in
    /// between is not missed.
    pub fn next_append(&self) -> tokio::sync::futures::Notified<'_> {
        self.appended.notified()
    }

    /// Waits until `last_offset`, written in `leader_epoch`, is below the high watermark: durable on every
    /// in-sync replica under the topic's policy.
    pub async fn wait_committed(
        &self,
        last_offset: u64,
        leader_epoch: u32,
        timeout_ms: u64,
    ) -> Result<(), PartitionError> {
        let mut rx = self.offsets.subscribe();
        let wait = rx.wait_for(|o| {
            o.high_watermark > last_offset || o.failed.is_some() || !o.is_leader || o.leader_epoch != Some(leader_epoch)
        });
        match tokio::time::timeout(Duration::from_millis(timeout_ms), wait).await {
            Ok(Ok(o)) if o.high_watermark > last_offset => Ok(()),
            Ok(Ok(o)) => match &o.failed {
                Some(why) => Err(PartitionError::Offline(self.name(), why.clone())),
                // Leadership moved before the write was committed: the client retries at the new leader.
                None => Err(PartitionError::NotLeader(self.name())),
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
            let (job, size) = {
                let log = self.read_log();
                (log.flush_job(), log.size_bytes())
            };
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
            let started = std::time::Instant::now();
            match tokio::task::spawn_blocking(move || job.run()).await {
                Ok(Ok(())) => {
                    let previous = self.size_at_last_flush.swap(size, Ordering::Relaxed);
                    self.metrics.fsync(started.elapsed(), size.saturating_sub(previous));
                    let mut replica = self.lock_replica();
                    let flushed_offset = {
                        let mut log = self.write_log();
                        log.mark_flushed(upto);
                        log.flushed_offset()
                    };
                    let commands = replica.step(Event::Flushed { flushed_offset });
                    self.execute(&mut replica, commands);
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

    /// Periodic upkeep: the replica's timers, interval flushes, age-based rolls, retention.
    pub fn maintain(self: &Arc<Self>, now_ms: i64, retention_due: bool) {
        self.step(Event::Tick { now_ms: now_ms.max(0) as u64 });
        if let Durability::Interval { interval_ms } = self.config().log.durability {
            let last = self.last_interval_flush_ms.load(Ordering::Relaxed);
            if now_ms.saturating_sub(last) >= interval_ms as i64 {
                self.last_interval_flush_ms.store(now_ms, Ordering::Relaxed);
                self.request_flush();
            }
        }
        if !retention_due {
            return;
        }
        let mut replica = self.lock_replica();
        let expired = self.lock_producers().expire(now_ms, PRODUCER_ID_IDLE_MS_MAX_DEFAULT);
        if expired > 0 {
            tracing::info!(partition = %self.name(), expired, "idle producer ids expired");
        }
        let result = {
            let mut log = self.write_log();
            log.roll_if_due(now_ms)
                .and_then(|_| log.enforce_retention(now_ms))
                .map(|deleted| (deleted, log.log_start_offset()))
        };
        match result {
            Ok((0, _)) => {}
            Ok((deleted, log_start_offset)) => {
                tracing::info!(partition = %self.name(), deleted, log_start_offset, "retention deleted segments");
                if let Err(e) = producers::after_retention(&self.read_log()) {
                    tracing::warn!(partition = %self.name(), error = %e, "could not delete old producer snapshots");
                }
                let commands = replica.step(Event::LogStartAdvanced { log_start_offset });
                self.execute(&mut replica, commands);
            }
            Err(e) => tracing::warn!(partition = %self.name(), error = %e, "retention failed"),
        }
    }

    /// Persists the recovery point and the high watermark, so a restart after a crash scans only what came
    /// after the one and does not expose less than the other.
    pub fn checkpoint(&self) {
        let high_watermark = self.offsets.borrow().high_watermark;
        let mut log = self.write_log();
        if let Err(e) = log.write_checkpoint() {
            tracing::warn!(partition = %self.name(), error = %e, "checkpoint failed");
        }
        if self.checkpointed_high_watermark.load(Ordering::Relaxed) != high_watermark {
            match log.write_high_watermark(high_watermark) {
                Ok(()) => self.checkpointed_high_watermark.store(high_watermark, Ordering::Relaxed),
                Err(e) => tracing::warn!(partition = %self.name(), error = %e, "high-watermark checkpoint failed"),
            }
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
        self.checkpoint();
        {
            let producers = self.lock_producers();
            let log = self.read_log();
            if producers.end_offset() == log.end_offset()
                && let Err(e) = producers::write_snapshot(&log, &producers)
            {
                tracing::warn!(partition = %name, error = %e, "producer snapshot at close failed");
            }
        }
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

    /// The broker's controller lease ran out (`valid == false`) or was renewed: a leader without a lease stops
    /// acting as leader, because the controller may already have elected another.
    pub fn set_lease(&self, valid: bool, now_ms: i64) {
        let mut replica = self.lock_replica();
        if replica.lease_valid() == valid {
            return;
        }
        let event = if valid { Event::LeaseRenewed { now_ms: now_ms.max(0) as u64 } } else { Event::LeaseExpired };
        let commands = replica.step(event);
        self.execute(&mut replica, commands);
    }

    /// Expires the replica's lease if the broker's ran out, checked against the clock at the moment of a
    /// request (see `ClusterLink::lease_valid`).
    fn check_lease(&self, replica: &mut Replica) {
        if replica.lease_valid() && !self.link.lease_valid() {
            let commands = replica.step(Event::LeaseExpired);
            self.execute(replica, commands);
        }
    }
}

/// A producer-state refusal as a message a client can act on.
fn describe_verdict(verdict: &Verdict, batch: &ProducerBatch) -> String {
    let id = batch.producer_id;
    match verdict {
        Verdict::OutOfOrderSequence { expected } => {
            format!("producer {id} sent sequence {} but {expected} was expected next", batch.base_sequence)
        }
        Verdict::ProducerFenced { current_epoch } => {
            format!("producer {id} epoch {} is fenced by epoch {current_epoch}", batch.producer_epoch)
        }
        Verdict::UnknownProducerId => {
            format!(
                "no state for producer {id} here, and its batch starts at sequence {} instead of 0",
                batch.base_sequence
            )
        }
        Verdict::TooManyProducers => format!("too many producer ids on this partition to take producer {id}"),
        Verdict::InvalidProducerFields { reason } => format!("invalid producer fields: {reason}"),
        Verdict::Append | Verdict::Duplicate { .. } => unreachable!("not a refusal"),
    }
}

/// The replication event that applies a partition's metadata on `broker_id`: leadership in the record's
/// epoch, or following its leader. Shared by the broker and the simulator, which drive the same core.
pub fn metadata_event(state: &PartitionState, broker_id: u32, now_ms: u64) -> Event {
    if state.leader == broker_id {
        Event::BecomeLeader {
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            replicas: state.replicas.clone(),
            isr: state.isr.clone(),
            now_ms,
        }
    } else {
        Event::BecomeFollower {
            leader: state.leader,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            replicas: state.replicas.clone(),
            isr: state.isr.clone(),
        }
    }
}
