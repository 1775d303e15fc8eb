//! Unit tests of the accumulator: batching by size and linger, per-partition order, sticky partitioning.

use std::time::{Duration, Instant};

use futures::FutureExt;

use super::*;
use crate::producer::DeliveryFuture;

const LINGER: Duration = Duration::from_millis(5);
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

fn accumulator(batch_bytes_max: usize) -> Accumulator {
    Accumulator::new(batch_bytes_max, LINGER, DELIVERY_TIMEOUT, None, None)
}

/// What one append reported.
struct Added {
    wake_sender: bool,
    partition: u32,
}

/// Appends `value` and returns the future of its delivery.
fn append(acc: &mut Accumulator, partition: Option<u32>, value: &str, now: Instant) -> (Added, DeliveryFuture) {
    let record = ProducerRecord::new("t", value.to_owned());
    let appended =
        acc.append(partition, 3, NewRecord { record: &record, timestamp_ms: 1_000, buffer_permits: 0 }, || now);
    let partition = appended.delivery.partition().expect("an appended record has a partition");
    (Added { wake_sender: appended.wake_sender, partition }, appended.delivery)
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
        receivers.iter_mut().filter_map(|rx| rx.now_or_never()).map(|result| result.unwrap().offset).collect();
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
    let (_, rx) = append(&mut acc, Some(0), "a", now);
    assert!(acc.expired(now + Duration::from_secs(1)).is_empty());
    let expired = acc.expired(now + DELIVERY_TIMEOUT);
    assert_eq!(expired.len(), 1);
    assert!(acc.is_empty());
    assert!(acc.incomplete().is_empty());
    for batch in expired {
        batch.fail(Error::DeliveryTimeout { delivery_timeout_ms: 60_000, last_error: "none".into() });
    }
    assert!(matches!(rx.now_or_never().unwrap(), Err(Error::DeliveryTimeout { .. })));
}

#[test]
fn records_larger_than_a_batch_are_refused_up_front() {
    assert!(Accumulator::fits_in_a_batch(900, 1000));
    assert!(!Accumulator::fits_in_a_batch(1000, 1000));
}

const IDENTITY: Identity = Identity { producer_id: 42, epoch: 3 };

fn idempotent(batch_bytes_max: usize) -> Accumulator {
    Accumulator::new(batch_bytes_max, LINGER, DELIVERY_TIMEOUT, Some(IDENTITY), None)
}

/// The producer fields stamped in a taken batch's bytes.
fn stamped(batch: &ProducerBatch) -> (i64, i16, i32, u32) {
    let header = rill_proto::batch::validate(&batch.bytes()).expect("a stamped batch stays valid");
    (header.producer_id, header.producer_epoch, header.base_sequence, header.record_count)
}

/// Fills `count` batches of one record each on partition 0 (a batch of 300 bytes has room for one 150-byte
/// value).
fn one_record_batches(acc: &mut Accumulator, count: usize, now: Instant) -> Vec<DeliveryFuture> {
    let value = "v".repeat(150);
    (0..count).map(|_| append(acc, Some(0), &value, now).1).collect()
}

#[test]
fn idempotent_batches_get_consecutive_sequences_per_partition() {
    let now = Instant::now();
    let mut acc = idempotent(300);
    let tp = TopicPartition::new("t", 0);
    let _rx = one_record_batches(&mut acc, 3, now);
    let mut sequences = Vec::new();
    while let Some(batch) = acc.take(&tp) {
        let (id, epoch, sequence, records) = stamped(&batch);
        assert_eq!((id, epoch, records), (42, 3, 1));
        assert_eq!(batch.sequence, Some((3, sequence)));
        sequences.push(sequence);
    }
    assert_eq!(sequences, vec![0, 1, 2]);
    // Another partition has its own sequence.
    let _other = append(&mut acc, Some(1), "a", now);
    let batch = acc.take(&TopicPartition::new("t", 1)).unwrap();
    assert_eq!(stamped(&batch).2, 0);
}

#[test]
fn idempotent_partitions_pipeline_five_batches_and_retries_keep_their_sequence() {
    let now = Instant::now();
    let mut acc = idempotent(300);
    let tp = TopicPartition::new("t", 0);
    let _rx = one_record_batches(&mut acc, 7, now);
    let mut in_flight: Vec<ProducerBatch> = (0..5).map(|_| acc.take(&tp).expect("five may be in flight")).collect();
    assert!(acc.take(&tp).is_none(), "a sixth waits for an answer");
    assert!(acc.ready(now).0.is_empty());

    // The second batch's answer is lost: it goes back in sequence order and may go out again at once, still
    // with its original sequence, while the others are in flight.
    let lost = in_flight.remove(1);
    let lost_sequence = stamped(&lost).2;
    acc.requeue(lost, now);
    assert!(acc.take(&tp).is_some_and(|b| stamped(&b).2 == lost_sequence), "the retry keeps its sequence");
    assert!(acc.take(&tp).is_none(), "the retry still counts against the five");

    // The first batch is acknowledged: one more fresh batch may go.
    let first = in_flight.remove(0);
    acc.finished(&tp, first.id);
    let sixth = acc.take(&tp).expect("room for one more");
    assert_eq!(stamped(&sixth).2, 5);
}

#[test]
fn batches_acknowledged_past_one_awaiting_its_retry_hold_its_place_in_the_window() {
    let now = Instant::now();
    let mut acc = idempotent(300);
    let tp = TopicPartition::new("t", 0);
    let _rx = one_record_batches(&mut acc, 10, now);
    let mut in_flight: Vec<ProducerBatch> = (0..5).map(|_| acc.take(&tp).expect("five may be in flight")).collect();
    // The first answer is lost; the four after it are acknowledged.
    let lost = in_flight.remove(0);
    acc.requeue(lost, now);
    for batch in in_flight.drain(..) {
        acc.finished(&tp, batch.id);
    }
    let retry = acc.take(&tp).expect("the retry goes out");
    assert_eq!(stamped(&retry).2, 0);
    // Sending a sixth batch now could push the retried one out of the broker's last five, where its
    // retry would no longer be recognised: it waits.
    assert!(acc.take(&tp).is_none(), "the window is full while the oldest batch is unsettled");
    acc.finished(&tp, retry.id);
    let next: Vec<i32> = (0..5).map(|_| stamped(&acc.take(&tp).expect("the window moved on")).2).collect();
    assert_eq!(next, vec![5, 6, 7, 8, 9]);
}

#[test]
fn requeued_batches_return_in_sequence_order() {
    let now = Instant::now();
    let mut acc = idempotent(300);
    let tp = TopicPartition::new("t", 0);
    let _rx = one_record_batches(&mut acc, 3, now);
    let a = acc.take(&tp).unwrap();
    let b = acc.take(&tp).unwrap();
    let c = acc.take(&tp).unwrap();
    assert!(acc.has_unsettled_before(&tp, c.id));
    assert!(!acc.has_unsettled_before(&tp, a.id));
    // Answers come back out of order.
    acc.requeue(c, now);
    acc.requeue(a, now);
    acc.requeue(b, now);
    let order: Vec<i32> = (0..3).map(|_| stamped(&acc.take(&tp).unwrap()).2).collect();
    assert_eq!(order, vec![0, 1, 2]);
}

#[test]
fn a_hole_in_the_sequence_waits_for_maybe_written_batches_then_renumbers_under_a_new_epoch() {
    let now = Instant::now();
    let mut acc = idempotent(300);
    let tp = TopicPartition::new("t", 0);
    let _rx = one_record_batches(&mut acc, 4, now);
    let mut first = acc.take(&tp).unwrap(); // sequence 0: its answer is lost
    let second = acc.take(&tp).unwrap(); // sequence 1: fails for good, leaving a hole
    first.maybe_written = true;
    acc.requeue(first, now);
    acc.finished(&tp, second.id);
    acc.epoch_bump_wanted = true;

    assert!(!acc.epoch_bump_ready(), "sequence 0 may be in the log under the old epoch");
    let retry = acc.take(&tp).expect("a maybe-written batch still goes out to settle");
    assert_eq!(stamped(&retry).2, 0);
    assert!(acc.take(&tp).is_none(), "nothing new is sent while the bump waits");
    acc.finished(&tp, retry.id);
    assert!(acc.epoch_bump_ready());

    acc.start_epoch(Identity { producer_id: 42, epoch: 4 });
    assert!(!acc.epoch_bump_wanted);
    let renumbered: Vec<(i16, i32)> = (0..2)
        .map(|_| acc.take(&tp).unwrap())
        .map(|b| {
            let (_, epoch, sequence, _) = stamped(&b);
            (epoch, sequence)
        })
        .collect();
    assert_eq!(renumbered, vec![(4, 0), (4, 1)], "queued batches restart at sequence 0 in the new epoch");
}

#[test]
fn an_expired_sequenced_batch_asks_for_a_new_epoch() {
    let now = Instant::now();
    let mut acc = idempotent(300);
    let _rx = one_record_batches(&mut acc, 2, now);
    assert_eq!(acc.expired(now + DELIVERY_TIMEOUT).len(), 2);
    assert!(acc.epoch_bump_wanted);
    assert!(acc.epoch_bump_ready(), "nothing is in flight or maybe written");
}

#[test]
fn a_fatal_error_fails_everything_queued_and_stops_sending() {
    let now = Instant::now();
    let mut acc = idempotent(300);
    let tp = TopicPartition::new("t", 0);
    let mut rx = one_record_batches(&mut acc, 3, now);
    let in_flight = acc.take(&tp).unwrap();
    let fenced = Error::ProducerFenced { message: "newer epoch 4".into() };
    let failed = acc.fail_all(fenced.clone());
    assert_eq!(failed.len(), 2);
    for batch in failed {
        batch.fail(fenced.clone());
    }
    assert!(acc.take(&tp).is_none());
    assert!(matches!(rx.pop().unwrap().now_or_never().unwrap(), Err(Error::ProducerFenced { .. })));
    acc.finished(&tp, in_flight.id);
    assert!(acc.is_empty());
}

#[test]
fn compressed_batches_are_sealed_compressed_and_within_the_batch_limit() {
    let now = Instant::now();
    let tp = TopicPartition::new("t", 0);
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let mut acc = accumulator(4096).with_compression(codec);
        for i in 0..200 {
            let _ = append(&mut acc, Some(0), &format!("record {} {}", i % 10, "z".repeat(50)), now);
        }
        let batch = acc.take(&tp).unwrap();
        let bytes = batch.bytes();
        let header = rill_proto::batch::validate(&bytes).unwrap();
        assert_eq!(header.compression(), Ok(codec));
        assert!(bytes.len() < 4096 / 2, "{codec}: {} bytes", bytes.len());
        assert_eq!(batch.size_bytes(), bytes.len(), "a sealed batch counts its compressed size");
        let records = rill_proto::batch::decode_records(&bytes).unwrap();
        assert_eq!(records.len(), batch.record_count() as usize);
    }
}

#[test]
fn incompressible_records_still_fit_the_batch_limit_under_compression() {
    let now = Instant::now();
    let tp = TopicPartition::new("t", 0);
    // Random printable characters, six random bits each: whether or not a codec shrinks them, the sealed
    // batch must stay within the limit it was filled to.
    let mut state = 1u64;
    let mut noise = || {
        (0..300)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                char::from(b'!' + ((state >> 58) as u8))
            })
            .collect::<String>()
    };
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let mut acc = accumulator(1024).with_compression(codec);
        for _ in 0..3 {
            let _ = append(&mut acc, Some(0), &noise(), now);
        }
        let batch = acc.take(&tp).unwrap();
        assert!(batch.bytes().len() <= 1024, "{codec}: {} bytes", batch.bytes().len());
        rill_proto::batch::validate(&batch.bytes()).unwrap();
    }
}
