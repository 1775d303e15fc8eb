//! Fuzz target bodies for the record batch codec, shared by the cargo-fuzz crate (`fuzz/`) and the stable
//! property test (`broker/tests/fuzz_targets.rs`), so both feed bytes to exactly the same calls. Each body
//! takes arbitrary bytes and panics only when a decoder does (or breaks a property stated below); every
//! error is an acceptable outcome. Not part of the API: hidden from the docs, kept public for those two users.

use bytes::Bytes;

use crate::batch::{self, BATCH_HEADER_BYTES, BatchBuilder, LOG_OVERHEAD_BYTES};
use crate::compression::{self, Compression, RECORDS_DECOMPRESSED_BYTES_MAX};

/// One fuzz target: its name (the cargo-fuzz binary and the `fuzz/regressions/<name>/` directory), its body,
/// and valid inputs to seed a corpus and to mutate. The body returns whether it accepted the input (it
/// decoded, and what was done with it afterwards succeeded): every seed must be accepted, so a target whose
/// seeds stop reaching the parser fails its test instead of fuzzing nothing.
#[derive(Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]) -> bool,
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// The targets of this crate.
pub const TARGETS: &[Target] = &[
    Target { name: "record_batch", run: record_batch, seeds: record_batch_seeds },
    Target { name: "decompress", run: decompress, seeds: decompress_seeds },
];

/// Header fields `repair_batch` rewrites (docs/FORMAT.md, "Record batch").
const CRC_AT: usize = 17;
const CRC_COVERED_FROM: usize = 21;
const MAGIC_AT: usize = 16;

/// `validate`, `decode_records`, `split_batches` and `check_crc` on the bytes as given, then on a copy whose
/// batch length, magic and CRC are made to fit, so that mutations get past the CRC into the records and the
/// decompressors. Property: a batch that validates decodes to exactly its record count, at consecutive
/// offsets from its base offset.
pub fn record_batch(data: &[u8]) -> bool {
    let accepted = check_batch(data);
    let repaired = repair_batch(data).is_some_and(|repaired| check_batch(&repaired));
    accepted || repaired
}

fn check_batch(bytes: &[u8]) -> bool {
    let validated = batch::validate(bytes);
    let shared = Bytes::copy_from_slice(bytes);
    let decoded = batch::decode_records(&shared);
    if let Ok(header) = &validated {
        let records = decoded.unwrap_or_else(|e| panic!("a batch that validates does not decode: {e}"));
        assert_eq!(records.len(), header.record_count as usize, "decoded record count");
        for (i, record) in records.iter().enumerate() {
            assert_eq!(record.offset, header.base_offset + i as u64, "record offsets follow the base offset");
        }
    }
    for (header, range) in batch::split_batches(bytes).flatten() {
        assert!(range.end <= bytes.len() && range.len() == header.size(), "split range inside the buffer");
        let _ = batch::check_crc(&bytes[range]);
    }
    validated.is_ok()
}

/// A copy of `data` made to look like one whole batch: batch length set to the buffer, magic 2, CRC
/// recomputed. `None` when it is too short to hold a header.
pub fn repair_batch(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < BATCH_HEADER_BYTES || data.len() - LOG_OVERHEAD_BYTES > i32::MAX as usize {
        return None;
    }
    let mut out = data.to_vec();
    let batch_length = (data.len() - LOG_OVERHEAD_BYTES) as u32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    out[MAGIC_AT] = 2;
    let crc = crc32c::crc32c(&out[CRC_COVERED_FROM..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Some(out)
}

/// Valid batches: each codec, keys, nulls, headers, idempotent producer fields, and the golden fixtures
/// written by kafka-python (another encoder than ours).
pub fn record_batch_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = Compression::ALL.iter().map(|&codec| sample_batch(codec, 3).to_vec()).collect();
    seeds.push(sample_batch(Compression::None, 1).to_vec());
    seeds.extend(FIXTURES.iter().map(|fixture| fixture.to_vec()));
    seeds
}

/// Batches kafka-python wrote (proto/tests/fixtures/compressed).
const FIXTURES: &[&[u8]] = &[
    include_bytes!("../tests/fixtures/compressed/gzip.bin"),
    include_bytes!("../tests/fixtures/compressed/snappy-xerial.bin"),
    include_bytes!("../tests/fixtures/compressed/snappy-raw.bin"),
    include_bytes!("../tests/fixtures/compressed/lz4.bin"),
    include_bytes!("../tests/fixtures/compressed/zstd.bin"),
];

/// A valid batch of `records` records compressed with `codec` (sent uncompressed when that is not smaller).
pub fn sample_batch(codec: Compression, records: usize) -> Bytes {
    let mut builder = BatchBuilder::new().with_compression(codec);
    builder.set_producer(7, 1, 0);
    for i in 0..records {
        let value = format!("value {i} value {i} value {i}");
        let headers: [(&str, Option<&[u8]>); 1] = [("h", Some(b"1"))];
        let key = (i % 2 == 0).then_some(&b"key"[..]);
        builder.push(1_700_000_000_000 + i as i64, key, Some(value.as_bytes()), &headers);
    }
    builder.finish()
}

/// The first byte picks the codec (its value modulo 5, the attribute codes), the rest is a records section
/// for `compression::decompress` under the broker's bound. Property: no output above the bound.
pub fn decompress(data: &[u8]) -> bool {
    let Some((&selector, input)) = data.split_first() else { return false };
    let codec = Compression::ALL[usize::from(selector) % Compression::ALL.len()];
    match compression::decompress(codec, input, RECORDS_DECOMPRESSED_BYTES_MAX) {
        Ok(out) => {
            assert!(out.len() <= RECORDS_DECOMPRESSED_BYTES_MAX, "decompressed past the bound");
            true
        }
        Err(_) => false,
    }
}

/// Each codec's records section of a sample batch and of the kafka-python fixtures, after its selector byte.
pub fn decompress_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let sections = Compression::ALL
        .iter()
        .map(|&codec| sample_batch(codec, 20))
        .chain(FIXTURES.iter().map(|f| Bytes::from_static(f)));
    for batch in sections {
        let Ok(header) = batch::BatchHeader::parse(&batch) else { continue };
        let Ok(codec) = header.compression() else { continue };
        let mut seed = vec![codec.attribute_code() as u8];
        seed.extend_from_slice(&batch[BATCH_HEADER_BYTES..]);
        seeds.push(seed);
    }
    // A section far smaller than what it inflates to, for each codec that compresses.
    for &codec in &Compression::ALL[1..] {
        let mut seed = vec![codec.attribute_code() as u8];
        seed.extend_from_slice(&compression::compress(codec, &vec![0u8; 1 << 20]));
        seeds.push(seed);
    }
    seeds
}
