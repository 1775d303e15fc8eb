//! `Admin`: create, delete, list and describe topics, describe the cluster, and list, describe and reset
//! consumer groups.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_proto::v1;
use serde::Serialize;

use crate::cluster::Cluster;
use crate::config::ClientConfig;
use crate::consumer::Consumer;
use crate::error::{BrokerError, Error, Result};
use crate::group::GroupClient;
use crate::types::TopicPartition;

/// One topic in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u32,
}

/// A topic's partitions with their replicas and offsets, and its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicDescription {
    pub name: String,
    pub partitions: Vec<PartitionDescription>,
    pub config: BTreeMap<String, String>,
}

/// One partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionDescription {
    pub partition: u32,
    /// Broker id of the leader.
    pub leader: u32,
    pub leader_epoch: u32,
    pub replicas: Vec<u32>,
    /// The in-sync replicas.
    pub isr: Vec<u32>,
    pub log_start_offset: u64,
    /// Offsets below this are committed and visible to consumers.
    pub high_watermark: u64,
    pub log_end_offset: u64,
}

/// One broker's traffic counters since it started, as `Admin::broker_stats` reads them; two readings give
/// rates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrokerStats {
    pub broker: u32,
    /// The broker's clock when it read its counters.
    pub now_ms: i64,
    pub topics: Vec<TopicTraffic>,
    /// Per operation (`produce`, `fetch`, `list_offsets`): requests answered and their latencies' sum.
    pub latencies: Vec<(String, u64, f64)>,
    pub disk_bytes: u64,
    pub leaderships: u32,
}

/// One topic's traffic through one broker since it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicTraffic {
    pub topic: String,
    pub produced_bytes: u64,
    pub produced_records: u64,
    pub fetched_bytes: u64,
}

/// One consumer group in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupSummary {
    pub group: String,
    /// `Empty` (no members), `Stable` or `Rebalancing` (a partition waits for its previous owner).
    pub state: String,
    pub generation: u32,
    pub members: u32,
}

/// A consumer group: members, their assignments, and committed offsets with lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupDescription {
    pub group: String,
    /// `Empty`, `Stable`, `Rebalancing`, or `Dead` for a group the cluster has no state for.
    pub state: String,
    pub generation: u32,
    pub members: Vec<GroupMemberDescription>,
    pub offsets: Vec<GroupOffset>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupMemberDescription {
    pub member_id: String,
    pub client_id: String,
    /// The member's assignment in the current generation.
    pub partitions: Vec<GroupPartitionRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GroupPartitionRef {
    pub topic: String,
    pub partition: u32,
}

/// A partition a group reads or has read: its committed offset, the partition's high watermark (the end a
/// consumer can read to) and the difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: u32,
    /// `None` for an assigned partition without a committed offset yet.
    pub committed_offset: Option<u64>,
    pub log_end_offset: u64,
    pub lag: Option<u64>,
}

/// Where [`Admin::reset_group_offsets`] moves a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetResetTarget {
    Earliest,
    Latest,
    /// This offset, held within each partition's retained range.
    Offset(u64),
}

/// A broker as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerStatus {
    pub id: u32,
    pub address: String,
    /// A fenced broker missed its session timeout and leads nothing until it registers again.
    pub fenced: bool,
    pub broker_epoch: u64,
    /// Where Kafka clients reach it (`None` without a Kafka listener).
    pub kafka_address: Option<String>,
    /// Drained ([`Admin::drain_broker`], or stopping): it leads only partitions no other replica can.
    pub draining: bool,
    /// In controlled shutdown: out of every ISR until it registers again.
    pub shutting_down: bool,
}

impl BrokerStatus {
    /// `fenced`, `stopping` (controlled shutdown), `draining` or `alive`.
    pub fn state(&self) -> &'static str {
        match (self.fenced, self.shutting_down, self.draining) {
            (true, _, _) => "fenced",
            (false, true, _) => "stopping",
            (false, false, true) => "draining",
            (false, false, false) => "alive",
        }
    }
}

/// What [`Admin::drain_broker`] could not move.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DrainOutcome {
    /// Leaderships that stay for now: another replica is alive but not in sync yet (drain again later).
    pub stuck: Vec<TopicPartition>,
    /// Leaderships that cannot move: no other replica is alive.
    pub unmovable: Vec<TopicPartition>,
}

/// One partition's outcome in [`Admin::elect_leaders`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaderElection {
    pub topic: String,
    pub partition: u32,
    /// The preferred leader (the first replica).
    pub preferred: u32,
    /// `elected`, `already-preferred` or `not-eligible`.
    pub outcome: String,
    /// Why the preferred replica may not lead, for `not-eligible`.
    pub reason: String,
}

/// The brokers and the controller quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    pub brokers: Vec<BrokerStatus>,
    /// Node id of the active controller (the Raft leader of the metadata log).
    pub active_controller: u32,
    /// Node ids of the controller quorum's voters.
    pub voters: Vec<u32>,
}

/// Administrative operations on topics and the cluster.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> rill_client::Result<()> {
/// use rill_client::{Admin, ClientConfig};
///
/// let admin = Admin::connect(ClientConfig::new("127.0.0.1:9400")?).await?;
/// admin.create_topic("demo", 3, None, Default::default()).await?;
/// for topic in admin.list_topics().await? {
///     println!("{} ({} partitions)", topic.name, topic.partitions);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Admin {
    pub(crate) cluster: Arc<Cluster>,
}

impl Admin {
    /// Connects to any reachable bootstrap broker.
    ///
    /// # Errors
    ///
    /// [`Error::NoBrokerReachable`] if no bootstrap address answers.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future drops the half-made connection.
    pub async fn connect(config: ClientConfig) -> Result<Admin> {
        Ok(Admin { cluster: Cluster::connect(config).await? })
    }

    /// Creates a topic. `replication_factor` `None` takes the broker's default.
    ///
    /// # Errors
    ///
    /// A [`Error::Broker`] with `TOPIC_ALREADY_EXISTS`, `INVALID_PARTITIONS`, `INVALID_REPLICATION_FACTOR`,
    /// `INVALID_CONFIG` or `INVALID_TOPIC_NAME`, carrying the broker's message.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the topic may or may not have been created when the future is dropped.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: Option<u32>,
        config: BTreeMap<String, String>,
    ) -> Result<()> {
        let request = v1::CreateTopicsRequest {
            topics: vec![v1::NewTopic {
                name: name.to_owned(),
                partitions,
                replication_factor: replication_factor.unwrap_or(0),
                config: config.into_iter().collect(),
            }],
            validate_only: false,
        };
        let response = self
            .retrying(|| {
                self.cluster.call_any(|mut client| {
                    let request = self.cluster.request(request.clone(), Duration::ZERO);
                    async move { client.create_topics(request).await.map(tonic::Response::into_inner) }
                })
            })
            .await?;
        topic_result(response.results, name, Error::Broker)?;
        // The new topic should be visible to this client's next call without waiting for the metadata to age.
        let _ = self.cluster.refresh(&[]).await;
        Ok(())
    }

    /// Deletes a topic and all its records.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTopic`] if there is no such topic; other broker errors as [`Error::Broker`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the topic may or may not have been deleted when the future is dropped.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let request = v1::DeleteTopicsRequest { names: vec![name.to_owned()] };
        let response = self
            .retrying(|| {
                self.cluster.call_any(|mut client| {
                    let request = self.cluster.request(request.clone(), Duration::ZERO);
                    async move { client.delete_topics(request).await.map(tonic::Response::into_inner) }
                })
            })
            .await?;
        topic_result(response.results, name, |e| Error::from_broker(e, name))
    }

    /// Lists every topic, sorted by name.
    ///
    /// # Errors
    ///
    /// [`Error::NoBrokerReachable`] or a broker error from the metadata request.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn list_topics(&self) -> Result<Vec<TopicSummary>> {
        let response = self
            .retrying(|| {
                self.cluster.call_any(|mut client| {
                    let request = self.cluster.request(v1::MetadataRequest { topics: Vec::new() }, Duration::ZERO);
                    async move { client.metadata(request).await.map(tonic::Response::into_inner) }
                })
            })
            .await?;
        let mut topics: Vec<TopicSummary> = response
            .topics
            .into_iter()
            .filter(|t| BrokerError::from_proto(t.error.as_ref()).is_none())
            .map(|t| TopicSummary {
                name: t.name,
                partitions: t.partitions.len() as u32,
                replication_factor: t.replication_factor,
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Describes a topic: per partition its leader, epoch, replicas, ISR and offsets; and its configuration.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTopic`] if there is no such topic.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let request = v1::DescribeTopicRequest { name: name.to_owned(), local_only: false };
        let response = self
            .retrying(|| {
                self.cluster.call_any(|mut client| {
                    let request = self.cluster.request(request.clone(), Duration::ZERO);
                    async move { client.describe_topic(request).await.map(tonic::Response::into_inner) }
                })
            })
            .await?;
        if let Some(e) = BrokerError::from_proto(response.error.as_ref()) {
            return Err(Error::from_broker(e, name));
        }
        let mut partitions: Vec<PartitionDescription> = response
            .partitions
            .into_iter()
            .map(|p| PartitionDescription {
                partition: p.partition,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas,
                isr: p.isr,
                log_start_offset: p.log_start_offset,
                high_watermark: p.high_watermark,
                log_end_offset: p.log_end_offset,
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        Ok(TopicDescription { name: response.name, partitions, config: response.config.into_iter().collect() })
    }

    /// Describes the brokers and the controller quorum.
    ///
    /// # Errors
    ///
    /// [`Error::NoBrokerReachable`] if no broker answers.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let response = self
            .retrying(|| {
                self.cluster.call_any(|mut client| {
                    let request = self.cluster.request(v1::DescribeClusterRequest {}, Duration::ZERO);
                    async move { client.describe_cluster(request).await.map(tonic::Response::into_inner) }
                })
            })
            .await?;
        if let Some(e) = BrokerError::from_proto(response.error.as_ref()) {
            return Err(Error::Broker(e));
        }
        let mut brokers: Vec<BrokerStatus> = response
            .brokers
            .into_iter()
            .map(|b| BrokerStatus {
                id: b.id,
                address: b.address,
                fenced: b.fenced,
                broker_epoch: b.broker_epoch,
                kafka_address: Some(b.kafka_address).filter(|a| !a.is_empty()),
                draining: b.draining,
                shutting_down: b.shutting_down,
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        Ok(ClusterDescription { brokers, active_controller: response.active_controller, voters: response.voters })
    }

    /// Moves the leaderships of broker `broker_id` to other in-sync replicas, and keeps it from being elected
    /// while another replica can lead; with `cancel`, lets it lead again (leaderships come back with
    /// [`Admin::elect_leaders`]). The broker keeps replicating. Needs `alter` on the cluster.
    ///
    /// # Errors
    ///
    /// [`Error::Broker`] with `RESOURCE_NOT_FOUND` for an unknown broker, `INVALID_REQUEST` for a fenced or
    /// stopping one, or an authorization error.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the drain may or may not have been committed when the future is dropped.
    pub async fn drain_broker(&self, broker_id: u32, cancel: bool) -> Result<DrainOutcome> {
        let request = v1::DrainBrokerRequest { broker_id, cancel };
        let response = self
            .retrying(|| {
                self.cluster.call_any(|mut client| {
                    let request = self.cluster.request(request, Duration::ZERO);
                    async move { client.drain_broker(request).await.map(tonic::Response::into_inner) }
                })
            })
            .await?;
        if let Some(e) = BrokerError::from_proto(response.error.as_ref()) {
            return Err(Error::Broker(e));
        }
        let partitions = |list: Vec<v1::PartitionRef>| {
            list.into_iter().map(|p| TopicPartition { topic: p.topic, partition: p.partition }).collect()
        };
        Ok(DrainOutcome { stuck: partitions(response.stuck), unmovable: partitions(response.unmovable) })
    }

    /// Preferred-leader election: the first replica of each partition of `topics` (every topic when empty)
    /// leads again where it is in sync, alive and not drained. Needs `alter` on the cluster.
    ///
    /// # Errors
    ///
    /// [`Error::Broker`] with `UNKNOWN_TOPIC_OR_PARTITION` naming a topic that does not exist, or an
    /// authorization error.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the election may or may not have been committed when the future is dropped.
    pub async fn elect_leaders(&self, topics: &[String]) -> Result<Vec<LeaderElection>> {
        let request = v1::ElectLeadersRequest { topics: topics.to_vec() };
        let response = self
            .retrying(|| {
                self.cluster.call_any(|mut client| {
                    let request = self.cluster.request(request.clone(), Duration::ZERO);
                    async move { client.elect_leaders(request).await.map(tonic::Response::into_inner) }
                })
            })
            .await?;
        if let Some(e) = BrokerError::from_proto(response.error.as_ref()) {
            return Err(Error::Broker(e));
        }
        let results = response.results.into_iter().map(|r| LeaderElection {
            topic: r.topic,
            partition: r.partition,
            preferred: r.preferred,
            outcome: r.outcome,
            reason: r.reason,
        });
        Ok(results.collect())
    }

    /// Sets (`set`) and removes (`delete`, back to the broker default) config keys of topic `topic`; every
    /// broker applies them without a restart. Needs `alter` on the topic. Returns the topic's overrides now.
    ///
    /// # Errors
    ///
    /// [`Error::Broker`] with `INVALID_CONFIG` naming an unknown key or a bad value,
    /// `UNKNOWN_TOPIC_OR_PARTITION`, or an authorization error.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the change may or may not have been committed when the future is dropped.
    pub async fn alter_topic_config(
        &self,
        topic: &str,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> Result<BTreeMap<String, String>> {
        self.alter_configs(v1::alter_configs_request::Resource::Topic(topic.to_owned()), set, delete).await
    }

    /// Sets and removes broker `broker_id`'s dynamic topic defaults (topic config keys, over the defaults
    /// it started with, for every topic without an override), applied without a restart. Needs `alter` on
    /// the cluster. Returns the broker's dynamic defaults now.
    ///
    /// # Errors
    ///
    /// As [`Admin::alter_topic_config`], and `RESOURCE_NOT_FOUND` for an unknown broker.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe.
    pub async fn alter_broker_config(
        &self,
        broker_id: u32,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> Result<BTreeMap<String, String>> {
        self.alter_configs(v1::alter_configs_request::Resource::BrokerId(broker_id), set, delete).await
    }

    /// Grows `topic` to `partitions` partitions; the new ones get the topic's replication factor and are
    /// spread over the live brokers like a new topic's. Existing partitions and their records stay as they
    /// are, but keyed records map to partitions by the new count from then on (a key's later records may
    /// land in another partition than its earlier ones). Producers and consumers see the new partitions at
    /// their next metadata refresh (`metadata_max_age_ms`). Needs `alter` on the topic. With
    /// `validate_only` nothing changes. Returns the partition count afterwards.
    ///
    /// # Errors
    ///
    /// [`Error::Broker`] with `INVALID_PARTITIONS` when `partitions` is not above the current count or above
    /// the limit, `INVALID_REPLICATION_FACTOR` when fewer brokers are alive than the topic has replicas,
    /// `UNKNOWN_TOPIC_OR_PARTITION`, `INVALID_TOPIC_NAME` for an internal topic, or an authorization error.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the partitions may or may not have been added when the future is dropped.
    pub async fn create_partitions(&self, topic: &str, partitions: u32, validate_only: bool) -> Result<u32> {
        let request = v1::CreatePartitionsRequest { topic: topic.to_owned(), partitions, validate_only };
        let response = self
            .retrying(|| {
                self.cluster.call_any(|mut client| {
                    let request = self.cluster.request(request.clone(), Duration::ZERO);
                    async move { client.create_partitions(request).await.map(tonic::Response::into_inner) }
                })
            })
            .await?;
        if let Some(e) = BrokerError::from_proto(response.error.as_ref()) {
            return Err(Error::Broker(e));
        }
        Ok(response.partitions)
    }

    async fn alter_configs(
        &self,
        resource: v1::alter_configs_request::Resource,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> Result<BTreeMap<String, String>> {
        let request = v1::AlterConfigsRequest { resource: Some(resource), set: set.into_iter().collect(), delete };
        let response = self
            .retrying(|| {
                self.cluster.call_any(|mut client| {
                    let request = self.cluster.request(request.clone(), Duration::ZERO);
                    async move { client.alter_configs(request).await.map(tonic::Response::into_inner) }
                })
            })
            .await?;
        if let Some(e) = BrokerError::from_proto(response.error.as_ref()) {
            return Err(Error::Broker(e));
        }
        Ok(response.config.into_iter().collect())
    }

    /// Each registered broker's traffic counters, asked of the broker itself; a broker that does not answer
    /// is reported with its error.
    ///
    /// # Errors
    ///
    /// Transport errors if no broker answers the metadata request.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn broker_stats(&self) -> Result<Vec<(u32, Result<BrokerStats>)>> {
        let metadata = self.cluster.refresh(&[]).await?;
        let mut stats = Vec::new();
        for (id, address) in &metadata.brokers {
            let request = self.cluster.request(v1::BrokerStatsRequest {}, Duration::ZERO);
            let answer = match self.cluster.client(address) {
                Ok(mut client) => {
                    client.broker_stats(request).await.map_err(|s| Error::from_status(address, &s)).and_then(|r| {
                        let r = r.into_inner();
                        match BrokerError::from_proto(r.error.as_ref()) {
                            Some(e) => Err(Error::Broker(e)),
                            None => Ok(broker_stats_from(r)),
                        }
                    })
                }
                Err(e) => Err(e),
            };
            stats.push((*id, answer));
        }
        Ok(stats)
    }

    /// Every consumer group of the cluster (each broker lists those it coordinates).
    ///
    /// # Errors
    ///
    /// Transport errors if no broker answers.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>> {
        let metadata = self.cluster.refresh(&[]).await?;
        let mut groups: BTreeMap<String, GroupSummary> = BTreeMap::new();
        let mut answered = 0;
        let mut last_error = None;
        for address in metadata.brokers.values() {
            let request = self.cluster.request(v1::ListGroupsRequest {}, Duration::ZERO);
            let answer = match self.cluster.client(address) {
                Ok(mut client) => client.list_groups(request).await.map_err(|s| Error::from_status(address, &s)),
                Err(e) => Err(e),
            };
            match answer {
                Ok(response) => {
                    answered += 1;
                    for g in response.into_inner().groups {
                        let summary = GroupSummary {
                            group: g.group_id,
                            state: g.state,
                            generation: g.generation,
                            members: g.members,
                        };
                        // During a coordinator move two brokers may list a group: the newer generation wins.
                        if groups.get(&summary.group).is_none_or(|known| known.generation < summary.generation) {
                            groups.insert(summary.group.clone(), summary);
                        }
                    }
                }
                Err(e) => last_error = Some(e),
            }
        }
        match (answered, last_error) {
            (0, Some(e)) => Err(e),
            _ => Ok(groups.into_values().collect()),
        }
    }

    /// A group's members and assignments, and per partition its committed offset, the partition's high
    /// watermark and the lag between them.
    ///
    /// # Errors
    ///
    /// Transport errors or the coordinator's refusal after the request timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupDescription> {
        let group = GroupClient::new(self.cluster.clone(), group_id);
        let request = v1::DescribeGroupRequest { group_id: group_id.to_owned() };
        let response = group
            .call(|mut c| {
                let request = self.cluster.request(request.clone(), Duration::ZERO);
                async move { c.describe_group(request).await }
            })
            .await?;
        let mut members: Vec<GroupMemberDescription> = response
            .members
            .into_iter()
            .map(|m| {
                let mut partitions: Vec<GroupPartitionRef> = m
                    .partitions
                    .into_iter()
                    .map(|p| GroupPartitionRef { topic: p.topic, partition: p.partition })
                    .collect();
                partitions.sort();
                GroupMemberDescription { member_id: m.member_id, client_id: m.client_id, partitions }
            })
            .collect();
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        let mut committed: BTreeMap<TopicPartition, Option<u64>> =
            response.offsets.into_iter().map(|o| (TopicPartition::new(o.topic, o.partition), Some(o.offset))).collect();
        for m in &members {
            for p in &m.partitions {
                committed.entry(TopicPartition::new(p.topic.clone(), p.partition)).or_insert(None);
            }
        }
        // Partitions of deleted topics have no end any more: they are left out.
        let mut topics: Vec<String> = committed.keys().map(|tp| tp.topic.clone()).collect();
        topics.dedup();
        let metadata = self.cluster.refresh(&topics).await?;
        committed.retain(|tp, _| metadata.check_partition(tp).is_ok());
        let partitions: Vec<TopicPartition> = committed.keys().cloned().collect();
        let ends = Consumer::list_offsets_of(&self.cluster, &partitions, v1::OffsetSpec::Latest, -1).await?;
        let offsets = committed
            .into_iter()
            .map(|(tp, committed_offset)| {
                let log_end_offset = ends.get(&tp).copied().unwrap_or(0);
                GroupOffset {
                    lag: committed_offset.map(|c| log_end_offset.saturating_sub(c)),
                    topic: tp.topic,
                    partition: tp.partition,
                    committed_offset,
                    log_end_offset,
                }
            })
            .collect();
        Ok(GroupDescription {
            group: response.group_id,
            state: response.state,
            generation: response.generation,
            members,
            offsets,
        })
    }

    /// Sets a group's committed offsets for every partition of `topic`; refused while the group has members.
    /// Returns the offsets set.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTopic`]; a `NON_EMPTY_GROUP` broker error while the group has members.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the offsets may or may not have been reset when the future is dropped.
    pub async fn reset_group_offsets(
        &self,
        group_id: &str,
        topic: &str,
        target: OffsetResetTarget,
    ) -> Result<BTreeMap<TopicPartition, u64>> {
        let count = self.cluster.partition_count(topic).await?;
        let partitions: Vec<TopicPartition> = (0..count).map(|p| TopicPartition::new(topic, p)).collect();
        let earliest = Consumer::list_offsets_of(&self.cluster, &partitions, v1::OffsetSpec::Earliest, -1).await?;
        let latest = Consumer::list_offsets_of(&self.cluster, &partitions, v1::OffsetSpec::Latest, -1).await?;
        let offsets: BTreeMap<TopicPartition, u64> = partitions
            .into_iter()
            .map(|tp| {
                let (low, high) = (earliest[&tp], latest[&tp]);
                let offset = match target {
                    OffsetResetTarget::Earliest => low,
                    OffsetResetTarget::Latest => high,
                    OffsetResetTarget::Offset(n) => n.clamp(low, high.max(low)),
                };
                (tp, offset)
            })
            .collect();
        let request = v1::ResetOffsetsRequest {
            group_id: group_id.to_owned(),
            offsets: crate::group::offset_commits(&offsets, ""),
        };
        let group = GroupClient::new(self.cluster.clone(), group_id);
        group
            .call(|mut c| {
                let request = self.cluster.request(request.clone(), Duration::ZERO);
                async move { c.reset_offsets(request).await }
            })
            .await?;
        Ok(offsets)
    }

    /// Runs `attempt` until it succeeds, fails for good, or the request timeout has passed; a broker that is
    /// restarting or an election in progress should not fail an admin command.
    pub(crate) async fn retrying<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let deadline = Instant::now() + self.cluster.config().request_timeout();
        loop {
            match attempt().await {
                Err(e) if e.is_retriable() && Instant::now() < deadline => {
                    tracing::debug!(error = %e, "retrying admin request");
                    self.cluster.backoff().await;
                }
                other => return other,
            }
        }
    }
}

/// Finds the result for `name` in a per-topic answer and maps its error.
fn topic_result(results: Vec<v1::TopicResult>, name: &str, map: impl FnOnce(BrokerError) -> Error) -> Result<()> {
    let result = results
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| Error::Protocol(format!("no result for topic '{name}'")))?;
    match BrokerError::from_proto(result.error.as_ref()) {
        None => Ok(()),
        Some(e) => Err(map(e)),
    }
}

fn broker_stats_from(r: v1::BrokerStatsResponse) -> BrokerStats {
    BrokerStats {
        broker: r.node_id,
        now_ms: r.now_ms,
        topics: r
            .topics
            .into_iter()
            .map(|t| TopicTraffic {
                topic: t.topic,
                produced_bytes: t.produced_bytes,
                produced_records: t.produced_records,
                fetched_bytes: t.fetched_bytes,
            })
            .collect(),
        latencies: r.apis.into_iter().map(|a| (a.api, a.count, a.sum_seconds)).collect(),
        disk_bytes: r.disk_bytes,
        leaderships: r.leaderships,
    }
}
