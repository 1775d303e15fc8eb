//! A simulated broker process: registration, heartbeats and the controller lease, following metadata and
//! turning it into leader/follower transitions of its partitions, periodic ticks and HW checkpoints, and
//! routing messages to its partitions' shells (`shell.rs`). Mirrors `rill_broker::server` and `manager`.

use std::collections::BTreeMap;

use rill_broker::metadata::{MetadataRecord, MetadataState, PartitionRecord};
use rill_broker::replication::{Event, Replica, ReplicaConfig};

use crate::net::{CONTROLLER, Msg, NodeId};
use crate::shell::PartitionShell;
use crate::world::{Timer, World};

pub(crate) const TOPIC: &str = "sim";
pub(crate) const TICK_MS: u64 = 10;
pub(crate) const HEARTBEAT_INTERVAL_MS: u64 = 50;
/// A broker whose last answered heartbeat was sent longer ago than this stops leading; the controller fences
/// one it has not heard from for longer than this.
pub(crate) const SESSION_TIMEOUT_MS: u64 = 300;
const METADATA_PULL_MS: u64 = 20;
const CHECKPOINT_INTERVAL_MS: u64 = 100;
const REGISTER_RETRY_MS: u64 = 100;
pub(crate) const REPLICA_LAG_MS_MAX: u64 = 400;
pub(crate) const FETCH_BACKOFF_MS: u64 = 50;

pub(crate) struct Broker {
    pub(crate) id: NodeId,
    pub(crate) up: bool,
    /// Bumped by every restart; timers and messages of an older incarnation are dropped.
    pub(crate) incarnation: u32,
    pub(crate) broker_epoch: Option<u64>,
    /// The metadata this broker applied (every broker follows the controller's log).
    pub(crate) metadata: MetadataState,
    /// When the last answered heartbeat was sent: the lease runs from there.
    pub(crate) lease_sent_at_ms: Option<u64>,
    /// Answered heartbeats waiting for this broker's metadata to reach the controller's offset.
    pub(crate) pending_renewals: Vec<(u64, u64)>,
    pub(crate) partitions: BTreeMap<u32, PartitionShell>,
    /// The heartbeat and metadata timers run from the first registration of an incarnation on.
    following: bool,
}

impl Broker {
    pub(crate) fn new(id: NodeId) -> Self {
        Broker {
            id,
            up: false,
            incarnation: 0,
            broker_epoch: None,
            metadata: MetadataState::default(),
            lease_sent_at_ms: None,
            pending_renewals: Vec::new(),
            partitions: BTreeMap::new(),
            following: false,
        }
    }

    pub(crate) fn lease_valid(&self, now_ms: u64) -> bool {
        self.lease_sent_at_ms.is_some_and(|sent| now_ms < sent + SESSION_TIMEOUT_MS)
    }
}

impl World {
    /// Starts (or restarts) broker `id` from its disks: it registers, then follows metadata.
    pub(crate) fn start_broker(&mut self, id: NodeId) {
        let broker = self.brokers.get_mut(&id).expect("a broker");
        broker.up = true;
        broker.incarnation += 1;
        broker.broker_epoch = None;
        broker.metadata = MetadataState::default();
        broker.lease_sent_at_ms = None;
        broker.pending_renewals.clear();
        broker.partitions.clear();
        broker.following = false;
        let incarnation = broker.incarnation;
        self.trace(|| format!("broker {id} starts (incarnation {incarnation})"));
        self.send(id, CONTROLLER, Msg::Register);
        self.schedule_timer(id, Timer::RegisterRetry, REGISTER_RETRY_MS);
        self.schedule_timer(id, Timer::BrokerTick, TICK_MS);
        self.schedule_timer(id, Timer::Checkpoint, CHECKPOINT_INTERVAL_MS);
    }

    pub(crate) fn broker_timer(&mut self, id: NodeId, timer: Timer) {
        match timer {
            Timer::RegisterRetry => {
                if self.brokers[&id].broker_epoch.is_none() {
                    self.send(id, CONTROLLER, Msg::Register);
                    self.schedule_timer(id, Timer::RegisterRetry, REGISTER_RETRY_MS);
                }
            }
            Timer::Heartbeat => {
                // Between registrations (the controller no longer knew the last one) there is nothing to renew.
                if let Some(broker_epoch) = self.brokers[&id].broker_epoch {
                    let sent_at_ms = self.now_ms;
                    self.send(id, CONTROLLER, Msg::Heartbeat { broker_epoch, sent_at_ms });
                }
                self.schedule_timer(id, Timer::Heartbeat, HEARTBEAT_INTERVAL_MS);
            }
            Timer::MetadataPull => {
                let from_offset = self.brokers[&id].metadata.next_offset;
                self.send(id, CONTROLLER, Msg::WatchMetadata { from_offset });
                self.schedule_timer(id, Timer::MetadataPull, METADATA_PULL_MS);
            }
            Timer::BrokerTick => {
                self.refresh_lease(id);
                let partitions: Vec<u32> = self.brokers[&id].partitions.keys().copied().collect();
                for partition in partitions {
                    let now_ms = self.now_ms;
                    self.step(id, partition, Event::Tick { now_ms });
                }
                self.schedule_timer(id, Timer::BrokerTick, TICK_MS);
            }
            Timer::Checkpoint => {
                let partitions: Vec<(u32, u64)> =
                    self.brokers[&id].partitions.iter().map(|(p, s)| (*p, s.replica.high_watermark())).collect();
                for (partition, high_watermark) in partitions {
                    self.disks.get_mut(&(id, partition)).expect("a disk").high_watermark_checkpoint = high_watermark;
                }
                self.schedule_timer(id, Timer::Checkpoint, CHECKPOINT_INTERVAL_MS);
            }
            Timer::FlushDone { partition } => self.flush_done(id, partition),
            Timer::FetchTimeout { partition, fetch_id } => self.fetch_timed_out(id, partition, fetch_id),
            Timer::LongPollDeadline { partition } => self.answer_parked_fetches(id, partition, true),
            Timer::ProposalTimeout { partition, proposal_id } => self.proposal_timed_out(id, partition, proposal_id),
            Timer::ProduceDeadline { partition } => self.expire_produce_waiters(id, partition),
            Timer::ControllerTick | Timer::ClientWake | Timer::ClientTimeout { .. } => {
                unreachable!("not a broker timer")
            }
        }
    }

    pub(crate) fn broker_receive(&mut self, id: NodeId, from: NodeId, msg: Msg) {
        match msg {
            Msg::Registered { broker_epoch } => {
                let broker = self.brokers.get_mut(&id).expect("a broker");
                if broker.broker_epoch.is_some() {
                    return;
                }
                broker.broker_epoch = Some(broker_epoch);
                if !std::mem::replace(&mut broker.following, true) {
                    self.schedule_timer(id, Timer::Heartbeat, 0);
                    self.schedule_timer(id, Timer::MetadataPull, 0);
                }
            }
            Msg::HeartbeatAnswer { sent_at_ms, metadata_offset } => match metadata_offset {
                Some(offset) => {
                    self.brokers.get_mut(&id).expect("a broker").pending_renewals.push((sent_at_ms, offset));
                    self.refresh_lease(id);
                }
                // The controller no longer knows this incarnation: register again.
                None => {
                    self.brokers.get_mut(&id).expect("a broker").broker_epoch = None;
                    self.send(id, CONTROLLER, Msg::Register);
                    self.schedule_timer(id, Timer::RegisterRetry, REGISTER_RETRY_MS);
                }
            },
            Msg::MetadataRecords { records } => self.apply_metadata(id, records),
            Msg::AlterPartitionAnswer { partition, proposal_id, result } => {
                self.proposal_answered(id, partition, proposal_id, Ok(result))
            }
            Msg::ReplicaFetch { partition, request, broker_epoch } => {
                self.answer_replica_fetch(id, partition, from, request, broker_epoch)
            }
            Msg::ReplicaFetchAnswer { partition, fetch_id, answer, batches } => {
                self.fetch_answered(id, partition, fetch_id, answer, batches)
            }
            Msg::Produce { request_id, partition, batch } => self.produce(id, from, request_id, partition, batch),
            Msg::Fetch { request_id, partition, offset } => self.client_fetch(id, from, request_id, partition, offset),
            Msg::MetadataRequest => {
                let leaders = self.brokers[&id]
                    .metadata
                    .topic(TOPIC)
                    .map(|t| t.partitions.iter().enumerate().map(|(p, s)| (p as u32, s.leader)).collect())
                    .unwrap_or_default();
                self.send(id, from, Msg::MetadataAnswer { leaders });
            }
            other => unreachable!("broker {id} got {other:?}"),
        }
    }

    /// Applies the answered heartbeats whose metadata this broker has reached, then tells its partitions
    /// if the lease ran out or came back (`Partition::set_lease` and `check_lease`).
    pub(crate) fn refresh_lease(&mut self, id: NodeId) {
        let now_ms = self.now_ms;
        let broker = self.brokers.get_mut(&id).expect("a broker");
        let applied = broker.metadata.next_offset;
        let mut renewed = broker.lease_sent_at_ms;
        broker.pending_renewals.retain(|&(sent_at_ms, offset)| {
            if applied >= offset {
                renewed = renewed.max(Some(sent_at_ms));
                false
            } else {
                true
            }
        });
        broker.lease_sent_at_ms = renewed;
        let valid = broker.lease_valid(now_ms);
        let changed: Vec<u32> =
            broker.partitions.iter().filter(|(_, s)| s.replica.lease_valid() != valid).map(|(p, _)| *p).collect();
        for partition in changed {
            let event = if valid { Event::LeaseRenewed { now_ms } } else { Event::LeaseExpired };
            self.step(id, partition, event);
        }
    }

    fn apply_metadata(&mut self, id: NodeId, records: Vec<(u64, MetadataRecord)>) {
        let broker = self.brokers.get_mut(&id).expect("a broker");
        let mut applied_any = false;
        for (offset, record) in records {
            if offset < broker.metadata.next_offset {
                continue;
            }
            if let Err(e) = broker.metadata.apply(offset, &record) {
                panic!("broker {id} cannot apply metadata: {e}; it holds topics {:?}", broker.metadata.topics.keys());
            }
            applied_any = true;
        }
        if !applied_any {
            return;
        }
        let assigned: Vec<(u32, PartitionRecord)> = broker
            .metadata
            .topic(TOPIC)
            .map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.replicas.contains(&id))
                    .map(|(p, s)| (p as u32, s.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (partition, state) in assigned {
            if !self.brokers[&id].partitions.contains_key(&partition) {
                self.open_partition(id, partition);
            }
            let shell = self.brokers.get_mut(&id).expect("a broker").partitions.get_mut(&partition).expect("opened");
            if shell.applied.as_ref() == Some(&state) {
                continue;
            }
            shell.applied = Some(state.clone());
            let event = rill_broker::partition::metadata_event(&state, id, self.now_ms);
            let becomes_leader = matches!(event, Event::BecomeLeader { .. });
            let was_leader =
                self.brokers[&id].partitions[&partition].replica.role() == rill_broker::replication::Role::Leader;
            self.step(id, partition, event);
            let leads =
                self.brokers[&id].partitions[&partition].replica.role() == rill_broker::replication::Role::Leader;
            if becomes_leader && leads && !was_leader {
                self.stats.elections += 1;
                if self.options.planted.forget_producer_state_on_leader_change {
                    let end = self.disks[&(id, partition)].log_end_offset();
                    let shell =
                        self.brokers.get_mut(&id).expect("a broker").partitions.get_mut(&partition).expect("open");
                    shell.producers = rill_broker::producer_state::ProducerStateTable::starting_at(end);
                }
            }
        }
        self.refresh_lease(id);
    }

    /// Opens a partition this broker hosts: the replica over what its disk recovered (`Partition::new`).
    fn open_partition(&mut self, id: NodeId, partition: u32) {
        let disk = self.disks.entry((id, partition)).or_default();
        let recovered = disk.recover();
        let producers = disk.producer_table();
        let config = ReplicaConfig {
            broker_id: id,
            replica_lag_ms_max: REPLICA_LAG_MS_MAX,
            min_insync_replicas: 2,
            durability_fsync: true,
            fetch_backoff_ms: FETCH_BACKOFF_MS,
            unclean_leader_election: false,
        };
        let (mut replica, commands) = Replica::new(config, recovered);
        if let Some(hook) = self.options.replica_hook {
            hook(&mut replica);
        }
        let published_high_watermark = replica.high_watermark();
        let shell = PartitionShell::new(replica, producers);
        self.brokers.get_mut(&id).expect("a broker").partitions.insert(partition, shell);
        let incarnation = self.brokers[&id].incarnation;
        self.record(rill_tests::checker::jepsen::Op::HighWatermark {
            time_ms: self.now_ms,
            broker: id,
            incarnation,
            partition,
            high_watermark: published_high_watermark,
        });
        self.execute(id, partition, commands, None);
    }

    /// The broker process dies: its disks lose what was not fsynced, everything in memory is gone.
    pub(crate) fn crash_broker(&mut self, id: NodeId) {
        let broker = self.brokers.get_mut(&id).expect("a broker");
        broker.up = false;
        broker.partitions.clear();
        let partitions: Vec<u32> = self.disks.keys().filter(|(b, _)| *b == id).map(|(_, p)| *p).collect();
        for partition in partitions {
            let torn = rand::Rng::random_bool(&mut self.rng, 0.5);
            let disk = self.disks.get_mut(&(id, partition)).expect("a disk");
            let before = disk.log_end_offset();
            let torn = disk.crash(torn);
            let after = disk.log_end_offset();
            self.trace(|| {
                format!("broker {id} partition {partition}: crash keeps {after} of {before} (torn write: {torn})")
            });
        }
    }
}
