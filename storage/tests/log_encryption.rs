//! Encryption at rest: what reaches the "disk" (no plaintext), reading back after crashes and torn tails, key
//! rotation across segments, and every way of holding the wrong keys refused at open without truncating.

mod common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use rill_storage::batch::{BatchBuilder, decode_records};
use rill_storage::{Backend, Encryption, FaultyBackend, KeyRecord, Keyring, Log, LogConfig, StorageError};

fn keyring(keys: &[(&str, u8)], active: Option<&str>) -> Arc<Keyring> {
    let keys = keys.iter().map(|(id, byte)| (id.to_string(), [*byte; 32])).collect();
    Arc::new(Keyring::with_counter_nonces(keys, active, 7).unwrap())
}

fn encrypted(segment_bytes_max: u64, keyring: &Arc<Keyring>) -> LogConfig {
    LogConfig {
        encryption: Encryption::Aes256Gcm,
        keyring: Some(Arc::clone(keyring)),
        ..small_config(segment_bytes_max)
    }
}

/// A batch whose values are `secret-<seed>-<i>` padded, easy to look for in raw bytes.
fn secret_batch(seed: u64, records: usize) -> Bytes {
    let mut builder = BatchBuilder::new();
    for i in 0..records {
        let value = format!("secret-{seed}-{i}-{}", "x".repeat(40));
        builder.push(1_000 + seed as i64, Some(format!("key-{seed}").as_bytes()), Some(value.as_bytes()), &[]);
    }
    builder.finish()
}

/// Every file of the partition directory with its bytes.
fn files(backend: &FaultyBackend) -> Vec<(String, Vec<u8>)> {
    let mut names = backend.list_dir(&dir()).unwrap();
    names.sort();
    names.into_iter().map(|n| (n.clone(), backend.file_contents(&dir().join(&n)).unwrap())).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn key_record(backend: &FaultyBackend, base: u64) -> Option<KeyRecord> {
    backend.file_contents(&segment_path(base, "keyid")).map(|bytes| KeyRecord::decode(&bytes).unwrap())
}

/// Appends `count` secret batches and returns their stamped stored forms as the log serves them.
fn append_secrets(log: &mut Log, from_seed: u64, count: u64) -> Vec<(u64, Bytes)> {
    (from_seed..from_seed + count)
        .map(|seed| {
            let input = secret_batch(seed, 3);
            let info = log.append(&input, 1, 0).unwrap();
            (info.base_offset, Bytes::from(stamped(&input, info.base_offset, 1)))
        })
        .collect()
}

fn open_err(backend: &FaultyBackend, config: LogConfig) -> StorageError {
    Log::open(Arc::new(backend.clone()), &dir(), config, 0).expect_err("the open must be refused")
}

#[test]
fn no_plaintext_value_reaches_any_file_and_everything_reads_back() {
    let backend = FaultyBackend::new();
    let ring = keyring(&[("k1", 1)], None);
    let (mut log, _) = open(&backend, encrypted(700, &ring));
    let expected = append_secrets(&mut log, 0, 12);
    log.flush().unwrap();
    assert!(log.segment_count() >= 3, "several segments: {}", log.segment_count());
    assert_eq!(read_all(&log, 0), expected, "reads give back the exact batches appended");
    log.close().unwrap();
    for (name, bytes) in files(&backend) {
        assert!(!contains(&bytes, b"secret-"), "{name} holds a plaintext value");
        assert!(!contains(&bytes, b"key-1"), "{name} holds a plaintext key");
    }
    let (log, report) = open(&backend, encrypted(700, &ring));
    assert!(report.clean_shutdown);
    for base in log.segment_bases() {
        assert_eq!(key_record(&backend, base).unwrap().key_id, "k1", "segment {base} names its key");
    }
    assert_eq!(read_all(&log, 0), expected, "intact after a clean restart");
    let found = log.offset_for_timestamp(1_005).unwrap();
    assert_eq!(found.map(|(offset, _)| offset), Some(15), "timestamp lookups decrypt the batch they land in");
    let values = decode_records(&log.read(3, 1, u64::MAX).unwrap().records).unwrap();
    assert_eq!(values[0].value.as_deref(), Some(&b"secret-1-0-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"[..]));
}

#[test]
fn crashes_cut_only_torn_tails_and_keep_every_flushed_batch() {
    let ring = keyring(&[("k1", 1)], None);
    let mut torn_cuts = 0;
    for seed in 0..40 {
        let backend = FaultyBackend::strict_directories();
        // One segment, so the torn write lands in a file whose name is durable.
        let (mut log, _) = open(&backend, encrypted(1 << 20, &ring));
        let mut expected = append_secrets(&mut log, 0, 6);
        log.flush().unwrap();
        if seed % 2 == 0 {
            log.write_checkpoint().unwrap();
        }
        let flushed = log.flushed_offset();
        expected.extend(append_secrets(&mut log, 100, 1 + seed % 3));
        drop(log);
        backend.crash(seed);
        let (log, report) = open(&backend, encrypted(1 << 20, &ring));
        torn_cuts += u64::from(report.truncated_bytes > 0);
        assert!(log.end_offset() >= flushed, "seed {seed}: flushed batches lost");
        let stored = read_all(&log, 0);
        assert_eq!(stored[..], expected[..stored.len()], "seed {seed}: what survives is what was appended");
    }
    assert!(torn_cuts > 0, "some crash tore an encrypted batch");
}

#[test]
fn a_rotated_key_writes_new_segments_while_old_ones_read_with_theirs() {
    let backend = FaultyBackend::new();
    let (mut log, _) = open(&backend, encrypted(1 << 20, &keyring(&[("k1", 1)], None)));
    let mut expected = append_secrets(&mut log, 0, 3);
    log.close().unwrap();
    let rotated = keyring(&[("k1", 1), ("k2", 2)], Some("k2"));
    let (mut log, _) = open(&backend, encrypted(1 << 20, &rotated));
    expected.extend(append_secrets(&mut log, 3, 3));
    assert_eq!(log.segment_bases(), [0, 9], "the first append under the new key starts a segment");
    assert_eq!(key_record(&backend, 0).unwrap().key_id, "k1");
    assert_eq!(key_record(&backend, 9).unwrap().key_id, "k2");
    assert_eq!(read_all(&log, 0), expected);
    log.close().unwrap();
    // Dropping the old key leaves its segment unreadable: the open says so and changes nothing.
    let before = files(&backend);
    let err = open_err(&backend, encrypted(1 << 20, &keyring(&[("k2", 2)], None)));
    let text = err.to_string();
    assert!(text.contains("k1") && text.contains("00000000000000000000.log") && text.contains("not in the keyring"));
    assert_eq!(files(&backend), before, "a refused open touches no file");
    let (log, _) = open(&backend, encrypted(1 << 20, &rotated));
    assert_eq!(read_all(&log, 0), expected);
}

#[test]
fn a_wrong_key_or_no_key_is_refused_without_truncating_anything() {
    let backend = FaultyBackend::new();
    let ring = keyring(&[("k1", 1)], None);
    let (mut log, _) = open(&backend, encrypted(600, &ring));
    let expected = append_secrets(&mut log, 0, 8);
    log.flush().unwrap();
    // A crash-like stop (no clean close), so the next open would scan the tail if it got that far.
    drop(log);
    let before = files(&backend);
    let wrong = open_err(&backend, encrypted(600, &keyring(&[("k1", 9)], None)));
    assert!(matches!(wrong, StorageError::Encryption { .. }), "{wrong}");
    assert!(wrong.to_string().contains("wrong key"), "{wrong}");
    let keyless = LogConfig { keyring: None, ..small_config(600) };
    let err = open_err(&backend, keyless.clone());
    assert!(err.to_string().contains("no encryption key is loaded"), "{err}");
    let err = open_err(&backend, LogConfig { encryption: Encryption::Aes256Gcm, ..keyless });
    assert!(matches!(err, StorageError::InvalidConfig(_)) && err.to_string().contains("aes-256-gcm"), "{err}");
    assert_eq!(files(&backend), before, "refused opens truncate nothing");
    let (log, _) = open(&backend, encrypted(600, &ring));
    assert_eq!(read_all(&log, 0), expected, "the right key reads everything back");
}

#[test]
fn damage_is_never_served_and_a_lost_key_record_fails_the_open_or_the_read() {
    let backend = FaultyBackend::new();
    let ring = keyring(&[("k1", 1)], None);
    let (mut log, _) = open(&backend, encrypted(1 << 20, &ring));
    append_secrets(&mut log, 0, 3);
    log.close().unwrap();
    let log_path = segment_path(0, "log");
    // The epoch (bytes 12..16) lies outside the CRC but inside the AAD: altering it fails authentication.
    backend.flip_byte(&log_path, 14);
    let (log, _) = open(&backend, encrypted(1 << 20, &ring));
    let err = log.read(0, 1 << 20, u64::MAX).unwrap_err();
    assert!(matches!(err, StorageError::Encryption { .. }) && err.to_string().contains("authentication"), "{err}");
    assert_eq!(log.read(3, 1 << 20, u64::MAX).unwrap().next_offset, 9, "later batches still read");
    log.close().unwrap();
    backend.flip_byte(&log_path, 14);
    // A damaged key record refuses the open (nothing is guessed); a missing one refuses every read.
    let record_path = segment_path(0, "keyid");
    let record = backend.file_contents(&record_path).unwrap();
    backend.flip_byte(&record_path, 3);
    assert!(matches!(open_err(&backend, encrypted(1 << 20, &ring)), StorageError::Corrupt { .. }));
    backend.remove_file(&record_path).unwrap();
    let (log, _) = open(&backend, LogConfig::default());
    assert!(matches!(log.read(0, 1 << 20, u64::MAX), Err(StorageError::Corrupt { .. })), "ciphertext never served");
    log.close().unwrap();
    backend.put_file(&record_path, &record);
    let (log, _) = open(&backend, encrypted(1 << 20, &ring));
    assert_eq!(read_all(&log, 0).len(), 3);
}

#[test]
fn turning_encryption_on_and_off_applies_from_the_next_segment() {
    let backend = FaultyBackend::new();
    let ring = keyring(&[("k1", 1)], None);
    let plain = LogConfig { keyring: Some(Arc::clone(&ring)), ..small_config(1 << 20) };
    let (mut log, _) = open(&backend, plain.clone());
    let mut expected = append_secrets(&mut log, 0, 2);
    log.set_config(encrypted(1 << 20, &ring));
    expected.extend(append_secrets(&mut log, 2, 2));
    log.set_config(plain.clone());
    expected.extend(append_secrets(&mut log, 4, 2));
    assert_eq!(log.segment_bases(), [0, 6, 12]);
    assert_eq!(read_all(&log, 0), expected);
    log.close().unwrap();
    assert!(key_record(&backend, 0).is_none() && key_record(&backend, 12).is_none());
    assert_eq!(key_record(&backend, 6).unwrap().key_id, "k1");
    assert!(!contains(&backend.file_contents(&segment_path(6, "log")).unwrap(), b"secret-2"));
    assert!(contains(&backend.file_contents(&segment_path(0, "log")).unwrap(), b"secret-0"), "old stays plain");
    // An empty active segment is recreated in the new form instead of rolled.
    let (mut log, _) = open(&backend, plain);
    log.truncate_fully_and_start_at(100).unwrap();
    log.set_config(encrypted(1 << 20, &ring));
    append_secrets(&mut log, 9, 1);
    assert_eq!(log.segment_bases(), [100]);
    assert_eq!(key_record(&backend, 100).unwrap().key_id, "k1");
}

#[test]
fn followers_encrypt_with_their_own_key_and_truncation_keeps_the_segment_key() {
    let leader_backend = FaultyBackend::new();
    let (mut leader, _) = open(&leader_backend, encrypted(800, &keyring(&[("leader", 1)], None)));
    let expected = append_secrets(&mut leader, 0, 8);
    let follower_backend = FaultyBackend::new();
    let follower_ring = keyring(&[("follower", 2)], None);
    let (mut follower, _) = open(&follower_backend, encrypted(800, &follower_ring));
    for (_, stored) in read_all(&leader, 0) {
        follower.append_replicated(&stored, 0).unwrap();
    }
    assert_eq!(read_all(&follower, 0), expected, "the follower stores the leader's plaintext under its key");
    for base in follower.segment_bases() {
        assert_eq!(key_record(&follower_backend, base).unwrap().key_id, "follower");
    }
    follower.truncate_to(expected[5].0).unwrap();
    follower.append_replicated(&expected[5].1, 0).unwrap();
    assert_eq!(read_all(&follower, 0), expected[..6]);
    follower.close().unwrap();
    let (follower, _) = open(&follower_backend, encrypted(800, &follower_ring));
    assert_eq!(read_all(&follower, 0), expected[..6]);
    assert!(Path::new(&segment_path(0, "keyid")).ends_with("00000000000000000000.keyid"));
}
