//! How a partition reaches the rest of the cluster: replica fetches to partition leaders over gRPC (one
//! lazily connected HTTP/2 channel per peer, with keepalive and a deadline on every call), and ISR changes
//! to the controller.
//!
//! The controller is the in-process one today; with the controller quorum, `alter_partition` goes to the
//! active controller instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rill_proto::v1::replication_client::ReplicationClient;
use rill_proto::v1::{ReplicaFetchRequest, ReplicaFetchResponse};
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use crate::limits::{
    PEER_CONNECT_TIMEOUT_MS, PEER_KEEPALIVE_INTERVAL_MS, PEER_KEEPALIVE_TIMEOUT_MS, REPLICA_FETCH_TIMEOUT_MS,
    REPLICA_FETCH_WAIT_MS,
};
use crate::metadata::{Controller, MetadataState};
use crate::replication::{AcceptedIsr, AlterPartitionError};

pub struct ClusterLink {
    node_id: u32,
    broker_epoch: AtomicU64,
    metadata: watch::Receiver<Arc<MetadataState>>,
    controller: Arc<Mutex<Controller>>,
    /// By peer address, so a broker that re-registers at a new address gets a new channel.
    channels: Mutex<HashMap<String, Channel>>,
}

impl ClusterLink {
    pub fn new(
        node_id: u32,
        broker_epoch: u64,
        metadata: watch::Receiver<Arc<MetadataState>>,
        controller: Arc<Mutex<Controller>>,
    ) -> Self {
        ClusterLink {
            node_id,
            broker_epoch: AtomicU64::new(broker_epoch),
            metadata,
            controller,
            channels: Mutex::new(HashMap::new()),
        }
    }

    pub fn node_id(&self) -> u32 {
        self.node_id
    }

    pub fn broker_epoch(&self) -> u64 {
        self.broker_epoch.load(Ordering::Relaxed)
    }

    fn channel(&self, broker: u32) -> Result<Channel, String> {
        let address = self
            .metadata
            .borrow()
            .brokers
            .get(&broker)
            .map(|b| b.address.clone())
            .ok_or_else(|| format!("broker {broker} is not registered"))?;
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(&address) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| format!("bad address {address} of broker {broker}: {e}"))?
            .connect_timeout(Duration::from_millis(PEER_CONNECT_TIMEOUT_MS))
            .http2_keep_alive_interval(Duration::from_millis(PEER_KEEPALIVE_INTERVAL_MS))
            .keep_alive_timeout(Duration::from_millis(PEER_KEEPALIVE_TIMEOUT_MS))
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        channels.insert(address, channel.clone());
        Ok(channel)
    }

    /// Sends a replica fetch to `leader`; an error string for any transport failure or timeout.
    pub async fn replica_fetch(&self, leader: u32, request: ReplicaFetchRequest) -> Result<ReplicaFetchResponse, String> {
        let channel = self.channel(leader)?;
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

    /// Asks the controller to set a partition's ISR. Blocking (the controller writes its log): callers run it
    /// off the async workers.
    pub fn alter_partition(
        &self,
        topic: &str,
        partition: u32,
        leader_epoch: u32,
        partition_epoch: u32,
        isr: Vec<u32>,
    ) -> Result<AcceptedIsr, AlterPartitionError> {
        let mut controller = self.controller.lock().unwrap_or_else(|p| p.into_inner());
        controller.alter_partition(topic, partition, self.node_id, leader_epoch, partition_epoch, isr)
    }
}
