//! The real filesystem backend: reads are zero-copy slices of one mapping, a truncation under live readers
//! copies instead of shrinking the mapped file (no SIGBUS, readers keep their bytes), and logs reopen.

mod common;

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use common::*;
use rill_storage::{Backend, FsBackend, Log, LogConfig};

fn open_fs(dir: &std::path::Path, config: LogConfig) -> Log {
    let backend: Arc<dyn Backend> = Arc::new(FsBackend::new());
    Log::open(backend, dir, config, 0).unwrap().0
}

#[test]
fn reads_are_slices_of_one_shared_mapping() {
    let temp = tempfile::tempdir().unwrap();
    let mut log = open_fs(temp.path(), small_config(1 << 20));
    for i in 0..10 {
        log.append(&batch(2, i, i as u64), 0, 0).unwrap();
    }
    let first = log.read(4, 1, u64::MAX).unwrap();
    let again = log.read(4, 1, u64::MAX).unwrap();
    assert_eq!(first.records.as_ptr(), again.records.as_ptr(), "both reads borrow the same mapped bytes");
    let whole = log.read(0, 1 << 20, u64::MAX).unwrap();
    let offset_in_whole = first.records.as_ptr() as usize - whole.records.as_ptr() as usize;
    assert_eq!(&whole.records[offset_in_whole..offset_in_whole + first.records.len()], &first.records[..]);
}

#[test]
fn truncating_under_a_live_reader_keeps_the_readers_bytes_intact() {
    let temp = tempfile::tempdir().unwrap();
    let mut log = open_fs(temp.path(), small_config(1 << 20));
    for i in 0..20 {
        log.append(&batch(2, i, i as u64), 0, 0).unwrap();
    }
    let held = log.read(10, 1 << 20, u64::MAX).unwrap();
    let held_copy = held.records.to_vec();
    let segment = temp.path().join("00000000000000000000.log");
    let inode_before = std::fs::metadata(&segment).unwrap().ino();
    log.truncate_to(12).unwrap();
    assert_ne!(std::fs::metadata(&segment).unwrap().ino(), inode_before, "a reader was live: the file is replaced");
    assert_eq!(log.end_offset(), 12);
    // The held bytes still read as they were: the file was replaced, not shrunk under the mapping.
    assert_eq!(&held.records[..], &held_copy[..]);
    for i in 0..5 {
        log.append(&batch(3, 100 + i, 1_000 + i as u64), 0, 0).unwrap();
    }
    assert_eq!(&held.records[..], &held_copy[..], "appends after the swap do not touch the old file");
    let batches = read_all(&log, 0);
    assert_eq!(batches.len(), 6 + 5);
    assert_eq!(batches[6].0, 12);
    let stray: Vec<_> = std::fs::read_dir(temp.path())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "no temporary files remain: {stray:?}");
    drop((held, batches));
    let inode_before = std::fs::metadata(&segment).unwrap().ino();
    log.truncate_to(15).unwrap();
    assert_eq!(std::fs::metadata(&segment).unwrap().ino(), inode_before, "no reader: the file shrinks in place");
    let kept = read_all(&log, 0);
    log.close().unwrap();
    let reopened = open_fs(temp.path(), small_config(1 << 20));
    assert_eq!(reopened.end_offset(), 15);
    assert_eq!(read_all(&reopened, 0), kept);
}

#[test]
fn a_log_on_disk_survives_reopening_with_and_without_clean_shutdown() {
    let temp = tempfile::tempdir().unwrap();
    let mut log = open_fs(temp.path(), small_config(800));
    for i in 0..30 {
        log.append(&batch(2, i, i as u64), 0, 0).unwrap();
    }
    log.flush().unwrap();
    let before = read_all(&log, 0);
    drop(log);
    let log = open_fs(temp.path(), small_config(800));
    assert_eq!(read_all(&log, 0), before);
    log.close().unwrap();
    assert!(temp.path().join("clean-shutdown").exists());
    let log = open_fs(temp.path(), small_config(800));
    assert!(!temp.path().join("clean-shutdown").exists(), "open removes the marker");
    assert_eq!(read_all(&log, 0), before);
    log.delete().unwrap();
    assert!(!temp.path().exists());
}

#[test]
fn reopening_without_close_while_old_reads_are_alive_cuts_the_tail_without_touching_them() {
    let temp = tempfile::tempdir().unwrap();
    let mut log = open_fs(temp.path(), small_config(1 << 20));
    for i in 0..10 {
        log.append(&batch(2, i, i as u64), 0, 0).unwrap();
    }
    log.flush().unwrap();
    log.write_checkpoint().unwrap();
    let held = log.read(0, 1 << 20, u64::MAX).unwrap();
    let held_copy = held.records.to_vec();
    drop(log);
    // A torn tail appended behind the log's back, as a crash mid-write would leave it.
    let segment = temp.path().join("00000000000000000000.log");
    let mut file = std::fs::OpenOptions::new().append(true).open(&segment).unwrap();
    std::io::Write::write_all(&mut file, &[0xAB; 30]).unwrap();
    drop(file);
    let backend: Arc<dyn Backend> = Arc::new(FsBackend::new());
    let (log, report) = Log::open(backend, temp.path(), small_config(1 << 20), 0).unwrap();
    assert_eq!(report.truncated_bytes, 30);
    assert_eq!(log.end_offset(), 20);
    assert_eq!(&held.records[..], &held_copy[..], "the old reader's bytes are intact");
}

/// Appends `count` batches (flushing after each if `flush`), then checks that every batch reads back intact
/// from the log, and again after closing and reopening it: the page-cache window only drops cached copies.
fn append_and_read_back(config: LogConfig, count: i64, records: usize, value_bytes: usize, flush: bool) -> usize {
    let temp = tempfile::tempdir().unwrap();
    let mut log = open_fs(temp.path(), config.clone());
    let mut written = Vec::new();
    for i in 0..count {
        let input = batch_with(records, i, i as u64, value_bytes);
        let appended = log.append(&input, 3, 0).unwrap();
        if flush {
            log.flush().unwrap();
        }
        written.push((appended.base_offset, input));
    }
    let segments = log.segment_bases().len();
    let check = |log: &Log| {
        let batches = read_all(log, 0);
        assert_eq!(batches.len(), written.len());
        for ((offset, bytes), (base, input)) in batches.iter().zip(&written) {
            assert_eq!(offset, base);
            assert_eq!(&bytes[..], &stamped(input, *base, 3)[..], "batch at {base} reads back intact");
        }
    };
    check(&log);
    log.close().unwrap();
    check(&open_fs(temp.path(), config));
    segments
}

#[test]
fn dropping_cached_pages_behind_the_window_keeps_every_byte_readable() {
    // Window 0: every flush asks the kernel to drop all cached pages of the synced segments, sealed and active.
    let config = LogConfig { cache_window_bytes: Some(0), ..small_config(64 * 1024) };
    let segments = append_and_read_back(config, 40, 4, 4096, true);
    assert!(segments > 2, "the batches span several segments");
}

#[test]
fn write_behind_under_the_os_policy_keeps_every_byte_readable() {
    // Under `os` the window starts writeback and drops pages in 8 MiB steps as the active segment grows.
    let config = LogConfig {
        durability: rill_storage::Durability::Os,
        cache_window_bytes: Some(1 << 20),
        ..small_config(1 << 30)
    };
    let segments = append_and_read_back(config, 800, 16, 1024, false);
    assert_eq!(segments, 1, "one segment, grown well past the window and a step");
}
