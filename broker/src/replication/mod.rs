//! Replication of one partition as a pure state machine: `Replica::step(event) -> commands`, no IO, no clock
//! reads, no randomness.
//!
//! The shell (a tokio task per partition, or the simulator) turns metadata changes, fetch RPCs, log appends,
//! fsync completions and timer ticks into [`Event`]s, steps them one at a time, and executes the returned
//! [`Command`]s in order before stepping the next event. Files: `replica.rs` (state, metadata transitions,
//! local log progress, lease), `leader.rs` (fetch handling, HW, ISR changes), `follower.rs` (what to fetch,
//! applying answers), `epochs.rs` (the leader-epoch history), `messages.rs` (events and commands).

mod epochs;
mod follower;
mod leader;
mod messages;
mod planted;
mod replica;

#[cfg(test)]
mod tests;

pub use epochs::{EpochEnd, EpochEntry, EpochHistory};
pub use messages::{
    AcceptedIsr, AlterPartitionError, BatchMeta, Command, Event, FetchAnswer, FetchError, FetchReply, FetchRequest,
    ProduceError, ReplicaFetch, Warning,
};
#[cfg(feature = "planted-bugs")]
pub use planted::PlantedBugs;
pub use replica::{RecoveredLog, Replica, ReplicaConfig, Role};
