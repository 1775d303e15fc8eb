//! Shared test harness: batch builders, log openers over either backend, and checks on what reads return.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rill_storage::batch::{self, BatchBuilder, BatchHeader};
use rill_storage::{Backend, Durability, FaultyBackend, Log, LogConfig, RecoveryReport};

pub const DIR: &str = "/data/topic-0";

pub fn dir() -> PathBuf {
    PathBuf::from(DIR)
}

/// A batch of `records` records with timestamps `timestamp_ms`, `timestamp_ms + 1`, ... and values derived
/// from `seed` so different batches have different bytes.
pub fn batch_with(records: usize, timestamp_ms: i64, seed: u64, value_bytes: usize) -> Bytes {
    let mut builder = BatchBuilder::new();
    for i in 0..records {
        let value: Vec<u8> =
            (0..value_bytes).map(|j| (seed.wrapping_mul(31) as usize).wrapping_add(i * 7 + j) as u8).collect();
        builder.push(timestamp_ms + i as i64, Some(format!("k{seed}-{i}").as_bytes()), Some(&value), &[]);
    }
    builder.finish()
}

pub fn batch(records: usize, timestamp_ms: i64, seed: u64) -> Bytes {
    batch_with(records, timestamp_ms, seed, 20)
}

/// A small-segment configuration so tests roll often.
pub fn small_config(segment_bytes_max: u64) -> LogConfig {
    LogConfig { segment_bytes_max, index_interval_bytes: 128, durability: Durability::Fsync, ..LogConfig::default() }
}

pub fn open(backend: &FaultyBackend, config: LogConfig) -> (Log, RecoveryReport) {
    open_at(backend, &dir(), config)
}

pub fn open_at(backend: &FaultyBackend, dir: &Path, config: LogConfig) -> (Log, RecoveryReport) {
    let backend: Arc<dyn Backend> = Arc::new(backend.clone());
    Log::open(backend, dir, config, 0).expect("open log")
}

/// Reads the whole log from `from` to the end, one `read` at a time, checking every batch on the way:
/// returns the batches as (base offset, bytes).
pub fn read_all(log: &Log, from: u64) -> Vec<(u64, Bytes)> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < log.end_offset() {
        let result = log.read(offset, 1 << 20, u64::MAX).expect("read");
        assert!(!result.records.is_empty(), "read at {offset} below the end {} returned nothing", log.end_offset());
        for (header, range) in split(&result.records) {
            batch::check_crc(&result.records[range.clone()]).expect("served batches pass their CRC");
            out.push((header.base_offset, result.records.slice(range)));
        }
        assert!(result.next_offset > offset, "reads make progress");
        offset = result.next_offset;
    }
    out
}

pub fn split(records: &Bytes) -> Vec<(BatchHeader, std::ops::Range<usize>)> {
    batch::split_batches(records).map(|r| r.expect("reads return whole batches")).collect()
}

/// The stored form of a batch appended at `base_offset` with `epoch`: the input with those two fields stamped.
pub fn stamped(input: &[u8], base_offset: u64, epoch: i32) -> Vec<u8> {
    let mut stored = input.to_vec();
    batch::set_base_offset(&mut stored, base_offset);
    batch::set_partition_leader_epoch(&mut stored, epoch);
    stored
}

pub fn segment_path(base: u64, suffix: &str) -> PathBuf {
    dir().join(format!("{base:020}.{suffix}"))
}

/// The reference answer to `offset_for_timestamp` over stored batches: the first record, in offset order,
/// whose timestamp is at or after `timestamp_ms`, among batches whose max timestamp reaches it.
pub fn expected_offset_for_timestamp(batches: &[(u64, Bytes)], timestamp_ms: i64) -> Option<(u64, i64)> {
    for (_, stored) in batches {
        let header = BatchHeader::parse(stored).unwrap();
        if header.max_timestamp < timestamp_ms {
            continue;
        }
        let records = batch::decode_records(stored).unwrap();
        if let Some(record) = records.iter().find(|r| r.timestamp_ms >= timestamp_ms) {
            return Some((record.offset, record.timestamp_ms));
        }
    }
    None
}

/// Checks `offset_for_timestamp` against the reference at every timestamp from `from` to `to`.
pub fn check_timestamps(log: &Log, batches: &[(u64, Bytes)], from: i64, to: i64, context: &str) {
    for timestamp_ms in from..=to {
        assert_eq!(
            log.offset_for_timestamp(timestamp_ms).unwrap(),
            expected_offset_for_timestamp(batches, timestamp_ms),
            "{context}: offset_for_timestamp({timestamp_ms}) in segments {:?}",
            log.segment_bases()
        );
    }
}
