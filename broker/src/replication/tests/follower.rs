//! Follower side: what it fetches, how it applies records, divergence and refusals.

use super::*;

/// Broker 2 following broker 1 in leader epoch 1 over a flushed epoch-0 log of `log_end_offset` records; its
/// first fetch (id 0) is in flight.
fn follower(durability_fsync: bool, log_end_offset: u64) -> Replica {
    let mut replica = replica_with_log(2, durability_fsync, log_end_offset);
    replica.step(become_follower(1, 1, 1));
    replica
}

fn records(batches: Vec<BatchMeta>, high_watermark: u64) -> FetchAnswer {
    FetchAnswer::Records { batches, high_watermark, log_start_offset: 0 }
}

fn answer(fetch_id: u64, answer: FetchAnswer) -> Event {
    Event::FetchResponse { fetch_id, answer, now_ms: 1_000 }
}

#[test]
fn follower_appends_records_adopts_their_epochs_and_fetches_on() {
    let mut replica = follower(false, 5);
    let commands = replica.step(answer(0, records(vec![batch(5, 7, 0), batch(8, 9, 1), batch(10, 12, 1)], 3)));
    assert_eq!(
        commands,
        vec![
            Command::PersistEpochHistory { entries: entries(&[(0, 0), (1, 8)]) },
            Command::AppendReplicated { fetch_id: 0, batches: vec![batch(5, 7, 0), batch(8, 9, 1), batch(10, 12, 1)] },
            Command::HighWatermarkAdvanced { high_watermark: 3 },
            Command::SendFetch(FetchRequest {
                fetch_id: 1,
                leader: 1,
                current_leader_epoch: 1,
                fetch_offset: 13,
                last_fetched_epoch: Some(1),
                flushed_offset: 5,
            }),
        ]
    );
    assert_eq!(replica.log_end_offset(), 13);
}

#[test]
fn follower_hw_is_the_leaders_hw_capped_at_its_own_log_end() {
    let mut replica = follower(false, 5);
    let commands = replica.step(answer(0, records(vec![batch(5, 6, 1)], 20)));
    assert_eq!(hw_advances(&commands), vec![7]);
    assert_eq!(replica.high_watermark(), 7);
}

#[test]
fn follower_hw_never_moves_backwards_when_a_new_leader_knows_less() {
    let mut replica = follower(false, 5);
    replica.step(answer(0, records(vec![], 5)));
    let commands = replica.step(answer(1, records(vec![], 2)));
    assert!(hw_advances(&commands).is_empty());
    assert_eq!(replica.high_watermark(), 5);
}

#[test]
fn under_fsync_the_next_fetch_waits_for_the_flush_of_what_was_appended() {
    let mut replica = follower(true, 5);
    let commands = replica.step(answer(0, records(vec![batch(5, 7, 1)], 5)));
    assert!(sent_fetches(&commands).is_empty());
    assert!(sent_fetches(&replica.step(Event::Flushed { flushed_offset: 6 })).is_empty());
    let next = sent_fetch(&replica.step(Event::Flushed { flushed_offset: 8 }));
    assert_eq!((next.fetch_offset, next.flushed_offset), (8, 8));
}

#[test]
fn an_answer_to_an_abandoned_fetch_is_ignored() {
    let mut replica = follower(false, 5);
    replica.step(become_follower(3, 2, 2));
    let commands = replica.step(answer(0, records(vec![batch(5, 7, 1)], 5)));
    assert!(commands.is_empty());
    assert_eq!(replica.log_end_offset(), 5);
}

#[test]
fn records_that_do_not_continue_the_log_are_refused() {
    let mut replica = follower(false, 5);
    let commands = replica.step(answer(0, records(vec![batch(6, 7, 1)], 5)));
    assert!(matches!(commands[..], [Command::Warn(Warning::InvalidFetchAnswer { .. })]));
    let commands = replica.step(Event::Tick { now_ms: 1_000 + FETCH_BACKOFF_MS });
    assert_eq!(sent_fetch(&commands).fetch_offset, 5);
}

#[test]
fn records_from_an_epoch_later_than_the_leaders_are_refused() {
    let mut replica = follower(false, 5);
    let commands = replica.step(answer(0, records(vec![batch(5, 7, 2)], 5)));
    assert!(matches!(commands[..], [Command::Warn(Warning::InvalidFetchAnswer { .. })]));
}

#[test]
fn records_with_epochs_going_backwards_are_refused() {
    let mut replica = follower(false, 5);
    let commands = replica.step(answer(0, records(vec![batch(5, 5, 1), batch(6, 6, 0)], 5)));
    assert!(matches!(commands[..], [Command::Warn(Warning::InvalidFetchAnswer { .. })]));
    assert_eq!(replica.epoch_history().entries(), entries(&[(0, 0)]));
}

#[test]
fn follower_truncates_to_diverging_epoch_end_offset() {
    let mut replica = follower(false, 8);
    let diverging = FetchAnswer::Diverging { diverging_epoch: Some(0), end_offset: 5, high_watermark: 0 };
    let commands = replica.step(answer(0, diverging));
    assert_eq!(commands[0], Command::Truncate { offset: 5 });
    let next = sent_fetch(&commands);
    assert_eq!((next.fetch_offset, next.last_fetched_epoch), (5, Some(0)));
    assert_eq!(replica.log_end_offset(), 5);
}

#[test]
fn follower_truncates_to_its_own_end_of_the_epoch_when_that_comes_first() {
    // Follower: epoch 0 at 0..4, epoch 1 at 4..8 (from a leader whose epoch-1 writes the new leader lacks).
    let epochs = EpochHistory::from_entries(entries(&[(0, 0), (1, 4)])).unwrap();
    let recovered =
        RecoveredLog { log_start_offset: 0, log_end_offset: 8, flushed_offset: 8, high_watermark: 2, epochs };
    let (mut replica, _) = Replica::new(config(2, true), recovered);
    replica.step(become_follower(3, 2, 2));
    let diverging = FetchAnswer::Diverging { diverging_epoch: Some(0), end_offset: 6, high_watermark: 2 };
    let commands = replica.step(answer(0, diverging));
    assert_eq!(
        commands[..2],
        [Command::Truncate { offset: 4 }, Command::PersistEpochHistory { entries: entries(&[(0, 0)]) }]
    );
    let next = sent_fetch(&commands);
    assert_eq!((next.fetch_offset, next.last_fetched_epoch, next.flushed_offset), (4, Some(0), 4));
}

#[test]
#[should_panic(expected = "below its high watermark")]
fn a_truncation_below_the_hw_is_a_broken_invariant_under_fsync() {
    let mut replica = follower(true, 8);
    replica.step(answer(0, records(vec![], 8)));
    replica.step(Event::Flushed { flushed_offset: 8 });
    let diverging = FetchAnswer::Diverging { diverging_epoch: Some(0), end_offset: 5, high_watermark: 8 };
    replica.step(answer(1, diverging));
}

#[test]
fn a_truncation_below_the_hw_is_reported_as_loss_when_the_topic_allows_it() {
    let mut replica = follower(false, 8);
    replica.step(answer(0, records(vec![], 8)));
    let diverging = FetchAnswer::Diverging { diverging_epoch: Some(0), end_offset: 5, high_watermark: 8 };
    let commands = replica.step(answer(1, diverging));
    assert_eq!(commands[0], Command::Warn(Warning::AcknowledgedRecordsLost { high_watermark: 8, truncate_offset: 5 }));
    assert_eq!(replica.high_watermark(), 5);
}

#[test]
fn a_diverging_answer_that_cuts_nothing_backs_off_instead_of_looping() {
    let mut replica = follower(false, 5);
    let diverging = FetchAnswer::Diverging { diverging_epoch: Some(0), end_offset: 9, high_watermark: 0 };
    let commands = replica.step(answer(0, diverging));
    assert!(matches!(commands[..], [Command::Warn(Warning::InvalidFetchAnswer { .. })]));
}

#[test]
fn a_fenced_follower_waits_for_metadata() {
    let mut replica = follower(false, 5);
    let commands = replica.step(answer(0, FetchAnswer::Error(FetchError::FencedLeaderEpoch)));
    assert_eq!(commands, vec![Command::Warn(Warning::FetchRefused { error: FetchError::FencedLeaderEpoch })]);
    assert!(replica.step(Event::Tick { now_ms: 1_000_000 }).is_empty());
    let next = sent_fetch(&replica.step(become_follower(1, 2, 2)));
    assert_eq!(next.current_leader_epoch, 2);
}

#[test]
fn a_follower_retries_after_its_backoff_when_the_leader_is_behind_or_unreachable() {
    for error in [FetchError::UnknownLeaderEpoch, FetchError::NotLeader, FetchError::Unreachable] {
        let mut replica = follower(false, 5);
        replica.step(answer(0, FetchAnswer::Error(error)));
        assert!(replica.step(Event::Tick { now_ms: 1_000 + FETCH_BACKOFF_MS - 1 }).is_empty(), "{error:?}");
        let next = sent_fetch(&replica.step(Event::Tick { now_ms: 1_000 + FETCH_BACKOFF_MS }));
        assert_eq!(next.fetch_id, 1);
    }
}

#[test]
fn a_follower_behind_the_leaders_log_start_restarts_its_log_there() {
    let mut replica = follower(false, 5);
    let error = FetchError::OffsetOutOfRange { log_start_offset: 20, log_end_offset: 30 };
    let commands = replica.step(answer(0, FetchAnswer::Error(error)));
    assert_eq!(
        commands,
        vec![
            Command::Warn(Warning::FetchRefused { error }),
            Command::PersistEpochHistory { entries: vec![] },
            Command::TruncateFully { log_start_offset: 20 },
            Command::HighWatermarkAdvanced { high_watermark: 20 },
            Command::SendFetch(FetchRequest {
                fetch_id: 1,
                leader: 1,
                current_leader_epoch: 1,
                fetch_offset: 20,
                last_fetched_epoch: None,
                flushed_offset: 20,
            }),
        ]
    );
    assert_eq!((replica.log_start_offset(), replica.log_end_offset()), (20, 20));
}

#[test]
fn a_follower_without_epochs_past_the_leaders_log_end_truncates_to_it() {
    let recovered = RecoveredLog {
        log_start_offset: 0,
        log_end_offset: 9,
        flushed_offset: 9,
        high_watermark: 0,
        epochs: EpochHistory::new(),
    };
    let (mut replica, _) = Replica::new(config(2, false), recovered);
    replica.step(become_follower(1, 1, 1));
    let error = FetchError::OffsetOutOfRange { log_start_offset: 0, log_end_offset: 6 };
    let commands = replica.step(answer(0, FetchAnswer::Error(error)));
    assert_eq!(commands[1], Command::Truncate { offset: 6 });
    assert_eq!(sent_fetch(&commands).fetch_offset, 6);
}

#[test]
fn a_follower_does_not_fetch_again_while_a_fetch_is_in_flight() {
    let mut replica = follower(false, 5);
    assert!(replica.step(Event::Tick { now_ms: 1_000_000 }).is_empty());
}

/// Regression (rill-sim varied seed 21286): the follower's epoch 1 ends at 6 but the leader's epoch 1 ends at
/// 8, so it truncates to 6, yet its epoch-0 records 4..6 may still differ from the leader's. Raising the HW
/// to the leader's there let the next answer, truncating to 4, cut below the HW.
#[test]
fn a_diverging_answer_does_not_raise_the_hw_over_records_not_yet_matched() {
    // Follower: epoch 0 at 0..6, epoch 2 at 6..9; leader: epoch 0 at 0..4, epoch 1 at 4..8.
    let epochs = EpochHistory::from_entries(entries(&[(0, 0), (2, 6)])).unwrap();
    let recovered =
        RecoveredLog { log_start_offset: 0, log_end_offset: 9, flushed_offset: 9, high_watermark: 3, epochs };
    let (mut replica, _) = Replica::new(config(2, true), recovered);
    replica.step(become_follower(3, 4, 4));
    let diverging = FetchAnswer::Diverging { diverging_epoch: Some(1), end_offset: 8, high_watermark: 8 };
    let commands = replica.step(answer(0, diverging));
    assert_eq!(commands[0], Command::Truncate { offset: 6 });
    assert!(hw_advances(&commands).is_empty(), "records 4..6 are not known to match yet");
    assert_eq!(replica.high_watermark(), 3);
    let diverging = FetchAnswer::Diverging { diverging_epoch: Some(0), end_offset: 4, high_watermark: 8 };
    let commands = replica.step(answer(1, diverging));
    assert_eq!(commands[0], Command::Truncate { offset: 4 });
    let commands = replica.step(answer(2, records(vec![batch(4, 7, 1)], 8)));
    assert_eq!(hw_advances(&commands), vec![8]);
}
