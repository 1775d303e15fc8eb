//! Leader side: fetch validation, divergence answers, follower progress and the HW.

use super::*;

#[test]
fn leader_answers_a_valid_fetch_with_a_read_at_the_fetch_offset() {
    let mut replica = leader(true, 5, &[1, 2, 3]);
    let commands = replica.step(fetch_event(2, 3, 1));
    assert_eq!(
        commands,
        vec![Command::ReplyFetch {
            replica_id: 2,
            reply: FetchReply::Read { fetch_offset: 3, high_watermark: 0, log_start_offset: 0 },
        }]
    );
    assert_eq!(replica.follower_log_end_offset(2), Some(3));
}

#[test]
fn leader_refuses_fetch_with_stale_leader_epoch() {
    let mut replica = leader(true, 5, &[1, 2, 3]);
    let stale = ReplicaFetch { current_leader_epoch: 0, ..fetch(2, 5, 1) };
    let commands = replica.step(Event::ReplicaFetch(stale));
    assert_eq!(reply_of(&commands), FetchReply::Error(FetchError::FencedLeaderEpoch));
    assert_eq!(replica.follower_log_end_offset(2), None, "a refused fetch says nothing about the follower");
}

#[test]
fn leader_refuses_fetch_with_future_leader_epoch() {
    let mut replica = leader(true, 5, &[1, 2, 3]);
    let future = ReplicaFetch { current_leader_epoch: 2, ..fetch(2, 5, 1) };
    assert_eq!(reply_of(&replica.step(Event::ReplicaFetch(future))), FetchReply::Error(FetchError::UnknownLeaderEpoch));
}

#[test]
fn a_follower_refuses_fetches_as_not_leader() {
    let mut replica = replica_with_log(2, true, 5);
    replica.step(become_follower(3, 1, 1));
    assert_eq!(reply_of(&replica.step(fetch_event(1, 5, 1))), FetchReply::Error(FetchError::NotLeader));
}

#[test]
fn leader_refuses_fetch_from_a_broker_that_is_not_a_replica() {
    let mut replica = leader(true, 5, &[1, 2, 3]);
    assert_eq!(reply_of(&replica.step(fetch_event(9, 5, 1))), FetchReply::Error(FetchError::UnknownReplica));
    assert_eq!(reply_of(&replica.step(fetch_event(LEADER, 5, 1))), FetchReply::Error(FetchError::UnknownReplica));
}

#[test]
fn leader_refuses_fetch_from_an_older_incarnation_of_a_follower() {
    let mut replica = leader(true, 5, &[1, 2, 3]);
    replica.step(Event::ReplicaFetch(ReplicaFetch { broker_epoch: 8, ..fetch(2, 5, 1) }));
    let old = ReplicaFetch { broker_epoch: 7, ..fetch(2, 5, 2) };
    assert_eq!(reply_of(&replica.step(Event::ReplicaFetch(old))), FetchReply::Error(FetchError::StaleBrokerEpoch));
}

#[test]
fn leader_refuses_fetch_offsets_outside_its_log() {
    let mut replica = leader(true, 5, &[1, 2, 3]);
    let beyond = ReplicaFetch { last_fetched_epoch: None, ..fetch(2, 6, 1) };
    assert_eq!(
        reply_of(&replica.step(Event::ReplicaFetch(beyond))),
        FetchReply::Error(FetchError::OffsetOutOfRange { log_start_offset: 0, log_end_offset: 5 })
    );
}

#[test]
fn leader_answers_diverging_when_the_followers_last_epoch_ends_earlier_here() {
    // Leader: epoch 0 at 0..5, epoch 1 from 5. The follower wrote epoch 0 up to 8 under an old leader.
    let mut replica = leader(true, 5, &[1, 2, 3]);
    let commands = replica.step(fetch_event(2, 8, 1));
    assert_eq!(
        reply_of(&commands),
        FetchReply::Diverging { diverging_epoch: Some(0), end_offset: 5, high_watermark: 0 }
    );
    assert_eq!(replica.follower_log_end_offset(2), None, "a diverged follower's offsets are not progress");
}

#[test]
fn leader_answers_diverging_with_the_largest_epoch_below_an_epoch_it_never_had() {
    // The follower holds records of epoch 1 from a leader whose epoch-1 writes never reached this one, now
    // leading epoch 2 from offset 5.
    let epochs = EpochHistory::from_entries(entries(&[(0, 0)])).unwrap();
    let recovered =
        RecoveredLog { log_start_offset: 0, log_end_offset: 5, flushed_offset: 5, high_watermark: 0, epochs };
    let (mut replica, _) = Replica::new(config(LEADER, true), recovered);
    replica.step(become_leader(2, 2, &[1, 2, 3], 0));
    let diverged = ReplicaFetch { current_leader_epoch: 2, last_fetched_epoch: Some(1), ..fetch(2, 7, 1) };
    assert_eq!(
        reply_of(&replica.step(Event::ReplicaFetch(diverged))),
        FetchReply::Diverging { diverging_epoch: Some(0), end_offset: 5, high_watermark: 0 }
    );
}

#[test]
fn a_follower_whose_last_epoch_matches_is_served() {
    let mut replica = leader(true, 5, &[1, 2, 3]);
    replica.step(Event::Appended { log_end_offset: 9 });
    let in_epoch_1 = ReplicaFetch { last_fetched_epoch: Some(1), ..fetch(2, 7, 1) };
    assert!(matches!(
        reply_of(&replica.step(Event::ReplicaFetch(in_epoch_1))),
        FetchReply::Read { fetch_offset: 7, .. }
    ));
}

#[test]
fn hw_is_min_of_isr_durable_offsets() {
    let mut replica = leader(true, 10, &[1, 2, 3]);
    let commands = replica.step(Event::ReplicaFetch(ReplicaFetch { flushed_offset: 6, ..fetch(2, 9, 1) }));
    assert!(hw_advances(&commands).is_empty(), "broker 3 has not fetched yet");
    let commands = replica.step(Event::ReplicaFetch(ReplicaFetch { flushed_offset: 7, ..fetch(3, 8, 2) }));
    assert_eq!(hw_advances(&commands), vec![6], "flushed offsets count under fsync, not fetch offsets");
    assert_eq!(replica.high_watermark(), 6);
    assert!(matches!(reply_of(&commands), FetchReply::Read { high_watermark: 6, .. }), "the reply carries the new HW");
}

#[test]
fn hw_follows_fetch_offsets_without_fsync() {
    let mut replica = leader(false, 10, &[1, 2]);
    let commands = replica.step(Event::ReplicaFetch(ReplicaFetch { flushed_offset: 0, ..fetch(2, 9, 1) }));
    assert_eq!(hw_advances(&commands), vec![9]);
}

#[test]
fn hw_never_passes_the_leaders_own_durable_offset() {
    let mut replica = leader(true, 10, &[1, 2]);
    replica.step(Event::Appended { log_end_offset: 20 });
    let commands = replica.step(fetch_epoch_1_event(2, 20, 1));
    assert_eq!(hw_advances(&commands), vec![10], "the leader flushed only 10");
    let commands = replica.step(Event::Flushed { flushed_offset: 20 });
    assert_eq!(hw_advances(&commands), vec![20]);
}

#[test]
fn hw_never_moves_backwards() {
    let mut replica = leader(true, 10, &[1, 2]);
    replica.step(fetch_event(2, 10, 1));
    assert_eq!(replica.high_watermark(), 10);
    // The follower restarted and lost its unflushed tail: its durable offset drops, the HW does not.
    let commands = replica.step(Event::ReplicaFetch(ReplicaFetch { broker_epoch: 8, ..fetch(2, 4, 2) }));
    assert!(hw_advances(&commands).is_empty());
    assert_eq!(replica.high_watermark(), 10);
}

#[test]
fn a_follower_outside_the_isr_does_not_hold_back_the_hw() {
    let mut replica = leader(true, 10, &[1, 2]);
    replica.step(fetch_event(3, 1, 1));
    let commands = replica.step(fetch_event(2, 10, 1));
    assert_eq!(hw_advances(&commands), vec![10]);
}

#[test]
fn a_leaders_own_appends_advance_the_hw_of_a_sole_isr_without_fsync() {
    let mut replica = leader(false, 5, &[1]);
    assert_eq!(replica.high_watermark(), 5);
    let commands = replica.step(Event::Appended { log_end_offset: 8 });
    assert_eq!(commands, vec![Command::HighWatermarkAdvanced { high_watermark: 8 }]);
}

#[test]
fn a_fetch_with_a_flushed_offset_beyond_its_fetch_offset_counts_only_the_fetch_offset() {
    let mut replica = leader(true, 10, &[1, 2]);
    let commands = replica.step(Event::ReplicaFetch(ReplicaFetch { flushed_offset: 99, ..fetch(2, 7, 1) }));
    assert_eq!(hw_advances(&commands), vec![7]);
}

#[test]
fn fetch_replies_carry_the_log_start_after_retention() {
    let mut replica = leader(true, 10, &[1, 2]);
    replica.step(fetch_event(2, 10, 1));
    replica.step(Event::LogStartAdvanced { log_start_offset: 4 });
    assert_eq!(
        reply_of(&replica.step(fetch_event(2, 10, 2))),
        FetchReply::Read { fetch_offset: 10, high_watermark: 10, log_start_offset: 4 }
    );
    assert_eq!(
        reply_of(&replica.step(fetch_event(3, 3, 3))),
        FetchReply::Error(FetchError::OffsetOutOfRange { log_start_offset: 4, log_end_offset: 10 })
    );
}

#[test]
#[should_panic(expected = "leader log end moved backwards")]
fn a_leader_log_end_moving_backwards_is_a_broken_invariant() {
    let mut replica = leader(true, 10, &[1, 2]);
    replica.step(Event::Appended { log_end_offset: 8 });
}
