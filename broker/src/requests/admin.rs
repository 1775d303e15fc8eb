//! Metadata, topic description, topic creation and deletion, cluster description and producer ids. Topic
//! changes and producer ids are decided by the active controller: served in-process when it is this node,
//! forwarded to it otherwise (`forward.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{BrokerCore, Error, ErrorKind, forward};
use crate::limits::TOPIC_CHANGE_APPLY_WAIT_MS;
use crate::metadata::{BrokerRegistration, ClusterChange, MetadataState, NO_LEADER, TopicState};
use crate::security::{Operation, Principal, Resource, ResourceType};

/// The cluster as this broker's metadata has it: live brokers, the active controller and the topics asked
/// for (each, or why not).
#[derive(Debug, Clone)]
pub struct ClusterMetadata {
    pub brokers: Vec<BrokerRegistration>,
    /// 0 while no controller is known.
    pub controller_id: u32,
    pub topics: Vec<TopicMetadata>,
}

#[derive(Debug, Clone)]
pub struct TopicMetadata {
    pub name: String,
    pub result: Result<TopicState, Error>,
}

/// Every registered broker (fenced ones too), the active controller and the voters.
#[derive(Debug, Clone)]
pub struct ClusterDescription {
    pub brokers: Vec<BrokerRegistration>,
    pub active_controller: u32,
    pub voters: Vec<u32>,
}

/// A partition's placement with the offsets its leader reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: u32,
    pub leader: u32,
    pub leader_epoch: u32,
    pub replicas: Vec<u32>,
    pub isr: Vec<u32>,
    pub log_start_offset: u64,
    pub high_watermark: u64,
    pub log_end_offset: u64,
}

#[derive(Debug, Clone)]
pub struct TopicDescription {
    pub name: String,
    pub partitions: Vec<PartitionDescription>,
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub partitions: u32,
    /// 0 is the broker's default.
    pub replication_factor: u32,
    pub config: BTreeMap<String, String>,
}

/// The outcome of a topic change, by topic name, in the request's order.
pub type TopicOutcomes = Vec<(String, Result<(), Error>)>;

/// Internal topics (`__` names) are made and removed by the broker itself, never by a client.
fn reserved_name(name: &str) -> Option<Error> {
    let message = format!("'{name}': names starting with '__' are reserved for internal topics");
    name.starts_with("__").then(|| Error::new(ErrorKind::InvalidTopicName, message))
}

impl BrokerCore {
    /// The topics named (every topic for `None`) and the live brokers.
    /// Topics `who` may not describe are left out of a listing of all, and refused when named.
    pub fn metadata(&self, who: &Principal, topics: Option<&[String]>) -> ClusterMetadata {
        let state = self.metadata.borrow().clone();
        let brokers = state.brokers.values().filter(|b| !b.fenced).cloned().collect();
        let found = |topic: &TopicState| TopicMetadata { name: topic.name.clone(), result: Ok(topic.clone()) };
        let visible = |name: &str| self.authorized(who, Operation::Describe, Resource::topic(name));
        let topics = match topics {
            None => state.topics.values().filter(|t| visible(&t.name)).map(found).collect(),
            Some(topics) => topics
                .iter()
                .map(|name| {
                    match (self.authorize(who, Operation::Describe, Resource::topic(name)), state.topic(name)) {
                        (Err(refused), _) => TopicMetadata { name: name.clone(), result: Err(refused) },
                        (Ok(()), Some(topic)) => found(topic),
                        (Ok(()), None) => {
                            TopicMetadata { name: name.clone(), result: Err(Error::unknown_partition(name, 0, false)) }
                        }
                    }
                })
                .collect(),
        };
        ClusterMetadata { brokers, controller_id: self.controller.active_controller().unwrap_or(0), topics }
    }

    /// A topic's partitions with their offsets. Only a partition's leader knows its current HW (a follower
    /// learns it a fetch later), so unless `local_only` each remote leader is asked for the partitions it
    /// leads.
    pub async fn describe_topic(
        &self,
        who: &Principal,
        name: &str,
        local_only: bool,
    ) -> Result<TopicDescription, Error> {
        self.authorize(who, Operation::Describe, Resource::topic(name))?;
        self.topic_description(name, local_only).await
    }

    /// [`BrokerCore::describe_topic`] for callers that have been authorized (or the monitoring view).
    pub(super) async fn topic_description(&self, name: &str, local_only: bool) -> Result<TopicDescription, Error> {
        let state = self.metadata.borrow().clone();
        let topic = state.topic(name).ok_or_else(|| Error::unknown_partition(name, 0, false))?;
        let mut partitions: Vec<PartitionDescription> = topic
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let offsets = self.partitions.get(&topic.name, i as u32).map(|partition| partition.offsets());
                PartitionDescription {
                    partition: i as u32,
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    log_start_offset: offsets.as_ref().map_or(0, |o| o.log_start),
                    high_watermark: offsets.as_ref().map_or(0, |o| o.high_watermark),
                    log_end_offset: offsets.as_ref().map_or(0, |o| o.log_end),
                }
            })
            .collect();
        if !local_only {
            let mut leaders: Vec<u32> = partitions.iter().map(|p| p.leader).collect();
            leaders.sort_unstable();
            leaders.dedup();
            for leader in leaders.into_iter().filter(|l| *l != self.config.node_id && *l != NO_LEADER) {
                let Some(remote) = forward::describe_topic_at(self, leader, &topic.name).await else { continue };
                for theirs in remote.into_iter().filter(|p| p.leader == leader) {
                    if let Some(ours) = partitions.get_mut(theirs.partition as usize) {
                        ours.log_start_offset = theirs.log_start_offset;
                        ours.high_watermark = theirs.high_watermark;
                        ours.log_end_offset = theirs.log_end_offset;
                    }
                }
            }
        }
        Ok(TopicDescription { name: topic.name.clone(), partitions, config: topic.config.clone() })
    }

    /// Waits until this node's metadata satisfies `done` and its partitions reflect that metadata, so a
    /// client that creates a topic can produce to it at once.
    async fn wait_local(&self, done: impl Fn(&MetadataState) -> bool) {
        let wait = async {
            let mut metadata = self.metadata.clone();
            let offset = match metadata.wait_for(|s| done(s)).await {
                Ok(state) => state.next_offset,
                Err(_) => return,
            };
            let mut applied = self.partitions.applied();
            let _ = applied.wait_for(|a| *a >= offset).await;
        };
        if tokio::time::timeout(Duration::from_millis(TOPIC_CHANGE_APPLY_WAIT_MS), wait).await.is_err() {
            tracing::warn!("this broker's partitions did not reflect a metadata change in time");
        }
    }

    /// Creates topics through this node's controller: `NotController` for each when it is not the active one.
    pub async fn create_topics_here(&self, topics: &[NewTopic], validate_only: bool) -> TopicOutcomes {
        let mut results = Vec::new();
        for topic in topics {
            let outcome = self
                .controller
                .create_topic(
                    &topic.name,
                    topic.partitions,
                    topic.replication_factor,
                    topic.config.clone(),
                    validate_only,
                )
                .await;
            let result = match outcome {
                Ok(_) => {
                    tracing::info!(topic = %topic.name, validate_only, "created topic");
                    Ok(())
                }
                Err(e) => Err(Error::from_controller(&e)),
            };
            results.push((topic.name.clone(), result));
        }
        results
    }

    /// Deletes topics through this node's controller: `NotController` for each when it is not the active one.
    pub async fn delete_topics_here(&self, names: &[String]) -> TopicOutcomes {
        let mut results = Vec::new();
        for name in names {
            let result = match self.controller.delete_topic(name).await {
                Ok(_) => {
                    tracing::info!(topic = %name, "deleted topic");
                    Ok(())
                }
                Err(e) => Err(Error::from_controller(&e)),
            };
            results.push((name.clone(), result));
        }
        results
    }

    /// Creates topics for a client, through the active controller wherever it runs, and waits until this
    /// broker's partitions reflect them. Reserved names are refused; results come in the request's order.
    /// `who` needs `create` on the cluster or on each topic.
    pub async fn create_topics(&self, who: &Principal, topics: &[NewTopic], validate_only: bool) -> TopicOutcomes {
        let refusal = |name: &str| {
            reserved_name(name).or_else(|| {
                let on_cluster = self.authorized(who, Operation::Create, Resource::cluster());
                (!on_cluster).then(|| self.authorize(who, Operation::Create, Resource::topic(name)).err()).flatten()
            })
        };
        let allowed: Vec<NewTopic> = topics.iter().filter(|t| refusal(&t.name).is_none()).cloned().collect();
        let mut outcomes = if allowed.is_empty() {
            Vec::new()
        } else if self.controller.is_active() {
            self.create_topics_here(&allowed, validate_only).await
        } else {
            forward::create_topics(self, &allowed, validate_only).await
        };
        let created: Vec<String> =
            outcomes.iter().filter(|(_, r)| r.is_ok() && !validate_only).map(|(name, _)| name.clone()).collect();
        if !created.is_empty() {
            self.wait_local(|state| created.iter().all(|name| state.topic(name).is_some())).await;
        }
        outcomes.extend(topics.iter().filter_map(|t| refusal(&t.name).map(|e| (t.name.clone(), Err(e)))));
        outcomes
    }

    /// Deletes topics for a client, through the active controller wherever it runs, and waits until this
    /// broker's partitions are gone. Reserved names are refused.
    /// `who` needs `delete` on each topic.
    pub async fn delete_topics(&self, who: &Principal, names: &[String]) -> TopicOutcomes {
        let refusal = |name: &str| {
            reserved_name(name).or_else(|| self.authorize(who, Operation::Delete, Resource::topic(name)).err())
        };
        let allowed: Vec<String> = names.iter().filter(|n| refusal(n).is_none()).cloned().collect();
        let mut outcomes = if allowed.is_empty() {
            Vec::new()
        } else if self.controller.is_active() {
            self.delete_topics_here(&allowed).await
        } else {
            forward::delete_topics(self, &allowed).await
        };
        let deleted: Vec<String> = outcomes.iter().filter(|(_, r)| r.is_ok()).map(|(name, _)| name.clone()).collect();
        if !deleted.is_empty() {
            self.wait_local(|state| deleted.iter().all(|name| state.topic(name).is_none())).await;
        }
        outcomes.extend(names.iter().filter_map(|n| refusal(n).map(|e| (n.clone(), Err(e)))));
        outcomes
    }

    /// Grows `topic` to `partitions` partitions (never fewer), through the active controller wherever it
    /// runs, and waits until this broker's partitions reflect it; with `validate_only` only checks. Internal
    /// topics are refused (the offsets topic's count maps groups to coordinators). Needs `alter` on the topic.
    pub async fn create_partitions(
        &self,
        who: &Principal,
        topic: &str,
        partitions: u32,
        validate_only: bool,
    ) -> Result<(), Error> {
        if let Some(refused) = reserved_name(topic) {
            return Err(refused);
        }
        self.authorize(who, Operation::Alter, Resource::topic(topic))?;
        let change = ClusterChange::CreatePartitions { topic: topic.to_owned(), partitions, validate_only };
        self.alter_cluster(&change).await?;
        if !validate_only {
            tracing::info!(%who, topic, partitions, "partitions added");
            self.wait_local(|state| state.topic(topic).is_some_and(|t| t.partitions.len() >= partitions as usize))
                .await;
        }
        Ok(())
    }

    /// Needs `describe` on the cluster.
    pub fn describe_cluster(&self, who: &Principal) -> Result<ClusterDescription, Error> {
        self.authorize(who, Operation::Describe, Resource::cluster())?;
        let state = self.metadata.borrow().clone();
        Ok(ClusterDescription {
            brokers: state.brokers.values().cloned().collect(),
            active_controller: self.controller.active_controller().unwrap_or(0),
            voters: self.controller.voters(),
        })
    }

    /// A producer id and epoch from this node's controller (`NotController` when it is not the active one):
    /// a new id for `producer_id` -1, the next epoch of an existing one otherwise.
    pub async fn init_producer_id_here(&self, producer_id: i64, producer_epoch: i16) -> Result<(i64, i16), Error> {
        self.controller.init_producer_id(producer_id, producer_epoch).await.map_err(|e| Error::from_controller(&e))
    }

    /// A producer id and epoch for a client, from the active controller wherever it runs.
    /// An idempotent producer needs `write` on some topic (Kafka's rule).
    pub async fn init_producer_id(
        &self,
        who: &Principal,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<(i64, i16), Error> {
        if !self.authorized_on_any(who, Operation::Write, ResourceType::Topic) {
            return Err(Error::new(
                ErrorKind::ClusterAuthorizationFailed,
                format!("{who} is not authorized to write any topic, so it may not be an idempotent producer"),
            ));
        }
        if self.controller.is_active() {
            return self.init_producer_id_here(producer_id, producer_epoch).await;
        }
        forward::init_producer_id(self, producer_id, producer_epoch).await
    }
}
