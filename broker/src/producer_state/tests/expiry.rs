//! Expiry of idle producer ids, and the limit on how many one partition tracks.

use super::*;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

#[test]
fn the_default_idle_limit_is_seven_days() {
    assert_eq!(PRODUCER_ID_IDLE_MS_MAX_DEFAULT, 7 * DAY_MS as u64);
}

#[test]
fn producers_idle_longer_than_the_limit_expire_and_others_stay() {
    let mut partition = Partition::new();
    partition.append(batch(1, 0, 0, 1), T0_MS);
    partition.append(batch(2, 0, 0, 1), T0_MS + DAY_MS);
    let idle_ms_max = PRODUCER_ID_IDLE_MS_MAX_DEFAULT;
    assert_eq!(partition.table.expire(T0_MS + 7 * DAY_MS, idle_ms_max), 0, "exactly the limit is not longer");
    assert_eq!(partition.table.expire(T0_MS + 7 * DAY_MS + 1, idle_ms_max), 1);
    assert_eq!(partition.table.producer(1), None);
    assert!(partition.table.producer(2).is_some());
}

#[test]
fn an_expired_producer_is_unknown_and_must_start_again_at_sequence_zero() {
    let mut partition = Partition::new();
    partition.append_run(PRODUCER, 0, 0, 3, 1);
    partition.table.expire(T0_MS + 8 * DAY_MS, PRODUCER_ID_IDLE_MS_MAX_DEFAULT);
    assert_eq!(partition.produce(batch(PRODUCER, 0, 3, 1), T0_MS + 8 * DAY_MS), Verdict::UnknownProducerId);
    assert_eq!(partition.produce(batch(PRODUCER, 1, 0, 1), T0_MS + 8 * DAY_MS), Verdict::Append);
}

#[test]
fn idleness_counts_from_the_newest_batch_timestamp_seen() {
    let mut partition = Partition::new();
    partition.append(batch(PRODUCER, 0, 0, 1), T0_MS + DAY_MS);
    // A later batch with an older timestamp (a client clock stepping back) does not make the producer older.
    partition.append(batch(PRODUCER, 0, 1, 1), T0_MS);
    assert_eq!(partition.table.producer(PRODUCER).unwrap().last_timestamp_ms(), T0_MS + DAY_MS);
    assert_eq!(partition.table.expire(T0_MS + 2 * DAY_MS, DAY_MS as u64), 0);
}

#[test]
fn expiry_never_overflows_on_extreme_timestamps() {
    let mut table = ProducerStateTable::starting_at(0);
    table.apply(&batch(1, 0, 0, 1), 0, 0, i64::MIN);
    table.apply(&batch(2, 0, 0, 1), 1, 1, i64::MAX);
    assert_eq!(table.expire(i64::MAX, u64::MAX), 0);
    assert_eq!(table.expire(i64::MAX, 0), 1);
    assert_eq!(table.expire(i64::MIN, 0), 0, "a producer from the future is not idle");
    assert_eq!(table.len(), 1);
}

#[test]
fn a_follower_beyond_the_producer_limit_evicts_the_producer_idle_longest() {
    let mut table = ProducerStateTable::starting_at(0);
    let count = PRODUCER_IDS_PER_PARTITION_MAX as i64;
    for id in 0..count {
        // Producer 5 has the oldest timestamp.
        let timestamp_ms = if id == 5 { T0_MS - 1 } else { T0_MS + id };
        table.apply(&batch(id, 0, 0, 1), id as u64, id as u64, timestamp_ms);
    }
    table.apply(&batch(count, 0, 0, 1), count as u64, count as u64, T0_MS);
    assert_eq!(table.len(), PRODUCER_IDS_PER_PARTITION_MAX);
    assert_eq!(table.producer(5), None);
    assert!(table.producer(count).is_some());
}
