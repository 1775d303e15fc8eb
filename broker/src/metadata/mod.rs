//! Cluster metadata: the records of the metadata log, the pure state machine that applies them, the durable
//! log they are written to (a local file today; `raft` replicates it among the controller voters), and the
//! controller that turns requests into records.

pub mod controller;
pub mod log;
pub mod raft;
pub mod records;
pub mod state;

pub use controller::{Controller, ControllerError};
pub use records::{MetadataRecord, PartitionRecord};
pub use state::{BrokerRegistration, MetadataState, PartitionState, TopicState};
