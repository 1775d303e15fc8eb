//! An operator's changes to a running cluster: draining a broker (on demand, or as the controlled shutdown
//! of a stopping one), preferred-leader election, runtime config and added partitions. Pure, like the rest
//! of the planner.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ControllerError, TopicPolicy};
use crate::metadata::records::{MetadataRecord, NO_LEADER, PartitionRecord};
use crate::metadata::state::MetadataState;
use crate::topic_config::TopicConfig;

/// One partition's outcome in a preferred-leader election.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Election {
    pub topic: String,
    pub partition: u32,
    /// The preferred leader: the first replica.
    pub preferred: u32,
    pub outcome: ElectionOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionOutcome {
    /// Leadership moved to the preferred replica.
    Elected,
    /// The preferred replica already leads.
    AlreadyPreferred,
    /// The preferred replica may not lead now; the reason names why.
    NotEligible(String),
}

/// The leaderships a drain could not move: partitions with no other live, in-sync replica.
pub type Stuck = Vec<(String, u32)>;

/// An operator's (or a stopping broker's) change to who leads what, as the active controller receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterChange {
    /// See [`drain_broker`].
    Drain { broker_id: u32, broker_epoch: Option<u64>, shutdown: bool },
    /// See [`undrain_broker`].
    Undrain { broker_id: u32 },
    /// See [`elect_preferred_leaders`].
    ElectLeaders {
        topics: Vec<String>,
        #[serde(default)]
        partitions: Vec<(String, u32)>,
    },
    /// See [`alter_topic_config`]; with `validate_only` checked and nothing committed.
    AlterTopicConfig {
        topic: String,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
        #[serde(default)]
        validate_only: bool,
    },
    /// See [`alter_broker_config`]; with `validate_only` checked and nothing committed.
    AlterBrokerConfig {
        broker_id: u32,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
        #[serde(default)]
        validate_only: bool,
    },
    /// See [`super::create_partitions`]; with `validate_only` checked and nothing committed.
    CreatePartitions { topic: String, partitions: u32, validate_only: bool },
}

/// What a [`ClusterChange`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterChangeOutcome {
    /// A drain's leaderships that stay for now: another replica is alive but not in sync yet.
    pub stuck: Stuck,
    /// A drain's leaderships that cannot move: no other replica is alive.
    pub unmovable: Stuck,
    pub elections: Vec<Election>,
    /// A config change's resulting overrides.
    pub config: BTreeMap<String, String>,
    /// The controller's metadata offset once the change was committed: a broker whose metadata reached it
    /// sees the change.
    pub metadata_offset: u64,
}

/// Plans `change`: the records to commit and what they do.
pub fn alter_cluster(
    state: &MetadataState,
    policy: &TopicPolicy,
    change: &ClusterChange,
) -> Result<(Vec<MetadataRecord>, ClusterChangeOutcome), ControllerError> {
    let mut outcome = ClusterChangeOutcome::default();
    let records = match change {
        ClusterChange::Drain { broker_id, broker_epoch, shutdown } => {
            let (records, stuck) = drain_broker(state, *broker_id, *broker_epoch, *shutdown)?;
            let alive =
                |id: &u32| id != broker_id && state.brokers.get(id).is_some_and(|b| !b.fenced && !b.shutting_down);
            let (stuck, unmovable) = stuck.into_iter().partition(|(topic, partition)| {
                let replicas = state.topic(topic).and_then(|t| t.partitions.get(*partition as usize));
                replicas.is_some_and(|p| p.replicas.iter().any(alive))
            });
            outcome.stuck = stuck;
            outcome.unmovable = unmovable;
            records
        }
        ClusterChange::Undrain { broker_id } => undrain_broker(state, *broker_id)?,
        ClusterChange::ElectLeaders { topics, partitions } => {
            let (records, elections) = elect_preferred_leaders(state, topics, partitions)?;
            outcome.elections = elections;
            records
        }
        ClusterChange::AlterTopicConfig { topic, set, delete, validate_only } => {
            let (records, config) = alter_topic_config(state, policy, topic, set, delete)?;
            outcome.config = config;
            if *validate_only { Vec::new() } else { records }
        }
        ClusterChange::AlterBrokerConfig { broker_id, set, delete, validate_only } => {
            let (records, config) = alter_broker_config(state, policy, *broker_id, set, delete)?;
            outcome.config = config;
            if *validate_only { Vec::new() } else { records }
        }
        ClusterChange::CreatePartitions { topic, partitions, validate_only } => {
            let records = super::create_partitions(state, topic, *partitions)?;
            if *validate_only { Vec::new() } else { records }
        }
    };
    Ok((records, outcome))
}

fn registration_checked(
    state: &MetadataState,
    broker_id: u32,
    broker_epoch: Option<u64>,
) -> Result<&crate::metadata::BrokerRegistration, ControllerError> {
    let broker = state.brokers.get(&broker_id).ok_or(ControllerError::UnknownBroker(broker_id))?;
    if let Some(epoch) = broker_epoch
        && epoch != broker.broker_epoch
    {
        return Err(ControllerError::StaleBrokerEpoch { broker_id, broker_epoch: epoch });
    }
    Ok(broker)
}

/// Drains `broker_id`: marks it draining (and, with `shutdown`, stopping) and moves each partition it leads
/// to the first replica in replica order that is in the ISR and may lead, in a new leader epoch. With
/// `shutdown` the broker also leaves every ISR it is not the only member of. Leaderships with no such
/// replica stay and are returned; planning again later (once followers caught up) moves them.
///
/// `broker_epoch` is the stopping broker's own registration (a controlled shutdown): a drain meant for an
/// older incarnation is refused. An operator's drain names none.
pub fn drain_broker(
    state: &MetadataState,
    broker_id: u32,
    broker_epoch: Option<u64>,
    shutdown: bool,
) -> Result<(Vec<MetadataRecord>, Stuck), ControllerError> {
    let broker = registration_checked(state, broker_id, broker_epoch)?;
    if broker.fenced && !shutdown {
        return Err(ControllerError::InvalidRequest(format!(
            "broker {broker_id} is fenced: it leads nothing until it registers again"
        )));
    }
    let mut records = Vec::new();
    if !broker.draining || (shutdown && !broker.shutting_down) {
        records.push(MetadataRecord::DrainBroker { broker_id, broker_epoch: broker.broker_epoch, shutdown });
    }
    let may_lead = |id: &u32| *id != broker_id && state.brokers.get(id).is_some_and(|b| b.may_lead());
    let mut stuck = Vec::new();
    for topic in state.topics.values() {
        for (index, p) in topic.partitions.iter().enumerate() {
            let in_isr = p.isr.contains(&broker_id);
            let mut change = p.clone();
            if p.leader == broker_id {
                match p.replicas.iter().copied().find(|id| p.isr.contains(id) && may_lead(id)) {
                    Some(leader) => {
                        change.leader = leader;
                        change.leader_epoch = p.leader_epoch + 1;
                        if shutdown {
                            change.isr.retain(|id| *id != broker_id);
                        }
                    }
                    None => {
                        stuck.push((topic.name.clone(), index as u32));
                        continue;
                    }
                }
            } else if shutdown && in_isr && p.isr.len() > 1 && p.leader != NO_LEADER {
                change.isr.retain(|id| *id != broker_id);
            } else {
                continue;
            }
            change.partition_epoch = p.partition_epoch + 1;
            tracing::info!(
                topic = %topic.name, partition = index, from = broker_id, leader = change.leader,
                leader_epoch = change.leader_epoch, isr = ?change.isr, shutdown, "draining broker: partition changes"
            );
            records.push(MetadataRecord::PartitionChange {
                topic: topic.name.clone(),
                partition: index as u32,
                change,
            });
        }
    }
    Ok((records, stuck))
}

/// Calls off an on-demand drain. A stopping broker's drain ends only with its next registration.
pub fn undrain_broker(state: &MetadataState, broker_id: u32) -> Result<Vec<MetadataRecord>, ControllerError> {
    let broker = registration_checked(state, broker_id, None)?;
    if broker.shutting_down {
        return Err(ControllerError::InvalidRequest(format!(
            "broker {broker_id} is shutting down; its drain ends when it registers again"
        )));
    }
    if !broker.draining {
        return Ok(Vec::new());
    }
    Ok(vec![MetadataRecord::UndrainBroker { broker_id, broker_epoch: broker.broker_epoch }])
}

/// Preferred-leader election over `topics` (every topic when both lists are empty), or over just
/// `partitions` when it names some: each partition whose first replica is in the ISR, live and not
/// draining, but does not lead, gets it as leader in a new leader epoch. A partition number a topic does
/// not have is left out of the outcome.
pub fn elect_preferred_leaders(
    state: &MetadataState,
    topics: &[String],
    partitions: &[(String, u32)],
) -> Result<(Vec<MetadataRecord>, Vec<Election>), ControllerError> {
    let wanted = |topic: &str, index: usize| {
        partitions.is_empty() || partitions.iter().any(|(t, p)| t == topic && *p as usize == index)
    };
    let mut topics = topics.to_vec();
    for (topic, _) in partitions {
        if !topics.contains(topic) {
            topics.push(topic.clone());
        }
    }
    let selected: Vec<&crate::metadata::TopicState> = if topics.is_empty() {
        state.topics.values().collect()
    } else {
        let mut selected = Vec::new();
        for name in &topics {
            selected.push(state.topic(name).ok_or_else(|| ControllerError::UnknownTopic(name.clone()))?);
        }
        selected
    };
    let mut records = Vec::new();
    let mut elections = Vec::new();
    for topic in selected {
        for (index, p) in topic.partitions.iter().enumerate() {
            if !wanted(&topic.name, index) {
                continue;
            }
            let Some(&preferred) = p.replicas.first() else { continue };
            let outcome = if p.leader == preferred {
                ElectionOutcome::AlreadyPreferred
            } else if !p.isr.contains(&preferred) {
                ElectionOutcome::NotEligible(format!("broker {preferred} is not in the ISR {:?}", p.isr))
            } else {
                match state.brokers.get(&preferred) {
                    None => ElectionOutcome::NotEligible(format!("broker {preferred} is not registered")),
                    Some(b) if b.fenced => ElectionOutcome::NotEligible(format!("broker {preferred} is fenced")),
                    Some(b) if b.draining => ElectionOutcome::NotEligible(format!("broker {preferred} is draining")),
                    Some(_) => {
                        let change = PartitionRecord {
                            leader: preferred,
                            leader_epoch: p.leader_epoch + 1,
                            partition_epoch: p.partition_epoch + 1,
                            ..p.clone()
                        };
                        tracing::info!(
                            topic = %topic.name, partition = index, from = p.leader, leader = preferred,
                            leader_epoch = change.leader_epoch, "preferred-leader election"
                        );
                        records.push(MetadataRecord::PartitionChange {
                            topic: topic.name.clone(),
                            partition: index as u32,
                            change,
                        });
                        ElectionOutcome::Elected
                    }
                }
            };
            elections.push(Election { topic: topic.name.clone(), partition: index as u32, preferred, outcome });
        }
    }
    Ok((records, elections))
}

/// `current` with `set` applied and `delete` removed; a key both set and deleted is refused.
fn edited(
    current: &BTreeMap<String, String>,
    set: &BTreeMap<String, String>,
    delete: &[String],
) -> Result<BTreeMap<String, String>, ControllerError> {
    if let Some(both) = delete.iter().find(|key| set.contains_key(*key)) {
        return Err(ControllerError::InvalidConfig(format!("'{both}' is both set and deleted")));
    }
    if set.is_empty() && delete.is_empty() {
        return Err(ControllerError::InvalidConfig("no key to set or delete".into()));
    }
    let mut config = current.clone();
    config.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    for key in delete {
        config.remove(key);
    }
    Ok(config)
}

/// Checks a topic's resolved settings as the controller would at creation.
fn check_topic_settings(
    name: &str,
    replication_factor: usize,
    overrides: &BTreeMap<String, String>,
    defaults: &BTreeMap<String, String>,
    policy: &TopicPolicy,
) -> Result<(), ControllerError> {
    let parsed = TopicConfig::parse(overrides, defaults, policy.batch_bytes_max)
        .map_err(|e| ControllerError::InvalidConfig(format!("topic {name}: {e}")))?;
    if parsed.min_insync_replicas as usize > replication_factor {
        return Err(ControllerError::InvalidConfig(format!(
            "topic {name}: min.insync.replicas={} exceeds the replication factor {replication_factor}",
            parsed.min_insync_replicas
        )));
    }
    if parsed.log.encryption == rill_storage::Encryption::Aes256Gcm && !policy.encryption_key_loaded {
        return Err(ControllerError::InvalidConfig(format!(
            "topic {name}: encryption=aes-256-gcm needs an encryption key on the brokers (--encryption-key-file)"
        )));
    }
    Ok(())
}

/// Sets and deletes keys of `topic`'s config overrides (a deleted key falls back to the broker default).
/// Every key must be a topic key with a valid value; returns the record and the resulting overrides.
pub fn alter_topic_config(
    state: &MetadataState,
    policy: &TopicPolicy,
    topic: &str,
    set: &BTreeMap<String, String>,
    delete: &[String],
) -> Result<(Vec<MetadataRecord>, BTreeMap<String, String>), ControllerError> {
    let current = state.topic(topic).ok_or_else(|| ControllerError::UnknownTopic(topic.into()))?;
    let config = edited(&current.config, set, delete)?;
    let replication_factor = current.partitions.first().map_or(1, |p| p.replicas.len());
    check_topic_settings(topic, replication_factor, &config, &policy.defaults, policy)?;
    if config == current.config {
        return Ok((Vec::new(), config));
    }
    let record =
        MetadataRecord::AlterTopicConfig { name: topic.into(), topic_id: current.topic_id, config: config.clone() };
    Ok((vec![record], config))
}

/// Sets and deletes broker `broker_id`'s dynamic topic defaults (topic keys, applied to every topic of that
/// broker without an override). Each topic must stay valid under them; returns the record and the resulting
/// dynamic defaults.
pub fn alter_broker_config(
    state: &MetadataState,
    policy: &TopicPolicy,
    broker_id: u32,
    set: &BTreeMap<String, String>,
    delete: &[String],
) -> Result<(Vec<MetadataRecord>, BTreeMap<String, String>), ControllerError> {
    registration_checked(state, broker_id, None)?;
    let current = state.broker_configs.get(&broker_id).cloned().unwrap_or_default();
    let config = edited(&current, set, delete)?;
    let mut defaults = policy.defaults.clone();
    defaults.extend(config.iter().map(|(k, v)| (k.clone(), v.clone())));
    // The keys are checked even where every topic overrides them.
    check_topic_settings("(broker default)", usize::MAX, &BTreeMap::new(), &defaults, policy)?;
    for topic in state.topics.values() {
        let hosted = topic.partitions.iter().any(|p| p.replicas.contains(&broker_id));
        let replication_factor = topic.partitions.first().map_or(1, |p| p.replicas.len());
        if hosted {
            check_topic_settings(&topic.name, replication_factor, &topic.config, &defaults, policy)?;
        }
    }
    if config == current {
        return Ok((Vec::new(), config));
    }
    Ok((vec![MetadataRecord::SetBrokerConfig { broker_id, config: config.clone() }], config))
}
