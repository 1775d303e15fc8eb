//! The server side of the controller quorum's transport: the `rill.raft.v1.ControllerRaft` gRPC service,
//! handing each decoded openraft message to the local `Raft` and its `Result` back as JSON.
//!
//! A request that does not decode is a gRPC `InvalidArgument` (the peer is broken or of another version); a
//! `RaftError` from the local Raft (including its shutdown) is a normal reply, which the peer's openraft reads.

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use rill_proto::raft_v1::controller_raft_server::{ControllerRaft, ControllerRaftServer};
use rill_proto::raft_v1::{RaftMessage, RaftReply, SnapshotChunk};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::GRPC_MESSAGE_BYTES_MAX;
use super::types::{Raft, TypeConfig};

/// Serves the Raft messages of the other voters to this node's Raft.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
}

impl RaftService {
    pub fn new(raft: Raft) -> RaftService {
        RaftService { raft }
    }

    /// The tonic service to add to the node's gRPC server, with message limits that fit the largest
    /// AppendEntries and snapshot chunk the quorum sends.
    pub fn into_server(self) -> ControllerRaftServer<RaftService> {
        ControllerRaftServer::new(self)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX)
    }
}

fn decode<T: DeserializeOwned>(json: &[u8], what: &str) -> Result<T, Status> {
    serde_json::from_slice(json).map_err(|e| Status::invalid_argument(format!("{what} does not decode: {e}")))
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftReply>, Status> {
    let json =
        serde_json::to_vec(result).map_err(|e| Status::internal(format!("raft reply does not serialise: {e}")))?;
    Ok(Response::new(RaftReply { result_json: json.into() }))
}

#[tonic::async_trait]
impl ControllerRaft for RaftService {
    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftReply>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&request.into_inner().request_json, "AppendEntries")?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftReply>, Status> {
        let rpc: VoteRequest<u64> = decode(&request.into_inner().request_json, "Vote")?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, request: Request<SnapshotChunk>) -> Result<Response<RaftReply>, Status> {
        let chunk = request.into_inner();
        let mut rpc: InstallSnapshotRequest<TypeConfig> = decode(&chunk.request_json, "InstallSnapshot")?;
        rpc.data = chunk.data.to_vec();
        reply(&self.raft.install_snapshot(rpc).await)
    }
}
