//! How this broker reaches the rest of the cluster: replica fetches to partition leaders and requests to the
//! active controller, over gRPC (one lazily connected HTTP/2 channel per peer address, with keepalive and a
//! deadline on every call; over TLS when the broker has it, `security::tls::peer_channel`). A controller request is served in-process when this node is the active
//! controller and forwarded to it otherwise, retrying while the quorum elects one or leadership moves.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rill_proto::v1::controller_client::ControllerClient;
use rill_proto::v1::replication_client::ReplicationClient;
use rill_proto::v1::{
    AlterClusterRequest, AlterClusterResponse, AlterPartitionErrorCode, AlterPartitionRequest, AlterSecurityRequest,
    AlterSecurityResponse, BrokerHeartbeatRequest, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, ErrorCode, InitProducerIdRequest, InitProducerIdResponse, RegisterBrokerRequest,
    ReplicaFetchRequest, ReplicaFetchResponse,
};
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use crate::clock::{monotonic_ms, now_ms};
use crate::limits::{
    CONTROLLER_REQUEST_TIMEOUT_MS, CONTROLLER_RETRY_BACKOFF_MS, PEER_CONNECT_TIMEOUT_MS, PEER_KEEPALIVE_INTERVAL_MS,
    PEER_KEEPALIVE_TIMEOUT_MS, REPLICA_FETCH_TIMEOUT_MS, REPLICA_FETCH_WAIT_MS,
};
use crate::metadata::{Controller, ControllerError, HeartbeatReply, MetadataState};
use crate::replication::{AcceptedIsr, AlterPartitionError};
use crate::security::tls::{Tls, peer_channel};

/// The answer of one attempt at a controller request.
enum Attempt<T> {
    Done(T),
    /// Not the active controller, or no answer: try again (at whichever node leads by then).
    Retry(String),
}

pub struct ClusterLink {
    node_id: u32,
    broker_epoch: AtomicU64,
    /// The controller lease runs until this `monotonic_ms` instant: the send time of the last answered
    /// heartbeat plus the session timeout.
    lease_until_ms: AtomicU64,
    metadata: watch::Receiver<Arc<MetadataState>>,
    controller: Arc<Controller>,
    voters: BTreeMap<u32, String>,
    /// By peer address, so a broker that re-registers at a new address gets a new channel.
    channels: Mutex<HashMap<String, Channel>>,
    /// TLS towards peers; `None` dials them in plaintext.
    tls: Option<Arc<Tls>>,
}

impl ClusterLink {
    pub fn new(
        node_id: u32,
        controller: Arc<Controller>,
        voters: BTreeMap<u32, String>,
        tls: Option<Arc<Tls>>,
    ) -> Self {
        ClusterLink {
            tls,
            node_id,
            broker_epoch: AtomicU64::new(0),
            lease_until_ms: AtomicU64::new(0),
            metadata: controller.subscribe(),
            controller,
            voters,
            channels: Mutex::new(HashMap::new()),
        }
    }

    pub fn node_id(&self) -> u32 {
        self.node_id
    }

    pub fn broker_epoch(&self) -> u64 {
        self.broker_epoch.load(Ordering::Relaxed)
    }

    /// Whether this broker may act as a leader now. Checked against the clock on every produce and replica
    /// fetch, not only by a timer: a broker resumed after a long pause (SIGSTOP, a VM freeze) must refuse
    /// writes before any timer of its own has had a chance to run.
    pub fn lease_valid(&self) -> bool {
        monotonic_ms() < self.lease_until_ms.load(Ordering::SeqCst)
    }

    /// Extends the lease: a heartbeat sent at `sent_ms` (monotonic) was answered.
    pub fn renew_lease(&self, sent_ms: u64, session_timeout_ms: u64) {
        self.lease_until_ms.fetch_max(sent_ms + session_timeout_ms, Ordering::SeqCst);
    }

    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }

    fn channel_to(&self, address: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| format!("bad peer address {address}: {e}"))?
            .connect_timeout(Duration::from_millis(PEER_CONNECT_TIMEOUT_MS))
            .http2_keep_alive_interval(Duration::from_millis(PEER_KEEPALIVE_INTERVAL_MS))
            .keep_alive_timeout(Duration::from_millis(PEER_KEEPALIVE_TIMEOUT_MS))
            .keep_alive_while_idle(true)
            .tcp_nodelay(true)
            // Replication fetch answers carry up to megabytes of batches: let the leader send them in 1 MiB
            // frames, as clients may (crate::server).
            .max_frame_size(crate::limits::HTTP2_FRAME_BYTES_MAX);
        let channel = peer_channel(endpoint, self.tls.as_ref());
        channels.insert(address.to_string(), channel.clone());
        Ok(channel)
    }

    /// A channel to `broker` for broker-to-broker traffic. Every broker is a controller voter, and the voter
    /// list names the address peers reach it at, which may differ from the address it advertises to clients
    /// (in Docker: a container name inside the network, a published port outside it).
    fn broker_channel(&self, broker: u32) -> Result<Channel, String> {
        let address = match self.voters.get(&broker) {
            Some(address) => address.clone(),
            None => self
                .metadata
                .borrow()
                .brokers
                .get(&broker)
                .map(|b| b.address.clone())
                .ok_or_else(|| format!("broker {broker} is not registered"))?,
        };
        self.channel_to(&address)
    }

    /// Sends a replica fetch to `leader`; an error string for any transport failure or timeout.
    pub async fn replica_fetch(
        &self,
        leader: u32,
        request: ReplicaFetchRequest,
    ) -> Result<ReplicaFetchResponse, String> {
        let channel = self.broker_channel(leader)?;
        let mut client = ReplicationClient::new(channel).max_decoding_message_size(usize::MAX);
        let deadline = Duration::from_millis(u64::from(REPLICA_FETCH_WAIT_MS) + REPLICA_FETCH_TIMEOUT_MS);
        let mut request = tonic::Request::new(request);
        request.set_timeout(deadline);
        match tokio::time::timeout(deadline, client.replica_fetch(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(format!("replica fetch to broker {leader} failed: {status}")),
            Err(_) => Err(format!("replica fetch to broker {leader} timed out")),
        }
    }

    /// `broker`'s own view of a topic's partitions (`DescribeTopic` with `local_only`), or `None` if it does
    /// not answer within a short deadline.
    pub async fn describe_topic_at(&self, broker: u32, topic: &str) -> Option<rill_proto::v1::DescribeTopicResponse> {
        let channel = self.broker_channel(broker).ok()?;
        let mut client = rill_proto::v1::rill_client::RillClient::new(channel);
        let request = rill_proto::v1::DescribeTopicRequest { name: topic.to_string(), local_only: true };
        let mut request = tonic::Request::new(request);
        request.set_timeout(Duration::from_millis(PEER_CONNECT_TIMEOUT_MS));
        let call = tokio::time::timeout(Duration::from_millis(PEER_CONNECT_TIMEOUT_MS), client.describe_topic(request));
        match call.await {
            Ok(Ok(response)) => Some(response.into_inner()),
            _ => None,
        }
    }

    /// A gRPC client to the active controller when it is another node; `None` when it is this one.
    fn remote_controller(&self) -> Result<Option<ControllerClient<Channel>>, String> {
        match self.controller.active_controller() {
            None => Err("no active controller yet".into()),
            Some(id) if id == self.node_id => Ok(None),
            Some(id) => {
                let address =
                    self.voters.get(&id).ok_or_else(|| format!("active controller {id} is not a known voter"))?;
                Ok(Some(ControllerClient::new(self.channel_to(address)?)))
            }
        }
    }

    /// Runs `attempt` until it is done or `CONTROLLER_REQUEST_TIMEOUT_MS` passes.
    async fn with_controller<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, String>
    where
        F: FnMut(Option<ControllerClient<Channel>>) -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(CONTROLLER_REQUEST_TIMEOUT_MS);
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            match self.remote_controller() {
                Ok(remote) => match tokio::time::timeout_at(deadline, attempt(remote)).await {
                    Ok(Attempt::Done(value)) => return Ok(value),
                    Ok(Attempt::Retry(why)) => last = why,
                    Err(_) => break,
                },
                Err(why) => last = why,
            }
            tokio::time::sleep(Duration::from_millis(CONTROLLER_RETRY_BACKOFF_MS)).await;
        }
        Err(format!("{what}: no answer from the active controller ({last})"))
    }

    /// Registers this broker, with its Kafka listener's address if it runs one, and keeps its new broker epoch.
    pub async fn register(&self, address: &str, kafka_address: Option<&str>) -> Result<u64, String> {
        let epoch = self
            .with_controller("register", |remote| async move {
                match remote {
                    None => {
                        match self.controller.register_broker(self.node_id, address, kafka_address, now_ms()).await {
                            Ok(epoch) => Attempt::Done(epoch),
                            Err(e) => Attempt::Retry(e.to_string()),
                        }
                    }
                    Some(mut client) => {
                        let request = RegisterBrokerRequest {
                            broker_id: self.node_id,
                            address: address.to_string(),
                            kafka_address: kafka_address.unwrap_or_default().to_string(),
                        };
                        match client.register_broker(request).await {
                            Ok(r) if r.get_ref().error.is_none() => Attempt::Done(r.into_inner().broker_epoch),
                            Ok(r) => Attempt::Retry(format!("{:?}", r.into_inner().error)),
                            Err(status) => Attempt::Retry(status.to_string()),
                        }
                    }
                }
            })
            .await?;
        self.broker_epoch.store(epoch, Ordering::Relaxed);
        Ok(epoch)
    }

    /// One heartbeat attempt (no retries: the next heartbeat is the retry). `Ok(None)` when the controller no
    /// longer knows this incarnation and the broker must register again.
    pub async fn heartbeat(&self) -> Result<Option<HeartbeatReply>, String> {
        let broker_epoch = self.broker_epoch();
        match self.remote_controller()? {
            None => match self.controller.heartbeat(self.node_id, broker_epoch, now_ms()).await {
                Ok(reply) => Ok(Some(reply)),
                Err(ControllerError::StaleBrokerEpoch { .. }) => Ok(None),
                Err(e) => Err(e.to_string()),
            },
            Some(mut client) => {
                let mut request = tonic::Request::new(BrokerHeartbeatRequest { broker_id: self.node_id, broker_epoch });
                request.set_timeout(Duration::from_millis(PEER_CONNECT_TIMEOUT_MS));
                let response = client.broker_heartbeat(request).await.map_err(|s| s.to_string())?.into_inner();
                match response.error.map(|e| ErrorCode::try_from(e.code)) {
                    None => {
                        Ok(Some(HeartbeatReply { fenced: response.fenced, metadata_offset: response.metadata_offset }))
                    }
                    Some(Ok(ErrorCode::StaleBrokerEpoch)) => Ok(None),
                    Some(other) => Err(format!("heartbeat refused: {other:?}")),
                }
            }
        }
    }

    /// Asks the active controller to set a partition's ISR.
    pub async fn alter_partition(
        &self,
        topic: &str,
        partition: u32,
        leader_epoch: u32,
        partition_epoch: u32,
        isr: Vec<u32>,
    ) -> Result<AcceptedIsr, AlterPartitionError> {
        let broker_epoch = self.broker_epoch();
        let outcome = self
            .with_controller("alter partition", |remote| {
                let isr = isr.clone();
                async move {
                    match remote {
                        None => {
                            let c = &self.controller;
                            let result = c
                                .alter_partition(
                                    topic,
                                    partition,
                                    self.node_id,
                                    broker_epoch,
                                    leader_epoch,
                                    partition_epoch,
                                    isr,
                                )
                                .await;
                            match result {
                                Err(AlterPartitionError::Unavailable) => Attempt::Retry("unavailable".into()),
                                other => Attempt::Done(other),
                            }
                        }
                        Some(mut client) => {
                            let request = AlterPartitionRequest {
                                topic: topic.to_string(),
                                partition,
                                leader_id: self.node_id,
                                broker_epoch,
                                leader_epoch,
                                partition_epoch,
                                isr,
                            };
                            match client.alter_partition(request).await {
                                Ok(response) => {
                                    let r = response.into_inner();
                                    match AlterPartitionErrorCode::try_from(r.error) {
                                        Ok(AlterPartitionErrorCode::AlterPartitionOk) => {
                                            Attempt::Done(Ok(AcceptedIsr {
                                                isr: r.isr,
                                                partition_epoch: r.partition_epoch,
                                            }))
                                        }
                                        Ok(AlterPartitionErrorCode::AlterPartitionStalePartitionEpoch) => {
                                            Attempt::Done(Err(AlterPartitionError::StalePartitionEpoch))
                                        }
                                        Ok(AlterPartitionErrorCode::AlterPartitionFencedLeaderEpoch) => {
                                            Attempt::Done(Err(AlterPartitionError::FencedLeaderEpoch))
                                        }
                                        Ok(AlterPartitionErrorCode::AlterPartitionIneligibleReplica) => {
                                            Attempt::Done(Err(AlterPartitionError::IneligibleReplica))
                                        }
                                        _ => Attempt::Retry("controller unavailable".into()),
                                    }
                                }
                                Err(status) => Attempt::Retry(status.to_string()),
                            }
                        }
                    }
                }
            })
            .await;
        outcome.unwrap_or(Err(AlterPartitionError::Unavailable))
    }

    /// Forwards a CreateTopics request to the active controller (another node).
    pub async fn forward_create_topics(&self, request: CreateTopicsRequest) -> Result<CreateTopicsResponse, String> {
        self.forward("create topics", request, |mut client, request| async move { client.create_topics(request).await })
            .await
    }

    /// Forwards a DeleteTopics request to the active controller (another node).
    pub async fn forward_delete_topics(&self, request: DeleteTopicsRequest) -> Result<DeleteTopicsResponse, String> {
        self.forward("delete topics", request, |mut client, request| async move { client.delete_topics(request).await })
            .await
    }

    /// Forwards an InitProducerId request to the active controller (another node).
    pub async fn forward_init_producer_id(
        &self,
        request: InitProducerIdRequest,
    ) -> Result<InitProducerIdResponse, String> {
        self.forward("init producer id", request, |mut client, request| async move {
            client.init_producer_id(request).await
        })
        .await
    }

    /// Forwards a user or ACL change to the active controller (another node).
    pub async fn forward_alter_security(&self, request: AlterSecurityRequest) -> Result<AlterSecurityResponse, String> {
        self.forward(
            "alter security",
            request,
            |mut client, request| async move { client.alter_security(request).await },
        )
        .await
    }

    /// Forwards a drain, undrain or leader election to the active controller (another node).
    pub async fn forward_alter_cluster(&self, request: AlterClusterRequest) -> Result<AlterClusterResponse, String> {
        self.forward("alter cluster", request, |mut client, request| async move { client.alter_cluster(request).await })
            .await
    }

    /// Sends a request to the active controller, again wherever it moved if the answer says `NOT_CONTROLLER`.
    async fn forward<Req, Resp, F, Fut>(&self, what: &str, request: Req, call: F) -> Result<Resp, String>
    where
        Req: Clone,
        Resp: ControllerAnswer,
        F: Fn(ControllerClient<Channel>, Req) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        self.with_controller(what, |remote| {
            let attempt = remote.map(|client| call(client, request.clone()));
            async move {
                let Some(attempt) = attempt else { return Attempt::Retry("this node became the controller".into()) };
                match attempt.await {
                    Ok(response) if response.get_ref().moved() => Attempt::Retry("the controller moved".into()),
                    Ok(response) => Attempt::Done(response.into_inner()),
                    Err(status) => Attempt::Retry(status.to_string()),
                }
            }
        })
        .await
    }
}

/// A controller response that can say the node was not the active controller (it lost leadership meanwhile).
trait ControllerAnswer {
    fn moved(&self) -> bool;
}

impl ControllerAnswer for InitProducerIdResponse {
    fn moved(&self) -> bool {
        is_not_controller(&self.error)
    }
}

impl ControllerAnswer for AlterSecurityResponse {
    fn moved(&self) -> bool {
        is_not_controller(&self.error)
    }
}

impl ControllerAnswer for AlterClusterResponse {
    fn moved(&self) -> bool {
        is_not_controller(&self.error)
    }
}

impl ControllerAnswer for CreateTopicsResponse {
    fn moved(&self) -> bool {
        self.results.iter().any(|r| is_not_controller(&r.error))
    }
}

impl ControllerAnswer for DeleteTopicsResponse {
    fn moved(&self) -> bool {
        self.results.iter().any(|r| is_not_controller(&r.error))
    }
}

fn is_not_controller(error: &Option<rill_proto::v1::Error>) -> bool {
    error.as_ref().is_some_and(|e| e.code == ErrorCode::NotController as i32)
}
