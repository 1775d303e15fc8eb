//! The client side of the controller quorum's transport: openraft's `RaftNetworkFactory`/`RaftNetwork` over
//! the `rill.raft.v1.ControllerRaft` gRPC service.
//!
//! Each peer gets one lazily connected tonic channel, kept for the life of the quorum, with a connect timeout
//! and HTTP/2 keepalive (a dropped network path otherwise hangs a connection silently), and every RPC has a
//! deadline; with TLS configured, peers are dialled over TLS (`security::tls::peer_channel`). Transport failures become openraft's `Unreachable` (peer not reachable: openraft backs off) or
//! `Network` errors; a `RaftError` the peer answered becomes a `RemoteError`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{AnyError, RPCTypes};
use rill_proto::raft_v1::controller_raft_client::ControllerRaftClient;
use rill_proto::raft_v1::{RaftMessage, RaftReply, SnapshotChunk};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};

use super::GRPC_MESSAGE_BYTES_MAX;
use super::types::{Node, NodeId, TypeConfig};
use crate::security::tls::{Tls, peer_channel};

/// Timeouts of the peer connections.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub connect_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// Upper bound on any one RPC; openraft's own per-RPC deadline applies when it is shorter.
    pub rpc_timeout: Duration,
    /// TLS towards peers; `None` for plaintext.
    pub tls: Option<Arc<Tls>>,
}

/// Builds the `http://host:port` endpoint of a peer with the connection settings of `config`.
///
/// # Errors
/// The address is not a valid URI authority.
pub fn peer_endpoint(address: &str, config: &NetworkConfig) -> Result<Endpoint, String> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| format!("invalid controller voter address '{address}': {e}"))?;
    Ok(endpoint
        .connect_timeout(config.connect_timeout)
        .timeout(config.rpc_timeout)
        .http2_keep_alive_interval(config.keepalive_interval)
        .keep_alive_timeout(config.keepalive_timeout)
        .keep_alive_while_idle(true))
}

/// Hands openraft one client per peer, reusing the peer's channel across replication streams.
pub struct PeerNetworkFactory {
    node_id: NodeId,
    config: NetworkConfig,
    /// Channel per peer with the address it dials; a changed address gets a new channel.
    channels: HashMap<NodeId, (String, Channel)>,
}

impl PeerNetworkFactory {
    pub fn new(node_id: NodeId, config: NetworkConfig) -> PeerNetworkFactory {
        PeerNetworkFactory { node_id, config, channels: HashMap::new() }
    }

    fn channel(&mut self, target: NodeId, address: &str) -> Result<Channel, String> {
        if let Some((known, channel)) = self.channels.get(&target)
            && known == address
        {
            return Ok(channel.clone());
        }
        let channel = peer_channel(peer_endpoint(address, &self.config)?, self.config.tls.as_ref());
        self.channels.insert(target, (address.to_string(), channel.clone()));
        Ok(channel)
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        let client = self.channel(target, &node.addr).map(|channel| {
            ControllerRaftClient::new(channel)
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX)
        });
        if let Err(e) = &client {
            tracing::error!(target, error = %e, "controller voter cannot be dialled");
        }
        PeerClient { node_id: self.node_id, target, client, rpc_timeout: self.config.rpc_timeout }
    }
}

/// openraft's connection to one peer.
pub struct PeerClient {
    node_id: NodeId,
    target: NodeId,
    /// An invalid address makes every RPC fail as unreachable, rather than failing openraft's factory call.
    client: Result<ControllerRaftClient<Channel>, String>,
    rpc_timeout: Duration,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, Node, RaftError<NodeId, E>>>;

/// An error type for failures that are not std errors themselves.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

impl PeerClient {
    fn deadline(&self, option: &RPCOption) -> Duration {
        option.hard_ttl().min(self.rpc_timeout)
    }

    /// Runs one RPC with a deadline and decodes the peer's `Result<T, RaftError<E>>`.
    async fn call<T, E, F, Fut>(&mut self, action: RPCTypes, deadline: Duration, rpc: F) -> RpcResult<T, E>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        F: FnOnce(ControllerRaftClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftReply>, tonic::Status>>,
    {
        let client = match &self.client {
            Ok(client) => client.clone(),
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&TransportError(e.clone())))),
        };
        let reply = match tokio::time::timeout(deadline, rpc(client)).await {
            Err(_) => {
                let timeout = Timeout { action, id: self.node_id, target: self.target, timeout: deadline };
                return Err(RPCError::Timeout(timeout));
            }
            Ok(Err(status)) => return Err(status_to_rpc_error(&status)),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let result: Result<T, RaftError<NodeId, E>> =
            serde_json::from_slice(&reply.result_json).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// A peer that cannot be reached (not listening, connection refused or reset, keepalive expired) is
/// `Unreachable`, which makes openraft back off; anything else is a `Network` error it retries.
fn status_to_rpc_error<E: std::error::Error>(status: &tonic::Status) -> RPCError<NodeId, Node, RaftError<NodeId, E>> {
    let error = TransportError(format!("{}: {}", status.code(), status.message()));
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled => RPCError::Unreachable(Unreachable::new(&error)),
        _ => RPCError::Network(NetworkError::new(&error)),
    }
}

fn encode<T: Serialize>(message: &T) -> Result<bytes::Bytes, NetworkError> {
    serde_json::to_vec(message)
        .map(bytes::Bytes::from)
        .map_err(|e| NetworkError::new(&AnyError::error(format!("raft message does not serialise: {e}"))))
}

fn request<T>(message: T, deadline: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    // Tells the peer the deadline too, so it does not work on an answer nobody waits for.
    request.set_timeout(deadline);
    request
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        let deadline = self.deadline(&option);
        let message = RaftMessage { request_json: encode(&rpc)? };
        self.call(RPCTypes::AppendEntries, deadline, move |mut c| async move {
            c.append_entries(request(message, deadline)).await
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let deadline = self.deadline(&option);
        // The chunk's bytes travel in their own field, verbatim; the JSON carries the rest.
        let data = bytes::Bytes::from(std::mem::take(&mut rpc.data));
        let chunk = SnapshotChunk { request_json: encode(&rpc)?, data };
        self.call(RPCTypes::InstallSnapshot, deadline, move |mut c| async move {
            c.install_snapshot(request(chunk, deadline)).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        let deadline = self.deadline(&option);
        let message = RaftMessage { request_json: encode(&rpc)? };
        self.call(RPCTypes::Vote, deadline, move |mut c| async move { c.vote(request(message, deadline)).await }).await
    }
}
