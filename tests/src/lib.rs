//! End-to-end test harness: real `rill-broker` processes on loopback ports, each with its own data
//! directory ([`BrokerProcess`]), clusters of them with an optional fault-injecting proxy in front of every
//! node ([`cluster`], [`proxy`]), a runner for the `rill` CLI binary, and a history checker that finds lost
//! or misplaced acknowledged writes and diverging replicas ([`checker`]), and real Kafka clients to point at
//! a broker's Kafka listener ([`kafka_clients`]), certificates and TLS probes for TLS brokers ([`tls`]), a scraper of the
//! brokers' `/metrics` ([`scrape`]), and headless Chromium for the web console ([`browser`]).

mod broker;
pub mod browser;
pub mod checker;
pub mod cluster;
pub mod kafka_clients;
pub mod origin;
pub mod proxy;
pub mod rpc;
pub mod scrape;
pub mod tls;

pub use broker::{
    BrokerOptions, BrokerProcess, CliOutput, Signal, broker_binary, broker_start_refusal, cli_binary, free_port,
    lines_input, run_rill,
};
