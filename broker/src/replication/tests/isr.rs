//! ISR maintenance: shrinks after `replica_lag_ms_max`, expansions once caught up, one proposal at a time, the
//! HW over the union while a proposal is pending, and the controller's answers.

use super::*;

fn accepted(isr: &[u32], partition_epoch: u32) -> Result<AcceptedIsr, AlterPartitionError> {
    Ok(AcceptedIsr { isr: isr.to_vec(), partition_epoch })
}

/// A leader over ISR {1, 2, 3} at log end 10 whose followers fetched up to date at time 0.
fn leader_with_caught_up_followers() -> Replica {
    let mut replica = leader(true, 10, &[1, 2, 3]);
    replica.step(fetch_event(2, 10, 0));
    replica.step(fetch_event(3, 10, 0));
    assert_eq!(replica.high_watermark(), 10);
    replica
}

#[test]
fn isr_shrinks_after_replica_lag_ms_max() {
    let mut replica = leader_with_caught_up_followers();
    replica.step(Event::Appended { log_end_offset: 20 });
    replica.step(Event::Flushed { flushed_offset: 20 });
    assert!(proposals(&replica.step(Event::Tick { now_ms: REPLICA_LAG_MS_MAX })).is_empty(), "not longer than the max");
    replica.step(fetch_epoch_1_event(2, 20, REPLICA_LAG_MS_MAX));
    let commands = replica.step(Event::Tick { now_ms: REPLICA_LAG_MS_MAX + 1 });
    assert_eq!(
        commands,
        vec![Command::ProposeIsr { proposal_id: 0, leader_epoch: 1, partition_epoch: 1, isr: vec![1, 2] }]
    );
}

#[test]
fn a_follower_that_reaches_the_log_end_of_its_previous_fetch_counts_as_caught_up_then() {
    let mut replica = leader(true, 10, &[1, 2]);
    replica.step(fetch_event(2, 10, 0));
    // Steady load: every fetch finds the leader a little further ahead.
    for (step, now_ms) in [6_000, 12_000, 18_000].into_iter().enumerate() {
        let leader_end = 20 + 10 * step as u64;
        replica.step(Event::Appended { log_end_offset: leader_end });
        replica.step(fetch_epoch_1_event(2, leader_end - 10, now_ms));
    }
    assert!(proposals(&replica.step(Event::Tick { now_ms: 18_001 })).is_empty());
}

#[test]
fn a_follower_that_never_reaches_the_leader_is_removed() {
    let mut replica = leader(true, 10, &[1, 2]);
    replica.step(fetch_event(2, 10, 0));
    replica.step(Event::Appended { log_end_offset: 100 });
    for now_ms in [3_000, 6_000, 9_000] {
        assert!(proposals(&replica.step(fetch_epoch_1_event(2, 11, now_ms))).is_empty());
        assert_eq!(replica.follower_log_end_offset(2), Some(11));
    }
    assert_eq!(proposals(&replica.step(Event::Tick { now_ms: REPLICA_LAG_MS_MAX + 1 })), vec![(0, vec![1])]);
}

#[test]
fn isr_expands_when_follower_catches_up_to_hw() {
    let mut replica = leader(true, 10, &[1, 2]);
    replica.step(fetch_event(2, 10, 0));
    assert!(proposals(&replica.step(fetch_event(3, 9, 1))).is_empty(), "below the HW");
    let commands = replica.step(fetch_event(3, 10, 2));
    assert_eq!(proposals(&commands), vec![(0, vec![1, 2, 3])]);
}

#[test]
fn isr_expansion_waits_for_the_followers_flush_under_fsync() {
    let mut replica = leader(true, 10, &[1, 2]);
    replica.step(fetch_event(2, 10, 0));
    let unflushed = ReplicaFetch { flushed_offset: 4, ..fetch(3, 10, 1) };
    assert!(proposals(&replica.step(Event::ReplicaFetch(unflushed))).is_empty());
}

#[test]
fn isr_expansion_waits_until_the_follower_reaches_the_current_epoch() {
    // Broker 1 took over in epoch 1 at offset 10 with HW 4: a follower at 6 is past the HW but could still
    // hold an epoch-0 tail that the new leader does not have.
    let epochs = EpochHistory::from_entries(entries(&[(0, 0)])).unwrap();
    let recovered =
        RecoveredLog { log_start_offset: 0, log_end_offset: 10, flushed_offset: 10, high_watermark: 4, epochs };
    let (mut replica, _) = Replica::new(config(LEADER, true), recovered);
    replica.step(become_leader(1, 1, &[1, 2], 0));
    assert!(proposals(&replica.step(fetch_event(3, 6, 1))).is_empty());
    assert_eq!(proposals(&replica.step(fetch_event(3, 10, 2))), vec![(0, vec![1, 2, 3])]);
}

#[test]
fn only_one_isr_proposal_is_in_flight() {
    let mut replica = leader_with_caught_up_followers();
    replica.step(Event::Appended { log_end_offset: 20 });
    assert_eq!(proposals(&replica.step(Event::Tick { now_ms: REPLICA_LAG_MS_MAX + 1 })), vec![(0, vec![1])]);
    assert!(proposals(&replica.step(Event::Tick { now_ms: REPLICA_LAG_MS_MAX + 2 })).is_empty());
    assert_eq!(replica.pending_isr().map(|isr| isr.iter().copied().collect::<Vec<_>>()), Some(vec![1]));
}

#[test]
fn pending_isr_change_uses_union_for_hw() {
    let mut replica = leader(true, 10, &[1, 2]);
    replica.step(fetch_event(2, 10, 0));
    replica.step(fetch_event(3, 10, 1));
    assert_eq!(replica.pending_isr().map(|isr| isr.len()), Some(3), "expansion to {{1, 2, 3}} pending");
    replica.step(Event::Appended { log_end_offset: 20 });
    replica.step(Event::Flushed { flushed_offset: 20 });
    let commands = replica.step(fetch_epoch_1_event(2, 20, 2));
    assert!(hw_advances(&commands).is_empty(), "broker 3 is in the proposed ISR and holds only 10");
    let commands = replica.step(fetch_epoch_1_event(3, 15, 3));
    assert_eq!(hw_advances(&commands), vec![15]);
}

#[test]
fn accepted_isr_change_is_applied() {
    let mut replica = leader_with_caught_up_followers();
    replica.step(Event::Appended { log_end_offset: 20 });
    replica.step(Event::Flushed { flushed_offset: 20 });
    replica.step(fetch_epoch_1_event(2, 20, REPLICA_LAG_MS_MAX));
    replica.step(Event::Tick { now_ms: REPLICA_LAG_MS_MAX + 1 });
    let commands = replica.step(Event::AlterPartitionResponse { proposal_id: 0, result: accepted(&[1, 2], 2) });
    assert_eq!(replica.isr().iter().copied().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(replica.partition_epoch(), Some(2));
    assert_eq!(replica.pending_isr(), None);
    assert_eq!(commands, vec![Command::HighWatermarkAdvanced { high_watermark: 20 }], "broker 3 no longer counts");
    assert_eq!(replica.step(become_leader(1, 2, &[1, 2], 0)), vec![], "the metadata echo changes nothing");
}

#[test]
fn a_stale_partition_epoch_refusal_waits_for_new_metadata() {
    let mut replica = leader_with_caught_up_followers();
    replica.step(Event::Tick { now_ms: REPLICA_LAG_MS_MAX + 1 });
    let refused = Err(AlterPartitionError::StalePartitionEpoch);
    let commands = replica.step(Event::AlterPartitionResponse { proposal_id: 0, result: refused });
    assert_eq!(
        commands,
        vec![Command::Warn(Warning::IsrChangeRefused { error: AlterPartitionError::StalePartitionEpoch })]
    );
    assert!(proposals(&replica.step(Event::Tick { now_ms: REPLICA_LAG_MS_MAX + 2 })).is_empty());
    replica.step(become_leader(1, 5, &[1, 2, 3], 0));
    let commands = replica.step(Event::Tick { now_ms: REPLICA_LAG_MS_MAX + 3 });
    assert_eq!(
        commands,
        vec![Command::ProposeIsr { proposal_id: 1, leader_epoch: 1, partition_epoch: 5, isr: vec![1] }]
    );
}

#[test]
fn an_unavailable_controller_means_proposing_again_at_the_next_tick() {
    let mut replica = leader_with_caught_up_followers();
    replica.step(Event::Tick { now_ms: REPLICA_LAG_MS_MAX + 1 });
    let unavailable = Err(AlterPartitionError::Unavailable);
    replica.step(Event::AlterPartitionResponse { proposal_id: 0, result: unavailable });
    assert_eq!(proposals(&replica.step(Event::Tick { now_ms: REPLICA_LAG_MS_MAX + 2 })), vec![(1, vec![1])]);
}

#[test]
fn an_answer_to_an_abandoned_proposal_is_ignored() {
    let mut replica = leader_with_caught_up_followers();
    replica.step(Event::Tick { now_ms: REPLICA_LAG_MS_MAX + 1 });
    replica.step(become_leader(1, 2, &[1, 2, 3], 0));
    let commands = replica.step(Event::AlterPartitionResponse { proposal_id: 0, result: accepted(&[1], 3) });
    assert!(commands.is_empty());
    assert_eq!(replica.isr().len(), 3);
    assert_eq!(replica.partition_epoch(), Some(2));
}

#[test]
fn the_leader_never_proposes_to_remove_itself() {
    let mut replica = leader(true, 10, &[1]);
    assert!(proposals(&replica.step(Event::Tick { now_ms: REPLICA_LAG_MS_MAX * 10 })).is_empty());
}

/// Regression (rill-sim seed 1125): the answer to an expansion was lost, the leader dropped the proposal, and
/// the HW passed the added follower while the controller's ISR, which a new leader is elected from, held it.
#[test]
fn an_unanswered_expansion_keeps_holding_the_hw_back_until_its_outcome_is_known() {
    let mut replica = leader(true, 10, &[1, 2]);
    replica.step(fetch_event(2, 10, 0));
    assert_eq!(proposals(&replica.step(fetch_event(3, 10, 1))), vec![(0, vec![1, 2, 3])]);
    let unavailable = Err(AlterPartitionError::Unavailable);
    replica.step(Event::AlterPartitionResponse { proposal_id: 0, result: unavailable });
    assert_eq!(replica.effective_isr().len(), 3, "the controller may have committed {{1, 2, 3}}");
    replica.step(Event::Appended { log_end_offset: 20 });
    replica.step(Event::Flushed { flushed_offset: 20 });
    let commands = replica.step(fetch_epoch_1_event(2, 20, 2));
    assert!(hw_advances(&commands).is_empty(), "broker 3 may be in the ISR and holds only 10");
    // Metadata with a newer partition epoch settles it: here the expansion was committed.
    replica.step(become_leader(1, 2, &[1, 2, 3], 3));
    assert_eq!(replica.effective_isr().len(), 3);
    assert_eq!(hw_advances(&replica.step(fetch_epoch_1_event(3, 20, 4))), vec![20]);
}

#[test]
fn a_committed_answer_to_a_later_proposal_settles_an_unanswered_one() {
    let mut replica = leader(true, 10, &[1, 2]);
    replica.step(fetch_event(2, 10, 0));
    replica.step(fetch_event(3, 10, 1));
    replica.step(Event::AlterPartitionResponse { proposal_id: 0, result: Err(AlterPartitionError::Unavailable) });
    assert_eq!(proposals(&replica.step(Event::Tick { now_ms: 2 })), vec![(1, vec![1, 2, 3])]);
    // The first proposal was not committed (the second, based on the same partition epoch, was): only the
    // answer counts now.
    replica.step(Event::AlterPartitionResponse { proposal_id: 1, result: accepted(&[1, 2], 2) });
    assert_eq!(replica.effective_isr().into_iter().collect::<Vec<_>>(), vec![1, 2]);
}

/// Regression (rill-sim seed 2475): a retried or duplicated expansion is refused as stale because its first
/// copy was committed; the refusal must not let the HW pass the added follower before metadata arrives.
#[test]
fn a_stale_refusal_of_an_expansion_keeps_holding_the_hw_back_until_metadata_arrives() {
    let mut replica = leader(true, 10, &[1, 2]);
    replica.step(fetch_event(2, 10, 0));
    assert_eq!(proposals(&replica.step(fetch_event(3, 10, 1))), vec![(0, vec![1, 2, 3])]);
    let refused = Err(AlterPartitionError::StalePartitionEpoch);
    replica.step(Event::AlterPartitionResponse { proposal_id: 0, result: refused });
    replica.step(Event::Appended { log_end_offset: 20 });
    replica.step(Event::Flushed { flushed_offset: 20 });
    assert!(hw_advances(&replica.step(fetch_epoch_1_event(2, 20, 2))).is_empty(), "broker 3 may be in the ISR");
    // The metadata shows the expansion was not committed after all: the HW moves over {1, 2}.
    assert_eq!(hw_advances(&replica.step(become_leader(1, 2, &[1, 2], 3))), vec![20]);
}

#[test]
fn an_ineligible_replica_refusal_is_settled_by_proposing_again() {
    // A duplicate of the request may have been committed before the broker was fenced: the refusal settles
    // nothing, and with broker 3 gone the leader proposes the unchanged ISR to learn which ISR holds.
    let mut replica = leader(true, 10, &[1, 2]);
    replica.step(fetch_event(2, 10, 0));
    replica.step(fetch_event(3, 10, 1));
    let refused = Err(AlterPartitionError::IneligibleReplica);
    replica.step(Event::AlterPartitionResponse { proposal_id: 0, result: refused });
    assert_eq!(replica.effective_isr().len(), 3);
    let later_ms = REPLICA_LAG_MS_MAX + 2;
    assert_eq!(proposals(&replica.step(fetch_event(2, 10, later_ms))), vec![(1, vec![1, 2])]);
    replica.step(Event::AlterPartitionResponse { proposal_id: 1, result: accepted(&[1, 2], 2) });
    assert_eq!(replica.effective_isr().into_iter().collect::<Vec<_>>(), vec![1, 2]);
}
