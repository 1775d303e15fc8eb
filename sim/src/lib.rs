//! Deterministic simulation of Rill's replication protocol.
//!
//! One thread runs N brokers' real replication state machines (`rill_broker::replication::Replica`), the real
//! idempotent-producer tables (`rill_broker::producer_state`) and the controller's real metadata planner and
//! state machine (`rill_broker::metadata::{planner, MetadataState}`), on a simulated clock, over a simulated
//! network and simulated disks, with producers and consumers as simulated clients. Everything random comes
//! from one RNG seeded with the run's seed, so a seed replays the same run, trace byte for byte.
//!
//! A run is a safety phase under faults (message drop, delay, duplication and reordering; symmetric and
//! one-way partitions; crashes that lose unsynced writes and may tear the last one; pauses; controller
//! failovers) and then a liveness phase that heals everything and must converge. The recorded history goes
//! to the Jepsen-style checker in `rill_tests::checker::jepsen`.
//!
//! Files: `world.rs` (the event loop, clock, RNG, history and trace), `net.rs` (messages and the network's
//! faults), `disk.rs` (a partition's simulated disk), `broker.rs` and `shell.rs` (a broker and the shell around
//! each partition's replica, mirroring `rill_broker::partition`), `controller.rs` (the active controller
//! around the planner), `clients.rs` (producers and consumers), `faults.rs` (the fault schedule and healing),
//! `options.rs` (what a run looks like, and the planted bugs of the shell and clients).

mod broker;
mod clients;
mod controller;
mod disk;
mod faults;
mod net;
mod options;
mod shell;
mod world;

pub use options::{Options, Planted};
pub use world::{Outcome, run};
