//! Specification of the log's everyday behaviour: appends and offsets, reads and their limits, rolls,
//! retention, timestamp lookup, flushing, truncation and clean shutdown.

mod common;

use common::*;
use rill_storage::batch;
use rill_storage::{Durability, FaultyBackend, LogConfig, StorageError};

#[test]
fn appends_assign_contiguous_offsets_and_stamp_base_offset_and_epoch() {
    let backend = FaultyBackend::new();
    let (mut log, report) = open(&backend, small_config(1 << 20));
    assert!(!report.clean_shutdown);
    assert_eq!((log.log_start_offset(), log.end_offset()), (0, 0));
    let first = batch(3, 1_000, 1);
    let second = batch(2, 2_000, 2);
    let a = log.append(&first, 7, 10).unwrap();
    let b = log.append(&second, 8, 11).unwrap();
    assert_eq!((a.base_offset, a.last_offset, a.max_timestamp), (0, 2, 1_002));
    assert_eq!((b.base_offset, b.last_offset), (3, 4));
    assert_eq!(log.end_offset(), 5);
    let batches = read_all(&log, 0);
    assert_eq!(batches.len(), 2);
    assert_eq!(&batches[0].1[..], &stamped(&first, 0, 7)[..]);
    assert_eq!(&batches[1].1[..], &stamped(&second, 3, 8)[..]);
    batch::validate(&batches[1].1).expect("stamping keeps the batch valid");
}

#[test]
fn read_starts_at_the_batch_containing_the_offset_and_honours_limits() {
    let backend = FaultyBackend::new();
    let (mut log, _) = open(&backend, small_config(1 << 20));
    for i in 0..10 {
        log.append(&batch(4, i * 10, i as u64), 0, 0).unwrap();
    }
    let one = log.read(6, 1, u64::MAX).unwrap();
    let batches = split(&one.records);
    assert_eq!(batches.len(), 1, "at least one whole batch even past max_bytes");
    assert_eq!(batches[0].0.base_offset, 4);
    assert_eq!(one.next_offset, 8);

    let bounded = log.read(0, 1 << 20, 12).unwrap();
    assert_eq!(split(&bounded.records).len(), 3, "batches ending at or past the upper bound are left out");
    assert_eq!(bounded.next_offset, 12);
    let nothing = log.read(13, 1 << 20, 12).unwrap();
    assert!(nothing.records.is_empty());
    assert_eq!(nothing.next_offset, 13);
    let at_end = log.read(40, 1 << 20, u64::MAX).unwrap();
    assert!(at_end.records.is_empty());
    assert_eq!(at_end.next_offset, 40);
    assert!(matches!(log.read(41, 100, u64::MAX), Err(StorageError::OffsetOutOfRange { offset: 41, log_end: 40, .. })));
}

#[test]
fn segments_roll_by_size_and_reads_stay_within_one_segment() {
    let backend = FaultyBackend::new();
    let (mut log, _) = open(&backend, small_config(1_000));
    for i in 0..30 {
        log.append(&batch(2, i, i as u64), 0, 0).unwrap();
    }
    let bases = log.segment_bases();
    assert!(bases.len() > 3, "small segments roll: {bases:?}");
    for base in &bases {
        assert!(backend.file_contents(&segment_path(*base, "log")).is_some());
        assert!(backend.file_contents(&segment_path(*base, "index")).is_some());
    }
    let read = log.read(0, 1 << 20, u64::MAX).unwrap();
    assert_eq!(read.next_offset, bases[1], "one read returns one segment's batches");
    assert_eq!(read_all(&log, 0).len(), 30);
}

#[test]
fn segments_roll_by_age_of_their_first_append() {
    let backend = FaultyBackend::new();
    let config = LogConfig { segment_ms_max: Some(1_000), ..small_config(1 << 20) };
    let (mut log, _) = open(&backend, config);
    assert!(!log.roll_if_due(5_000).unwrap(), "an empty segment never rolls");
    log.append(&batch(1, 0, 1), 0, 10_000).unwrap();
    assert!(!log.roll_if_due(10_999).unwrap());
    assert!(log.roll_if_due(11_000).unwrap());
    assert_eq!(log.segment_bases(), vec![0, 1]);
    log.append(&batch(1, 0, 2), 0, 20_000).unwrap();
    log.append(&batch(1, 0, 3), 0, 21_500).unwrap();
    assert_eq!(log.segment_bases(), vec![0, 1, 2], "an append to an old segment rolls first");
}

#[test]
fn retention_by_size_deletes_oldest_sealed_segments_and_advances_the_start() {
    let backend = FaultyBackend::new();
    let (mut log, _) = open(&backend, LogConfig { retention_bytes: Some(2_000), ..small_config(1_000) });
    for i in 0..40 {
        log.append(&batch(2, i, i as u64), 0, 0).unwrap();
    }
    assert_eq!(log.enforce_retention(0).unwrap(), 0, "nothing is deleted before it is durable");
    log.flush().unwrap();
    let before = log.segment_bases();
    let deleted = log.enforce_retention(0).unwrap();
    assert!(deleted > 0);
    let after = log.segment_bases();
    assert_eq!(after[..], before[deleted as usize..]);
    assert_eq!(log.log_start_offset(), after[0]);
    assert!(log.size_bytes() <= 2_000 + 1_000);
    assert!(backend.file_contents(&segment_path(before[0], "log")).is_none());
    assert!(matches!(log.read(0, 100, u64::MAX), Err(StorageError::OffsetOutOfRange { .. })));
    assert_eq!(read_all(&log, log.log_start_offset()).last().unwrap().0, 78);
    drop(log);
    let (log, _) = open(&backend, small_config(1_000));
    assert_eq!(log.log_start_offset(), after[0], "the new log start survives a crash");
}

#[test]
fn retention_by_age_uses_each_segments_newest_record_and_never_the_active_segment() {
    let backend = FaultyBackend::new();
    let (mut log, _) = open(&backend, LogConfig { retention_ms: Some(100), ..small_config(300) });
    for i in 0..12 {
        log.append(&batch(1, i * 100, i as u64), 0, 0).unwrap();
    }
    log.flush().unwrap();
    let bases = log.segment_bases();
    assert!(bases.len() >= 3);
    let deleted = log.enforce_retention(i64::MAX / 2).unwrap();
    assert_eq!(deleted as usize, bases.len() - 1, "everything old goes except the active segment");
    assert_eq!(log.segment_bases(), vec![*bases.last().unwrap()]);
    assert_eq!(log.end_offset(), 12);
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let backend = FaultyBackend::new();
    let (mut log, _) = open(&backend, LogConfig { index_interval_bytes: 64, ..small_config(700) });
    for i in 0..40 {
        log.append(&batch(3, 1_000 + i * 10, i as u64), 0, 0).unwrap();
    }
    assert!(log.segment_bases().len() > 2);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 1_000)));
    assert_eq!(log.offset_for_timestamp(1_001).unwrap(), Some((1, 1_001)));
    assert_eq!(log.offset_for_timestamp(1_003).unwrap(), Some((3, 1_010)));
    assert_eq!(log.offset_for_timestamp(1_252).unwrap(), Some((77, 1_252)));
    assert_eq!(log.offset_for_timestamp(1_392).unwrap(), Some((119, 1_392)));
    assert_eq!(log.offset_for_timestamp(1_393).unwrap(), None);
}

#[test]
fn flush_jobs_advance_the_flushed_offset_only_after_running() {
    let backend = FaultyBackend::new();
    let (mut log, _) = open(&backend, small_config(1 << 20));
    assert!(log.flush_job().is_none());
    log.append(&batch(2, 0, 1), 0, 0).unwrap();
    assert_eq!(log.flushed_offset(), 0);
    let job = log.flush_job().expect("unflushed data");
    assert_eq!(job.upto(), 2);
    log.append(&batch(2, 0, 2), 0, 0).unwrap();
    log.mark_flushed(job.upto());
    assert_eq!(log.flushed_offset(), 0, "a job that has not run claims nothing");
    job.run().unwrap();
    log.mark_flushed(job.upto());
    assert_eq!(log.flushed_offset(), 2);
    let first_batch_bytes = log.read(0, 1, 2).unwrap().records.len() as u64;
    assert!(backend.synced_len(&segment_path(0, "log")).unwrap() >= first_batch_bytes);
    log.flush().unwrap();
    assert_eq!(log.flushed_offset(), 4);
    assert!(log.flush_job().is_none());
}

#[test]
fn a_flush_job_taken_before_a_truncation_cannot_claim_what_was_appended_after() {
    let backend = FaultyBackend::new();
    let (mut log, _) = open(&backend, small_config(1 << 20));
    for i in 0..4 {
        log.append(&batch(1, 0, i), 0, 0).unwrap();
    }
    let stale = log.flush_job().unwrap();
    stale.run().unwrap();
    log.truncate_to(2).unwrap();
    log.append(&batch(1, 0, 9), 0, 0).unwrap();
    log.append(&batch(1, 0, 10), 0, 0).unwrap();
    log.mark_flushed(stale.upto());
    assert_eq!(log.flushed_offset(), 2, "only what survived the truncation stays durable");
}

#[test]
fn truncation_needs_a_batch_boundary_at_or_above_the_log_start() {
    let backend = FaultyBackend::new();
    let (mut log, _) = open(&backend, small_config(600));
    for i in 0..10 {
        log.append(&batch(3, 0, i), 0, 0).unwrap();
    }
    assert!(matches!(
        log.truncate_to(4),
        Err(StorageError::NotBatchBoundary { offset: 4, batch_base: 3, batch_last: 5 })
    ));
    assert_eq!(log.end_offset(), 30, "a refused truncation changes nothing");
    log.truncate_to(12).unwrap();
    assert_eq!(log.end_offset(), 12);
    assert!(*log.segment_bases().last().unwrap() <= 12);
    log.append(&batch(3, 0, 99), 0, 0).unwrap();
    let batches = read_all(&log, 0);
    assert_eq!(batches.iter().map(|b| b.0).collect::<Vec<_>>(), vec![0, 3, 6, 9, 12]);
    log.truncate_to(100).unwrap();
    assert_eq!(log.end_offset(), 15, "truncating past the end is a no-op");
    log.truncate_to(0).unwrap();
    assert_eq!((log.end_offset(), log.segment_bases()), (0, vec![0]));
}

#[test]
fn append_replicated_keeps_the_leaders_offsets_and_rejects_gaps() {
    let backend = FaultyBackend::new();
    let (mut log, _) = open(&backend, small_config(1 << 20));
    let leader_copy = stamped(&batch(2, 0, 1), 0, 5);
    log.append_replicated(&leader_copy, 0).unwrap();
    let gap = stamped(&batch(2, 0, 2), 7, 5);
    assert!(matches!(log.append_replicated(&gap, 0), Err(StorageError::InvalidBatch(_))));
    let next = stamped(&batch(2, 0, 2), 2, 6);
    log.append_replicated(&next, 0).unwrap();
    let stored: Vec<Vec<u8>> = read_all(&log, 0).into_iter().map(|b| b.1.to_vec()).collect();
    assert_eq!(stored, vec![leader_copy, next]);
    assert!(matches!(log.append(&[0u8; 10], 0, 0), Err(StorageError::InvalidBatch(_))));
}

#[test]
fn clean_shutdown_skips_the_scan_and_the_marker_is_gone_after_open() {
    let backend = FaultyBackend::new();
    let (mut log, _) = open(&backend, small_config(900));
    for i in 0..20 {
        log.append(&batch(2, i, i as u64), 1, 0).unwrap();
    }
    let before = read_all(&log, 0);
    log.close().unwrap();
    assert!(backend.file_contents(&dir().join("clean-shutdown")).is_some());
    let (log, report) = open(&backend, small_config(900));
    assert!(report.clean_shutdown);
    assert_eq!(report.scanned_bytes, 0);
    assert!(!log.has_clean_marker().unwrap(), "a later crash must not look clean");
    assert_eq!(read_all(&log, 0), before);
    assert_eq!(log.flushed_offset(), 40);
    drop(log);
    let (_, report) = open(&backend, small_config(900));
    assert!(!report.clean_shutdown, "without close the next open scans");
}

#[test]
fn reopening_after_a_checkpoint_scans_only_the_tail() {
    let backend = FaultyBackend::new();
    let (mut log, _) = open(&backend, small_config(1 << 20));
    for i in 0..50 {
        log.append(&batch(1, i, i as u64), 0, 0).unwrap();
    }
    log.flush().unwrap();
    log.write_checkpoint().unwrap();
    let checkpointed_bytes = log.size_bytes();
    for i in 50..53 {
        log.append(&batch(1, i, i as u64), 0, 0).unwrap();
    }
    log.flush().unwrap();
    let tail_bytes = log.size_bytes() - checkpointed_bytes;
    drop(log);
    let (log, report) = open(&backend, small_config(1 << 20));
    assert_eq!(report.scan_from_offset, Some(50));
    assert_eq!(report.scanned_bytes, tail_bytes);
    assert_eq!(log.end_offset(), 53);
}

#[test]
fn truncate_fully_restarts_the_log_at_a_new_offset() {
    let backend = FaultyBackend::new();
    let (mut log, _) = open(&backend, small_config(600));
    for i in 0..10 {
        log.append(&batch(2, 0, i), 0, 0).unwrap();
    }
    log.truncate_fully_and_start_at(1_000).unwrap();
    assert_eq!((log.log_start_offset(), log.end_offset(), log.segment_bases()), (1_000, 1_000, vec![1_000]));
    log.append(&batch(2, 0, 1), 0, 0).unwrap();
    drop(log);
    let (log, _) = open(&backend, small_config(600));
    assert_eq!((log.log_start_offset(), log.end_offset()), (1_000, 1_002));
}

#[test]
fn durability_os_fsyncs_sealed_segments_at_roll() {
    let backend = FaultyBackend::new();
    let (mut log, _) = open(&backend, LogConfig { durability: Durability::Os, ..small_config(600) });
    for i in 0..10 {
        log.append(&batch(2, 0, i), 0, 0).unwrap();
    }
    let bases = log.segment_bases();
    let active = *bases.last().unwrap();
    assert_eq!(log.flushed_offset(), active, "everything before the active segment is durable");
    assert!(log.unsynced_segments().is_empty());
    let sealed_len = backend.file_contents(&segment_path(bases[0], "log")).unwrap().len() as u64;
    assert_eq!(backend.synced_len(&segment_path(bases[0], "log")), Some(sealed_len));
}

#[test]
fn invalid_configuration_is_refused_at_open() {
    let backend = FaultyBackend::new();
    let config = LogConfig { segment_bytes_max: 10, ..LogConfig::default() };
    let result = rill_storage::Log::open(std::sync::Arc::new(backend), &dir(), config, 0);
    assert!(matches!(result, Err(StorageError::InvalidConfig(_))));
}
