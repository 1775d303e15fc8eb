//! Followers, leader changes, truncation and replay: every replica that applies the same log holds the same
//! state, and a truncated table rebuilt from a snapshot equals one that never saw the cut batches.

use super::*;

/// A log written by three producers: epochs bumped, retries refused, plain batches interleaved.
fn busy_partition() -> Partition {
    let mut partition = Partition::new();
    partition.append_run(1, 0, 0, 4, 2);
    partition.append(plain_batch(3), T0_MS + 5);
    partition.append_run(2, 0, 0, 7, 1);
    partition.append_run(1, 1, 0, 2, 3);
    partition.produce(batch(2, 0, 3, 1), T0_MS + 9);
    partition.append_run(3, 0, 0, 1, 1);
    partition.append_run(2, 0, 7, 3, 2);
    partition
}

#[test]
fn a_follower_applying_the_leaders_batches_holds_the_leaders_state() {
    let leader = busy_partition();
    assert_eq!(follower_of(&leader.log), leader.table);
}

#[test]
fn a_new_leader_deduplicates_exactly_as_the_old_one_did() {
    let mut old_leader = busy_partition();
    let mut new_leader = Partition { table: follower_of(&old_leader.log), ..old_leader.clone() };
    let probes = [batch(2, 0, 11, 2), batch(2, 0, 13, 2), batch(2, 0, 10, 1), batch(1, 0, 8, 1), batch(9, 0, 3, 1)];
    for probe in probes {
        assert_eq!(new_leader.produce(probe, T0_MS), old_leader.produce(probe, T0_MS), "{probe:?}");
    }
    assert_eq!(new_leader.table, old_leader.table);
}

#[test]
fn truncating_and_replaying_from_a_snapshot_equals_never_having_appended_the_cut_batches() {
    let mut partition = Partition::new();
    partition.append_run(1, 0, 0, 3, 1);
    partition.append_run(2, 0, 0, 1, 1);
    let snapshot_offset = partition.log_end_offset;
    let snapshot = partition.table.encode(snapshot_offset);
    partition.append_run(1, 0, 3, 2, 1);
    let kept_end_offset = partition.log_end_offset;
    let never_cut = partition.table.clone();
    // The cut batches push producer 1's oldest batches out of its window, bump producer 2's epoch and bring
    // in producer 3: only a replay can restore what they replaced.
    partition.append_run(1, 0, 5, 4, 1);
    partition.append_run(2, 1, 0, 1, 1);
    partition.append_run(3, 0, 0, 1, 1);

    let mut truncated = partition.table.clone();
    assert!(truncated.truncate_to(kept_end_offset), "the truncation cut batches");
    assert_ne!(truncated, never_cut, "truncation alone cannot restore the pushed-out batches");

    let (mut rebuilt, offset) = ProducerStateTable::decode(&snapshot).unwrap();
    assert_eq!(offset, snapshot_offset);
    let kept = partition.log.iter().copied().filter(|b| b.last_offset < kept_end_offset);
    rebuilt.replay(kept).unwrap();
    assert_eq!(rebuilt, never_cut);
}

#[test]
fn truncation_forgets_batches_at_or_after_the_offset_and_producers_left_with_none() {
    let mut partition = Partition::new();
    let first = partition.append_run(1, 0, 0, 2, 2);
    partition.append_run(2, 0, 0, 1, 1);
    partition.append_run(1, 0, 4, 1, 1);
    let mut table = partition.table.clone();
    assert!(table.truncate_to(first[1].1.1 + 1));
    assert_eq!(table.end_offset(), 4);
    assert_eq!(table.producer(2), None);
    assert_eq!(table.producer(1).unwrap().batches().len(), 2);
    assert_eq!(table.check(&batch(1, 0, 4, 1)), Verdict::Append, "the cut batch can be written again");
}

#[test]
fn truncation_that_cuts_no_idempotent_batch_reports_nothing_forgotten() {
    let mut partition = Partition::new();
    partition.append_run(1, 0, 0, 2, 1);
    let end_offset = partition.log_end_offset;
    partition.append(plain_batch(4), T0_MS);
    let before = partition.table.producer(1).cloned();
    assert!(!partition.table.truncate_to(end_offset));
    assert_eq!(partition.table.producer(1).cloned(), before);
    assert_eq!(partition.table.end_offset(), end_offset);
}

#[test]
fn replay_from_the_log_start_without_a_snapshot_rebuilds_the_state() {
    let partition = busy_partition();
    let mut rebuilt = ProducerStateTable::starting_at(0);
    rebuilt.replay(partition.log.iter().copied()).unwrap();
    assert_eq!(rebuilt, partition.table);
}

#[test]
fn replay_skips_batches_the_snapshot_already_covers() {
    let partition = busy_partition();
    let middle = partition.log[5].base_offset;
    let covered: Vec<AppendedBatch> = partition.log.iter().copied().filter(|b| b.base_offset < middle).collect();
    let snapshot = follower_of(&covered).encode(middle);
    let (mut rebuilt, _) = ProducerStateTable::decode(&snapshot).unwrap();
    rebuilt.replay(partition.log.iter().copied()).unwrap();
    assert_eq!(rebuilt, partition.table);
}

#[test]
fn replay_refuses_a_batch_that_straddles_the_snapshot_offset() {
    let mut table = ProducerStateTable::starting_at(10);
    let straddling = AppendedBatch { batch: batch(1, 0, 0, 4), base_offset: 8, last_offset: 11, timestamp_ms: T0_MS };
    assert!(table.replay([straddling]).is_err());
    let backwards = AppendedBatch { batch: batch(1, 0, 0, 1), base_offset: 12, last_offset: 11, timestamp_ms: T0_MS };
    assert!(table.replay([backwards]).is_err());
}

#[test]
#[should_panic(expected = "out of log order")]
fn applying_a_batch_below_the_end_offset_is_a_broken_invariant() {
    let mut table = ProducerStateTable::starting_at(0);
    table.apply(&batch(1, 0, 0, 1), 5, 5, T0_MS);
    table.apply(&batch(1, 0, 1, 1), 5, 5, T0_MS);
}

#[test]
fn appended_batch_from_a_header_takes_the_offsets_and_max_timestamp() {
    let header = rill_proto::batch::BatchHeader {
        base_offset: 40,
        batch_length: 100,
        partition_leader_epoch: 2,
        magic: 2,
        crc: 0,
        attributes: 0,
        last_offset_delta: 2,
        base_timestamp: T0_MS,
        max_timestamp: T0_MS + 7,
        producer_id: 9,
        producer_epoch: 1,
        base_sequence: 30,
        record_count: 3,
    };
    assert_eq!(
        AppendedBatch::from_header(&header),
        AppendedBatch { batch: batch(9, 1, 30, 3), base_offset: 40, last_offset: 42, timestamp_ms: T0_MS + 7 }
    );
}
