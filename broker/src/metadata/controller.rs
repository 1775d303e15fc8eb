//! The controller: serialises metadata requests, plans each against the current state (`planner.rs`) and
//! commits the records through the controller quorum (`raft/`). Every voter runs one; only the active
//! controller (the Raft leader) commits, the others answer `NotController` naming it, and callers forward.
//!
//! The active controller also keeps broker sessions: brokers heartbeat every `heartbeat_interval_ms`, and
//! one silent for longer than `session_timeout_ms` is fenced (out of every ISR, its leaderships moved). The
//! sessions live only in the active controller's memory; a new active controller gives every broker a fresh
//! session, so a controller failover never fences a live broker.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::planner::{
    self, ClusterChange, ClusterChangeOutcome, ControllerError, ElectionOutcome, SecurityChange, TopicPolicy,
};
use super::raft::{MetadataQuorum, QuorumError};
use super::records::MetadataRecord;
use super::state::MetadataState;
use crate::replication::{AcceptedIsr, AlterPartitionError};
use crate::security::AclBinding;

/// What a heartbeat tells the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub fenced: bool,
    /// The controller's metadata offset when it answered (see `BrokerHeartbeatResponse`).
    pub metadata_offset: u64,
}

#[derive(Default)]
struct Sessions {
    /// Whether this node was the active controller at the last look: a change resets every session.
    active: bool,
    /// Last heartbeat time per broker, in ms.
    last_heartbeat_ms: BTreeMap<u32, i64>,
    /// When the next automatic preferred-leader election is due (ms); set on becoming active.
    balance_due_ms: Option<i64>,
}

pub struct Controller {
    node_id: u32,
    quorum: Arc<MetadataQuorum>,
    policy: TopicPolicy,
    session_timeout_ms: u64,
    /// One metadata change at a time, so that each is planned against the state it will apply to.
    ops: tokio::sync::Mutex<()>,
    sessions: Mutex<Sessions>,
}

fn not_controller(leader: Option<u64>) -> ControllerError {
    ControllerError::NotController { leader: leader.and_then(|l| u32::try_from(l).ok()) }
}

impl Controller {
    pub fn new(node_id: u32, quorum: Arc<MetadataQuorum>, policy: TopicPolicy, session_timeout_ms: u64) -> Self {
        Controller {
            node_id,
            quorum,
            policy,
            session_timeout_ms,
            ops: tokio::sync::Mutex::new(()),
            sessions: Mutex::new(Sessions::default()),
        }
    }

    pub fn state(&self) -> Arc<MetadataState> {
        self.quorum.state()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataState>> {
        self.quorum.subscribe()
    }

    /// The active controller as this node knows it.
    pub fn active_controller(&self) -> Option<u32> {
        self.quorum.leader().and_then(|l| u32::try_from(l).ok())
    }

    pub fn voters(&self) -> Vec<u32> {
        self.quorum.voters().keys().filter_map(|id| u32::try_from(*id).ok()).collect()
    }

    /// The controller quorum as this node sees it (Raft role, term, log indexes).
    pub fn quorum_status(&self) -> super::raft::QuorumStatus {
        self.quorum.status()
    }

    pub fn is_active(&self) -> bool {
        self.active_controller() == Some(self.node_id)
    }

    /// Plans records against the current state and commits them; returns the metadata offset of the first
    /// (the state's next offset when there was nothing to commit).
    async fn commit(
        &self,
        plan: impl FnOnce(&MetadataState) -> Result<Vec<MetadataRecord>, ControllerError>,
    ) -> Result<u64, ControllerError> {
        let _one_at_a_time = self.ops.lock().await;
        if !self.is_active() {
            return Err(not_controller(self.quorum.leader()));
        }
        let state = self.quorum.state();
        let records = plan(&state)?;
        if records.is_empty() {
            return Ok(state.next_offset);
        }
        match self.quorum.propose(records).await {
            Ok(offset) => Ok(offset),
            Err(QuorumError::NotLeader { leader_id }) => Err(not_controller(leader_id)),
            Err(e @ QuorumError::Rejected { .. }) => {
                // Planned under the ops lock against the state they apply to: a skipped record is a bug.
                panic!("the state machine skipped records the controller planned: {e}")
            }
            Err(e) => Err(ControllerError::Unavailable(e.to_string())),
        }
    }

    /// Registers a (re)started broker with the address of its Kafka listener, if it runs one, and returns its
    /// new broker epoch.
    pub async fn register_broker(
        &self,
        broker_id: u32,
        address: &str,
        kafka_address: Option<&str>,
        now_ms: i64,
    ) -> Result<u64, ControllerError> {
        let mut key = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .map_err(|_| ControllerError::Unavailable("the operating system's random source failed".into()))?;
        let broker_epoch = self
            .commit(|state| {
                let mut records = planner::register_broker(state, broker_id, address, kafka_address);
                // After the registration: its offset is the broker epoch.
                if state.session_key.is_none() {
                    use base64::Engine;
                    let key = base64::engine::general_purpose::STANDARD.encode(key);
                    records.push(MetadataRecord::SetSessionKey { key });
                }
                Ok(records)
            })
            .await?;
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).last_heartbeat_ms.insert(broker_id, now_ms);
        tracing::info!(broker_id, broker_epoch, address, kafka_address, "broker registered");
        Ok(broker_epoch)
    }

    /// A broker's heartbeat: renews its session and unfences it if it was fenced in this incarnation.
    pub async fn heartbeat(
        &self,
        broker_id: u32,
        broker_epoch: u64,
        now_ms: i64,
    ) -> Result<HeartbeatReply, ControllerError> {
        if !self.is_active() {
            return Err(not_controller(self.quorum.leader()));
        }
        let registered = self.quorum.state().brokers.get(&broker_id).cloned();
        let Some(registration) = registered.filter(|b| b.broker_epoch == broker_epoch) else {
            return Err(ControllerError::StaleBrokerEpoch { broker_id, broker_epoch });
        };
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).last_heartbeat_ms.insert(broker_id, now_ms);
        if registration.fenced {
            self.commit(|state| Ok(planner::unfence_broker(state, broker_id))).await?;
            tracing::info!(broker_id, broker_epoch, "broker unfenced");
        }
        Ok(HeartbeatReply { fenced: false, metadata_offset: self.quorum.state().next_offset })
    }

    /// On the active controller: fences every broker whose session expired. Elsewhere: forgets sessions, so
    /// that becoming active starts everyone with a fresh one.
    pub async fn fence_expired(&self, now_ms: i64) {
        let active = self.is_active();
        let expired: Vec<u32> = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            if active != sessions.active {
                sessions.active = active;
                sessions.last_heartbeat_ms.clear();
                sessions.balance_due_ms = None;
            }
            if !active {
                return;
            }
            let state = self.quorum.state();
            let mut expired = Vec::new();
            for broker in state.brokers.values().filter(|b| !b.fenced) {
                let last = *sessions.last_heartbeat_ms.entry(broker.broker_id).or_insert(now_ms);
                if now_ms.saturating_sub(last) > self.session_timeout_ms as i64 {
                    expired.push(broker.broker_id);
                }
            }
            expired
        };
        for broker_id in expired {
            let policy = self.policy.clone();
            match self.commit(|state| Ok(planner::fence_broker(state, broker_id, &policy))).await {
                Ok(_) => tracing::warn!(broker_id, "broker missed its session timeout: fenced"),
                Err(e) => tracing::warn!(broker_id, error = %e, "could not fence a broker"),
            }
        }
    }

    /// On the active controller, every `interval_ms` (from becoming active): leader balancing, a
    /// preferred-leader election over every topic, which moves each leadership back to the partition's first
    /// replica where that one is in the ISR, unfenced and not draining. Placement spreads first replicas
    /// evenly, so this spreads leaders evenly again after failovers and restarts. Call it after
    /// [`Controller::fence_expired`], which notices a change of the active controller.
    pub async fn balance_leaders(&self, now_ms: i64, interval_ms: u64) {
        if interval_ms == 0 {
            return;
        }
        {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            if !sessions.active || !self.is_active() {
                return;
            }
            let interval = i64::try_from(interval_ms).unwrap_or(i64::MAX);
            let due = *sessions.balance_due_ms.get_or_insert(now_ms.saturating_add(interval));
            if now_ms < due {
                return;
            }
            sessions.balance_due_ms = Some(now_ms.saturating_add(interval));
        }
        match self.alter_cluster(&ClusterChange::ElectLeaders { topics: Vec::new(), partitions: Vec::new() }).await {
            Ok(outcome) => {
                let elected = outcome.elections.iter().filter(|e| e.outcome == ElectionOutcome::Elected).count();
                if elected > 0 {
                    tracing::info!(elected, "leader balancing: leaderships moved back to preferred replicas");
                }
            }
            Err(e) => tracing::warn!(error = %e, "leader balancing failed"),
        }
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        config: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<u64, ControllerError> {
        let policy = self.policy.clone();
        self.commit(|state| {
            let records = planner::create_topic(state, &policy, name, partitions, replication_factor, config)?;
            Ok(if validate_only { Vec::new() } else { records })
        })
        .await
    }

    pub async fn delete_topic(&self, name: &str) -> Result<u64, ControllerError> {
        self.commit(|state| planner::delete_topic(state, name)).await
    }

    /// `InitProducerId`: see `planner::init_producer_id`.
    pub async fn init_producer_id(&self, producer_id: i64, producer_epoch: i16) -> Result<(i64, i16), ControllerError> {
        let mut granted = None;
        self.commit(|state| {
            let (records, grant) = planner::init_producer_id(state, producer_id, producer_epoch)?;
            granted = Some(grant);
            Ok(records)
        })
        .await?;
        Ok(granted.expect("set by a successful plan"))
    }

    /// A user or ACL change (`planner::alter_security`); returns the ACLs a deletion removed.
    pub async fn alter_security(&self, change: &SecurityChange) -> Result<Vec<AclBinding>, ControllerError> {
        let mut removed = Vec::new();
        self.commit(|state| {
            let (records, deleted) = planner::alter_security(state, change)?;
            removed = deleted;
            Ok(records)
        })
        .await?;
        Ok(removed)
    }

    /// A drain, undrain or preferred-leader election (`planner::alter_cluster`).
    pub async fn alter_cluster(&self, change: &ClusterChange) -> Result<ClusterChangeOutcome, ControllerError> {
        let mut planned = ClusterChangeOutcome::default();
        let mut count = 0;
        let policy = self.policy.clone();
        let first = self
            .commit(|state| {
                let (records, outcome) = planner::alter_cluster(state, &policy, change)?;
                planned = outcome;
                count = records.len() as u64;
                Ok(records)
            })
            .await?;
        // The records of one proposal take consecutive offsets from the first.
        planned.metadata_offset = first + count;
        Ok(planned)
    }

    /// A partition leader's ISR change.
    #[allow(clippy::too_many_arguments)]
    pub async fn alter_partition(
        &self,
        topic: &str,
        partition: u32,
        leader: u32,
        broker_epoch: u64,
        leader_epoch: u32,
        partition_epoch: u32,
        isr: Vec<u32>,
    ) -> Result<AcceptedIsr, AlterPartitionError> {
        let mut accepted = None;
        let result = self
            .commit(|state| {
                if state.brokers.get(&leader).is_none_or(|b| b.broker_epoch != broker_epoch || b.fenced) {
                    return Err(ControllerError::StaleBrokerEpoch { broker_id: leader, broker_epoch });
                }
                match planner::alter_partition(state, topic, partition, leader, leader_epoch, partition_epoch, isr) {
                    Ok((records, isr)) => {
                        accepted = Some(Ok(isr));
                        Ok(records)
                    }
                    Err(e) => {
                        accepted = Some(Err(e));
                        Ok(Vec::new())
                    }
                }
            })
            .await;
        match (result, accepted) {
            (Ok(_), Some(outcome)) => outcome,
            // A fenced leader is deposed: metadata moving its leaderships is on its way. Any other registration
            // than the one named means the broker is registering again (found by rill-sim: answering
            // FencedLeaderEpoch made the leader wait for metadata that never came, and its ISR stayed too small
            // for acks=all); once it knows its new broker epoch, a retry succeeds.
            (Err(ControllerError::StaleBrokerEpoch { .. }), _) => {
                let registration = self.quorum.state().brokers.get(&leader).cloned();
                if registration.is_some_and(|b| b.broker_epoch == broker_epoch && b.fenced) {
                    Err(AlterPartitionError::FencedLeaderEpoch)
                } else {
                    Err(AlterPartitionError::Unavailable)
                }
            }
            (Err(_), _) | (Ok(_), None) => Err(AlterPartitionError::Unavailable),
        }
    }
}
