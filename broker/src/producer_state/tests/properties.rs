//! Properties over generated inputs: replicas that apply the same log agree, truncation plus replay restores
//! the uncut state, snapshots round trip, and no input makes the snapshot decoder panic.

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

/// Runs `sends` through the leader's produce path; producers start near the sequence wrap when `near_wrap`.
fn run(sends: &[Send], near_wrap: bool) -> Partition {
    let mut partition = Partition::new();
    // Per producer: current epoch, next sequence, batches sent in that epoch.
    let mut producers: Vec<(i16, i32, Vec<ProducerBatch>)> = vec![(0, 0, Vec::new()); 4];
    let mut timestamp_ms = T0_MS;
    for send in sends {
        timestamp_ms += 1;
        let sent_batch = match *send {
            Send::Next { producer, records } => {
                let (epoch, sequence, sent) = &mut producers[producer as usize];
                let b = batch(producer, *epoch, *sequence, records);
                sent.push(b);
                b
            }
            Send::Retry { producer, back } => {
                let (_, _, sent) = &producers[producer as usize];
                match sent.len().checked_sub(back + 1) {
                    Some(index) => sent[index],
                    None => continue,
                }
            }
            Send::Gap { producer } => {
                let (epoch, sequence, _) = producers[producer as usize];
                batch(producer, epoch, advance_sequence(sequence, 2), 1)
            }
            Send::BumpEpoch { producer } => {
                let (epoch, sequence, sent) = &mut producers[producer as usize];
                *epoch += 1;
                *sequence = 0;
                sent.clear();
                let b = batch(producer, *epoch, 0, 1);
                sent.push(b);
                b
            }
            Send::OldEpoch { producer } => {
                let (epoch, _, _) = producers[producer as usize];
                batch(producer, epoch - 1, 0, 1)
            }
            Send::Plain { records } => plain_batch(records),
        };
        let verdict = partition.produce(sent_batch, timestamp_ms);
        let (_, sequence, sent) = &mut producers[sent_batch.producer_id.max(0) as usize];
        match (verdict, *send) {
            (Verdict::Append, Send::Next { .. } | Send::BumpEpoch { .. }) => {
                *sequence = advance_sequence(*sequence, sent_batch.record_count);
            }
            (_, Send::Next { .. } | Send::BumpEpoch { .. }) => {
                sent.pop();
            }
            _ => {}
        }
        if near_wrap && partition.log.len() == 1 {
            // Move every producer close to the wrap once the first batch is in, by restarting them there.
            for (producer, (epoch, sequence, sent)) in producers.iter_mut().enumerate() {
                if partition.table.producer(producer as i64).is_none() {
                    let end = partition.log_end_offset;
                    let b = batch(producer as i64, *epoch, i32::MAX - 3, 2);
                    partition.table.apply(&b, end, end + 1, timestamp_ms);
                    partition.log.push(AppendedBatch {
                        batch: b,
                        base_offset: end,
                        last_offset: end + 1,
                        timestamp_ms,
                    });
                    partition.log_end_offset = end + 2;
                    *sequence = i32::MAX - 1;
                    sent.clear();
                    sent.push(b);
                }
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
    fn no_batch_is_appended_twice_in_one_epoch(sends in prop::collection::vec(send(), 0..60), near_wrap in any::<bool>()) {
        let leader = run(&sends, near_wrap);
        let mut seen = std::collections::BTreeSet::new();
        for appended in leader.log.iter().filter(|b| b.batch.is_idempotent()) {
            let b = appended.batch;
            prop_assert!(seen.insert((b.producer_id, b.producer_epoch, b.base_sequence)), "appended twice: {:?}", b);
        }
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
