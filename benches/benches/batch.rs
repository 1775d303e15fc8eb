//! Record batch codec (`rill_proto::batch`): encoding with `BatchBuilder`, decoding with `decode_records`,
//! the CRC-32C check alone (`check_crc`), and the broker's full per-batch check (`validate`).
//!
//! What the hardware allows (docs/PERFORMANCE.md, /work/shared/MACHINE.md): memcpy runs at ~6.5 GB/s on
//! one core, and CRC-32C with the SSE 4.2 instruction is faster still, so the CRC and a 1 KiB-record
//! encode (one copy of each value plus a few varints) should each exceed ~5 GB/s. Per-record work
//! dominates small records: at ~20-40 ns per record, 100-byte records encode and validate at roughly
//! 2-5 GB/s, and decoding, which allocates a `Record` with reference-counted slices per record, at about
//! 1 GB/s. The broker's produce path pays `validate` once per batch; the client pays encode and decode.
//!
//! Measured on the reference machine (docs/PERFORMANCE.md): CRC 20-23 GiB/s; 1 KiB records encode at
//! 12.3, decode at 7.0 and validate at 11.7 GiB/s; 100-byte records encode at 3.8 (27 ns per record),
//! decode at 1.2 (86 ns) and validate at 2.6 GiB/s (39 ns), all within the expectation.
//!
//! Run with `cargo bench -p rill-bench --bench batch`.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rill_proto::batch::{BatchBuilder, check_crc, decode_records, validate};

/// The two record shapes of the standard presets, each filling a ~1 MiB batch (the client's default).
const SHAPES: [(&str, usize, usize); 2] = [("1KiB", 1024, 1000), ("100B", 100, 9000)];

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for (name, value_bytes, records) in SHAPES {
        let batch = common::batch(records, value_bytes);
        let value = common::filler(value_bytes);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| {
                let mut builder = BatchBuilder::with_capacity(batch.len());
                for i in 0..records {
                    builder.push(common::TIMESTAMP_MS + i as i64, None, Some(&value), &[]);
                }
                black_box(builder.finish())
            })
        });
        group.bench_function(format!("decode/{name}"), |b| b.iter(|| black_box(decode_records(&batch).unwrap())));
        group.bench_function(format!("crc/{name}"), |b| b.iter(|| check_crc(black_box(&batch)).unwrap()));
        group.bench_function(format!("validate/{name}"), |b| b.iter(|| black_box(validate(&batch).unwrap())));
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
