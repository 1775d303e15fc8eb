//! Golden files: the exact bytes of a small segment, its indexes and the checkpoint (docs/FORMAT.md),
//! and a torn-tail variant of the segment that recovery must cut at the right place.
//!
//! The fixtures were generated once with `RILL_WRITE_FIXTURES=1 cargo test -p rill-storage --test
//! format_fixtures`, checked by eye against the format document, and committed. A change to any storage
//! format must come with a new version in that document, not a silent regeneration.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use rill_storage::batch::BatchBuilder;
use rill_storage::{Backend, FaultyBackend, FsBackend, Log, LogConfig};

const FILES: [&str; 4] =
    ["00000000000000000000.log", "00000000000000000000.index", "00000000000000000000.timeindex", "recovery.checkpoint"];
/// The torn variant: the golden segment followed by the first 40 bytes of one more batch.
const TORN_LOG: &str = "torn-tail.log";
const TORN_EXTRA_BYTES: usize = 40;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn config() -> LogConfig {
    LogConfig { index_interval_bytes: 64, ..LogConfig::default() }
}

/// The fixed batches of the golden segment: 1, 2, 1 and 3 records, leader epochs 1, 1, 2, 2.
fn golden_batches() -> Vec<(bytes::Bytes, i32)> {
    let mut out = Vec::new();
    let mut one = BatchBuilder::new();
    one.push(1_700_000_000_000, Some(b"k0"), Some(b"first"), &[]);
    out.push((one.finish(), 1));
    let mut two = BatchBuilder::new();
    two.push(1_700_000_000_010, Some(b"k1"), Some(b"second"), &[("h", Some(b"v"))]);
    two.push(1_700_000_000_005, None, Some(b"third"), &[]);
    out.push((two.finish(), 1));
    let mut three = BatchBuilder::new();
    three.set_producer(42, 0, 0);
    three.push(1_700_000_000_020, Some(b"k3"), None, &[]);
    out.push((three.finish(), 2));
    let mut four = BatchBuilder::new();
    for i in 0..3 {
        four.push(1_700_000_000_030 + i, Some(b"k4"), Some(b"fourth"), &[]);
    }
    out.push((four.finish(), 2));
    out
}

/// Appends the golden batches and closes the log cleanly.
fn write_golden(backend: Arc<dyn Backend>, dir: &Path) {
    let (mut log, _) = Log::open(backend, dir, config(), 0).unwrap();
    for (input, epoch) in golden_batches() {
        log.append(&input, epoch, 0).unwrap();
    }
    log.close().unwrap();
}

fn torn_segment() -> Vec<u8> {
    let mut torn = fixture(FILES[0]);
    let mut extra = BatchBuilder::new();
    extra.push(1_700_000_000_040, Some(b"k5"), Some(b"never completed"), &[]);
    torn.extend_from_slice(&extra.finish()[..TORN_EXTRA_BYTES]);
    torn
}

#[test]
fn the_code_writes_exactly_the_golden_files() {
    let backend = FaultyBackend::new();
    write_golden(Arc::new(backend.clone()), &dir());
    if std::env::var_os("RILL_WRITE_FIXTURES").is_some() {
        std::fs::create_dir_all(fixtures_dir()).unwrap();
        for name in FILES {
            std::fs::write(fixtures_dir().join(name), backend.file_contents(&dir().join(name)).unwrap()).unwrap();
        }
        std::fs::write(fixtures_dir().join(TORN_LOG), torn_segment()).unwrap();
    }
    for name in FILES {
        assert_eq!(backend.file_contents(&dir().join(name)).unwrap(), fixture(name), "{name} differs from its fixture");
    }
    assert_eq!(backend.file_contents(&dir().join("clean-shutdown")), Some(Vec::new()), "the marker is empty");
    assert_eq!(fixture(TORN_LOG), torn_segment());
}

#[test]
fn the_real_filesystem_backend_writes_the_same_bytes() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("topic-0");
    write_golden(Arc::new(FsBackend::new()), &dir);
    for name in FILES {
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), fixture(name), "{name} differs from its fixture");
    }
}

/// Reads the fixtures field by field as docs/FORMAT.md describes them.
#[test]
fn the_golden_files_follow_the_documented_layout() {
    let segment = fixture(FILES[0]);
    let batches: Vec<_> = split(&bytes::Bytes::from(segment.clone()));
    let bases: Vec<u64> = batches.iter().map(|(h, _)| h.base_offset).collect();
    assert_eq!(bases, vec![0, 1, 3, 4]);
    let epochs: Vec<i32> = batches.iter().map(|(h, _)| h.partition_leader_epoch).collect();
    assert_eq!(epochs, vec![1, 1, 2, 2]);
    let positions: Vec<usize> = batches.iter().map(|(_, r)| r.start).collect();

    let index = fixture(FILES[1]);
    assert_eq!(index.len() % 8, 0);
    let entries: Vec<(u32, u32)> = index
        .chunks(8)
        .map(|e| (u32::from_be_bytes(e[0..4].try_into().unwrap()), u32::from_be_bytes(e[4..8].try_into().unwrap())))
        .collect();
    // Every batch after the first is at least 64 bytes past the previous one, so each gets an entry.
    assert_eq!(entries, vec![(1, positions[1] as u32), (3, positions[2] as u32), (4, positions[3] as u32)]);

    let time_index = fixture(FILES[2]);
    let times: Vec<(i64, u32)> = time_index
        .chunks(12)
        .map(|e| (i64::from_be_bytes(e[0..8].try_into().unwrap()), u32::from_be_bytes(e[8..12].try_into().unwrap())))
        .collect();
    assert_eq!(times, vec![(1_700_000_000_010, 2), (1_700_000_000_020, 3), (1_700_000_000_032, 6)]);

    let checkpoint = fixture(FILES[3]);
    assert_eq!(checkpoint.len(), 56);
    assert_eq!(&checkpoint[0..8], b"RILLCKPT");
    assert_eq!(u16::from_be_bytes([checkpoint[8], checkpoint[9]]), 1);
    let u64_at = |at: usize| u64::from_be_bytes(checkpoint[at..at + 8].try_into().unwrap());
    let u32_at = |at: usize| u32::from_be_bytes(checkpoint[at..at + 4].try_into().unwrap());
    assert_eq!(u32_at(12), 3, "offset index entries");
    assert_eq!(u64_at(16), 0, "log start");
    assert_eq!(u64_at(24), 7, "recovery point = log end after close");
    assert_eq!(u64_at(32), 0, "recovery segment");
    assert_eq!(u64_at(40), segment.len() as u64, "recovery position = segment size");
    assert_eq!(u32_at(48), 3, "time index entries");
    assert_eq!(u32_at(52), crc32c::crc32c(&checkpoint[..52]));
}

/// Puts the golden files (with `segment` as the `.log`) into a fresh backend.
fn install(segment: &[u8], with_checkpoint: bool, with_marker: bool) -> FaultyBackend {
    let backend = FaultyBackend::new();
    backend.put_file(&dir().join(FILES[0]), segment);
    backend.put_file(&dir().join(FILES[1]), &fixture(FILES[1]));
    backend.put_file(&dir().join(FILES[2]), &fixture(FILES[2]));
    if with_checkpoint {
        backend.put_file(&dir().join(FILES[3]), &fixture(FILES[3]));
    }
    if with_marker {
        backend.put_file(&dir().join("clean-shutdown"), &[]);
    }
    backend
}

#[test]
fn opening_the_golden_files_after_a_clean_shutdown_scans_nothing() {
    let backend = install(&fixture(FILES[0]), true, true);
    let (log, report) = open(&backend, config());
    assert!(report.clean_shutdown);
    assert_eq!((report.scanned_bytes, log.end_offset(), log.flushed_offset()), (0, 7, 7));
    let stored: Vec<Vec<u8>> = read_all(&log, 0).into_iter().map(|(_, b)| b.to_vec()).collect();
    let expected: Vec<Vec<u8>> =
        golden_batches().iter().zip([0, 1, 3, 4]).map(|((input, epoch), base)| stamped(input, base, *epoch)).collect();
    assert_eq!(stored, expected);
    assert!(backend.file_contents(&dir().join("clean-shutdown")).is_none(), "open removes the marker");
}

#[test]
fn the_torn_variant_is_cut_exactly_at_the_end_of_the_last_whole_batch() {
    for with_checkpoint in [true, false] {
        let backend = install(&fixture(TORN_LOG), with_checkpoint, false);
        let (log, report) = open(&backend, config());
        assert!(!report.clean_shutdown);
        assert_eq!(report.truncated_bytes, TORN_EXTRA_BYTES as u64, "checkpoint {with_checkpoint}");
        assert!(report.torn_reason.is_some());
        assert_eq!(log.end_offset(), 7);
        assert_eq!(backend.file_contents(&dir().join(FILES[0])).unwrap(), fixture(FILES[0]));
        if with_checkpoint {
            assert_eq!(report.scan_from_offset, Some(7), "only the tail after the recovery point is scanned");
            assert_eq!(report.scanned_bytes, TORN_EXTRA_BYTES as u64);
        } else {
            assert_eq!(report.checkpoint, rill_storage::CheckpointStatus::Missing);
            assert_eq!(report.scan_from_offset, Some(0), "without a checkpoint the last segment is scanned whole");
        }
        // The rebuilt indexes are the golden ones.
        assert_eq!(backend.file_contents(&dir().join(FILES[1])).unwrap(), fixture(FILES[1]));
        assert_eq!(backend.file_contents(&dir().join(FILES[2])).unwrap(), fixture(FILES[2]));
        assert_eq!(read_all(&log, 0).len(), 4);
    }
}

/// The encrypted golden segment: the golden batches under a fixed key with counter nonces, and its key record.
const ENCRYPTED_FILES: [(&str, &str); 2] =
    [("00000000000000000000.log", "encrypted.log"), ("00000000000000000000.keyid", "encrypted.keyid")];

fn encrypted_config() -> LogConfig {
    let keyring = rill_storage::Keyring::with_counter_nonces(vec![("golden".into(), [0x5c; 32])], None, 1).unwrap();
    LogConfig { encryption: rill_storage::Encryption::Aes256Gcm, keyring: Some(Arc::new(keyring)), ..config() }
}

#[test]
fn encrypted_segments_match_their_golden_files_and_the_documented_layout() {
    let backend = FaultyBackend::new();
    let (mut log, _) = Log::open(Arc::new(backend.clone()), &dir(), encrypted_config(), 0).unwrap();
    for (input, epoch) in golden_batches() {
        log.append(&input, epoch, 0).unwrap();
    }
    log.close().unwrap();
    if std::env::var_os("RILL_WRITE_FIXTURES").is_some() {
        for (name, fixture_name) in ENCRYPTED_FILES {
            std::fs::write(fixtures_dir().join(fixture_name), backend.file_contents(&dir().join(name)).unwrap())
                .unwrap();
        }
    }
    for (name, fixture_name) in ENCRYPTED_FILES {
        assert_eq!(backend.file_contents(&dir().join(name)).unwrap(), fixture(fixture_name), "{name} differs");
    }
    // Key record: magic, version 1, algorithm 1, fingerprint, id length, id, CRC.
    let record = fixture("encrypted.keyid");
    assert_eq!((&record[0..8], &record[8..12]), (&b"RILLSKEY"[..], &[0, 1, 0, 1][..]));
    assert_eq!((u16::from_be_bytes([record[20], record[21]]), &record[22..28]), (6, &b"golden"[..]));
    assert_eq!(u32::from_be_bytes(record[28..32].try_into().unwrap()), crc32c::crc32c(&record[..28]));
    // Each batch: the plaintext header with length + 28, attribute bit 14 and a CRC over the stored bytes,
    // then the nonce (the counter: seed 1, then 0, 1, 2, ...), ciphertext and tag.
    let plain = split(&bytes::Bytes::from(fixture(FILES[0])));
    let segment = bytes::Bytes::from(fixture("encrypted.log"));
    let sealed = split(&segment);
    assert_eq!(sealed.len(), plain.len());
    for (i, ((p, _), (s, range))) in plain.iter().zip(&sealed).enumerate() {
        assert_eq!((s.base_offset, s.partition_leader_epoch), (p.base_offset, p.partition_leader_epoch));
        assert_eq!((s.batch_length, s.attributes), (p.batch_length + 28, p.attributes | 0x4000));
        assert_eq!(s.crc, crc32c::crc32c(&segment[range.start + 21..range.end]));
        let nonce = &segment[range.start + 61..range.start + 73];
        assert_eq!(nonce, [&1u32.to_be_bytes()[..], &(i as u64).to_be_bytes()[..]].concat());
    }
    let (log, _) = Log::open(Arc::new(backend), &dir(), encrypted_config(), 0).unwrap();
    let read: Vec<u8> = read_all(&log, 0).into_iter().flat_map(|(_, b)| b.to_vec()).collect();
    assert_eq!(read, fixture(FILES[0]), "the encrypted segment reads back as the plaintext golden segment");
}
