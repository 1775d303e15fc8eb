//! Properties over generated producer histories and bytes: every verdict is the one the producer expects,
//! replicas that apply the same log agree, truncation plus replay restores the uncut state, snapshots round
//! trip, and no input makes the snapshot decoder panic.

use proptest::prelude::*;

use super::*;

/// What a producer might send: mostly in-order batches, with retries, gaps, epoch changes and plain batches.
#[derive(Debug, Clone, Copy)]
enum Send {
    Next { producer: i64, records: u32 },
    Retry { producer: i64, back: usize },
    Gap { producer: i64 },
    BumpEpoch { producer: i64 },
    OldEpoch { producer: i64 },
    Plain { records: u32 },
}

fn send() -> impl Strategy<Value = Send> {
    let producer = 0..4i64;
    prop_oneof![
        6 => (producer.clone(), 1..4u32).prop_map(|(producer, records)| Send::Next { producer, records }),
        2 => (producer.clone(), 0..7usize).prop_map(|(producer, back)| Send::Retry { producer, back }),
        1 => producer.clone().prop_map(|producer| Send::Gap { producer }),
        1 => producer.clone().prop_map(|producer| Send::BumpEpoch { producer }),
        1 => producer.prop_map(|producer| Send::OldEpoch { producer }),
        1 => (1..3u32).prop_map(|records| Send::Plain { records }),
    ]
}

/// A simulated producer: its epoch, its next sequence, and the batches it got appended in that epoch.
#[derive(Debug, Clone, Default)]
struct Producer {
    epoch: i16,
    sequence: i32,
    appended: Vec<(ProducerBatch, (u64, u64))>,
}

/// Runs `sends` through the leader's produce path, checking every verdict against what the producer knows:
/// a retry of one of its last `PRODUCER_BATCHES_KEPT` batches is a duplicate with the original offsets, an
/// older one is out of order, the next batch is appended. With `near_wrap`, producers start close to the
/// sequence wrap (as if they had written 2^31 records already).
fn run(sends: &[Send], near_wrap: bool) -> Partition {
    let mut partition = Partition::new();
    let mut producers = vec![Producer::default(); 4];
    if near_wrap {
        for (id, producer) in producers.iter_mut().enumerate() {
            let b = batch(id as i64, 0, i32::MAX - 3, 2);
            let end = partition.log_end_offset;
            partition.table.apply(&b, end, end + 1, T0_MS);
            partition.log.push(AppendedBatch { batch: b, base_offset: end, last_offset: end + 1, timestamp_ms: T0_MS });
            partition.log_end_offset = end + 2;
            *producer = Producer { epoch: 0, sequence: i32::MAX - 1, appended: vec![(b, (end, end + 1))] };
        }
    }
    for (step, send) in sends.iter().enumerate() {
        let timestamp_ms = T0_MS + step as i64;
        match *send {
            Send::Next { producer: id, records } => {
                let producer = &mut producers[id as usize];
                let b = batch(id, producer.epoch, producer.sequence, records);
                let offsets = partition.append(b, timestamp_ms);
                producer.sequence = advance_sequence(producer.sequence, records);
                producer.appended.push((b, offsets));
            }
            Send::Retry { producer: id, back } => {
                let producer = &producers[id as usize];
                let Some(index) = producer.appended.len().checked_sub(back + 1) else { continue };
                let (b, (base_offset, last_offset)) = producer.appended[index];
                let expected = if back < PRODUCER_BATCHES_KEPT {
                    Verdict::Duplicate { base_offset, last_offset }
                } else {
                    Verdict::OutOfOrderSequence { expected: producer.sequence }
                };
                assert_eq!(partition.produce(b, timestamp_ms), expected, "retry of {b:?}");
            }
            Send::Gap { producer: id } => {
                let producer = &producers[id as usize];
                let b = batch(id, producer.epoch, advance_sequence(producer.sequence, 2), 1);
                let verdict = partition.produce(b, timestamp_ms);
                if producer.appended.is_empty() {
                    assert_eq!(verdict, Verdict::UnknownProducerId);
                } else {
                    assert_eq!(verdict, Verdict::OutOfOrderSequence { expected: producer.sequence });
                }
            }
            Send::BumpEpoch { producer: id } => {
                let producer = &mut producers[id as usize];
                let b = batch(id, producer.epoch + 1, 0, 1);
                let offsets = partition.append(b, timestamp_ms);
                *producer = Producer { epoch: producer.epoch + 1, sequence: 1, appended: vec![(b, offsets)] };
            }
            Send::OldEpoch { producer: id } => {
                let producer = &producers[id as usize];
                let verdict = partition.produce(batch(id, producer.epoch - 1, 0, 1), timestamp_ms);
                if producer.epoch == 0 {
                    assert!(matches!(verdict, Verdict::InvalidProducerFields { .. }), "{verdict:?}");
                } else {
                    assert_eq!(verdict, Verdict::ProducerFenced { current_epoch: producer.epoch });
                }
            }
            Send::Plain { records } => {
                partition.append(plain_batch(records), timestamp_ms);
            }
        }
    }
    partition
}

proptest! {
    #[test]
    fn replicas_applying_the_same_log_hold_the_leaders_state(
        sends in prop::collection::vec(send(), 0..60),
        near_wrap in any::<bool>(),
    ) {
        let leader = run(&sends, near_wrap);
        prop_assert_eq!(follower_of(&leader.log), leader.table);
    }

    #[test]
    fn every_verdict_is_the_one_the_producer_expects(sends in prop::collection::vec(send(), 0..80), near_wrap in any::<bool>()) {
        // `run` checks each verdict; this property only needs it to finish.
        run(&sends, near_wrap);
    }

    #[test]
    fn truncation_then_replay_from_a_snapshot_equals_never_appending_the_cut_batches(
        sends in prop::collection::vec(send(), 0..60),
        near_wrap in any::<bool>(),
        snapshot_at in 0.0..1.0f64,
        truncate_at in 0.0..1.0f64,
    ) {
        let leader = run(&sends, near_wrap);
        let boundaries: Vec<u64> = std::iter::once(0).chain(leader.log.iter().map(|b| b.last_offset + 1)).collect();
        let pick = |fraction: f64| boundaries[((boundaries.len() - 1) as f64 * fraction) as usize];
        let (snapshot_offset, truncation_offset) = {
            let (a, b) = (pick(snapshot_at), pick(truncate_at));
            (a.min(b), a.max(b))
        };
        let below = |offset: u64| leader.log.iter().copied().filter(move |b| b.last_offset < offset);
        let snapshot = follower_of(&below(snapshot_offset).collect::<Vec<_>>()).encode(snapshot_offset);
        let never_cut = follower_of(&below(truncation_offset).collect::<Vec<_>>());

        let mut truncated = leader.table.clone();
        let forgotten = truncated.truncate_to(truncation_offset);
        if !forgotten {
            prop_assert_eq!(&truncated, &never_cut);
        }
        let (mut rebuilt, _) = ProducerStateTable::decode(&snapshot).unwrap();
        rebuilt.replay(below(truncation_offset)).unwrap();
        prop_assert_eq!(rebuilt, never_cut);
    }

    #[test]
    fn snapshots_round_trip(sends in prop::collection::vec(send(), 0..60), near_wrap in any::<bool>(), extra in 0..5u64) {
        let table = run(&sends, near_wrap).table;
        let end_offset = table.end_offset() + extra;
        let (decoded, offset) = ProducerStateTable::decode(&table.encode(end_offset)).unwrap();
        prop_assert_eq!(offset, end_offset);
        prop_assert_eq!(decoded.producers().collect::<Vec<_>>(), table.producers().collect::<Vec<_>>());
    }

    #[test]
    fn random_bytes_never_make_the_snapshot_decoder_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = ProducerStateTable::decode(&bytes);
    }

    #[test]
    fn random_changes_under_a_valid_crc_never_make_the_snapshot_decoder_panic(
        sends in prop::collection::vec(send(), 0..30),
        changes in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let table = run(&sends, false).table;
        let mut body = table.encode(table.end_offset());
        body.truncate(body.len() - 4);
        for (at, byte) in changes {
            let at = at % body.len();
            body[at] = byte;
        }
        body.truncate(body.len() - cut % 8.min(body.len()));
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        if let Ok((decoded, offset)) = ProducerStateTable::decode(&body) {
            // Whatever decodes is a table that encodes back to the same bytes.
            prop_assert_eq!(decoded.encode(offset), body);
        }
    }
}
