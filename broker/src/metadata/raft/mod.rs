//! The replicated metadata log: the controller voters run openraft over it, and the Raft leader is the active
//! controller. `MetadataQuorum` is the one type the rest of the broker uses: `propose` records on the leader,
//! `subscribe` to the applied `MetadataState`, and read who leads for forwarding and `cluster status`.
//!
//! Pieces: `types` (openraft type config), `segments` + `log_store` (the durable raft log), `state_machine`
//! (applies entries with `MetadataState::apply`, snapshots), `network` (gRPC client to peers) and `service`
//! (the `ControllerRaft` gRPC server). On-disk formats are in docs/FORMAT.md ("Controller quorum").

mod files;
pub mod log_store;
pub mod network;
pub mod segments;
pub mod service;
pub mod state_machine;
pub mod types;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, RaftMetrics, ServerState, SnapshotPolicy};
use rill_proto::raft_v1::controller_raft_server::ControllerRaftServer;
use tokio::sync::watch;

use self::log_store::LogStore;
use self::network::{NetworkConfig, PeerNetworkFactory, peer_endpoint};
use self::service::RaftService;
use self::state_machine::StateMachine;
use self::types::{NodeId, Proposal, Raft};
use super::records::MetadataRecord;
use super::state::MetadataState;
use crate::limits::METADATA_RECORD_BYTES_MAX;

/// Largest raft entry (JSON of one proposal with its log id). The same bound as one record of the file log,
/// so anything the single-node controller could write fits; larger proposals are refused by `propose`.
pub const ENTRY_BYTES_MAX: u32 = METADATA_RECORD_BYTES_MAX;
/// Entries per AppendEntries RPC (openraft's `max_payload_entries`): with `ENTRY_BYTES_MAX` this bounds one
/// message, and metadata entries are usually a few hundred bytes, so catching up stays fast.
pub const APPEND_ENTRIES_PER_RPC_MAX: u64 = 8;
/// Snapshot bytes per InstallSnapshot chunk (openraft's `snapshot_max_chunk_size`).
pub const SNAPSHOT_CHUNK_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// Largest gRPC message of the Raft service either way: a full AppendEntries plus room for its envelope.
pub const GRPC_MESSAGE_BYTES_MAX: usize =
    (APPEND_ENTRIES_PER_RPC_MAX as usize) * (ENTRY_BYTES_MAX as usize) + (1 << 20);
/// Largest snapshot file frame (the serialized `MetadataState`); far above any real cluster's metadata.
pub const SNAPSHOT_BYTES_MAX: u32 = 1 << 30;
/// The durable-state file holds a vote and two log ids.
pub const STATE_FILE_BYTES_MAX: u32 = 64 * 1024;

const _: () = assert!(SNAPSHOT_CHUNK_BYTES_MAX as usize + (1 << 20) <= GRPC_MESSAGE_BYTES_MAX);

/// Settings of the controller quorum. The defaults suit a three-node cluster on one host or one LAN.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// How often the leader sends heartbeats; also openraft's deadline for one AppendEntries.
    pub heartbeat_interval_ms: u64,
    /// A follower that hears no leader for a random time in this range starts an election. Several
    /// heartbeats fit below the minimum, so one lost heartbeat does not cause an election.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Upper bound on any one Raft RPC, and the deadline of a snapshot chunk.
    pub rpc_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// HTTP/2 pings on idle peer connections, so a dropped path is noticed instead of hanging.
    pub keepalive_interval_ms: u64,
    pub keepalive_timeout_ms: u64,
    /// How long `propose` waits for commit and apply before giving up with an unknown outcome.
    pub propose_timeout_ms: u64,
    /// A snapshot is built after this many entries since the last one; the log behind it is then purged.
    pub snapshot_interval_entries: u64,
    /// Entries kept behind a snapshot, so a briefly lagging follower catches up from the log instead of
    /// needing the whole snapshot.
    pub entries_kept_after_snapshot: u64,
    /// A log segment file rolls once it reaches this size; purging deletes whole segments.
    pub log_segment_bytes_max: u64,
    /// TLS towards the other voters (verified against the CA, presenting this broker's certificate);
    /// `None` dials them in plaintext.
    pub peer_tls: Option<Arc<crate::security::tls::Tls>>,
}

impl Default for QuorumConfig {
    fn default() -> Self {
        QuorumConfig {
            heartbeat_interval_ms: 200,
            election_timeout_min_ms: 1_000,
            election_timeout_max_ms: 2_000,
            rpc_timeout_ms: 2_000,
            connect_timeout_ms: 1_000,
            keepalive_interval_ms: 1_000,
            keepalive_timeout_ms: 2_000,
            propose_timeout_ms: 10_000,
            snapshot_interval_entries: 1_000,
            entries_kept_after_snapshot: 100,
            log_segment_bytes_max: 4 * 1024 * 1024,
            peer_tls: None,
        }
    }
}

impl QuorumConfig {
    /// openraft's config for these settings.
    ///
    /// # Errors
    /// Settings openraft refuses, e.g. an election timeout range that is empty or not above the heartbeat.
    pub fn raft_config(&self) -> Result<openraft::Config, QuorumError> {
        if self.election_timeout_min_ms <= self.heartbeat_interval_ms {
            return Err(QuorumError::Config(format!(
                "election timeout {} ms must exceed the heartbeat interval {} ms",
                self.election_timeout_min_ms, self.heartbeat_interval_ms
            )));
        }
        let config = openraft::Config {
            cluster_name: "rill-controller".to_string(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: self.rpc_timeout_ms,
            max_payload_entries: APPEND_ENTRIES_PER_RPC_MAX,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_interval_entries),
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES_MAX,
            max_in_snapshot_log_to_keep: self.entries_kept_after_snapshot,
            ..Default::default()
        };
        config.validate().map_err(|e| QuorumError::Config(format!("invalid raft settings: {e}")))
    }

    fn network_config(&self) -> NetworkConfig {
        NetworkConfig {
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            keepalive_interval: Duration::from_millis(self.keepalive_interval_ms),
            keepalive_timeout: Duration::from_millis(self.keepalive_timeout_ms),
            rpc_timeout: Duration::from_millis(self.rpc_timeout_ms),
            tls: self.peer_tls.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// This node is not the active controller; `leader_id` is the one it knows of, if any.
    #[error("not the active controller (leader: {leader_id:?})")]
    NotLeader { leader_id: Option<u64> },
    /// No commit within the propose timeout: the records may or may not be committed later.
    #[error("proposal not committed within {timeout_ms} ms; its outcome is unknown")]
    Timeout { timeout_ms: u64 },
    /// Committed, but some records did not fit the state and were skipped on every node.
    #[error("metadata records at offset {first_offset} skipped: {}", reasons.join("; "))]
    Rejected { first_offset: u64, reasons: Vec<String> },
    #[error("invalid proposal: {0}")]
    InvalidProposal(String),
    #[error("invalid controller quorum configuration: {0}")]
    Config(String),
    #[error("raft storage: {0}")]
    Storage(#[from] std::io::Error),
    /// The local Raft has stopped (shut down, or a storage error made it stop to protect the log).
    #[error("controller raft stopped: {0}")]
    Stopped(String),
}

/// What `cluster status` shows about the controller quorum, seen from one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    pub node_id: u64,
    pub server_state: ServerState,
    /// The active controller, if this node knows one.
    pub leader_id: Option<u64>,
    pub term: u64,
    /// Voter ids with their `host:port`.
    pub voters: BTreeMap<u64, String>,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
}

/// This node's member of the controller quorum.
pub struct MetadataQuorum {
    node_id: NodeId,
    raft: Raft,
    published: watch::Receiver<Arc<MetadataState>>,
    propose_timeout_ms: u64,
}

impl MetadataQuorum {
    /// Opens the raft log and snapshot in `dir` and starts this node's Raft. On a node that has never been
    /// part of the quorum, it initializes the membership to `voters`: every voter does so with the same
    /// voters, which openraft accepts as one and the same initial configuration. A node already initialized
    /// keeps the membership its log holds.
    ///
    /// # Errors
    /// `node_id` not among `voters`, an invalid voter address or setting, or the storage failing to open.
    pub async fn start(
        node_id: u64,
        voters: BTreeMap<u64, String>,
        dir: &Path,
        config: QuorumConfig,
    ) -> Result<MetadataQuorum, QuorumError> {
        if !voters.contains_key(&node_id) {
            return Err(QuorumError::Config(format!("node {node_id} is not among the controller voters {voters:?}")));
        }
        let network_config = config.network_config();
        for address in voters.values() {
            peer_endpoint(address, &network_config).map_err(QuorumError::Config)?;
        }
        let raft_config = Arc::new(config.raft_config()?);
        let log = LogStore::open(dir, config.log_segment_bytes_max)?;
        let (published_tx, published) = watch::channel(Arc::new(MetadataState::default()));
        let state_machine = StateMachine::open(dir, published_tx)?;
        let network = PeerNetworkFactory::new(node_id, network_config);
        let raft = Raft::new(node_id, raft_config, network, log, state_machine)
            .await
            .map_err(|e| QuorumError::Stopped(e.to_string()))?;
        let quorum = MetadataQuorum { node_id, raft, published, propose_timeout_ms: config.propose_timeout_ms };
        quorum.initialize_if_new(&voters).await?;
        Ok(quorum)
    }

    async fn initialize_if_new(&self, voters: &BTreeMap<u64, String>) -> Result<(), QuorumError> {
        if self.raft.is_initialized().await.map_err(|e| QuorumError::Stopped(e.to_string()))? {
            return Ok(());
        }
        let members: BTreeMap<u64, BasicNode> =
            voters.iter().map(|(id, address)| (*id, BasicNode::new(address.clone()))).collect();
        match self.raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(node_id = self.node_id, ?voters, "controller quorum initialized");
                Ok(())
            }
            // Another voter's log reached this node first: it is part of the quorum already.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(RaftError::APIError(e)) => Err(QuorumError::Config(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(QuorumError::Stopped(e.to_string())),
        }
    }

    /// Commits `records` as one raft entry and returns once they are applied on this node, with the metadata
    /// offset of the first record.
    ///
    /// # Errors
    /// `NotLeader` on a node that is not the active controller (forward to `leader_id`). `NotLeader` from a
    /// node that lost leadership during the call, or `Timeout`, leaves the outcome unknown: a later leader
    /// may still commit the records, so callers re-check the state before retrying. `Rejected` when the
    /// records were committed but skipped by `MetadataState::apply`.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future does not withdraw the proposal, which may still commit.
    pub async fn propose(&self, records: Vec<MetadataRecord>) -> Result<u64, QuorumError> {
        if records.is_empty() {
            return Err(QuorumError::InvalidProposal("no records".into()));
        }
        let proposal = Proposal { records };
        let bytes = serde_json::to_vec(&proposal).expect("metadata records always serialise").len();
        // Room for the entry's log id and envelope within the entry limit.
        if bytes + 1024 > ENTRY_BYTES_MAX as usize {
            return Err(QuorumError::InvalidProposal(format!(
                "{bytes} bytes of records exceed the {ENTRY_BYTES_MAX}-byte raft entry limit"
            )));
        }
        let timeout = Duration::from_millis(self.propose_timeout_ms);
        let written = tokio::time::timeout(timeout, self.raft.client_write(proposal))
            .await
            .map_err(|_| QuorumError::Timeout { timeout_ms: self.propose_timeout_ms })?;
        match written {
            Ok(response) if response.data.skipped.is_empty() => Ok(response.data.first_offset),
            Ok(response) => {
                Err(QuorumError::Rejected { first_offset: response.data.first_offset, reasons: response.data.skipped })
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(QuorumError::NotLeader { leader_id: f.leader_id })
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                unreachable!("a normal entry never changes membership: {e}")
            }
            Err(RaftError::Fatal(e)) => Err(QuorumError::Stopped(e.to_string())),
        }
    }

    /// The applied metadata, updated after every applied entry or installed snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataState>> {
        self.published.clone()
    }

    /// The applied metadata now.
    pub fn state(&self) -> Arc<MetadataState> {
        Arc::clone(&self.published.borrow())
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The active controller as this node knows it.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// The voters of the current membership, with their addresses.
    pub fn voters(&self) -> BTreeMap<u64, String> {
        voters_of(&self.raft.metrics().borrow())
    }

    pub fn status(&self) -> QuorumStatus {
        let metrics = self.raft.metrics().borrow().clone();
        QuorumStatus {
            node_id: self.node_id,
            server_state: metrics.state,
            leader_id: metrics.current_leader,
            term: metrics.current_term,
            voters: voters_of(&metrics),
            last_log_index: metrics.last_log_index,
            last_applied_index: metrics.last_applied.map(|id| id.index),
            snapshot_index: metrics.snapshot.map(|id| id.index),
            purged_index: metrics.purged.map(|id| id.index),
        }
    }

    /// openraft's metrics, to await conditions (`raft().wait(timeout).metrics(..)`) or export them.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The `ControllerRaft` gRPC service for the node's server; peers reach this node's Raft through it.
    pub fn grpc_service(&self) -> ControllerRaftServer<RaftService> {
        RaftService::new(self.raft.clone()).into_server()
    }

    /// Stops this node's Raft; its storage is closed when openraft's tasks end.
    ///
    /// # Errors
    /// The Raft task had already failed.
    pub async fn shutdown(&self) -> Result<(), QuorumError> {
        self.raft.shutdown().await.map_err(|e| QuorumError::Stopped(format!("raft task failed: {e}")))
    }
}

fn voters_of(metrics: &RaftMetrics<NodeId, BasicNode>) -> BTreeMap<u64, String> {
    let membership = metrics.membership_config.membership();
    membership.voter_ids().filter_map(|id| membership.get_node(&id).map(|node| (id, node.addr.clone()))).collect()
}
