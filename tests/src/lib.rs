//! End-to-end test harness: real `rill-broker` processes on loopback ports, each with its own data
//! directory ([`BrokerProcess`]), clusters of them with an optional fault-injecting proxy in front of every
//! node ([`cluster`], [`proxy`]), a runner for the `rill` CLI binary, and a history checker that finds lost
//! or misplaced acknowledged writes and diverging replicas ([`checker`]).

mod broker;
pub mod checker;
pub mod cluster;
pub mod origin;
pub mod proxy;
pub mod rpc;

pub use broker::{
    BrokerOptions, BrokerProcess, CliOutput, Signal, broker_binary, cli_binary, free_port, lines_input, run_rill,
};
