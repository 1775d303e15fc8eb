//! Helpers shared by the criterion benches: record batches of a given shape, logs filled with them, and
//! the environment knobs that scale a bench up from its quick default.

// Each bench file compiles this module separately and uses only part of it.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use rill_proto::batch::BatchBuilder;
use rill_storage::{Durability, FsBackend, Log, LogConfig, SEGMENT_BYTES_LIMIT};

/// A fixed timestamp, so every run encodes identical bytes.
pub const TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// One batch of `records` records whose values are `value_bytes` long, keyless, as the client builds it.
pub fn batch(records: usize, value_bytes: usize) -> Bytes {
    let value = filler(value_bytes);
    let mut builder = BatchBuilder::with_capacity(records * (value_bytes + 16) + 64);
    for i in 0..records {
        builder.push(TIMESTAMP_MS + i as i64, None, Some(&value), &[]);
    }
    builder.finish()
}

/// Incompressible-looking bytes (there is no compression, but it keeps the data honest).
pub fn filler(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A log configuration with one segment large enough for any bench log, so a scan covers all of it.
pub fn single_segment_config(durability: Durability) -> LogConfig {
    LogConfig { segment_bytes_max: SEGMENT_BYTES_LIMIT, durability, ..LogConfig::default() }
}

/// Opens (or creates) the log in `dir` on the real filesystem.
pub fn open_log(dir: &Path, config: LogConfig) -> Log {
    Log::open(Arc::new(FsBackend::new()), dir, config, TIMESTAMP_MS).expect("open bench log").0
}

/// Appends copies of `batch` until the log holds at least `bytes`; returns how many batches it took.
pub fn fill(log: &mut Log, batch: &[u8], bytes: u64) -> u64 {
    let mut appended = 0;
    while log.size_bytes() < bytes {
        log.append(batch, 0, TIMESTAMP_MS).expect("append to bench log");
        appended += 1;
    }
    appended
}

/// A byte count from the environment variable `name` (plain bytes, or with a K, M or G binary suffix), or
/// `default` when it is unset.
///
/// # Panics
///
/// When the variable is set but not a byte count: a bench should not silently run at the wrong size.
pub fn bytes_from_env(name: &str, default: u64) -> u64 {
    let Ok(text) = std::env::var(name) else { return default };
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_uppercase()),
        _ => (text, 'B'),
    };
    let multiplier = match unit {
        'B' => 1,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        _ => panic!("{name}={text}: unit must be K, M or G"),
    };
    let value: u64 = digits.trim().parse().unwrap_or_else(|_| panic!("{name}={text}: not a byte count"));
    value * multiplier
}
