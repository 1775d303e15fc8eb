//! Recovery: `Log::open` after an unclean stop (no clean-shutdown marker), in two cases. Without a
//! checkpoint, open validates every batch of the log (header, CRC, offset continuity) and rebuilds the
//! indexes; with a checkpoint written before the last eighth of the log was appended, it trusts the
//! checkpointed prefix and scans only that tail. Both end with the fsyncs and checkpoint write that open
//! performs before calling the log durable.
//!
//! What the hardware allows (MACHINE.md): the log is in the page cache, so the scan is CPU-bound at CRC-32C
//! speed (several GB/s on one core), plus index rebuilding per 4 KiB of log; a full scan should therefore
//! run at 2 GB/s or more, i.e. well under a second for 1 GiB, and the checkpointed open about 8 times
//! faster. A cold cache (after a machine crash) would be bound by the disk instead, ~1.7 GB/s sequential,
//! which this bench cannot show without dropping the caches of a shared machine. The log is 64 MiB by
//! default so the bench finishes in seconds; set RILL_BENCH_RECOVERY_BYTES=1G for the 1 GiB case.
//!
//! Measured on the reference machine (docs/PERFORMANCE.md): 1 GiB recovers in 112 ms without a checkpoint
//! (8.9 GiB/s) and in 18.5 ms with one at 7/8; 64 MiB in 18 ms and 1.6 ms. Run with
//! `cargo bench -p rill-bench --bench recovery`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rill_storage::Durability;

/// The checkpoint file of a partition directory (docs/FORMAT.md); removing or restoring it before each
/// open puts the log back in the same after-crash state.
const CHECKPOINT_FILE: &str = "recovery.checkpoint";

fn recovery(c: &mut Criterion) {
    let log_bytes = common::bytes_from_env("RILL_BENCH_RECOVERY_BYTES", 64 << 20);
    let batch = common::batch(256, 1024);
    let config = common::single_segment_config(Durability::Os);

    // One log for both cases: a checkpoint at 7/8 of it, kept aside, then the last eighth appended and the
    // log dropped without `close`, which is an unclean stop.
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut log = common::open_log(dir.path(), config.clone());
    common::fill(&mut log, &batch, log_bytes / 8 * 7);
    log.flush().expect("flush");
    log.write_checkpoint().expect("checkpoint");
    let checkpoint = std::fs::read(dir.path().join(CHECKPOINT_FILE)).expect("read checkpoint");
    common::fill(&mut log, &batch, log_bytes);
    let size = log.size_bytes();
    drop(log);

    let mut group = c.benchmark_group("recovery");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Bytes(size));
    group.bench_function("unclean/no_checkpoint", |b| {
        b.iter_custom(|iters| timed_opens(iters, dir.path(), &config, || remove_checkpoint(dir.path())))
    });
    group.bench_function("unclean/checkpoint_7_8", |b| {
        b.iter_custom(|iters| {
            timed_opens(iters, dir.path(), &config, || {
                std::fs::write(dir.path().join(CHECKPOINT_FILE), &checkpoint).expect("restore checkpoint")
            })
        })
    });
    group.finish();
}

/// Times `iters` opens, each after `prepare` (untimed) reset the directory to its after-crash state.
fn timed_opens(iters: u64, dir: &Path, config: &rill_storage::LogConfig, prepare: impl Fn()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        prepare();
        let start = Instant::now();
        let (log, report) = rill_storage::Log::open(
            std::sync::Arc::new(rill_storage::FsBackend::new()),
            dir,
            config.clone(),
            common::TIMESTAMP_MS,
        )
        .expect("recover log");
        total += start.elapsed();
        assert!(!report.clean_shutdown, "the bench must measure recovery, not a clean open");
        // Dropped without `close`: the next open is unclean again.
        drop(log);
    }
    total
}

fn remove_checkpoint(dir: &Path) {
    match std::fs::remove_file(dir.join(CHECKPOINT_FILE)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("remove checkpoint: {e}"),
    }
}

criterion_group!(benches, recovery);
criterion_main!(benches);
