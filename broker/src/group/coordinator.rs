//! The tokio shell around the group state machines. One shard per `__consumer_offsets` partition this broker
//! leads: the shard is loaded by reading the partition back (up to a HW that has reached the log end as of
//! the leadership), then each request runs the pure operation on a copy of its group, writes the records it
//! returns with acks=all through the partition's ordinary append path, and only then installs the copy and
//! answers. A shard whose write fails is dropped and loaded again from the log, so memory never runs ahead of
//! what is committed.
//!
//! Each shard's groups sit behind one async mutex, held across the write: it orders the shard's records and
//! keeps a group's state equal to the log. No thread blocks on it, and shards (partitions) are independent.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rill_proto::batch::{self, BatchBuilder, decode_records};
use tokio::sync::watch;

mod classic;

pub use classic::{ClassicOutcome, Parking};

use super::classic::{ClassicError, ClassicGroup, Completion};
use super::records::GroupRecord;
use super::state::{GroupError, GroupState};
use super::{OFFSETS_TOPIC, offsets_partition_for};
use crate::clock::{monotonic_ms, now_ms};
use crate::cluster_link::ClusterLink;
use crate::limits::{GROUP_LOAD_WAIT_MS, GROUP_TICK_MS};
use crate::manager::PartitionManager;
use crate::metadata::MetadataState;
use crate::partition::{Partition, PartitionError};

/// Bytes read per step while loading a shard.
const LOAD_READ_BYTES: usize = 1024 * 1024;
/// Heartbeat arrivals one shard notes between expiry rounds (one round is a tick): far above any real group
/// population, so only a flood of bogus heartbeats is dropped, and the map stays bounded.
const ARRIVALS_MAX: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("broker {broker} is not the coordinator of group '{group}'")]
    NotCoordinator { broker: u32, group: String },
    #[error("the coordinator of group '{0}' is loading its state")]
    Loading(String),
    #[error("{0}")]
    Group(#[from] GroupError),
    #[error("writing to {partition} failed: {error}")]
    Write { partition: String, error: PartitionError },
    #[error("{0}")]
    Classic(ClassicError),
}

/// The groups of one `__consumer_offsets` partition that this broker leads.
struct Shard {
    partition: Arc<Partition>,
    leader_epoch: u32,
    /// Kafka classic-protocol membership (`classic.rs`), by group id: volatile, rebuilt by the members'
    /// rejoining after a failover. Locked only briefly, never across an `.await`, and after `groups` when both
    /// are held.
    classic: Mutex<BTreeMap<String, ClassicGroup>>,
    /// Changes whenever the shard is built anew, and is part of every classic member id it hands out.
    incarnation: String,
    /// Classic groups created in this shard so far: each gets its own incarnation, so a group deleted and
    /// created again never hands out a member id its earlier self did.
    classic_created: std::sync::atomic::AtomicU64,
    /// Classic JoinGroup and SyncGroup requests waiting for their answer, by (group, member, kind).
    parked: Mutex<HashMap<(String, String, Parking), tokio::sync::oneshot::Sender<Completion>>>,
    loaded: AtomicBool,
    groups: tokio::sync::Mutex<BTreeMap<String, GroupState>>,
    /// When heartbeats arrived, by (group, member), noted before they wait for `groups`: a heartbeat queued
    /// behind a slow write still counts for the member's session when expiry runs first.
    arrivals: Mutex<HashMap<(String, String), u64>>,
}

pub struct GroupCoordinator {
    node_id: u32,
    link: Arc<ClusterLink>,
    partitions: Arc<PartitionManager>,
    metadata: watch::Receiver<Arc<MetadataState>>,
    write_timeout_ms: u64,
    shards: Mutex<HashMap<u32, Arc<Shard>>>,
}

/// Partition counts of every topic, for assignments.
pub fn partition_counts(metadata: &MetadataState) -> BTreeMap<String, u32> {
    metadata.topics.values().map(|t| (t.name.clone(), t.partitions.len() as u32)).collect()
}

impl GroupCoordinator {
    pub fn new(
        link: Arc<ClusterLink>,
        partitions: Arc<PartitionManager>,
        metadata: watch::Receiver<Arc<MetadataState>>,
        write_timeout_ms: u64,
    ) -> GroupCoordinator {
        GroupCoordinator {
            node_id: link.node_id(),
            link,
            partitions,
            metadata,
            write_timeout_ms,
            shards: Mutex::new(HashMap::new()),
        }
    }

    fn lock_shards(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<Shard>>> {
        self.shards.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The partition count of `__consumer_offsets`, if it exists.
    pub fn offsets_partitions(&self) -> Option<u32> {
        self.metadata.borrow().topic(OFFSETS_TOPIC).map(|t| t.partitions.len() as u32)
    }

    fn shard_of(&self, group_id: &str) -> Result<Arc<Shard>, CoordinatorError> {
        let not_here = || CoordinatorError::NotCoordinator { broker: self.node_id, group: group_id.to_string() };
        let count = self.offsets_partitions().ok_or_else(not_here)?;
        let index = offsets_partition_for(group_id, count);
        let Some(shard) = self.lock_shards().get(&index).cloned() else {
            // Led here but not picked up yet (the next tick does): the client retries rather than looking
            // elsewhere.
            let led_here = self.partitions.get(OFFSETS_TOPIC, index).is_some_and(|p| p.offsets().is_leader);
            return Err(if led_here { CoordinatorError::Loading(group_id.to_string()) } else { not_here() });
        };
        if !shard.loaded.load(Ordering::SeqCst) {
            return Err(CoordinatorError::Loading(group_id.to_string()));
        }
        let offsets = shard.partition.offsets();
        // The lease is checked against the clock here too: a broker back from a pause must not answer from
        // groups another coordinator may have changed meanwhile.
        if !offsets.is_leader || offsets.leader_epoch != Some(shard.leader_epoch) || !self.link.lease_valid() {
            return Err(not_here());
        }
        Ok(shard)
    }

    /// Runs `operation` on a copy of the group (a new, empty one if it does not exist), writes the records it
    /// returns, then installs the copy. The group is created only if something was written.
    pub async fn update<T>(
        &self,
        group_id: &str,
        operation: impl FnOnce(&mut GroupState, &BTreeMap<String, u32>, u64) -> Result<(T, Vec<GroupRecord>), GroupError>,
    ) -> Result<T, CoordinatorError> {
        let shard = self.shard_of(group_id)?;
        let mut groups = shard.groups.lock().await;
        let mut next = groups.get(group_id).cloned().unwrap_or_else(|| GroupState::new(group_id));
        let counts = partition_counts(&self.metadata.borrow());
        let (answer, records) = operation(&mut next, &counts, monotonic_ms())?;
        if !records.is_empty() {
            self.write(&shard, &records).await?;
            groups.insert(group_id.to_string(), next);
        } else if groups.contains_key(group_id) {
            groups.insert(group_id.to_string(), next);
        }
        Ok(answer)
    }

    /// Notes that a heartbeat of `member_id` arrived now, before it waits for its shard.
    pub fn note_heartbeat(&self, group_id: &str, member_id: &str) {
        let Some(count) = self.offsets_partitions() else { return };
        let index = offsets_partition_for(group_id, count);
        let Some(shard) = self.lock_shards().get(&index).cloned() else { return };
        let mut arrivals = shard.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        if arrivals.len() < ARRIVALS_MAX {
            arrivals.insert((group_id.to_string(), member_id.to_string()), monotonic_ms());
        }
    }

    /// Reads a group (`None` if the coordinator has no state for it).
    pub async fn read<T>(
        &self,
        group_id: &str,
        view: impl FnOnce(Option<&GroupState>) -> T,
    ) -> Result<T, CoordinatorError> {
        let shard = self.shard_of(group_id)?;
        let groups = shard.groups.lock().await;
        Ok(view(groups.get(group_id)))
    }

    /// Every group this broker coordinates now.
    pub async fn list(&self) -> Vec<GroupState> {
        let shards: Vec<Arc<Shard>> = self.lock_shards().values().cloned().collect();
        let mut groups = Vec::new();
        for shard in shards.into_iter().filter(|s| s.loaded.load(Ordering::SeqCst)) {
            groups.extend(shard.groups.lock().await.values().cloned());
        }
        groups
    }

    /// Appends `records` as one batch and waits until it is committed (acks=all). Any failure drops the shard,
    /// which is then loaded again from the log if this broker still leads the partition.
    async fn write(&self, shard: &Arc<Shard>, records: &[GroupRecord]) -> Result<(), CoordinatorError> {
        let mut builder = BatchBuilder::new();
        let now = now_ms();
        for record in records {
            let (key, value) = record.encode();
            builder.push(now, Some(&key), Some(&value), &[]);
        }
        let bytes = builder.finish();
        let header = batch::validate(&bytes).expect("a batch the builder made is valid");
        let partition = &shard.partition;
        let outcome = match partition.append(&[(header, &bytes)], true, now) {
            Ok((_, last_offset, epoch)) if epoch == shard.leader_epoch => {
                partition.wait_committed(last_offset, epoch, self.write_timeout_ms).await
            }
            // Leadership was lost and won back meanwhile: a newer shard is loading and may not see this write,
            // so it is reported failed (the client retries there).
            Ok(_) => Err(PartitionError::NotLeader(partition.name())),
            Err(e) => Err(e),
        };
        outcome.map_err(|error| {
            tracing::warn!(partition = %partition.name(), %error, "group record write failed; the shard reloads");
            self.drop_shard(partition.index, shard);
            CoordinatorError::Write { partition: partition.name(), error }
        })
    }

    fn drop_shard(&self, index: u32, shard: &Arc<Shard>) {
        let mut shards = self.lock_shards();
        if shards.get(&index).is_some_and(|s| Arc::ptr_eq(s, shard)) {
            shards.remove(&index);
        }
    }

    /// Follows leadership of the `__consumer_offsets` partitions and expires sessions, until shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(GROUP_TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            self.follow_leadership();
            self.tick_classic();
            self.expire_sessions().await;
        }
    }

    /// Adds a shard (and starts loading it) for each offsets partition this broker newly leads; drops the
    /// shards of partitions it no longer leads.
    fn follow_leadership(self: &Arc<Self>) {
        let count = self.offsets_partitions().unwrap_or(0);
        let mut shards = self.lock_shards();
        for index in 0..count {
            let leading = self.partitions.get(OFFSETS_TOPIC, index).and_then(|p| {
                let o = p.offsets();
                match (o.is_leader, o.leader_epoch, &o.failed) {
                    (true, Some(epoch), None) => Some((p, epoch)),
                    _ => None,
                }
            });
            match leading {
                Some((partition, epoch)) => {
                    if shards.get(&index).is_some_and(|s| s.leader_epoch == epoch) {
                        continue;
                    }
                    tracing::info!(partition = %partition.name(), leader_epoch = epoch, "loading consumer groups");
                    let shard = Arc::new(Shard {
                        partition,
                        leader_epoch: epoch,
                        classic: Mutex::new(BTreeMap::new()),
                        incarnation: format!("{epoch}.{}", now_ms()),
                        classic_created: std::sync::atomic::AtomicU64::new(0),
                        parked: Mutex::new(HashMap::new()),
                        loaded: AtomicBool::new(false),
                        groups: tokio::sync::Mutex::new(BTreeMap::new()),
                        arrivals: Mutex::new(HashMap::new()),
                    });
                    shards.insert(index, shard.clone());
                    tokio::spawn(self.clone().load(index, shard));
                }
                None => {
                    if shards.remove(&index).is_some() {
                        tracing::info!(partition = index, "no longer coordinating the groups of this partition");
                    }
                }
            }
        }
    }

    /// Reads the partition back into the shard's groups.
    async fn load(self: Arc<Self>, index: u32, shard: Arc<Shard>) {
        let partition = shard.partition.clone();
        let log_end = partition.offsets().log_end;
        let mut offsets = partition.subscribe();
        let caught_up = offsets
            .wait_for(|o| o.high_watermark >= log_end || !o.is_leader || o.leader_epoch != Some(shard.leader_epoch));
        let ready = match tokio::time::timeout(Duration::from_millis(GROUP_LOAD_WAIT_MS), caught_up).await {
            Ok(Ok(o)) => o.high_watermark >= log_end && o.is_leader,
            _ => false,
        };
        if !ready {
            tracing::warn!(partition = %partition.name(), "could not load consumer groups yet; trying again");
            self.drop_shard(index, &shard);
            return;
        }
        let started = std::time::Instant::now();
        let mut groups = shard.groups.lock().await;
        let mut offset = partition.offsets().log_start;
        let mut records_read = 0u64;
        loop {
            let read = match partition.read(offset, LOAD_READ_BYTES) {
                Ok(read) => read,
                Err(e) => {
                    tracing::error!(partition = %partition.name(), offset, error = %e, "reading consumer groups failed");
                    drop(groups);
                    self.drop_shard(index, &shard);
                    return;
                }
            };
            if read.records.is_empty() || read.next_offset <= offset {
                break;
            }
            match decode_records(&read.records) {
                Ok(records) => {
                    for record in records.into_iter().filter(|r| r.offset >= offset) {
                        records_read += 1;
                        apply_stored(&mut groups, &partition.name(), record.offset, record.key, record.value);
                    }
                }
                Err(e) => {
                    tracing::warn!(partition = %partition.name(), offset, error = %e, "skipping undecodable group batch")
                }
            }
            offset = read.next_offset;
        }
        shard.loaded.store(true, Ordering::SeqCst);
        tracing::info!(
            partition = %partition.name(),
            groups = groups.len(),
            records_read,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "consumer groups loaded"
        );
    }

    /// Removes members whose session or release deadline passed, in every loaded shard.
    async fn expire_sessions(&self) {
        let shards: Vec<(u32, Arc<Shard>)> = self
            .lock_shards()
            .iter()
            .filter(|(_, s)| s.loaded.load(Ordering::SeqCst))
            .map(|(i, s)| (*i, s.clone()))
            .collect();
        for (_, shard) in shards {
            let mut groups = shard.groups.lock().await;
            let counts = partition_counts(&self.metadata.borrow());
            let ids: Vec<String> = groups.keys().cloned().collect();
            for id in ids {
                // Heartbeats that arrived while the shard was busy (a slow acks=all write) renew first.
                let arrivals = std::mem::take(&mut *shard.arrivals.lock().unwrap_or_else(|p| p.into_inner()));
                for ((group_id, member_id), at_ms) in arrivals {
                    if let Some(group) = groups.get_mut(&group_id) {
                        group.renew_session(&member_id, at_ms);
                    }
                }
                let now = monotonic_ms();
                if !groups[&id].expiry_due(now) {
                    continue;
                }
                let mut next = groups[&id].clone();
                let (expired, records) = next.expire(&counts, now);
                if records.is_empty() {
                    continue;
                }
                if self.write(&shard, &records).await.is_err() {
                    break;
                }
                tracing::info!(group = %id, ?expired, generation = next.generation, "members removed: session or rebalance timeout");
                groups.insert(id, next);
            }
        }
    }
}

/// Applies one stored record to the groups being loaded; a record that cannot be read is skipped.
pub(crate) fn apply_stored(
    groups: &mut BTreeMap<String, GroupState>,
    partition: &str,
    offset: u64,
    key: Option<bytes::Bytes>,
    value: Option<bytes::Bytes>,
) {
    let (Some(key), Some(value)) = (key, value) else {
        tracing::warn!(partition, offset, "skipping a group record without key or value");
        return;
    };
    match GroupRecord::decode(&key, &value) {
        Ok(GroupRecord::Deleted { group_id }) => {
            groups.remove(&group_id);
        }
        Ok(record) => {
            let group_id = record.group_id().to_string();
            groups.entry(group_id.clone()).or_insert_with(|| GroupState::new(&group_id)).apply(record, monotonic_ms());
        }
        Err(e) => tracing::warn!(partition, offset, error = %e, "skipping an unreadable group record"),
    }
}
