//! The client's view of the cluster: bootstrap, one gRPC channel per broker address, and cached metadata
//! (brokers, partition leaders) that is refreshed when a broker says the view is stale.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rill_proto::v1::rill_client::RillClient;
use rill_proto::v1::{InitProducerIdRequest, MetadataRequest, MetadataResponse};
use tonic::transport::{Channel, Endpoint};

use base64::Engine;
use rill_proto::scram;
use rill_proto::v1::AuthenticateRequest;

use crate::config::{ClientConfig, SaslConfig};
use crate::error::{BrokerError, Error, ErrorCode, Result};
use crate::tls::Diagnoses;
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
    /// The TLS client configuration, read once from `config.tls`; `None` for plaintext.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Why connections to an address failed, as the connectors could tell (TLS mismatches).
    diagnoses: Diagnoses,
    /// The session token of the SCRAM login, sent with every request (`authorization: Bearer TOKEN`);
    /// good on every broker of the cluster.
    token: RwLock<Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>>,
    /// `config.client_id` as request metadata (`rill-client-id`), checked once.
    client_id: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Cluster {
    /// Connects to any reachable bootstrap broker and loads the metadata of every topic.
    pub async fn connect(config: ClientConfig) -> Result<Arc<Cluster>> {
        if config.bootstrap.is_empty() {
            return Err(Error::Config("the bootstrap list is empty".into()));
        }
        let tls = config.tls.as_ref().map(|tls| tls.client_config()).transpose()?;
        let client_id = config
            .client_id
            .as_deref()
            .map(|id| id.parse().map_err(|_| Error::Config(format!("client id '{id}' is not printable ASCII"))))
            .transpose()?;
        let cluster = Arc::new(Cluster {
            client_id,
            tls,
            diagnoses: Diagnoses::default(),
            config,
            channels: Mutex::new(HashMap::new()),
            metadata: RwLock::new(Arc::new(Metadata::default())),
            refresh_lock: tokio::sync::Mutex::new(()),
            token: RwLock::new(None),
        });
        if let Some(sasl) = cluster.config.sasl.clone() {
            let token = cluster.login(&sasl).await?;
            keep_logged_in(Arc::downgrade(&cluster), sasl, relogin_in(&token, now_ms()));
        }
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
                let channel =
                    crate::tls::channel(self.endpoint(address)?, address, self.tls.clone(), self.diagnoses.clone());
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
                    let error = match self.diagnoses.of(address) {
                        Some(message) => Error::Tls { address: address.clone(), message },
                        None => Error::from_status(address, &status),
                    };
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
        if let Some(token) = self.token.read().expect("token lock poisoned").clone() {
            request.metadata_mut().insert("authorization", token);
        }
        if let Some(client_id) = &self.client_id {
            request.metadata_mut().insert("rill-client-id", client_id.clone());
        }
        request
    }

    /// Logs in with SCRAM at the first broker that answers (both steps at the same broker, which holds the
    /// exchange between them) and keeps the session token.
    ///
    /// # Errors
    ///
    /// [`Error::Broker`] with `AUTHENTICATION_FAILED` for a wrong user or password; transport errors when no
    /// broker answers.
    /// Returns the session token.
    pub async fn login(&self, sasl: &SaslConfig) -> Result<String> {
        let mechanism = sasl.mechanism.name().to_string();
        let nonce = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 24]>());
        let first = scram::client::first(&sasl.user, &nonce);
        let addresses = self.any_addresses();
        let mut last_error = String::from("no address to try");
        for address in &addresses {
            let mut client = self.client(address)?;
            let request = AuthenticateRequest {
                mechanism: mechanism.clone(),
                exchange_id: String::new(),
                message: first.clone(),
            };
            let started = match client.authenticate(self.request(request, Duration::ZERO)).await {
                Ok(answer) => answer.into_inner(),
                Err(status) => {
                    let error = Error::from_status(address, &status);
                    if !error.is_retriable() {
                        return Err(error);
                    }
                    last_error = error.to_string();
                    continue;
                }
            };
            if let Some(e) = BrokerError::from_proto(started.error.as_ref()) {
                return Err(Error::Broker(e));
            }
            let (last, expected) =
                scram::client::final_message(sasl.mechanism, &sasl.user, &sasl.password, &nonce, &started.message)
                    .map_err(|e| Error::Config(format!("the broker's SCRAM answer is malformed: {e}")))?;
            let request =
                AuthenticateRequest { mechanism: mechanism.clone(), exchange_id: started.exchange_id, message: last };
            let finished = client
                .authenticate(self.request(request, Duration::ZERO))
                .await
                .map_err(|status| Error::from_status(address, &status))?
                .into_inner();
            if let Some(e) = BrokerError::from_proto(finished.error.as_ref()) {
                return Err(Error::Broker(e));
            }
            if finished.message != expected {
                return Err(Error::Config(format!("broker {address} could not prove it holds the user's credential")));
            }
            let token = format!("Bearer {}", finished.session_token)
                .parse()
                .map_err(|_| Error::Config("the broker's session token is not valid metadata".into()))?;
            *self.token.write().expect("token lock poisoned") = Some(token);
            tracing::debug!(%address, principal = %finished.principal, "logged in");
            return Ok(finished.session_token);
        }
        Err(Error::NoBrokerReachable { addresses: addresses.join(","), last_error })
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

    /// When the cached metadata of known topics turns older than `metadata_max_age_ms`; `None` while no topic
    /// is cached. A producer refreshes then, so that it sees partitions added since.
    pub fn metadata_stale_at(&self) -> Option<Instant> {
        let current = self.metadata.read().expect("metadata lock poisoned");
        let max_age = Duration::from_millis(self.config.metadata_max_age_ms);
        if current.topics.is_empty() { None } else { current.fetched_at.map(|at| at + max_age) }
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

/// How long to wait before logging in again after one failed, or when a token does not say when it expires.
const RELOGIN_RETRY: Duration = Duration::from_secs(30);
/// The shortest wait between logins, whatever a token says.
const RELOGIN_WAIT_MIN: Duration = Duration::from_secs(1);

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// When to log in again with a session `token`: three quarters of the way to the expiry its payload gives
/// (docs/FORMAT.md, "Session tokens"), so that a long-running client never presents an expired token.
fn relogin_in(token: &str, now_ms: u64) -> Duration {
    let expires_ms = token
        .split('.')
        .next()
        .and_then(|payload| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|text| String::from_utf8(text).ok())
        .and_then(|text| text.lines().next().and_then(|line| line.parse::<u64>().ok()));
    match expires_ms {
        Some(expires_ms) => Duration::from_millis(expires_ms.saturating_sub(now_ms) / 4 * 3).max(RELOGIN_WAIT_MIN),
        None => RELOGIN_RETRY,
    }
}

/// Logs in again before each session token expires, for as long as the cluster is in use; a failed login
/// (a broker restarting, a changed password) is logged and tried again while the old token still works.
fn keep_logged_in(cluster: std::sync::Weak<Cluster>, sasl: SaslConfig, first_wait: Duration) {
    tokio::spawn(async move {
        let mut wait = first_wait;
        loop {
            tokio::time::sleep(wait).await;
            let Some(cluster) = cluster.upgrade() else { return };
            wait = match cluster.login(&sasl).await {
                Ok(token) => relogin_in(&token, now_ms()),
                Err(error) => {
                    tracing::warn!(user = %sasl.user, %error, "cannot renew the session; trying again");
                    RELOGIN_RETRY
                }
            };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rill_proto::v1::{BrokerInfo, PartitionMetadata, TopicMetadata};

    #[test]
    fn a_session_is_renewed_three_quarters_of_the_way_to_its_expiry() {
        let payload = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        let token = format!("{}.c2ln", payload("5000000\nSCRAM-SHA-256:abc\nalice"));
        assert_eq!(relogin_in(&token, 1_000_000), Duration::from_millis(3_000_000));
        // Expired already, or about to: soon, but never in a tight loop.
        assert_eq!(relogin_in(&token, 6_000_000), RELOGIN_WAIT_MIN);
        // A token that does not say when it expires is renewed after the retry pause.
        assert_eq!(relogin_in("opaque", 0), RELOGIN_RETRY);
        assert_eq!(relogin_in(&format!("{}.x", payload("soon\nalice")), 0), RELOGIN_RETRY);
    }

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
