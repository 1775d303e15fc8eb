//! Damage and IO failure: a flipped byte in a stored batch is reported and never served, and a write failure
//! (disk full) mid-append leaves the log exactly as before, with later appends working.

mod common;

use std::io;

use common::*;
use rill_storage::{FaultyBackend, LogConfig, StorageError};

/// The file position of the batch at `base` in its segment, found through reads of that segment.
fn position_in_segment(log: &rill_storage::Log, segment_base: u64, base: u64) -> u64 {
    let mut position = 0;
    let mut offset = segment_base;
    while offset < base {
        let read = log.read(offset, 1, u64::MAX).unwrap();
        position += read.records.len() as u64;
        offset = read.next_offset;
    }
    assert_eq!(offset, base, "base must start a batch");
    position
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_reported_and_never_served() {
    let backend = FaultyBackend::new();
    let (mut log, _) = open(&backend, small_config(1_500));
    for i in 0..40 {
        log.append(&batch(2, i, i as u64), 0, 0).unwrap();
    }
    log.flush().unwrap();
    let bases = log.segment_bases();
    assert!(bases.len() >= 3);
    let segment_base = bases[1];
    let damaged = segment_base + 4;
    let position = position_in_segment(&log, segment_base, damaged);
    // A byte of the record data, well inside the CRC-covered part of the batch.
    backend.flip_byte(&segment_path(segment_base, "log"), position + 70);

    match log.read(damaged, 1 << 20, u64::MAX) {
        Err(StorageError::Corrupt { segment, offset, .. }) => {
            assert_eq!(segment, segment_path(segment_base, "log"));
            assert_eq!(offset, damaged);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(matches!(log.read(damaged + 1, 1 << 20, u64::MAX), Err(StorageError::Corrupt { .. })));
    let before = log.read(segment_base, 1 << 20, u64::MAX).unwrap();
    assert_eq!(before.next_offset, damaged, "the good batches before the damage are served, and no more");
    assert_eq!(split(&before.records).len(), 2);
    let after = log.read(damaged + 2, 1 << 20, u64::MAX).unwrap();
    assert_eq!(split(&after.records)[0].0.base_offset, damaged + 2, "batches after the damage stay readable");
    for (_, range) in split(&after.records) {
        rill_storage::batch::check_crc(&after.records[range]).unwrap();
    }
}

#[test]
fn a_flipped_base_offset_outside_the_crc_is_caught_by_offset_continuity() {
    let backend = FaultyBackend::new();
    let (mut log, _) = open(&backend, small_config(1 << 20));
    for i in 0..6 {
        log.append(&batch(1, i, i as u64), 0, 0).unwrap();
    }
    let position = position_in_segment(&log, 0, 3);
    backend.flip_byte(&segment_path(0, "log"), position + 7);
    assert!(matches!(log.read(3, 1 << 20, u64::MAX), Err(StorageError::Corrupt { offset: 3, .. })));
    assert_eq!(log.read(0, 1 << 20, u64::MAX).unwrap().next_offset, 3);
}

#[test]
fn corruption_in_the_active_segment_is_cut_by_recovery_after_a_crash() {
    let backend = FaultyBackend::new();
    let (mut log, _) = open(&backend, small_config(1 << 20));
    for i in 0..6 {
        log.append(&batch(1, i, i as u64), 0, 0).unwrap();
    }
    log.flush().unwrap();
    log.write_checkpoint().unwrap();
    for i in 6..10 {
        log.append(&batch(1, i, i as u64), 0, 0).unwrap();
    }
    log.flush().unwrap();
    let position = position_in_segment(&log, 0, 8);
    drop(log);
    backend.flip_byte(&segment_path(0, "log"), position + 65);
    let (log, report) = open(&backend, small_config(1 << 20));
    assert_eq!(log.end_offset(), 8, "recovery keeps the batches before the damaged one");
    assert!(report.torn_reason.unwrap().contains("CRC"));
    assert_eq!(read_all(&log, 0).len(), 8);
}

/// Appends that fail at each write they make (log data, index entries, the roll's final time index entry)
/// leave the log as it was; after healing, appends continue where the log ends.
#[test]
fn disk_full_at_any_write_of_an_append_leaves_the_log_unchanged() {
    for failing_write in 0..4 {
        let backend = FaultyBackend::new();
        // A dense index and small segments so appends also write index entries and roll.
        let config = LogConfig { index_interval_bytes: 64, ..small_config(400) };
        let (mut log, _) = open(&backend, config.clone());
        for i in 0..7 {
            log.append(&batch(1, i, i as u64), 0, 0).unwrap();
        }
        let before = read_all(&log, 0);
        let (end, size, segments) = (log.end_offset(), log.size_bytes(), log.segment_bases());
        let active_log = segment_path(*segments.last().unwrap(), "log");
        let active_len = backend.file_contents(&active_log).unwrap().len();

        backend.fail_writes_after(failing_write, io::ErrorKind::StorageFull);
        let mut failures = 0;
        for i in 0..3 {
            match log.append(&batch(1, 100 + i, 50 + i as u64), 0, 0) {
                Ok(_) => {}
                Err(e) => {
                    assert!(e.is_disk_full(), "failing write {failing_write}: {e}");
                    failures += 1;
                    break;
                }
            }
        }
        assert_eq!(failures, 1, "failing write {failing_write}: the injected failure surfaced");
        let after_failure = read_all(&log, 0);
        assert_eq!(after_failure[..before.len()], before[..], "failing write {failing_write}");
        assert!(log.end_offset() >= end && log.size_bytes() >= size);
        if log.end_offset() == end {
            assert_eq!(backend.file_contents(&active_log).map(|c| c.len()), Some(active_len), "partial bytes were cut");
        }

        backend.heal();
        let end_before_retry = log.end_offset();
        let info = log.append(&batch(2, 200, 99), 0, 0).unwrap();
        assert_eq!(info.base_offset, end_before_retry, "failing write {failing_write}: no gap after a failed append");
        let all = read_all(&log, 0);
        assert_eq!(all.last().unwrap().0, end_before_retry);
        log.close().unwrap();
        let (reopened, report) = open(&backend, config);
        assert!(report.clean_shutdown);
        assert_eq!(read_all(&reopened, 0), all, "failing write {failing_write}: the log survives a clean restart");
    }
}

#[test]
fn a_failed_append_rolls_back_exactly() {
    let backend = FaultyBackend::new();
    let (mut log, _) = open(&backend, small_config(1 << 20));
    log.append(&batch(3, 0, 1), 0, 0).unwrap();
    let before = backend.file_contents(&segment_path(0, "log")).unwrap();
    backend.fail_writes_after(0, io::ErrorKind::StorageFull);
    let error = log.append(&batch(3, 0, 2), 0, 0).unwrap_err();
    assert!(error.to_string().contains("00000000000000000000.log"), "the error names the file: {error}");
    assert_eq!(log.end_offset(), 3);
    assert_eq!(backend.file_contents(&segment_path(0, "log")).unwrap(), before, "no partial batch remains");
    backend.heal();
    assert_eq!(log.append(&batch(3, 0, 3), 0, 0).unwrap().base_offset, 3);
}

#[test]
fn lost_index_files_of_a_sealed_segment_are_rebuilt_at_open() {
    use rill_storage::Backend;
    let backend = FaultyBackend::new();
    let config = LogConfig { index_interval_bytes: 64, ..small_config(900) };
    let (mut log, _) = open(&backend, config.clone());
    for i in 0..30 {
        log.append(&batch(3, i * 10, i as u64), 0, 0).unwrap();
    }
    log.close().unwrap();
    let bases = {
        let (log, _) = open(&backend, config.clone());
        log.segment_bases()
    };
    assert!(bases.len() >= 3);
    let index = backend.file_contents(&segment_path(bases[1], "index")).unwrap();
    let time_index = backend.file_contents(&segment_path(bases[1], "timeindex")).unwrap();
    assert!(!time_index.is_empty());
    backend.remove_file(&segment_path(bases[1], "index")).unwrap();
    backend.remove_file(&segment_path(bases[1], "timeindex")).unwrap();

    let (log, _) = open(&backend, config);
    assert_eq!(backend.file_contents(&segment_path(bases[1], "index")).unwrap(), index, "rebuilt identically");
    assert_eq!(backend.file_contents(&segment_path(bases[1], "timeindex")).unwrap(), time_index);
    let stored = read_all(&log, 0);
    assert_eq!(stored.len(), 30);
    check_timestamps(&log, &stored, -1, 300, "after the rebuild");
}
