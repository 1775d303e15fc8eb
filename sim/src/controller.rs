//! The active controller, as `rill_broker::metadata::controller` runs it: requests planned one at a time by
//! the real planner against the real `MetadataState`, committed records served to brokers that follow the
//! metadata log, and broker sessions that fence a broker silent for longer than the session timeout.
//!
//! The metadata log itself is what the controller quorum (openraft) replicates, so it survives a controller
//! failover; what a failover loses is the active controller's memory: requests in flight go unanswered for
//! the takeover delay, and the new controller starts every broker with a fresh session.

use std::collections::BTreeMap;

use rill_broker::metadata::planner::{self, TopicPolicy};
use rill_broker::metadata::{MetadataRecord, MetadataState, PartitionRecord};
use rill_broker::replication::AlterPartitionError;

use crate::broker::{SESSION_TIMEOUT_MS, TOPIC};
use crate::net::{CONTROLLER, Msg, NodeId};
use crate::world::{Timer, World};

const CONTROLLER_TICK_MS: u64 = 50;
/// Records per answer to a broker following the metadata log.
const METADATA_RECORDS_MAX: usize = 64;

pub(crate) struct Controller {
    pub(crate) state: MetadataState,
    log: Vec<(u64, MetadataRecord)>,
    policy: TopicPolicy,
    /// While a failover is under way no controller answers; the new one is active from this time.
    pub(crate) unavailable_until_ms: u64,
    /// Last heartbeat received per broker, on the active controller only.
    sessions: BTreeMap<NodeId, u64>,
}

impl Controller {
    pub(crate) fn new() -> Self {
        Controller {
            state: MetadataState::default(),
            log: Vec::new(),
            policy: TopicPolicy {
                defaults: BTreeMap::new(),
                batch_bytes_max: 1 << 20,
                default_replication_factor: 3,
                encryption_key_loaded: false,
            },
            unavailable_until_ms: 0,
            sessions: BTreeMap::new(),
        }
    }

    pub(crate) fn partition(&self, partition: u32) -> Option<&PartitionRecord> {
        self.state.topic(TOPIC).and_then(|t| t.partitions.get(partition as usize))
    }

    /// Commits planned records; returns the offset of the first.
    fn commit(&mut self, records: Vec<MetadataRecord>) -> u64 {
        let first = self.state.next_offset;
        for record in records {
            let offset = self.state.next_offset;
            self.state.apply(offset, &record).expect("planned against the state it applies to");
            self.log.push((offset, record));
        }
        first
    }

    /// A failover: the new active controller forgets the old one's sessions.
    pub(crate) fn fail_over(&mut self, until_ms: u64) {
        self.unavailable_until_ms = until_ms;
        self.sessions.clear();
    }
}

impl World {
    pub(crate) fn controller_receive(&mut self, from: NodeId, msg: Msg) {
        if self.now_ms < self.controller.unavailable_until_ms {
            return self.trace(|| format!("controller unavailable, drops {msg:?} from {from}"));
        }
        let now_ms = self.now_ms;
        let answer = match msg {
            Msg::Register => {
                let records = planner::register_broker(&self.controller.state, from, &format!("b{from}"), None);
                let broker_epoch = self.controller.commit(records);
                self.controller.sessions.insert(from, now_ms);
                Some(Msg::Registered { broker_epoch })
            }
            Msg::Heartbeat { broker_epoch, sent_at_ms } => {
                let registered = self.controller.state.brokers.get(&from).cloned();
                match registered.filter(|b| b.broker_epoch == broker_epoch) {
                    None => Some(Msg::HeartbeatAnswer { sent_at_ms, metadata_offset: None }),
                    Some(registration) => {
                        self.controller.sessions.insert(from, now_ms);
                        if registration.fenced {
                            let records = planner::unfence_broker(&self.controller.state, from);
                            self.controller.commit(records);
                        }
                        let metadata_offset = Some(self.controller.state.next_offset);
                        Some(Msg::HeartbeatAnswer { sent_at_ms, metadata_offset })
                    }
                }
            }
            Msg::WatchMetadata { from_offset } => {
                let records: Vec<(u64, MetadataRecord)> = self
                    .controller
                    .log
                    .iter()
                    .filter(|(offset, _)| *offset >= from_offset)
                    .take(METADATA_RECORDS_MAX)
                    .cloned()
                    .collect();
                (!records.is_empty()).then_some(Msg::MetadataRecords { records })
            }
            Msg::AlterPartition { broker_epoch, partition, proposal_id, leader_epoch, partition_epoch, isr } => {
                // As `Controller::alter_partition`: a fenced leader is deposed; a request naming another
                // registration of the broker than the current one comes from a broker registering again.
                let state = &self.controller.state;
                let result = match state.brokers.get(&from) {
                    Some(b) if b.broker_epoch == broker_epoch && !b.fenced => {
                        planner::alter_partition(state, TOPIC, partition, from, leader_epoch, partition_epoch, isr)
                    }
                    Some(b) if b.broker_epoch == broker_epoch => Err(AlterPartitionError::FencedLeaderEpoch),
                    _ => Err(AlterPartitionError::Unavailable),
                };
                let result = result.map(|(records, accepted)| {
                    self.controller.commit(records);
                    accepted
                });
                Some(Msg::AlterPartitionAnswer { partition, proposal_id, result })
            }
            Msg::InitProducerId { producer_id, producer_epoch } => {
                let granted = match planner::init_producer_id(&self.controller.state, producer_id, producer_epoch) {
                    Ok((records, granted)) => {
                        self.controller.commit(records);
                        Some(granted)
                    }
                    Err(_) => None,
                };
                Some(Msg::InitProducerIdAnswer { granted })
            }
            other => unreachable!("the controller got {other:?}"),
        };
        if let Some(answer) = answer {
            self.send(CONTROLLER, from, answer);
        }
    }

    /// Creates the topic once every broker registered, and fences brokers whose session expired.
    pub(crate) fn controller_tick(&mut self) {
        self.schedule_timer(CONTROLLER, Timer::ControllerTick, CONTROLLER_TICK_MS);
        if self.now_ms < self.controller.unavailable_until_ms {
            return;
        }
        let now_ms = self.now_ms;
        if self.controller.state.topic(TOPIC).is_none() {
            if self.controller.state.live_brokers().len() as u32 == self.options.brokers {
                let partitions = self.options.partitions;
                let records = planner::create_topic(
                    &self.controller.state,
                    &self.controller.policy,
                    TOPIC,
                    partitions,
                    3.min(self.options.brokers),
                    BTreeMap::new(),
                )
                .expect("the simulated topic is valid");
                self.controller.commit(records);
                self.trace(|| "controller creates the topic".to_string());
            }
            return;
        }
        let live: Vec<NodeId> = self.controller.state.live_brokers();
        let mut expired = Vec::new();
        for broker in live {
            let last = *self.controller.sessions.entry(broker).or_insert(now_ms);
            if now_ms.saturating_sub(last) > SESSION_TIMEOUT_MS {
                expired.push(broker);
            }
        }
        for broker in expired {
            let records = planner::fence_broker(&self.controller.state, broker, &self.controller.policy);
            self.trace(|| format!("controller fences broker {broker}: {records:?}"));
            self.controller.commit(records);
        }
    }
}
