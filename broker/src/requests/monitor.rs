//! The monitoring view: what `/metrics` and the web console show, read from the broker's state. It is not a
//! client operation: the HTTP listener serves it read-only to whoever can reach it (it binds to loopback by
//! default), as Kafka's JMX metrics are, so it is not checked against ACLs; it changes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{BrokerCore, Error};
use crate::clock::now_ms;
use crate::metadata::{BrokerRegistration, NO_LEADER};
use crate::security::{Operation, Principal, Resource};

/// How long the view waits for another broker's answer (a partition's HW, for group lag).
const REMOTE_WAIT_MS: u64 = 2_000;

/// A partition hosted here, as this broker's replica sees it.
#[derive(Debug, Clone)]
pub struct HostedPartition {
    pub topic: String,
    pub partition: u32,
    pub is_leader: bool,
    pub leader_epoch: Option<u32>,
    pub log_start: u64,
    pub high_watermark: u64,
    pub log_end: u64,
    pub size_bytes: u64,
    /// Offline (storage failed, topic deleted, shutting down).
    pub offline: bool,
    /// When leading: each follower's id, records behind (unknown before its first fetch) and ms since it was
    /// last caught up.
    pub followers: Vec<(u32, Option<u64>, u64)>,
}

/// A partition as the committed metadata describes it.
#[derive(Debug, Clone)]
pub struct PartitionSummary {
    pub topic: String,
    pub partition: u32,
    pub leader: Option<u32>,
    pub leader_epoch: u32,
    pub replicas: Vec<u32>,
    pub isr: Vec<u32>,
    pub min_insync_replicas: usize,
}

impl PartitionSummary {
    pub fn under_replicated(&self) -> bool {
        self.isr.len() < self.replicas.len()
    }

    pub fn under_min_isr(&self) -> bool {
        self.isr.len() < self.min_insync_replicas
    }
}

/// One committed offset of a group coordinated here, with the lag behind its partition's HW.
#[derive(Debug, Clone)]
pub struct GroupPartitionLag {
    pub topic: String,
    pub partition: u32,
    pub committed: u64,
    /// The partition's HW from its leader, when the leader answered.
    pub high_watermark: Option<u64>,
}

impl GroupPartitionLag {
    /// Records between the committed offset and the HW (what `rill group describe` calls lag).
    pub fn lag(&self) -> Option<u64> {
        self.high_watermark.map(|hw| hw.saturating_sub(self.committed))
    }
}

/// A group coordinated here.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub group_id: String,
    pub state: String,
    pub generation: u32,
    pub members: usize,
    pub partitions: Vec<GroupPartitionLag>,
}

/// This broker's part in the controller quorum.
#[derive(Debug, Clone)]
pub struct ControllerView {
    pub node_id: u32,
    pub active_controller: Option<u32>,
    pub is_active: bool,
    pub term: u64,
    pub voters: Vec<u32>,
    /// Offset of the metadata this broker's partitions reflect.
    pub applied_offset: u64,
}

/// One topic's traffic through this broker since it started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopicTraffic {
    pub topic: String,
    pub produced_bytes: u64,
    pub produced_records: u64,
    pub fetched_bytes: u64,
}

/// This broker's counters since it started, for rates taken between two readings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerStats {
    pub node_id: u32,
    pub now_ms: i64,
    pub topics: Vec<TopicTraffic>,
    /// Per operation: requests answered and the sum of their latencies in seconds.
    pub latencies: Vec<(&'static str, u64, f64)>,
    pub disk_bytes: u64,
    pub leaderships: u32,
}

/// The operations whose latency `BrokerStats` reports.
const STATS_APIS: [&str; 3] = ["produce", "fetch", "list_offsets"];

impl BrokerCore {
    /// This broker's traffic counters; needs `describe` on the cluster.
    pub fn broker_stats(&self, who: &Principal) -> Result<BrokerStats, Error> {
        self.authorize(who, Operation::Describe, Resource::cluster())?;
        Ok(self.stats())
    }

    /// [`BrokerCore::broker_stats`] for the monitoring view.
    pub fn stats(&self) -> BrokerStats {
        let hosted = self.hosted_partitions();
        let mut topics: Vec<&str> = hosted.iter().map(|p| p.topic.as_str()).collect();
        topics.dedup();
        let topics = topics
            .into_iter()
            .map(|topic| {
                let (produced_bytes, produced_records, fetched_bytes) = self.metrics.topic_totals(topic);
                TopicTraffic { topic: topic.to_string(), produced_bytes, produced_records, fetched_bytes }
            })
            .collect();
        BrokerStats {
            node_id: self.config.node_id,
            now_ms: now_ms(),
            topics,
            latencies: STATS_APIS
                .iter()
                .map(|api| {
                    let (count, sum) = self.metrics.latency_totals(api);
                    (*api, count, sum)
                })
                .collect(),
            disk_bytes: hosted.iter().map(|p| p.size_bytes).sum(),
            leaderships: hosted.iter().filter(|p| p.is_leader).count() as u32,
        }
    }

    /// The partitions hosted here, sorted by topic and partition.
    pub fn hosted_partitions(&self) -> Vec<HostedPartition> {
        let now = now_ms();
        let mut hosted: Vec<HostedPartition> = self
            .partitions
            .all()
            .into_iter()
            .map(|p| {
                let offsets = p.offsets();
                HostedPartition {
                    topic: p.topic.clone(),
                    partition: p.index,
                    is_leader: offsets.is_leader,
                    leader_epoch: offsets.leader_epoch,
                    log_start: offsets.log_start,
                    high_watermark: offsets.high_watermark,
                    log_end: offsets.log_end,
                    size_bytes: p.size_bytes(),
                    offline: offsets.failed.is_some(),
                    followers: if offsets.is_leader { p.follower_lags(now) } else { Vec::new() },
                }
            })
            .collect();
        hosted.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        hosted
    }

    /// Every partition of the cluster as the committed metadata has it.
    pub fn partition_summaries(&self) -> Vec<PartitionSummary> {
        let state = self.metadata.borrow().clone();
        let mut summaries = Vec::new();
        for topic in state.topics.values() {
            let min_isr = crate::topic_config::TopicConfig::parse(
                &topic.config,
                &self.config.topic_defaults,
                self.config.batch_bytes_max,
            )
            .map_or(1, |c| c.min_insync_replicas as usize);
            for (i, p) in topic.partitions.iter().enumerate() {
                summaries.push(PartitionSummary {
                    topic: topic.name.clone(),
                    partition: i as u32,
                    leader: (p.leader != NO_LEADER).then_some(p.leader),
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    min_insync_replicas: min_isr,
                });
            }
        }
        summaries
    }

    /// The registered brokers.
    pub fn brokers(&self) -> Vec<BrokerRegistration> {
        self.metadata.borrow().brokers.values().cloned().collect()
    }

    pub fn controller_view(&self) -> ControllerView {
        let status = self.controller.quorum_status();
        ControllerView {
            node_id: self.config.node_id,
            active_controller: status.leader_id.and_then(|id| u32::try_from(id).ok()),
            is_active: self.controller.is_active(),
            term: status.term,
            voters: status.voters.keys().filter_map(|id| u32::try_from(*id).ok()).collect(),
            applied_offset: self.partitions.applied_offset(),
        }
    }

    /// Every topic with its partitions' offsets from their leaders (a topic whose leaders do not answer in
    /// time is left out).
    pub async fn topic_views(&self) -> Vec<super::TopicDescription> {
        let names: Vec<String> = self.metadata.borrow().topics.keys().cloned().collect();
        let mut views = Vec::new();
        for name in names {
            let wait = Duration::from_millis(REMOTE_WAIT_MS);
            if let Ok(Ok(view)) = tokio::time::timeout(wait, self.topic_description(&name, false)).await {
                views.push(view);
            }
        }
        views
    }

    /// The groups coordinated here with their committed offsets and lag. HWs come from each partition's
    /// leader, as `rill group describe` gets them; a leader that does not answer in time leaves the lag
    /// unknown.
    pub async fn group_views(&self) -> Vec<GroupView> {
        let summaries = self.list_groups_unchecked().await;
        let mut views = Vec::new();
        let mut high_watermarks: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for summary in summaries {
            let Ok(description) = self.group_description(&summary.group_id).await else { continue };
            let mut partitions = Vec::new();
            for (tp, committed) in description.offsets {
                if !high_watermarks.contains_key(&tp.topic) {
                    let described = tokio::time::timeout(
                        Duration::from_millis(REMOTE_WAIT_MS),
                        self.topic_description(&tp.topic, false),
                    )
                    .await;
                    let hws = match described {
                        Ok(Ok(d)) => d
                            .partitions
                            .iter()
                            .map(|p| if p.leader == NO_LEADER { u64::MAX } else { p.high_watermark })
                            .collect(),
                        _ => Vec::new(),
                    };
                    high_watermarks.insert(tp.topic.clone(), hws);
                }
                let high_watermark =
                    high_watermarks[&tp.topic].get(tp.partition as usize).copied().filter(|hw| *hw != u64::MAX);
                partitions.push(GroupPartitionLag {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    committed: committed.offset,
                    high_watermark,
                });
            }
            views.push(GroupView {
                group_id: description.group_id,
                state: description.state,
                generation: description.generation,
                members: description.members.len(),
                partitions,
            });
        }
        views
    }
}
