//! Specifications of the replication state machine, one file per area, over a shared harness: builders for
//! replicas in a known state and for the events that drive them.

mod cluster;
mod follower;
mod isr;
mod leader;
mod metadata;
mod network;
mod simulation;

use super::*;

/// Brokers 1, 2 and 3; broker 1 leads unless a test says otherwise.
pub(super) const LEADER: u32 = 1;
pub(super) const REPLICA_LAG_MS_MAX: u64 = 10_000;
pub(super) const FETCH_BACKOFF_MS: u64 = 100;

pub(super) fn config(broker_id: u32, durability_fsync: bool) -> ReplicaConfig {
    ReplicaConfig {
        broker_id,
        replica_lag_ms_max: REPLICA_LAG_MS_MAX,
        min_insync_replicas: 2,
        durability_fsync,
        fetch_backoff_ms: FETCH_BACKOFF_MS,
        unclean_leader_election: false,
    }
}

/// A replica over a log of `log_end_offset` records, all flushed, written in epoch 0 (if any).
pub(super) fn replica_with_log(broker_id: u32, durability_fsync: bool, log_end_offset: u64) -> Replica {
    let mut epochs = EpochHistory::new();
    if log_end_offset > 0 {
        epochs.append(0, 0);
    }
    let recovered =
        RecoveredLog { log_start_offset: 0, log_end_offset, flushed_offset: log_end_offset, high_watermark: 0, epochs };
    let (replica, commands) = Replica::new(config(broker_id, durability_fsync), recovered);
    assert!(commands.is_empty());
    replica
}

pub(super) fn become_leader(leader_epoch: u32, partition_epoch: u32, isr: &[u32], now_ms: u64) -> Event {
    Event::BecomeLeader { leader_epoch, partition_epoch, replicas: vec![1, 2, 3], isr: isr.to_vec(), now_ms }
}

pub(super) fn become_follower(leader: u32, leader_epoch: u32, partition_epoch: u32) -> Event {
    Event::BecomeFollower { leader, leader_epoch, partition_epoch, replicas: vec![1, 2, 3], isr: vec![1, 2, 3] }
}

/// Broker 1 leading epoch 1 (partition epoch 1) over `isr`, with a flushed log of `log_end_offset` records.
pub(super) fn leader(durability_fsync: bool, log_end_offset: u64, isr: &[u32]) -> Replica {
    let mut replica = replica_with_log(LEADER, durability_fsync, log_end_offset);
    replica.step(become_leader(1, 1, isr, 0));
    replica
}

/// A valid fetch from `replica_id` in leader epoch 1 at `now_ms`, with everything below `fetch_offset`
/// flushed and written in epoch 0.
pub(super) fn fetch(replica_id: u32, fetch_offset: u64, now_ms: u64) -> ReplicaFetch {
    ReplicaFetch {
        replica_id,
        broker_epoch: 7,
        current_leader_epoch: 1,
        fetch_offset,
        last_fetched_epoch: (fetch_offset > 0).then_some(0),
        flushed_offset: fetch_offset,
        now_ms,
    }
}

pub(super) fn fetch_event(replica_id: u32, fetch_offset: u64, now_ms: u64) -> Event {
    Event::ReplicaFetch(fetch(replica_id, fetch_offset, now_ms))
}

/// A fetch from a follower whose last record was written in leader epoch 1, i.e. one that copied records the
/// harness leader appended after taking over.
pub(super) fn fetch_epoch_1_event(replica_id: u32, fetch_offset: u64, now_ms: u64) -> Event {
    Event::ReplicaFetch(ReplicaFetch { last_fetched_epoch: Some(1), ..fetch(replica_id, fetch_offset, now_ms) })
}

/// The reply in a step's commands, which must hold exactly one.
pub(super) fn reply_of(commands: &[Command]) -> FetchReply {
    let replies: Vec<_> = commands
        .iter()
        .filter_map(|command| match command {
            Command::ReplyFetch { reply, .. } => Some(reply.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(replies.len(), 1, "one reply per fetch: {commands:?}");
    replies[0].clone()
}

pub(super) fn hw_advances(commands: &[Command]) -> Vec<u64> {
    commands
        .iter()
        .filter_map(|command| match command {
            Command::HighWatermarkAdvanced { high_watermark } => Some(*high_watermark),
            _ => None,
        })
        .collect()
}

pub(super) fn proposals(commands: &[Command]) -> Vec<(u64, Vec<u32>)> {
    commands
        .iter()
        .filter_map(|command| match command {
            Command::ProposeIsr { proposal_id, isr, .. } => Some((*proposal_id, isr.clone())),
            _ => None,
        })
        .collect()
}

pub(super) fn sent_fetches(commands: &[Command]) -> Vec<FetchRequest> {
    commands
        .iter()
        .filter_map(|command| match command {
            Command::SendFetch(request) => Some(request.clone()),
            _ => None,
        })
        .collect()
}

/// The single fetch a step sent.
pub(super) fn sent_fetch(commands: &[Command]) -> FetchRequest {
    let fetches = sent_fetches(commands);
    assert_eq!(fetches.len(), 1, "one fetch: {commands:?}");
    fetches[0].clone()
}

pub(super) fn batch(base_offset: u64, last_offset: u64, partition_leader_epoch: u32) -> BatchMeta {
    BatchMeta { base_offset, last_offset, partition_leader_epoch }
}

pub(super) fn entries(pairs: &[(u32, u64)]) -> Vec<EpochEntry> {
    pairs.iter().map(|&(epoch, start_offset)| EpochEntry { epoch, start_offset }).collect()
}
