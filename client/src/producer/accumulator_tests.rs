//! Unit tests of the accumulator: batching by size and linger, per-partition order, sticky partitioning.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::*;

const LINGER: Duration = Duration::from_millis(5);
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

fn accumulator(batch_bytes_max: usize) -> Accumulator {
    Accumulator::new(batch_bytes_max, LINGER, DELIVERY_TIMEOUT)
}

/// Appends `value` and returns the receiver of its delivery.
fn append(
    acc: &mut Accumulator,
    partition: Option<u32>,
    value: &str,
    now: Instant,
) -> (Appended, oneshot::Receiver<Result<RecordMetadata>>) {
    let record = ProducerRecord::new("t", value.to_owned());
    let (delivery, rx) = oneshot::channel();
    let appended =
        acc.append(partition, 3, NewRecord { record: &record, timestamp_ms: 1_000, delivery, buffer: None }, now);
    (appended, rx)
}

#[test]
fn a_lone_record_waits_for_linger() {
    let now = Instant::now();
    let mut acc = accumulator(1 << 20);
    let (appended, _rx) = append(&mut acc, Some(0), "a", now);
    assert!(appended.wake_sender, "a new batch arms the linger timer");
    let (ready, next) = acc.ready(now);
    assert!(ready.is_empty());
    assert_eq!(next, Some(now + LINGER));
    let (ready, _) = acc.ready(now + LINGER);
    assert_eq!(ready, vec![TopicPartition::new("t", 0)]);
}

#[test]
fn a_full_batch_is_ready_before_linger() {
    let now = Instant::now();
    let mut acc = accumulator(400);
    let value = "x".repeat(100);
    let mut wakes = 0;
    for _ in 0..6 {
        let (appended, _rx) = append(&mut acc, Some(1), &value, now);
        wakes += usize::from(appended.wake_sender);
    }
    assert!(wakes >= 2, "starting and sealing batches wakes the sender");
    let (ready, _) = acc.ready(now);
    assert_eq!(ready, vec![TopicPartition::new("t", 1)]);
    let batch = acc.take(&TopicPartition::new("t", 1)).unwrap();
    assert!(batch.size_bytes() <= 400);
    assert!(batch.record_count() >= 2);
}

#[test]
fn records_append_to_the_open_batch_until_it_is_full() {
    let now = Instant::now();
    let mut acc = accumulator(1 << 20);
    for i in 0..100 {
        let (appended, _rx) = append(&mut acc, Some(2), &format!("record {i}"), now);
        assert_eq!(appended.wake_sender, i == 0);
    }
    let batch = acc.take(&TopicPartition::new("t", 2)).unwrap();
    assert_eq!(batch.record_count(), 100);
}

#[test]
fn one_batch_in_flight_per_partition_keeps_order() {
    let now = Instant::now();
    let mut acc = accumulator(300);
    let tp = TopicPartition::new("t", 0);
    let value = "y".repeat(100);
    let mut receivers = Vec::new();
    for _ in 0..6 {
        receivers.push(append(&mut acc, Some(0), &value, now).1);
    }
    let first = acc.take(&tp).unwrap();
    assert!(acc.take(&tp).is_none(), "second batch must wait for the first");
    assert!(acc.ready(now + LINGER).0.is_empty(), "an in-flight partition is not ready");

    // A retriable failure puts the batch back in front, behind its backoff.
    let first_id = first.id;
    acc.requeue(first, now + Duration::from_millis(100));
    let (ready, next) = acc.ready(now + LINGER);
    assert!(ready.is_empty());
    assert_eq!(next, Some(now + Duration::from_millis(100)));
    let again = acc.take(&tp).unwrap();
    assert_eq!(again.id, first_id, "the retried batch goes before newer ones");
    acc.finished(&tp, again.id);
    again.succeed(0);
    let second = acc.take(&tp).unwrap();
    assert!(second.id > first_id);
    acc.finished(&tp, second.id);
    second.succeed(2);

    let first_offsets: Vec<u64> =
        receivers.iter_mut().filter_map(|rx| rx.try_recv().ok()).map(|result| result.unwrap().offset).collect();
    assert_eq!(first_offsets[0], 0);
    assert!(first_offsets.windows(2).all(|w| w[0] < w[1]), "offsets follow send order: {first_offsets:?}");
}

#[test]
fn keyless_records_stick_to_a_partition_until_its_batch_is_sent() {
    let now = Instant::now();
    let mut acc = accumulator(1 << 20);
    let first = append(&mut acc, None, "a", now).0.partition;
    for _ in 0..10 {
        assert_eq!(append(&mut acc, None, "b", now).0.partition, first);
    }
    let batch = acc.take(&TopicPartition::new("t", first)).unwrap();
    assert_eq!(batch.record_count(), 11);
    let next = append(&mut acc, None, "c", now).0.partition;
    assert_eq!(next, (first + 1) % 3, "the sticky partition moves when its batch leaves");
}

#[test]
fn keyless_records_move_on_when_the_sticky_batch_fills() {
    let now = Instant::now();
    let mut acc = accumulator(400);
    let value = "z".repeat(100);
    let mut partitions = Vec::new();
    for _ in 0..12 {
        partitions.push(append(&mut acc, None, &value, now).0.partition);
    }
    partitions.dedup();
    assert!(partitions.len() >= 3, "full batches rotate the partition: {partitions:?}");
}

#[test]
fn flushing_makes_every_batch_ready() {
    let now = Instant::now();
    let mut acc = accumulator(1 << 20);
    let _rx = append(&mut acc, Some(0), "a", now);
    assert!(acc.ready(now).0.is_empty());
    acc.flushing += 1;
    assert_eq!(acc.ready(now).0.len(), 1);
    assert_eq!(acc.incomplete().len(), 1);
}

#[test]
fn expired_batches_are_removed_and_fail() {
    let now = Instant::now();
    let mut acc = accumulator(1 << 20);
    let (_, mut rx) = append(&mut acc, Some(0), "a", now);
    assert!(acc.expired(now + Duration::from_secs(1)).is_empty());
    let expired = acc.expired(now + DELIVERY_TIMEOUT);
    assert_eq!(expired.len(), 1);
    assert!(acc.is_empty());
    assert!(acc.incomplete().is_empty());
    for batch in expired {
        batch.fail(Error::DeliveryTimeout { delivery_timeout_ms: 60_000, last_error: "none".into() });
    }
    assert!(matches!(rx.try_recv().unwrap(), Err(Error::DeliveryTimeout { .. })));
}

#[test]
fn records_larger_than_a_batch_are_refused_up_front() {
    let acc = accumulator(1000);
    assert!(acc.fits_in_a_batch(900));
    assert!(!acc.fits_in_a_batch(1000));
}
