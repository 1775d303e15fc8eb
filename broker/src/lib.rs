//! The Rill broker: hosts partition logs, runs the controller's metadata state machine, and serves the gRPC
//! API. See ARCHITECTURE.md for the data flow and invariants.

pub mod clock;
pub mod cluster_link;
pub mod config;
/// Fuzz target bodies (`fuzz/`, and `tests/fuzz_targets.rs` that replays them); not part of the API.
#[doc(hidden)]
pub mod fuzzing;
pub mod group;
pub mod http;
pub mod kafka;
pub mod limits;
pub mod manager;
pub mod metadata;
pub mod metrics;
pub mod partition;
pub mod producer_state;
pub mod replication;
pub mod requests;
pub mod security;
pub mod server;
pub mod service;
pub mod topic_config;

pub use config::{Args, BrokerConfig};
pub use server::run;
