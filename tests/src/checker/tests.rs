//! The checker on synthetic histories and synthetic segment files: clean histories pass, planted anomalies
//! are named.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use rill_proto::batch::{BatchBuilder, set_base_offset, set_partition_leader_epoch};

use super::*;

const TOPIC: &str = "t";

fn attempt(producer: u32, seq: u64, outcome: Outcome) -> Attempt {
    let now = Instant::now();
    Attempt {
        producer,
        seq,
        topic: TOPIC.into(),
        partition: 0,
        idempotent: false,
        sent_at: now,
        completed_at: now,
        outcome,
    }
}

fn acked(producer: u32, seq: u64, offset: u64) -> Attempt {
    attempt(producer, seq, Outcome::Acked { offset })
}

fn failed(producer: u32, seq: u64) -> Attempt {
    attempt(producer, seq, Outcome::Failed { error: "timed out".into() })
}

/// A log holding `values` at consecutive offsets from 0, all of it committed.
fn log_of(values: &[&str]) -> PartitionLog {
    let records = values
        .iter()
        .enumerate()
        .map(|(offset, value)| LogRecord {
            offset: offset as u64,
            leader_epoch: 1,
            value: Some(Bytes::from(value.to_string())),
        })
        .collect();
    PartitionLog {
        topic: TOPIC.into(),
        partition: 0,
        log_start_offset: 0,
        high_watermark: values.len() as u64,
        records,
    }
}

fn history(attempts: Vec<Attempt>) -> History {
    History { attempts }
}

#[test]
fn values_round_trip_and_foreign_values_are_not_decoded() {
    assert_eq!(decode_value(encode_value(3, 42).as_bytes()), Some((3, 42)));
    assert_eq!(decode_value(b"tail-1"), None);
    assert_eq!(decode_value(b"p1-x"), None);
}

#[test]
fn a_clean_history_passes() {
    // Two producers interleaved; producer 2's seq 1 failed but was written anyway (indeterminate), and a
    // retry wrote producer 1's seq 1 twice (a duplicate, allowed without idempotence).
    let log = log_of(&["p1-0", "p2-0", "p1-1", "p2-1", "p1-1", "p1-2", "foreign"]);
    let history =
        history(vec![acked(1, 0, 0), acked(2, 0, 1), acked(1, 1, 4), failed(2, 1), acked(1, 2, 5), failed(1, 3)]);
    let report = check(&history, &[log]);
    report.assert_valid();
    assert_eq!((report.acked, report.failed, report.failed_but_present), (4, 2, 1));
    assert_eq!((report.duplicates, report.foreign_records, report.records_read), (1, 1, 7));
}

#[test]
fn a_missing_acknowledged_record_is_a_lost_write() {
    let log = log_of(&["p1-0", "p1-2"]);
    let report = check(&history(vec![acked(1, 0, 0), acked(1, 1, 1), acked(1, 2, 2)]), &[log]);
    assert!(!report.is_valid());
    assert_eq!(report.count("lost-write"), 1, "{report}");
    assert_eq!(
        report.anomalies[0],
        Anomaly::LostWrite {
            producer: 1,
            seq: 1,
            topic: TOPIC.into(),
            partition: 0,
            acked_offset: 1,
            high_watermark: 2
        }
    );
    // p1-2, acknowledged at 2, sits at 1 after the loss.
    assert_eq!(report.count("inconsistent-offsets"), 1, "{report}");
    assert!(report.to_string().contains("lost-write: p1-1 acknowledged at t-0@1 is missing"), "{report}");
}

#[test]
fn a_record_at_another_offset_than_acknowledged_is_inconsistent() {
    let log = log_of(&["p1-0", "p1-1"]);
    let report = check(&history(vec![acked(1, 0, 1), acked(1, 1, 2)]), &[log]);
    assert_eq!(report.count("inconsistent-offsets"), 2, "{report}");
    assert_eq!(report.count("lost-write"), 0);
    let Anomaly::InconsistentOffsets { found_at, value_at_acked_offset, .. } = &report.anomalies[0] else {
        panic!("unexpected {:?}", report.anomalies[0]);
    };
    assert_eq!((found_at.as_slice(), value_at_acked_offset.as_deref()), (&[0][..], Some("p1-1")));
}

#[test]
fn acknowledged_offsets_against_send_order_are_nonmonotonic_sends() {
    let log = log_of(&["p1-1", "p1-0"]);
    let report = check(&history(vec![acked(1, 0, 1), acked(1, 1, 0)]), &[log]);
    assert_eq!(report.count("nonmonotonic-send"), 1, "{report}");
    assert_eq!(report.count("nonmonotonic-log"), 1, "{report}");
    assert_eq!(report.count("lost-write") + report.count("inconsistent-offsets"), 0, "{report}");
}

#[test]
fn history_queries_find_the_first_write_after_a_crash() {
    let before = acked(1, 0, 0);
    let crash = Instant::now();
    let mut late = acked(1, 2, 2);
    late.sent_at = crash;
    let mut early = acked(1, 1, 1);
    early.sent_at = crash;
    early.completed_at = late.completed_at;
    late.completed_at = Instant::now();
    let history = history(vec![before, late, early, failed(1, 3)]);
    assert_eq!(history.acked_sent_since(crash), 2);
    assert_eq!(history.first_ack_sent_since(crash).map(|a| a.seq), Some(1));
    assert_eq!(history.max_acked_offset(TOPIC, 0), Some(2));
    assert_eq!(history.max_acked_offset(TOPIC, 1), None);
}

/// One stored batch of `values` at `base_offset` in `epoch`, as a leader stamps it.
fn stored_batch(base_offset: u64, epoch: i32, values: &[&str]) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    for value in values {
        builder.push(1_700_000_000_000, None, Some(value.as_bytes()), &[]);
    }
    let mut batch = builder.finish().to_vec();
    set_base_offset(&mut batch, base_offset);
    set_partition_leader_epoch(&mut batch, epoch);
    batch
}

/// Writes a node's data directory holding `segments` (base offset, batches) for `t`-0 (topic id 7).
fn write_replica(root: &Path, node: u32, segments: &[(u64, Vec<Vec<u8>>)]) -> PathBuf {
    let data_dir = root.join(format!("node-{node}"));
    let dir = data_dir.join("topics").join(format!("{TOPIC}.7")).join("0");
    std::fs::create_dir_all(&dir).unwrap();
    for (base, batches) in segments {
        std::fs::write(dir.join(format!("{base:020}.log")), batches.concat()).unwrap();
    }
    data_dir
}

/// Two segments: offsets 0..=2 (epochs 1 and 2), then 3..=4 (epoch 2), then an uncommitted 5 (epoch 2).
fn committed_segments() -> Vec<(u64, Vec<Vec<u8>>)> {
    vec![
        (0, vec![stored_batch(0, 1, &["a", "b"]), stored_batch(2, 2, &["c"])]),
        (3, vec![stored_batch(3, 2, &["d", "e"]), stored_batch(5, 2, &["uncommitted"])]),
    ]
}

#[test]
fn identical_replicas_pass_and_their_records_decode() {
    let root = tempfile::tempdir().unwrap();
    let replicas = vec![
        (1, write_replica(root.path(), 1, &committed_segments())),
        (2, write_replica(root.path(), 2, &committed_segments())),
    ];
    assert_replicas_identical(&replicas, TOPIC, 0, 5);

    let dir = partition_dir(&replicas[0].1, TOPIC, 0).unwrap();
    let batches = read_stored_batches(&dir, u64::MAX).unwrap();
    assert_eq!(
        batches.iter().map(|b| (b.base_offset, b.last_offset, b.leader_epoch)).collect::<Vec<_>>(),
        [(0, 1, 1), (2, 2, 2), (3, 4, 2), (5, 5, 2)]
    );
    let records =
        decode_log_records(&Bytes::from(batches.iter().flat_map(|b| b.bytes.clone()).collect::<Vec<_>>())).unwrap();
    assert_eq!(
        records.iter().map(|r| (r.offset, r.leader_epoch)).collect::<Vec<_>>(),
        [(0, 1), (1, 1), (2, 2), (3, 2), (4, 2), (5, 2)]
    );
    assert!(partition_dir(&replicas[0].1, TOPIC, 1).is_none());
    assert!(partition_dir(&replicas[0].1, "other", 0).is_none());
}

#[test]
fn a_different_byte_below_the_high_watermark_is_reported() {
    let root = tempfile::tempdir().unwrap();
    let mut tampered = committed_segments();
    let last = tampered[1].1[0].len() - 1;
    tampered[1].1[0][last] ^= 0xff;
    let replicas =
        vec![(1, write_replica(root.path(), 1, &committed_segments())), (2, write_replica(root.path(), 2, &tampered))];
    let problems = compare_replicas(&replicas, TOPIC, 0, 5);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("node 2 differs from node 1") && problems[0].contains("batch at 3"), "{problems:?}");
}

#[test]
fn a_different_leader_epoch_is_reported() {
    let root = tempfile::tempdir().unwrap();
    let mut restamped = committed_segments();
    set_partition_leader_epoch(&mut restamped[0].1[1], 3);
    let replicas =
        vec![(1, write_replica(root.path(), 1, &committed_segments())), (2, write_replica(root.path(), 2, &restamped))];
    let problems = compare_replicas(&replicas, TOPIC, 0, 5);
    assert!(problems.len() == 1 && problems[0].contains("leader epoch 2 against 3"), "{problems:?}");
}

#[test]
fn differences_at_or_above_the_high_watermark_are_allowed() {
    let root = tempfile::tempdir().unwrap();
    let mut diverged = committed_segments();
    diverged[1].1[1] = stored_batch(5, 3, &["another", "tail"]);
    let replicas =
        vec![(1, write_replica(root.path(), 1, &committed_segments())), (2, write_replica(root.path(), 2, &diverged))];
    assert_replicas_identical(&replicas, TOPIC, 0, 5);
    assert!(!compare_replicas(&replicas, TOPIC, 0, 6).is_empty(), "the divergence at 5 is visible with HW 6");
}

#[test]
fn a_replica_short_of_the_high_watermark_or_without_the_partition_is_reported() {
    let root = tempfile::tempdir().unwrap();
    let short = vec![committed_segments().remove(0)];
    let missing = root.path().join("node-3");
    let replicas = vec![
        (1, write_replica(root.path(), 1, &committed_segments())),
        (2, write_replica(root.path(), 2, &short)),
        (3, missing),
    ];
    let problems = compare_replicas(&replicas, TOPIC, 0, 5);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("node 2 holds t-0 only below 3, short of HW 5"), "{problems:?}");
    assert!(
        problems[1].contains("2 committed batches against 3") || problems[1].contains("3 committed batches against 2"),
        "{problems:?}"
    );
    assert!(problems[2].contains("node 3 has no directory"), "{problems:?}");
}

#[test]
fn a_torn_tail_ends_the_read_but_a_gap_is_an_error() {
    let root = tempfile::tempdir().unwrap();
    let mut torn = committed_segments();
    let tail = torn[1].1.pop().unwrap();
    torn[1].1.push(tail[..tail.len() / 2].to_vec());
    let dir = partition_dir(&write_replica(root.path(), 1, &torn), TOPIC, 0).unwrap();
    assert_eq!(read_stored_batches(&dir, u64::MAX).unwrap().len(), 3);

    let gap = vec![(0, vec![stored_batch(0, 1, &["a"]), stored_batch(2, 1, &["c"])])];
    let dir = partition_dir(&write_replica(root.path(), 2, &gap), TOPIC, 0).unwrap();
    let error = read_stored_batches(&dir, u64::MAX).unwrap_err();
    assert!(format!("{error:#}").contains("does not follow"), "{error:#}");
}

#[test]
fn the_jepsen_checker_reads_a_real_process_history_alike() {
    let log = log_of(&["p1-0", "p1-2"]);
    let history = history(vec![acked(1, 0, 0), acked(1, 1, 1), acked(1, 2, 2), failed(1, 3)]);
    let ops = jepsen::ops_from_attempts(&history, TOPIC);
    assert_eq!(ops.iter().filter(|op| matches!(op, jepsen::Op::Send { .. })).count(), 4);
    let report = jepsen::check_history(&ops, &[jepsen::final_from_log(&log)]);
    assert_eq!((report.count(jepsen::LOST_WRITE), report.count(jepsen::INCONSISTENT_OFFSETS)), (1, 1), "{report}");
    assert!(jepsen::ops_from_attempts(&history, "another topic").is_empty());
}
