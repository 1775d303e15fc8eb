//! Cluster metadata: the records of the metadata log, the pure state machine that applies them, the durable
//! log they are written to, and the controller that turns requests into records.

pub mod controller;
pub mod log;
pub mod records;
pub mod state;

pub use controller::{Controller, ControllerError};
pub use records::{MetadataRecord, PartitionRecord};
pub use state::{BrokerRegistration, MetadataState, PartitionState, TopicState};
