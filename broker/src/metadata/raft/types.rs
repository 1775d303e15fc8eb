//! The openraft type configuration of the controller quorum: what one raft entry carries and what applying it
//! answers.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::metadata::records::MetadataRecord;

/// The payload of one normal raft entry: the records of one `propose` call, committed and applied together
/// so a multi-record change is never half visible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub records: Vec<MetadataRecord>,
}

/// What applying one raft entry did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalOutcome {
    /// Metadata offset of the entry's first record (for blank and membership entries, the offset the next
    /// record would get).
    pub first_offset: u64,
    /// Records the state machine skipped because they did not fit the state, with the reason.
    pub skipped: Vec<String>,
}

openraft::declare_raft_types!(
    /// Rill's openraft types: u64 node ids, `host:port` addresses, metadata proposals, snapshots in memory.
    pub TypeConfig:
        D = Proposal,
        R = ProposalOutcome,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Entry = openraft::Entry<TypeConfig>;
pub type NodeId = u64;
pub type Node = openraft::BasicNode;
pub type Raft = openraft::Raft<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
