//! The controller's decisions as pure functions: given the current `MetadataState` and a request (or the
//! passage of time), the records to commit. No IO and no clock: the controller (`controller.rs`) serialises
//! requests, commits what these return, and feeds in time, so the same state and inputs always give the same
//! records.

use std::collections::BTreeMap;

use super::records::{MetadataRecord, NO_LEADER, PartitionRecord};
use super::state::MetadataState;
use crate::limits::{TOPIC_NAME_BYTES_MAX, TOPIC_PARTITIONS_MAX};
use crate::replication::{AcceptedIsr, AlterPartitionError};
use crate::topic_config::TopicConfig;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("producer id {producer_id} was never handed out")]
    UnknownProducerId { producer_id: i64 },
    #[error(
        "producer id {producer_id} is at epoch {current_epoch}, not {producer_epoch}: a newer producer fenced this one"
    )]
    ProducerFenced { producer_id: i64, producer_epoch: i16, current_epoch: i16 },
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopicName { name: String, reason: String },
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("invalid topic config: {0}")]
    InvalidConfig(String),
    /// This node is not the active controller; `leader` is the one it knows of.
    #[error("not the active controller (the active controller is {leader:?})")]
    NotController { leader: Option<u32> },
    /// No metadata change can commit now (no quorum, or the write timed out with an unknown outcome).
    #[error("metadata is unavailable: {0}")]
    Unavailable(String),
    #[error("broker {broker_id} is not registered in epoch {broker_epoch}")]
    StaleBrokerEpoch { broker_id: u32, broker_epoch: u64 },
    #[error("user '{0}' does not exist")]
    UnknownUser(String),
    #[error("broker {0} is not registered")]
    UnknownBroker(u32),
    /// A request that cannot be carried out in the cluster's current state; the message says why.
    #[error("{0}")]
    InvalidRequest(String),
    /// A user or ACL change that can never be made (bad name, iterations out of range, malformed ACL).
    #[error("{0}")]
    InvalidSecurityChange(String),
}

/// Settings the controller applies to new topics.
#[derive(Debug, Clone)]
pub struct TopicPolicy {
    pub defaults: BTreeMap<String, String>,
    pub batch_bytes_max: u64,
    pub default_replication_factor: u32,
    /// Whether this node holds an encryption key: without one, a topic with `encryption=aes-256-gcm` is
    /// refused at creation (the other brokers' keys cannot be seen from here; a replica without a key keeps the
    /// partition offline with an error naming the topic).
    pub encryption_key_loaded: bool,
}

/// Kafka's rule for topic names, so they stay valid file names and portable to Kafka tooling.
pub fn check_topic_name(name: &str) -> Result<(), ControllerError> {
    let invalid = |reason: &str| Err(ControllerError::InvalidTopicName { name: name.into(), reason: reason.into() });
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return invalid(&format!("longer than {TOPIC_NAME_BYTES_MAX} characters"));
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    if name.starts_with("__") {
        return invalid("names starting with '__' are reserved for internal topics");
    }
    Ok(())
}

/// A broker (re)starts. Every partition it led gets a new leader epoch: a restarted leader may have lost
/// unflushed records of its old epoch that followers already copied, and writing new records at those
/// offsets in the same epoch would hide the difference from the followers' divergence check.
pub fn register_broker(
    state: &MetadataState,
    broker_id: u32,
    address: &str,
    kafka_address: Option<&str>,
) -> Vec<MetadataRecord> {
    let kafka_address = kafka_address.map(str::to_string);
    let mut records = vec![MetadataRecord::RegisterBroker { broker_id, address: address.into(), kafka_address }];
    for topic in state.topics.values() {
        for (index, p) in topic.partitions.iter().enumerate() {
            if p.leader == broker_id {
                let change = PartitionRecord {
                    leader_epoch: p.leader_epoch + 1,
                    partition_epoch: p.partition_epoch + 1,
                    ..p.clone()
                };
                records.push(MetadataRecord::PartitionChange {
                    topic: topic.name.clone(),
                    partition: index as u32,
                    change,
                });
            }
        }
    }
    records.extend(elect_leaderless(state, broker_id));
    records
}

/// Partitions without a leader whose ISR holds `broker_id` (it was the last in-sync replica when it was
/// fenced) get it back as leader in a new epoch, now that it is alive again.
fn elect_leaderless(state: &MetadataState, broker_id: u32) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in state.topics.values() {
        for (index, p) in topic.partitions.iter().enumerate() {
            if p.leader == NO_LEADER && p.isr.contains(&broker_id) {
                let change = PartitionRecord {
                    leader: broker_id,
                    leader_epoch: p.leader_epoch + 1,
                    partition_epoch: p.partition_epoch + 1,
                    ..p.clone()
                };
                tracing::info!(topic = %topic.name, partition = index, leader = broker_id, "offline partition gets a leader again");
                records.push(MetadataRecord::PartitionChange {
                    topic: topic.name.clone(),
                    partition: index as u32,
                    change,
                });
            }
        }
    }
    records
}

/// Validates a topic and spreads its replicas and preferred leaders evenly across live brokers.
pub fn create_topic(
    state: &MetadataState,
    policy: &TopicPolicy,
    name: &str,
    partitions: u32,
    replication_factor: u32,
    config: BTreeMap<String, String>,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    // The internal offsets topic is the one reserved name the controller creates (for a group coordinator;
    // the client-facing CreateTopics refuses every reserved name before it gets here).
    if name != crate::group::OFFSETS_TOPIC {
        check_topic_name(name)?;
    }
    if state.topic(name).is_some() {
        return Err(ControllerError::TopicExists(name.into()));
    }
    if partitions == 0 || partitions > TOPIC_PARTITIONS_MAX {
        return Err(ControllerError::InvalidPartitions(format!(
            "partitions must be between 1 and {TOPIC_PARTITIONS_MAX}, got {partitions}"
        )));
    }
    let replication_factor =
        if replication_factor == 0 { policy.default_replication_factor } else { replication_factor };
    let live = placeable_brokers(state);
    if replication_factor as usize > live.len() {
        return Err(ControllerError::InvalidReplicationFactor(format!(
            "replication factor {replication_factor} exceeds the {} live broker(s)",
            live.len()
        )));
    }
    let mut config = config;
    if !config.contains_key("min.insync.replicas") && !policy.defaults.contains_key("min.insync.replicas") {
        // With three or more replicas an acks=all write waits for at least two, so one lost disk cannot lose
        // it; with fewer there is no second replica to require. Recorded in the topic's config so that
        // describing the topic shows it.
        let default = if replication_factor >= 3 { 2 } else { 1 };
        config.insert("min.insync.replicas".to_string(), default.to_string());
    }
    let topic_config = TopicConfig::parse(&config, &policy.defaults, policy.batch_bytes_max)
        .map_err(ControllerError::InvalidConfig)?;
    if topic_config.log.encryption == rill_storage::Encryption::Aes256Gcm && !policy.encryption_key_loaded {
        return Err(ControllerError::InvalidConfig(
            "encryption=aes-256-gcm: the controller has no encryption key; start the brokers with \
             --encryption-key-file or RILL_ENCRYPTION_KEY"
                .into(),
        ));
    }
    if topic_config.min_insync_replicas > replication_factor {
        return Err(ControllerError::InvalidConfig(format!(
            "min.insync.replicas={} exceeds the replication factor {replication_factor}",
            topic_config.min_insync_replicas
        )));
    }
    let topic_id = state.next_topic_id;
    let partitions = place_partitions(state, &live, topic_id, 0..partitions, replication_factor);
    Ok(vec![MetadataRecord::CreateTopic { name: name.into(), topic_id, config, partitions }])
}

/// Round-robin placement of partitions `numbers` of topic `topic_id` on the `live` brokers: partition p starts
/// at live broker (p + offset) mod n, so replicas and preferred leaders spread evenly; the offset (the topic
/// id) keeps many one-partition topics from all landing on the same first broker.
fn place_partitions(
    state: &MetadataState,
    live: &[u32],
    topic_id: u64,
    numbers: std::ops::Range<u32>,
    replication_factor: u32,
) -> Vec<PartitionRecord> {
    numbers
        .map(|p| {
            let start = (p as usize + topic_id as usize) % live.len();
            let replicas: Vec<u32> = (0..replication_factor as usize).map(|r| live[(start + r) % live.len()]).collect();
            // The first replica is the preferred leader; a draining one leads only if every replica drains.
            let may_lead = |id: &u32| state.brokers.get(id).is_some_and(|b| b.may_lead());
            let leader = replicas.iter().copied().find(may_lead).unwrap_or(replicas[0]);
            PartitionRecord { leader, leader_epoch: 0, isr: replicas.clone(), replicas, partition_epoch: 0 }
        })
        .collect()
}

/// Brokers that may get new replicas: registered, not fenced, not stopping (a stopping broker would sit in
/// the new ISRs while it is gone).
fn placeable_brokers(state: &MetadataState) -> Vec<u32> {
    state.brokers.values().filter(|b| !b.fenced && !b.shutting_down).map(|b| b.broker_id).collect()
}

/// Grows `name` to `partitions` partitions (never fewer), the new ones placed like a new topic's with the
/// topic's replication factor. Existing partitions keep their replicas and data; keyed records map to
/// partitions by the new count from then on.
pub fn create_partitions(
    state: &MetadataState,
    name: &str,
    partitions: u32,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let topic = state.topic(name).ok_or_else(|| ControllerError::UnknownTopic(name.into()))?;
    let current = topic.partitions.len() as u32;
    if partitions <= current {
        return Err(ControllerError::InvalidPartitions(format!(
            "topic '{name}' has {current} partition(s); the new count must be higher, got {partitions}"
        )));
    }
    if partitions > TOPIC_PARTITIONS_MAX {
        return Err(ControllerError::InvalidPartitions(format!(
            "partitions must be at most {TOPIC_PARTITIONS_MAX}, got {partitions}"
        )));
    }
    let replication_factor = topic.partitions.first().map_or(1, |p| p.replicas.len() as u32);
    let live = placeable_brokers(state);
    if replication_factor as usize > live.len() {
        return Err(ControllerError::InvalidReplicationFactor(format!(
            "topic '{name}' has replication factor {replication_factor}, more than the {} live broker(s)",
            live.len()
        )));
    }
    let added = place_partitions(state, &live, topic.topic_id, current..partitions, replication_factor);
    Ok(vec![MetadataRecord::CreatePartitions { name: name.into(), topic_id: topic.topic_id, partitions: added }])
}

pub fn delete_topic(state: &MetadataState, name: &str) -> Result<Vec<MetadataRecord>, ControllerError> {
    let Some(topic) = state.topic(name) else {
        return Err(ControllerError::UnknownTopic(name.into()));
    };
    Ok(vec![MetadataRecord::DeleteTopic { name: name.into(), topic_id: topic.topic_id }])
}

/// `InitProducerId`: a new producer id with epoch 0, or the next epoch of an existing id. The caller must
/// hold the id's current epoch: an older producer cannot take the id back from a newer one. An id whose
/// epoch would overflow gets replaced by a new id. Returns the records and the (id, epoch) they grant.
pub fn init_producer_id(
    state: &MetadataState,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<(Vec<MetadataRecord>, (i64, i16)), ControllerError> {
    let new_id = |state: &MetadataState| {
        let id = state.next_producer_id;
        (vec![MetadataRecord::AllocateProducerIds { first_id: id, count: 1 }], (id, 0))
    };
    if producer_id < 0 {
        return Ok(new_id(state));
    }
    if producer_id >= state.next_producer_id {
        return Err(ControllerError::UnknownProducerId { producer_id });
    }
    let current_epoch = state.producer_epochs.get(&producer_id).copied().unwrap_or(0);
    if producer_epoch != current_epoch {
        return Err(ControllerError::ProducerFenced { producer_id, producer_epoch, current_epoch });
    }
    if current_epoch == i16::MAX {
        return Ok(new_id(state));
    }
    let next = current_epoch + 1;
    Ok((vec![MetadataRecord::BumpProducerEpoch { producer_id, producer_epoch: next }], (producer_id, next)))
}

/// A leader's request to change a partition's ISR (AlterPartition). Refused when it comes from a deposed
/// leader, is based on an old partition epoch, or adds a broker that is fenced or not a replica.
pub fn alter_partition(
    state: &MetadataState,
    topic: &str,
    partition: u32,
    leader: u32,
    leader_epoch: u32,
    partition_epoch: u32,
    isr: Vec<u32>,
) -> Result<(Vec<MetadataRecord>, AcceptedIsr), AlterPartitionError> {
    let Some(current) = state.topic(topic).and_then(|t| t.partitions.get(partition as usize)) else {
        return Err(AlterPartitionError::FencedLeaderEpoch);
    };
    if current.leader != leader || current.leader_epoch != leader_epoch {
        return Err(AlterPartitionError::FencedLeaderEpoch);
    }
    if current.partition_epoch != partition_epoch {
        return Err(AlterPartitionError::StalePartitionEpoch);
    }
    // A stopping broker left its ISRs on purpose (controlled shutdown): it may not catch up back into one.
    let eligible = |id: &u32| {
        current.replicas.contains(id)
            && (current.isr.contains(id) || state.brokers.get(id).is_some_and(|b| !b.fenced && !b.shutting_down))
    };
    if !isr.contains(&leader) || !isr.iter().all(eligible) {
        return Err(AlterPartitionError::IneligibleReplica);
    }
    let mut isr = isr;
    isr.sort_unstable();
    isr.dedup();
    let change = PartitionRecord { isr: isr.clone(), partition_epoch: partition_epoch + 1, ..current.clone() };
    let records = vec![MetadataRecord::PartitionChange { topic: topic.into(), partition, change }];
    Ok((records, AcceptedIsr { isr, partition_epoch: partition_epoch + 1 }))
}

/// A broker missed its session timeout: fence it, take it out of every ISR, and move each of its leaderships
/// to the first live member of the remaining ISR in replica order (a clean election), each in a new leader
/// epoch. Where no ISR member is live the partition goes leaderless, keeping its last ISR member so that it
/// can lead again when it returns; unless the topic opted into unclean election, which picks any live replica
/// and is logged as possible data loss.
pub fn fence_broker(state: &MetadataState, broker_id: u32, policy: &TopicPolicy) -> Vec<MetadataRecord> {
    let Some(broker) = state.brokers.get(&broker_id).filter(|b| !b.fenced) else { return Vec::new() };
    let mut records = vec![MetadataRecord::FenceBroker { broker_id, broker_epoch: broker.broker_epoch }];
    let live = |id: &u32| *id != broker_id && state.brokers.get(id).is_some_and(|b| !b.fenced);
    let may_lead = |id: &u32| *id != broker_id && state.brokers.get(id).is_some_and(|b| b.may_lead());
    for topic in state.topics.values() {
        let unclean = TopicConfig::parse(&topic.config, &policy.defaults, policy.batch_bytes_max)
            .map(|c| c.unclean_leader_election)
            .unwrap_or(false);
        for (index, p) in topic.partitions.iter().enumerate() {
            if !p.isr.contains(&broker_id) && p.leader != broker_id {
                continue;
            }
            let mut change = p.clone();
            let remaining: Vec<u32> = p.isr.iter().copied().filter(|id| *id != broker_id).collect();
            if p.leader == broker_id || p.leader == NO_LEADER {
                // A draining broker leads only where no other in-sync replica can.
                let clean = p.replicas.iter().copied().find(|id| remaining.contains(id) && may_lead(id));
                let clean = clean.or_else(|| p.replicas.iter().copied().find(|id| remaining.contains(id) && live(id)));
                match clean {
                    Some(leader) => {
                        change.leader = leader;
                        change.isr = remaining;
                    }
                    None if unclean => match p.replicas.iter().copied().find(|id| live(id)) {
                        Some(leader) => {
                            tracing::warn!(topic = %topic.name, partition = index, leader, "unclean leader election: acknowledged records may be lost");
                            change.leader = leader;
                            change.isr = vec![leader];
                        }
                        None => {
                            change.leader = NO_LEADER;
                            change.isr = if remaining.is_empty() { vec![broker_id] } else { remaining };
                        }
                    },
                    None => {
                        tracing::warn!(topic = %topic.name, partition = index, "no in-sync replica is alive: partition offline");
                        change.leader = NO_LEADER;
                        // The ISR never becomes empty: its last member holds every acknowledged record.
                        change.isr = if remaining.is_empty() { vec![broker_id] } else { remaining };
                    }
                }
                change.leader_epoch = p.leader_epoch + 1;
            } else if !remaining.is_empty() {
                change.isr = remaining;
            }
            if change == *p {
                continue;
            }
            change.partition_epoch = p.partition_epoch + 1;
            records.push(MetadataRecord::PartitionChange {
                topic: topic.name.clone(),
                partition: index as u32,
                change,
            });
        }
    }
    records
}

/// A fenced broker heartbeats again in the same incarnation: unfence it, and give it back the leaderless
/// partitions it is the last in-sync replica of. It rejoins other ISRs through its leaders once caught up.
pub fn unfence_broker(state: &MetadataState, broker_id: u32) -> Vec<MetadataRecord> {
    let Some(broker) = state.brokers.get(&broker_id).filter(|b| b.fenced) else { return Vec::new() };
    let mut records = vec![MetadataRecord::UnfenceBroker { broker_id, broker_epoch: broker.broker_epoch }];
    records.extend(elect_leaderless(state, broker_id));
    records
}

mod operate;
mod security;
pub use operate::{
    ClusterChange, ClusterChangeOutcome, Election, ElectionOutcome, Stuck, alter_broker_config, alter_cluster,
    alter_topic_config, drain_broker, elect_preferred_leaders, undrain_broker,
};
pub use security::{SecurityChange, alter_security};

#[cfg(test)]
mod tests;
