//! Cluster metadata: the records of the metadata log, the pure state machine that applies them, the pure
//! planner that decides them, the controller quorum (openraft) that replicates them, and the controller that
//! ties these together on every voter.

pub mod controller;
pub mod planner;
pub mod raft;
pub mod records;
pub mod state;

pub use controller::{Controller, HeartbeatReply};
pub use planner::{
    ClusterChange, ClusterChangeOutcome, ControllerError, Election, ElectionOutcome, SecurityChange, TopicPolicy,
};
pub use records::{MetadataRecord, NO_LEADER, PartitionRecord};
pub use state::{BrokerRegistration, MetadataState, PartitionState, TopicState};
