//! The sequence rules a leader applies before appending: duplicates, gaps, epochs, unknown producers and the
//! wrap of sequence numbers at `i32::MAX`.

use super::*;

#[test]
fn a_retry_of_each_of_the_last_five_batches_gets_its_original_offsets_and_appends_nothing() {
    let mut partition = Partition::new();
    let appended = partition.append_run(PRODUCER, 0, 0, 8, 3);
    let before = partition.clone();
    for (retried, (base_offset, last_offset)) in &appended[appended.len() - PRODUCER_BATCHES_KEPT..] {
        assert_eq!(
            partition.produce(*retried, T0_MS + 1),
            Verdict::Duplicate { base_offset: *base_offset, last_offset: *last_offset }
        );
    }
    assert_eq!(partition.log, before.log, "a duplicate is never appended");
    assert_eq!(partition.table, before.table, "a duplicate changes no state");
}

#[test]
fn a_retry_of_a_batch_older_than_the_last_five_is_out_of_order() {
    let mut partition = Partition::new();
    let appended = partition.append_run(PRODUCER, 0, 0, PRODUCER_BATCHES_KEPT + 1, 2);
    let (oldest, _) = appended[0];
    assert_eq!(partition.produce(oldest, T0_MS), Verdict::OutOfOrderSequence { expected: 12 });
}

#[test]
fn only_the_last_five_batches_are_kept_per_producer() {
    let mut partition = Partition::new();
    let appended = partition.append_run(PRODUCER, 0, 0, 9, 1);
    let kept: Vec<BatchRecord> = partition.table.producer(PRODUCER).unwrap().batches().iter().copied().collect();
    let expected: Vec<BatchRecord> = appended[4..]
        .iter()
        .map(|(b, (base_offset, last_offset))| BatchRecord {
            first_sequence: b.base_sequence,
            last_sequence: b.base_sequence,
            base_offset: *base_offset,
            last_offset: *last_offset,
        })
        .collect();
    assert_eq!(kept, expected);
}

#[test]
fn a_batch_that_overlaps_a_kept_batch_without_matching_it_is_out_of_order() {
    let mut partition = Partition::new();
    partition.append_run(PRODUCER, 0, 0, 2, 4);
    assert_eq!(partition.produce(batch(PRODUCER, 0, 4, 2), T0_MS), Verdict::OutOfOrderSequence { expected: 8 });
    assert_eq!(partition.produce(batch(PRODUCER, 0, 2, 4), T0_MS), Verdict::OutOfOrderSequence { expected: 8 });
}

#[test]
fn a_sequence_gap_is_out_of_order_and_names_the_expected_sequence() {
    let mut partition = Partition::new();
    partition.append_run(PRODUCER, 0, 0, 2, 5);
    assert_eq!(partition.produce(batch(PRODUCER, 0, 11, 1), T0_MS), Verdict::OutOfOrderSequence { expected: 10 });
    assert_eq!(partition.log.len(), 2, "nothing appended");
    assert_eq!(partition.produce(batch(PRODUCER, 0, 10, 1), T0_MS), Verdict::Append);
}

#[test]
fn an_older_epoch_is_fenced() {
    let mut partition = Partition::new();
    partition.append_run(PRODUCER, 3, 0, 1, 1);
    assert_eq!(partition.produce(batch(PRODUCER, 2, 1, 1), T0_MS), Verdict::ProducerFenced { current_epoch: 3 });
    assert_eq!(partition.produce(batch(PRODUCER, 2, 0, 1), T0_MS), Verdict::ProducerFenced { current_epoch: 3 });
}

#[test]
fn a_newer_epoch_must_start_at_sequence_zero() {
    let mut partition = Partition::new();
    partition.append_run(PRODUCER, 0, 0, 3, 1);
    assert_eq!(partition.produce(batch(PRODUCER, 1, 3, 1), T0_MS), Verdict::OutOfOrderSequence { expected: 0 });
    assert_eq!(partition.produce(batch(PRODUCER, 1, 0, 1), T0_MS), Verdict::Append);
}

#[test]
fn a_newer_epoch_forgets_the_older_epochs_batches_and_fences_them() {
    let mut partition = Partition::new();
    let old = partition.append_run(PRODUCER, 0, 0, 3, 1);
    let (new_offsets, _) = partition.append(batch(PRODUCER, 1, 0, 1), T0_MS);
    let entry = partition.table.producer(PRODUCER).unwrap();
    assert_eq!(entry.epoch(), 1);
    assert_eq!(entry.batches().len(), 1);
    assert_eq!(entry.batches()[0].base_offset, new_offsets);
    assert_eq!(partition.produce(old[2].0, T0_MS), Verdict::ProducerFenced { current_epoch: 1 });
}

#[test]
fn an_unknown_producer_must_start_at_sequence_zero() {
    let mut partition = Partition::new();
    assert_eq!(partition.produce(batch(PRODUCER, 0, 1, 1), T0_MS), Verdict::UnknownProducerId);
    assert_eq!(partition.produce(batch(PRODUCER, 4, 5, 1), T0_MS), Verdict::UnknownProducerId);
    assert!(partition.table.is_empty());
    assert_eq!(partition.produce(batch(PRODUCER, 4, 0, 1), T0_MS), Verdict::Append);
}

#[test]
fn producers_are_tracked_independently() {
    let mut partition = Partition::new();
    partition.append_run(1, 0, 0, 2, 1);
    partition.append_run(2, 5, 0, 1, 1);
    assert_eq!(partition.produce(batch(2, 5, 1, 1), T0_MS), Verdict::Append);
    assert_eq!(partition.produce(batch(1, 0, 2, 1), T0_MS), Verdict::Append);
    assert_eq!(partition.produce(batch(1, 4, 3, 1), T0_MS), Verdict::OutOfOrderSequence { expected: 0 });
    assert_eq!(partition.table.len(), 2);
}

#[test]
fn batches_without_idempotence_are_always_appended_and_leave_no_state() {
    let mut partition = Partition::new();
    for _ in 0..3 {
        partition.append(plain_batch(2), T0_MS);
    }
    assert!(partition.table.is_empty());
    assert_eq!(partition.table.end_offset(), 6, "they still advance the covered offsets");
}

#[test]
fn batches_with_impossible_producer_fields_are_refused_and_leave_no_state() {
    let table = ProducerStateTable::starting_at(0);
    let invalid = [batch(-2, 0, 0, 1), batch(PRODUCER, -1, 0, 1), batch(PRODUCER, 0, -1, 1), batch(PRODUCER, 0, 0, 0)];
    for b in invalid {
        assert!(matches!(table.check(&b), Verdict::InvalidProducerFields { .. }), "{b:?}");
        let mut applied = table.clone();
        applied.apply(&b, 0, 0, T0_MS);
        assert!(applied.is_empty(), "{b:?} entered the state");
    }
}

#[test]
fn the_sequence_after_i32_max_is_zero() {
    assert_eq!(next_sequence(i32::MAX), 0);
    assert_eq!(next_sequence(0), 1);
    assert_eq!(advance_sequence(i32::MAX - 1, 3), 1);
    assert_eq!(advance_sequence(i32::MAX, u32::MAX >> 1), i32::MAX - 1);
}

#[test]
fn a_producer_continues_at_zero_after_sequence_i32_max() {
    let mut partition = Partition::new();
    // A producer that has written for long: its last batch ends at the largest sequence.
    partition.table.apply(&batch(PRODUCER, 0, i32::MAX - 2, 3), 0, 2, T0_MS);
    partition.log_end_offset = 3;
    assert_eq!(partition.produce(batch(PRODUCER, 0, i32::MAX, 1), T0_MS), Verdict::OutOfOrderSequence { expected: 0 });
    assert_eq!(partition.produce(batch(PRODUCER, 0, 1, 1), T0_MS), Verdict::OutOfOrderSequence { expected: 0 });
    assert_eq!(partition.produce(batch(PRODUCER, 0, 0, 2), T0_MS), Verdict::Append);
    assert_eq!(partition.produce(batch(PRODUCER, 0, 2, 1), T0_MS), Verdict::Append);
}

#[test]
fn a_batch_may_straddle_the_sequence_wrap_and_is_deduplicated_across_it() {
    let mut partition = Partition::new();
    partition.table.apply(&batch(PRODUCER, 0, i32::MAX - 9, 5), 0, 4, T0_MS);
    partition.log_end_offset = 5;
    let straddling = batch(PRODUCER, 0, i32::MAX - 4, 10);
    let (base_offset, last_offset) = partition.append(straddling, T0_MS);
    let kept = partition.table.producer(PRODUCER).unwrap().batches()[1];
    assert_eq!((kept.first_sequence, kept.last_sequence), (i32::MAX - 4, 4));
    assert_eq!(partition.produce(straddling, T0_MS), Verdict::Duplicate { base_offset, last_offset });
    assert_eq!(partition.produce(batch(PRODUCER, 0, 6, 1), T0_MS), Verdict::OutOfOrderSequence { expected: 5 });
    assert_eq!(partition.produce(batch(PRODUCER, 0, 5, 1), T0_MS), Verdict::Append);
}

#[test]
fn a_leader_refuses_new_producers_beyond_the_limit_but_serves_known_ones() {
    let mut table = ProducerStateTable::starting_at(0);
    for id in 0..PRODUCER_IDS_PER_PARTITION_MAX as i64 {
        table.apply(&batch(id, 0, 0, 1), id as u64, id as u64, T0_MS);
    }
    assert_eq!(table.check(&batch(PRODUCER_IDS_PER_PARTITION_MAX as i64, 0, 0, 1)), Verdict::TooManyProducers);
    assert_eq!(table.check(&batch(3, 0, 1, 1)), Verdict::Append);
    assert_eq!(table.check(&plain_batch(1)), Verdict::Append);
}
