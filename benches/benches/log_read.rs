//! Reading from the memory-mapped log (`Log::read`): a sequential scan in 1 MiB reads, as a consumer
//! catching up does, and point reads at random offsets, as consumers starting from committed positions do
//! (a sparse-index lookup, then a short scan of batch headers). Every read checks the CRC of each batch it
//! returns, so the scan is bounded by CRC-32C speed rather than by copying: the bytes are a zero-copy
//! slice of the mapping.
//!
//! What the hardware allows (MACHINE.md): the log is in the page cache (just written, 24 GiB of RAM), so no
//! disk is involved; CRC-32C runs at several GB/s on one core and memcpy at ~6.5 GB/s, so the sequential
//! scan should exceed ~4 GB/s, comfortably above the 1.1 GB/s consume target, which leaves the network
//! path (gRPC framing, a copy into the response) as the consumer's real cost. Point reads should take a few
//! microseconds. The log is 64 MiB by default; set RILL_BENCH_READ_BYTES (e.g. `1G`) for a larger one.
//!
//! Measured on the reference machine (docs/PERFORMANCE.md): the scan runs at 14.7 GiB/s and a point read
//! takes 5.5 µs, both better than expected. Run with `cargo bench -p rill-bench --bench log_read`.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rill_storage::Durability;

/// Batches of 16 KiB: smaller than the client's 1 MiB maximum, as lightly loaded producers send them, so a
/// read walks many batch headers.
const RECORDS_PER_BATCH: usize = 16;
/// Bytes per read, the client's default partition fetch size.
const READ_BYTES_MAX: usize = 1 << 20;

fn read(c: &mut Criterion) {
    let log_bytes = common::bytes_from_env("RILL_BENCH_READ_BYTES", 64 << 20);
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut log = common::open_log(dir.path(), common::single_segment_config(Durability::Os));
    common::fill(&mut log, &common::batch(RECORDS_PER_BATCH, 1024), log_bytes);
    let end = log.end_offset();

    let mut group = c.benchmark_group("log_read");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Bytes(log.size_bytes()));
    group.bench_function("sequential_scan", |b| {
        b.iter(|| {
            let mut offset = log.log_start_offset();
            while offset < end {
                let result = log.read(offset, READ_BYTES_MAX, u64::MAX).expect("read");
                offset = result.next_offset;
                black_box(result.records);
            }
        })
    });
    group.throughput(Throughput::Elements(1));
    let mut state = 0x9e37_79b9_u64;
    group.bench_function("point_read", |b| {
        b.iter(|| {
            // A cheap LCG picks the offsets; its cost is a few nanoseconds next to the read.
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let offset = (state >> 11) % end;
            black_box(log.read(offset, 64 << 10, u64::MAX).expect("read"))
        })
    });
    group.finish();
    drop(log);
}

criterion_group!(benches, read);
criterion_main!(benches);
