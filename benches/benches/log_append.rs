//! Appending 1 MiB batches to a `Log` on the real filesystem under each durability policy, doing the
//! flushing the broker does for that policy: `fsync` flushes after every batch (the worst case of group
//! commit, where no two produce requests share an fsync), `interval` flushes once per second, `os` never
//! (the OS writes back on its own). A second `fsync` case with 64 KiB batches shows the per-fsync cost.
//!
//! What the hardware allows (MACHINE.md): writes through the page cache run at 1.6-5 GB/s for the first
//! GiB, so `os` and `interval` should reach ~1.5 GB/s or more while the written total stays below the dirty
//! limits; a 4 KiB write + fdatasync takes ~0.28 ms and sustained fdatasync'd writing runs at ~240 MB/s to
//! ~1.7 GB/s (O_DIRECT, large blocks), so `fsync` with 1 MiB batches should land between a few hundred MB/s
//! and ~1 GB/s, and with 64 KiB batches near 64 KiB / 0.3 ms ≈ 200 MB/s.
//!
//! Measured on the reference machine (docs/PERFORMANCE.md): os 2.8 GiB/s and interval 2.4 GiB/s, as
//! expected; fsync 310 MiB/s with 1 MiB batches but only 24 MiB/s with 64 KiB batches, i.e. 2.5 ms per
//! fsync, about 9x fio's 0.28 ms: each append grows the file, so each fsync also commits metadata through
//! the filesystem journal, which fio's preallocated file avoids.
//!
//! Each sample appends to a fresh log in a temporary directory and deletes it afterwards, so the disk holds
//! at most one sample's bytes (a few hundred MiB); the whole bench writes about 1-3 GiB. Run with
//! `cargo bench -p rill-bench --bench log_append`.

mod common;

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rill_storage::Durability;

/// The interval policy's period, as the broker's default `flush.ms`.
const INTERVAL_MS: u64 = 1000;

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_append");
    // Short and few samples: every iteration writes real bytes, and the machine is shared.
    group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    let cases = [
        ("fsync/1MiB", Durability::Fsync, 1000),
        ("fsync/64KiB", Durability::Fsync, 62),
        ("interval/1MiB", Durability::Interval { interval_ms: INTERVAL_MS }, 1000),
        ("os/1MiB", Durability::Os, 1000),
    ];
    for (name, durability, records) in cases {
        let batch = common::batch(records, 1024);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let dir = tempfile::tempdir().expect("temporary directory");
                let mut log = common::open_log(dir.path(), common::single_segment_config(durability));
                let start = Instant::now();
                let mut last_flush = start;
                for _ in 0..iters {
                    log.append(&batch, 0, common::TIMESTAMP_MS).expect("append");
                    let flush_due = match durability {
                        Durability::Fsync => true,
                        Durability::Interval { interval_ms } => {
                            last_flush.elapsed() >= Duration::from_millis(interval_ms)
                        }
                        Durability::Os => false,
                    };
                    if flush_due {
                        log.flush().expect("flush");
                        last_flush = Instant::now();
                    }
                }
                let elapsed = start.elapsed();
                // Deleting the files drops their dirty pages, so the next sample starts without writeback.
                drop(log);
                drop(dir);
                elapsed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
