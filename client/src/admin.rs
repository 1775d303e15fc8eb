//! `Admin`: create, delete, list and describe topics, and describe the cluster.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_proto::v1;
use serde::Serialize;

use crate::cluster::Cluster;
use crate::config::ClientConfig;
use crate::error::{BrokerError, Error, Result};

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

/// A broker as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerStatus {
    pub id: u32,
    pub address: String,
    /// A fenced broker missed its session timeout and leads nothing until it registers again.
    pub fenced: bool,
    pub broker_epoch: u64,
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
    cluster: Arc<Cluster>,
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
        let mut brokers: Vec<BrokerStatus> = response
            .brokers
            .into_iter()
            .map(|b| BrokerStatus { id: b.id, address: b.address, fenced: b.fenced, broker_epoch: b.broker_epoch })
            .collect();
        brokers.sort_by_key(|b| b.id);
        Ok(ClusterDescription { brokers, active_controller: response.active_controller, voters: response.voters })
    }

    /// Runs `attempt` until it succeeds, fails for good, or the request timeout has passed; a broker that is
    /// restarting or an election in progress should not fail an admin command.
    async fn retrying<T, F, Fut>(&self, attempt: F) -> Result<T>
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
