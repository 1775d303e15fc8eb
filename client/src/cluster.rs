//! The client's view of the cluster: bootstrap, one gRPC channel per broker address, and cached metadata
//! (brokers, partition leaders) that is refreshed when a broker says the view is stale.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rill_proto::v1::rill_client::RillClient;
use rill_proto::v1::{InitProducerIdRequest, MetadataRequest, MetadataResponse};
use tonic::transport::{Channel, Endpoint};

use crate::config::ClientConfig;
use crate::error::{BrokerError, Error, ErrorCode, Result};
use crate::types::TopicPartition;

/// Largest gRPC message the client accepts. A fetch asks for less, but the broker always returns at least one
/// whole batch, which may be larger than the fetch limit; refusing it would stall the consumer.
const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Largest HTTP/2 DATA frame brokers may send this client (the protocol's default is 16 KiB), so a fetch
/// response crosses in few frames.
const HTTP2_FRAME_BYTES_MAX: u32 = 1 << 20;

/// One partition as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionMeta {
    pub partition: u32,
    pub leader: u32,
    pub leader_epoch: u32,
    pub replicas: Vec<u32>,
    pub isr: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicMeta {
    pub partitions: Vec<PartitionMeta>,
}

/// A snapshot of the cluster metadata. Replaced as a whole on refresh, so readers never see a mix.
#[derive(Debug, Clone, Default)]
pub(crate) struct Metadata {
    pub brokers: BTreeMap<u32, String>,
    pub topics: HashMap<String, TopicMeta, foldhash::fast::RandomState>,
    fetched_at: Option<Instant>,
}

impl Metadata {
    pub fn partition_count(&self, topic: &str) -> Option<u32> {
        self.topics.get(topic).map(|t| t.partitions.len() as u32)
    }

    /// The leader's broker id and address, if the partition has a leader this snapshot can reach.
    pub fn leader(&self, tp: &TopicPartition) -> Option<(u32, String)> {
        let topic = self.topics.get(&tp.topic)?;
        let partition = topic.partitions.iter().find(|p| p.partition == tp.partition)?;
        let address = self.brokers.get(&partition.leader)?;
        Some((partition.leader, address.clone()))
    }

    /// Checks that the partition exists.
    pub fn check_partition(&self, tp: &TopicPartition) -> Result<()> {
        let count = self.partition_count(&tp.topic).ok_or_else(|| Error::UnknownTopic(tp.topic.clone()))?;
        if tp.partition >= count {
            return Err(Error::UnknownPartition {
                topic: tp.topic.clone(),
                partition: tp.partition,
                partitions: count,
            });
        }
        Ok(())
    }
}

/// Shared connection state of one client object (Admin, Producer or Consumer).
pub(crate) struct Cluster {
    config: ClientConfig,
    /// Keyed by address rather than broker id: a broker that moves gets a new channel, and bootstrap addresses
    /// share the channel of the broker they turn out to be.
    channels: Mutex<HashMap<String, Channel>>,
    metadata: RwLock<Arc<Metadata>>,
    /// Serialises refreshes so that a burst of NOT_LEADER answers causes one Metadata call, not one each.
    refresh_lock: tokio::sync::Mutex<()>,
}

impl Cluster {
    /// Connects to any reachable bootstrap broker and loads the metadata of every topic.
    pub async fn connect(config: ClientConfig) -> Result<Arc<Cluster>> {
        if config.bootstrap.is_empty() {
            return Err(Error::Config("the bootstrap list is empty".into()));
        }
        let cluster = Arc::new(Cluster {
            config,
            channels: Mutex::new(HashMap::new()),
            metadata: RwLock::new(Arc::new(Metadata::default())),
            refresh_lock: tokio::sync::Mutex::new(()),
        });
        cluster.refresh(&[]).await?;
        Ok(cluster)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The current snapshot, without any IO.
    pub fn metadata(&self) -> Arc<Metadata> {
        self.metadata.read().expect("metadata lock poisoned").clone()
    }

    /// A gRPC client for `address`, reusing its channel. The channel connects lazily and reconnects by itself
    /// after a failure, so a cached channel never needs to be thrown away.
    pub fn client(&self, address: &str) -> Result<RillClient<Channel>> {
        let mut channels = self.channels.lock().expect("channel cache poisoned");
        let channel = match channels.get(address) {
            Some(channel) => channel.clone(),
            None => {
                let channel = self.endpoint(address)?.connect_lazy();
                channels.insert(address.to_owned(), channel.clone());
                channel
            }
        };
        Ok(RillClient::new(channel).max_decoding_message_size(RESPONSE_BYTES_MAX))
    }

    fn endpoint(&self, address: &str) -> Result<Endpoint> {
        let config = &self.config;
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| Error::Config(format!("bad broker address '{address}': {e}")))?;
        Ok(endpoint
            .connect_timeout(config.connect_timeout())
            .http2_keep_alive_interval(Duration::from_millis(config.keepalive_interval_ms))
            .max_frame_size(HTTP2_FRAME_BYTES_MAX)
            .keep_alive_timeout(Duration::from_millis(config.keepalive_timeout_ms))
            .keep_alive_while_idle(true)
            .tcp_nodelay(true))
    }

    /// Addresses to try for a request any broker can answer: known brokers first, then the bootstrap list, so
    /// the client keeps working after the bootstrap brokers are gone.
    fn any_addresses(&self) -> Vec<String> {
        let mut addresses: Vec<String> = self.metadata().brokers.values().cloned().collect();
        for address in &self.config.bootstrap {
            if !addresses.contains(address) {
                addresses.push(address.clone());
            }
        }
        addresses
    }

    /// Runs `call` against the first broker that answers at the transport level. Application errors inside the
    /// answer are the caller's to interpret.
    pub async fn call_any<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(RillClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let addresses = self.any_addresses();
        let mut last_error = String::from("no address to try");
        for address in &addresses {
            let client = self.client(address)?;
            match call(client).await {
                Ok(answer) => return Ok(answer),
                Err(status) => {
                    let error = Error::from_status(address, &status);
                    if !error.is_retriable() {
                        return Err(error);
                    }
                    tracing::debug!(%address, %error, "broker unreachable, trying the next one");
                    last_error = error.to_string();
                }
            }
        }
        Err(Error::NoBrokerReachable { addresses: addresses.join(","), last_error })
    }

    /// Wraps a request message with the client's RPC deadline plus `extra` (a server-side wait it asked for).
    pub fn request<T>(&self, message: T, extra: Duration) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.config.request_timeout() + extra);
        request
    }

    /// Fetches metadata for `topics` (all topics when empty) and installs it. Topics the broker does not know
    /// are dropped from the cache; their absence is how callers learn a topic does not exist.
    pub async fn refresh(&self, topics: &[String]) -> Result<Arc<Metadata>> {
        let started = Instant::now();
        let _guard = self.refresh_lock.lock().await;
        // Someone else refreshed while this call waited for the lock: their answer is fresh enough.
        let current = self.metadata();
        if current.fetched_at.is_some_and(|at| at >= started) && topics.iter().all(|t| current.topics.contains_key(t)) {
            return Ok(current);
        }
        let request = MetadataRequest { topics: topics.to_vec() };
        let response = self
            .call_any(|mut client| {
                let request = self.request(request.clone(), Duration::ZERO);
                async move { client.metadata(request).await.map(tonic::Response::into_inner) }
            })
            .await?;
        let next = Arc::new(merge_metadata(&current, response, topics.is_empty())?);
        *self.metadata.write().expect("metadata lock poisoned") = next.clone();
        Ok(next)
    }

    /// Refreshes when the cached metadata is older than `metadata_max_age_ms`.
    pub async fn refresh_if_old(&self, topics: &[String]) -> Result<Arc<Metadata>> {
        let current = self.metadata();
        let max_age = Duration::from_millis(self.config.metadata_max_age_ms);
        match current.fetched_at {
            Some(at) if at.elapsed() < max_age && topics.iter().all(|t| current.topics.contains_key(t)) => Ok(current),
            _ => self.refresh(topics).await,
        }
    }

    /// The partition count of `topic`, from the cache or after one refresh.
    ///
    /// Fails with [`Error::UnknownTopic`] if the cluster does not have the topic.
    pub async fn partition_count(&self, topic: &str) -> Result<u32> {
        // Read under the lock rather than through `metadata()`: the producer asks this for every record.
        let cached = self.metadata.read().expect("metadata lock poisoned").partition_count(topic);
        if let Some(count) = cached {
            return Ok(count);
        }
        let metadata = self.refresh(&[topic.to_owned()]).await?;
        metadata.partition_count(topic).ok_or_else(|| Error::UnknownTopic(topic.to_owned()))
    }

    /// `InitProducerId`: a new producer id (`producer_id` -1) or the next epoch of `producer_id`, which fences
    /// every producer still using an older epoch. Retries while no controller can answer, for up to `patience`.
    ///
    /// Fails with [`Error::ProducerFenced`] if `epoch` is not the id's current epoch (a newer producer holds it).
    pub async fn init_producer_id(&self, producer_id: i64, epoch: i16, patience: Duration) -> Result<(i64, i16)> {
        let deadline = Instant::now() + patience;
        let message = InitProducerIdRequest { producer_id, producer_epoch: i32::from(epoch) };
        loop {
            let answer = self
                .call_any(|mut client| {
                    let request = self.request(message, Duration::ZERO);
                    async move { client.init_producer_id(request).await.map(tonic::Response::into_inner) }
                })
                .await
                .and_then(|response| match BrokerError::from_proto(response.error.as_ref()) {
                    None => {
                        let epoch = i16::try_from(response.producer_epoch).map_err(|_| {
                            Error::Protocol(format!("producer epoch {} out of range", response.producer_epoch))
                        })?;
                        Ok((response.producer_id, epoch))
                    }
                    Some(e) if e.code == ErrorCode::ProducerFenced => Err(Error::ProducerFenced { message: e.message }),
                    Some(e) => Err(Error::Broker(e)),
                });
            match answer {
                Err(error) if error.is_retriable() && Instant::now() + self.config.retry_backoff() < deadline => {
                    tracing::debug!(%error, "InitProducerId failed; retrying");
                    self.backoff().await;
                }
                other => return other,
            }
        }
    }

    /// Sleeps for the retry backoff. Used between attempts of a retriable failure.
    pub async fn backoff(&self) {
        tokio::time::sleep(self.config.retry_backoff()).await;
    }
}

/// Builds the next snapshot: a full answer replaces every topic, a partial one replaces only those it names.
fn merge_metadata(current: &Metadata, response: MetadataResponse, full: bool) -> Result<Metadata> {
    let mut topics = if full { HashMap::default() } else { current.topics.clone() };
    for topic in response.topics {
        match BrokerError::from_proto(topic.error.as_ref()) {
            None => {
                let mut partitions: Vec<PartitionMeta> = topic
                    .partitions
                    .into_iter()
                    .map(|p| PartitionMeta {
                        partition: p.partition,
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replicas,
                        isr: p.isr,
                    })
                    .collect();
                partitions.sort_by_key(|p| p.partition);
                topics.insert(topic.name, TopicMeta { partitions });
            }
            Some(e) if e.code == ErrorCode::UnknownTopicOrPartition => {
                topics.remove(&topic.name);
            }
            Some(e) => return Err(Error::from_broker(e, &topic.name)),
        }
    }
    let brokers = response.brokers.into_iter().map(|b| (b.id, b.address)).collect();
    Ok(Metadata { brokers, topics, fetched_at: Some(Instant::now()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_proto::v1::{BrokerInfo, PartitionMetadata, TopicMetadata};

    fn topic(name: &str, partitions: u32, leader: u32) -> TopicMetadata {
        TopicMetadata {
            name: name.into(),
            error: None,
            partitions: (0..partitions)
                .rev()
                .map(|p| PartitionMetadata { partition: p, leader, leader_epoch: 1, ..Default::default() })
                .collect(),
            config: Default::default(),
            replication_factor: 1,
        }
    }

    fn response(topics: Vec<TopicMetadata>) -> MetadataResponse {
        MetadataResponse {
            brokers: vec![BrokerInfo { id: 1, address: "127.0.0.1:9400".into() }],
            controller_id: 1,
            topics,
        }
    }

    #[test]
    fn leaders_resolve_to_broker_addresses() {
        let metadata = merge_metadata(&Metadata::default(), response(vec![topic("demo", 3, 1)]), true).unwrap();
        assert_eq!(metadata.partition_count("demo"), Some(3));
        assert_eq!(metadata.leader(&TopicPartition::new("demo", 2)), Some((1, "127.0.0.1:9400".into())));
        assert_eq!(metadata.leader(&TopicPartition::new("demo", 3)), None);
        assert!(matches!(
            metadata.check_partition(&TopicPartition::new("demo", 7)),
            Err(Error::UnknownPartition { partitions: 3, .. })
        ));
    }

    #[test]
    fn a_partition_without_a_live_leader_has_no_address() {
        let metadata = merge_metadata(&Metadata::default(), response(vec![topic("demo", 1, 0)]), true).unwrap();
        assert_eq!(metadata.leader(&TopicPartition::new("demo", 0)), None);
    }

    #[test]
    fn partial_refresh_keeps_other_topics_and_drops_unknown_ones() {
        let first =
            merge_metadata(&Metadata::default(), response(vec![topic("a", 1, 1), topic("b", 1, 1)]), true).unwrap();
        let mut gone = topic("b", 0, 1);
        gone.error = Some(rill_proto::v1::Error {
            code: ErrorCode::UnknownTopicOrPartition as i32,
            message: "no such topic".into(),
            retriable: false,
        });
        let second = merge_metadata(&first, response(vec![gone]), false).unwrap();
        assert!(second.topics.contains_key("a"));
        assert!(!second.topics.contains_key("b"));
    }
}
