//! Moving leaderships on an operator's request: draining a broker (on demand, or as the controlled shutdown
//! of a stopping one) and preferred-leader election. Pure, like the rest of the planner.

use serde::{Deserialize, Serialize};

use super::ControllerError;
use crate::metadata::records::{MetadataRecord, NO_LEADER, PartitionRecord};
use crate::metadata::state::MetadataState;

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
    ElectLeaders { topics: Vec<String> },
}

/// What a [`ClusterChange`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterChangeOutcome {
    /// A drain's leaderships that stay for now: another replica is alive but not in sync yet.
    pub stuck: Stuck,
    /// A drain's leaderships that cannot move: no other replica is alive.
    pub unmovable: Stuck,
    pub elections: Vec<Election>,
    /// The controller's metadata offset once the change was committed: a broker whose metadata reached it
    /// sees the change.
    pub metadata_offset: u64,
}

/// Plans `change`: the records to commit and what they do.
pub fn alter_cluster(
    state: &MetadataState,
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
        ClusterChange::ElectLeaders { topics } => {
            let (records, elections) = elect_preferred_leaders(state, topics)?;
            outcome.elections = elections;
            records
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

/// Preferred-leader election over `topics` (every topic when empty): each partition whose first replica is
/// in the ISR, live and not draining, but does not lead, gets it as leader in a new leader epoch.
pub fn elect_preferred_leaders(
    state: &MetadataState,
    topics: &[String],
) -> Result<(Vec<MetadataRecord>, Vec<Election>), ControllerError> {
    let selected: Vec<&crate::metadata::TopicState> = if topics.is_empty() {
        state.topics.values().collect()
    } else {
        let mut selected = Vec::new();
        for name in topics {
            selected.push(state.topic(name).ok_or_else(|| ControllerError::UnknownTopic(name.clone()))?);
        }
        selected
    };
    let mut records = Vec::new();
    let mut elections = Vec::new();
    for topic in selected {
        for (index, p) in topic.partitions.iter().enumerate() {
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
