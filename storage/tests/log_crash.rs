//! Crash safety: random appends, flushes, checkpoints, rolls, truncations and retention on the faulty backend,
//! then a simulated power loss (unsynced bytes dropped, the last write possibly torn and garbled), reopen,
//! and check that everything below the flushed offset survived byte for byte and nothing corrupt is served.

mod common;

use bytes::Bytes;
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rill_storage::{Durability, Encryption, FaultyBackend, Keyring, Log, LogConfig};

/// Bytes 12..16 hold the partition leader epoch, which (as in Kafka) no checksum covers: a garbled byte there
/// in an unflushed batch cannot be told from a real epoch. Flushed batches are compared in full.
fn without_epoch(bytes: &[u8]) -> Vec<u8> {
    let mut masked = bytes.to_vec();
    masked[12..16].fill(0);
    masked
}

/// The reference: batches (base offset, stored bytes) in order, and the log start.
struct Model {
    batches: Vec<(u64, Bytes)>,
    log_start: u64,
}

impl Model {
    fn end(&self) -> u64 {
        self.batches.last().map_or(self.log_start, |(_, b)| {
            let header = rill_storage::batch::BatchHeader::parse(b).unwrap();
            header.next_offset()
        })
    }
}

fn config_for(rng: &mut StdRng) -> LogConfig {
    let durability = match rng.random_range(0..3) {
        0 => Durability::Fsync,
        1 => Durability::Interval { interval_ms: 5 },
        _ => Durability::Os,
    };
    LogConfig {
        segment_bytes_max: rng.random_range(300..2_000),
        index_interval_bytes: rng.random_range(64..400),
        retention_bytes: rng.random_bool(0.3).then(|| rng.random_range(1_000..4_000)),
        durability,
        ..encryption_for(rng)
    }
}

/// Half the runs encrypt their segments: the crash rules must hold for sealed batches just the same.
fn encryption_for(rng: &mut StdRng) -> LogConfig {
    if !rng.random_bool(0.5) {
        return LogConfig::default();
    }
    let keyring = Keyring::with_counter_nonces(vec![("crash".into(), [0x5a; 32])], None, rng.random()).unwrap();
    LogConfig { encryption: Encryption::Aes256Gcm, keyring: Some(std::sync::Arc::new(keyring)), ..LogConfig::default() }
}

/// What a run exercised, so the test can insist that every path was taken somewhere.
#[derive(Default, Debug)]
struct Coverage {
    crashes: u64,
    torn_cuts: u64,
    unflushed_survivors: u64,
    truncations: u64,
    retention_deletions: u64,
    clean_reopens: u64,
}

/// Runs random operations, crashing now and then, and checks each recovery against the model.
fn crash_run(seed: u64, operations: usize, coverage: &mut Coverage) {
    let mut rng = StdRng::seed_from_u64(seed);
    let backend = FaultyBackend::strict_directories();
    let config = config_for(&mut rng);
    let (mut log, _) = open(&backend, config.clone());
    let mut model = Model { batches: Vec::new(), log_start: 0 };
    let mut crashes = 0;
    for step in 0..operations {
        match rng.random_range(0..100) {
            0..=59 => {
                let input = batch_with(rng.random_range(1..5), step as i64, rng.random(), rng.random_range(0..80));
                let info = log.append(&input, rng.random_range(0..3), step as i64).unwrap();
                model.batches.push((
                    info.base_offset,
                    Bytes::from(stamped(&input, info.base_offset, log_epoch(&log, info.base_offset))),
                ));
            }
            60..=74 => log.flush().unwrap(),
            75..=79 => {
                // A job taken, then more appends, then the job completes: it covers only what it saw.
                let job = log.flush_job();
                let input = batch(1, step as i64, rng.random());
                let info = log.append(&input, 0, step as i64).unwrap();
                model.batches.push((info.base_offset, Bytes::from(stamped(&input, info.base_offset, 0))));
                if let Some(job) = job {
                    job.run().unwrap();
                    log.mark_flushed(job.upto());
                }
            }
            80..=83 => log.write_checkpoint().unwrap(),
            84..=86 if model.batches.len() > 1 => {
                let keep = rng.random_range(0..model.batches.len());
                let offset = model.batches[keep].0;
                if offset >= log.log_start_offset() {
                    log.truncate_to(offset).unwrap();
                    model.batches.truncate(keep);
                    coverage.truncations += 1;
                }
            }
            87..=88 => {
                coverage.retention_deletions += log.enforce_retention(step as i64).unwrap();
                model.log_start = log.log_start_offset();
                model.batches.retain(|(base, _)| *base >= model.log_start);
            }
            89..=90 => {
                log.close().unwrap();
                let (reopened, report) = open(&backend, config.clone());
                assert!(report.clean_shutdown, "seed {seed}: close then open is clean");
                coverage.clean_reopens += 1;
                log = reopened;
                check_exact(&log, &model, seed);
            }
            91 => {
                let start = model.end() + 5;
                log.truncate_fully_and_start_at(start).unwrap();
                model.batches.clear();
                model.log_start = start;
            }
            _ => {
                let flushed = log.flushed_offset();
                drop(log);
                backend.crash(seed.wrapping_mul(1_000).wrapping_add(step as u64));
                crashes += 1;
                coverage.crashes += 1;
                let (reopened, report) = open(&backend, config.clone());
                log = reopened;
                assert!(!report.clean_shutdown, "seed {seed}");
                coverage.torn_cuts += u64::from(report.truncated_bytes > 0);
                coverage.unflushed_survivors += u64::from(log.end_offset() > flushed);
                check_after_crash(&log, &mut model, flushed, seed);
            }
        }
        assert!(log.flushed_offset() <= log.end_offset());
        assert_eq!(log.end_offset(), model.end(), "seed {seed} step {step}");
    }
    assert!(crashes > 0 || operations < 20, "seed {seed} never crashed");
}

/// The epoch stamped on the batch at `base` (the test appends with random epochs).
fn log_epoch(log: &Log, base: u64) -> i32 {
    let read = log.read(base, 1, u64::MAX).unwrap();
    i32::from_be_bytes(read.records[12..16].try_into().unwrap())
}

fn check_exact(log: &Log, model: &Model, seed: u64) {
    let stored = read_all(log, log.log_start_offset());
    assert_eq!(log.log_start_offset(), model.log_start, "seed {seed}");
    assert_eq!(stored, model.batches, "seed {seed}: the log differs from the model");
    check_timestamps(log, &stored, -1, 130, &format!("seed {seed}"));
}

fn check_after_crash(log: &Log, model: &mut Model, flushed_at_crash: u64, seed: u64) {
    assert_eq!(log.log_start_offset(), model.log_start, "seed {seed}: the log start survives");
    assert!(
        log.end_offset() >= flushed_at_crash,
        "seed {seed}: lost flushed data: end {} < flushed {flushed_at_crash}",
        log.end_offset()
    );
    // read_all checks every served batch's CRC and that reads reach the end.
    let stored = read_all(log, log.log_start_offset());
    assert!(stored.len() <= model.batches.len(), "seed {seed}: more batches than were appended");
    for (i, (base, bytes)) in stored.iter().enumerate() {
        let (model_base, model_bytes) = &model.batches[i];
        assert_eq!(base, model_base, "seed {seed}: batch {i} at the wrong offset");
        if *base < flushed_at_crash {
            assert_eq!(bytes, model_bytes, "seed {seed}: flushed batch at {base} changed");
        } else {
            assert_eq!(
                without_epoch(bytes),
                without_epoch(model_bytes),
                "seed {seed}: unflushed batch at {base} garbled"
            );
        }
    }
    check_timestamps(log, &stored, -1, 130, &format!("seed {seed}"));
    model.batches = stored;
}

#[test]
fn random_operations_with_crashes_never_lose_flushed_batches_nor_serve_corrupt_ones() {
    let mut coverage = Coverage::default();
    for seed in 0..150 {
        crash_run(seed, 120, &mut coverage);
    }
    eprintln!("crash coverage: {coverage:?}");
    let Coverage { crashes, torn_cuts, unflushed_survivors, truncations, retention_deletions, clean_reopens } =
        coverage;
    assert!(
        crashes > 500
            && torn_cuts > 20
            && unflushed_survivors > 20
            && truncations > 50
            && retention_deletions > 10
            && clean_reopens > 50,
        "the random runs missed a path: {coverage:?}",
        coverage = (crashes, torn_cuts, unflushed_survivors, truncations, retention_deletions, clean_reopens)
    );
}

#[test]
fn a_torn_last_write_is_cut_and_everything_flushed_survives() {
    let mut torn_seen = 0;
    for seed in 0..64 {
        let backend = FaultyBackend::strict_directories();
        let (mut log, _) = open(&backend, small_config(1 << 20));
        for i in 0..5 {
            log.append(&batch(3, i, i as u64), 0, 0).unwrap();
        }
        log.flush().unwrap();
        let flushed = log.flushed_offset();
        let durable = read_all(&log, 0);
        log.append(&batch_with(4, 100, 77, 300), 0, 0).unwrap();
        drop(log);
        backend.crash(seed);
        let (log, report) = open(&backend, small_config(1 << 20));
        assert_eq!(log.flushed_offset(), log.end_offset(), "recovery fsyncs what it keeps");
        let stored = read_all(&log, 0);
        assert_eq!(&stored[..durable.len()], &durable[..], "seed {seed}");
        if report.truncated_bytes > 0 {
            torn_seen += 1;
            assert_eq!(log.end_offset(), flushed, "seed {seed}: a torn batch is cut whole");
            assert!(report.torn_reason.is_some());
        }
    }
    assert!(torn_seen > 5, "the crash model tore the last write only {torn_seen} times");
}

#[test]
fn a_crash_right_after_recovery_loses_nothing_recovery_kept() {
    for seed in 0..20 {
        let backend = FaultyBackend::strict_directories();
        let (mut log, _) = open(&backend, small_config(700));
        for i in 0..20 {
            log.append(&batch(2, i, i as u64), 0, 0).unwrap();
        }
        drop(log);
        backend.crash(seed);
        let (log, _) = open(&backend, small_config(700));
        let kept = read_all(&log, 0);
        drop(log);
        backend.crash(seed + 1_000);
        let (log, _) = open(&backend, small_config(700));
        assert_eq!(read_all(&log, 0), kept, "seed {seed}");
    }
}

/// A write failure at any point of a busy sequence (appends, rolls, flushes, truncation, retention,
/// checkpoints), then a crash: whatever was flushed when the crash came is still there, and nothing corrupt is
/// served.
#[test]
fn a_write_failure_anywhere_followed_by_a_crash_still_recovers() {
    let mut failures_hit = 0;
    for failing_write in 0..36 {
        let backend = FaultyBackend::strict_directories();
        let config = LogConfig { retention_bytes: Some(1_500), ..small_config(500) };
        let (mut log, _) = open(&backend, config.clone());
        let mut model = Model { batches: Vec::new(), log_start: 0 };
        let append = |log: &mut Log, model: &mut Model, seed: u64| -> Result<(), rill_storage::StorageError> {
            let input = batch(2, seed as i64, seed);
            let info = log.append(&input, 0, 0)?;
            model.batches.push((info.base_offset, Bytes::from(stamped(&input, info.base_offset, 0))));
            Ok(())
        };
        for seed in 0..10 {
            append(&mut log, &mut model, seed).unwrap();
        }
        log.flush().unwrap();
        log.write_checkpoint().unwrap();
        backend.fail_writes_after(failing_write, std::io::ErrorKind::StorageFull);
        let outcome = (|| {
            for seed in 10..20 {
                append(&mut log, &mut model, seed)?;
                if seed % 3 == 0 {
                    log.flush()?;
                }
            }
            let keep = model.batches.len() - 4;
            log.truncate_to(model.batches[keep].0)?;
            model.batches.truncate(keep);
            for seed in 20..25 {
                append(&mut log, &mut model, seed)?;
            }
            log.flush()?;
            log.enforce_retention(0)?;
            model.log_start = log.log_start_offset();
            model.batches.retain(|(base, _)| *base >= model.log_start);
            log.write_checkpoint()
        })();
        failures_hit += u64::from(outcome.is_err());
        let flushed = log.flushed_offset();
        // Retention may have moved the start before failing; the model follows the log there.
        model.log_start = log.log_start_offset();
        model.batches.retain(|(base, _)| *base >= model.log_start);
        drop(log);
        backend.heal();
        backend.crash(failing_write);
        let (log, _) = open(&backend, config);
        let seed = failing_write;
        assert!(log.end_offset() >= flushed, "failing write {seed}: flushed data lost");
        let stored = read_all(&log, log.log_start_offset());
        for (base, bytes) in &stored {
            if *base < flushed {
                let expected = model.batches.iter().find(|(b, _)| b == base).expect("a flushed batch is in the model");
                assert_eq!(bytes, &expected.1, "failing write {seed}: flushed batch at {base} changed");
            }
        }
        let flushed_in_model = model.batches.iter().filter(|(b, _)| *b < flushed).count();
        assert!(stored.iter().filter(|(b, _)| *b < flushed).count() >= flushed_in_model, "failing write {seed}");
    }
    assert!(failures_hit >= 28, "the injected failures hit only {failures_hit} runs");
}
