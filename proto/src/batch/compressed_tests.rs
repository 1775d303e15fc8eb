//! Compressed batches: what the builder writes, what validation accepts and refuses, and golden batches that
//! kafka-python wrote (proto/tests/fixtures/compressed/make_fixtures.py).

use proptest::prelude::*;

use super::*;

const CODECS: [Compression; 4] = [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

/// Records that every codec shrinks.
fn push_sample_records(builder: &mut BatchBuilder) {
    for i in 0..50i64 {
        let value = format!("value {} repeated: {}", i % 5, "abc".repeat(20));
        builder.push(1_000 + i, Some(format!("key-{i}").as_bytes()), Some(value.as_bytes()), &[("h", Some(b"x"))]);
    }
    builder.push(900, None, None, &[("k", None)]);
}

fn sample_batch(codec: Compression) -> Bytes {
    let mut builder = BatchBuilder::new().with_compression(codec);
    push_sample_records(&mut builder);
    builder.finish()
}

/// Rewrites the batch length and CRC after a test edited the bytes, so validation looks past them.
fn restamp(batch: &mut [u8]) {
    let batch_length = (batch.len() - LOG_OVERHEAD_BYTES) as u32;
    batch[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_COVERED_FROM..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// `batch` with its records section replaced by `records` and its codec attribute set to `codec`.
fn with_records_section(batch: &[u8], codec: Compression, records: &[u8]) -> Vec<u8> {
    let mut out = batch[..BATCH_HEADER_BYTES].to_vec();
    out[CRC_COVERED_FROM..CRC_COVERED_FROM + 2].copy_from_slice(&codec.attribute_code().to_be_bytes());
    out.extend_from_slice(records);
    restamp(&mut out);
    out
}

#[test]
fn every_codec_round_trips_through_validate_and_decode() {
    let uncompressed = sample_batch(Compression::None);
    let expected = decode_records(&uncompressed).unwrap();
    for codec in CODECS {
        let batch = sample_batch(codec);
        assert!(batch.len() < uncompressed.len() / 2, "{codec}: {} bytes", batch.len());
        let header = validate(&batch).unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert_eq!(header.attributes & ATTR_COMPRESSION_MASK, codec.attribute_code());
        assert_eq!(header.compression(), Ok(codec));
        assert_eq!((header.record_count, header.max_timestamp), (51, 1_049));
        assert_eq!(decode_records(&batch).unwrap(), expected, "{codec}");
    }
}

#[test]
fn the_crc_covers_the_compressed_bytes() {
    for codec in CODECS {
        let batch = sample_batch(codec);
        assert_eq!(crc32c::crc32c(&batch[CRC_COVERED_FROM..]), validate(&batch).unwrap().crc);
        let mut flipped = batch.to_vec();
        *flipped.last_mut().unwrap() ^= 0x01;
        assert!(matches!(validate(&flipped), Err(BatchError::CrcMismatch { .. })), "{codec}");
    }
}

#[test]
fn a_corrupt_stream_under_a_valid_crc_is_an_error() {
    for codec in CODECS {
        let batch = sample_batch(codec);
        // The first byte of every codec's stream is its magic (the gzip ID, lz4's and zstd's frame magic,
        // xerial's 0x82); flipped, no decoder can read the stream.
        let mut corrupt = batch.to_vec();
        corrupt[BATCH_HEADER_BYTES] ^= 0x01;
        restamp(&mut corrupt);
        assert!(matches!(validate(&corrupt), Err(BatchError::Invalid(_))), "{codec}");
        assert!(decode_records(&Bytes::from(corrupt)).is_err(), "{codec}");
    }
}

#[test]
fn a_flipped_byte_anywhere_in_the_stream_never_panics() {
    for codec in CODECS {
        let batch = sample_batch(codec);
        for i in BATCH_HEADER_BYTES..batch.len() {
            let mut corrupt = batch.to_vec();
            corrupt[i] ^= 0x10;
            restamp(&mut corrupt);
            // A codec without a content checksum may decode a flipped literal to other, still valid, records;
            // whatever validation accepts must then decode.
            if validate(&corrupt).is_ok() {
                assert!(decode_records(&Bytes::from(corrupt)).is_ok(), "{codec}: flip at {i}");
            }
        }
    }
}

#[test]
fn a_cut_off_stream_under_a_valid_crc_is_an_error() {
    for codec in CODECS {
        let batch = sample_batch(codec);
        let mut cut = batch[..batch.len() - 3].to_vec();
        restamp(&mut cut);
        assert!(validate(&cut).is_err(), "{codec}");
    }
}

#[test]
fn a_record_count_that_disagrees_with_the_decompressed_records_is_invalid() {
    for codec in CODECS {
        for count in [50u32, 52] {
            let mut batch = sample_batch(codec).to_vec();
            batch[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
            batch[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&(count - 1).to_be_bytes());
            restamp(&mut batch);
            let result = validate(&batch);
            assert!(matches!(result, Err(BatchError::Invalid(_))), "{codec}, count {count}: {result:?}");
        }
    }
}

/// A zip bomb: a few KiB of zstd that inflate one byte past the bound.
#[test]
fn a_records_section_inflating_past_the_bound_is_refused() {
    let bomb = compression::compress(Compression::Zstd, &vec![0; RECORDS_DECOMPRESSED_BYTES_MAX + 1]);
    let batch = with_records_section(&sample_batch(Compression::None), Compression::Zstd, &bomb);
    let too_large = BatchError::DecompressedTooLarge { limit_bytes: RECORDS_DECOMPRESSED_BYTES_MAX };
    assert_eq!(validate(&batch), Err(too_large.clone()));
    assert_eq!(decode_records(&Bytes::from(batch)), Err(too_large));
}

#[test]
fn unknown_codec_codes_are_invalid() {
    for code in 5..8i16 {
        let mut batch = sample_batch(Compression::None).to_vec();
        batch[CRC_COVERED_FROM..CRC_COVERED_FROM + 2].copy_from_slice(&code.to_be_bytes());
        restamp(&mut batch);
        assert!(matches!(validate(&batch), Err(BatchError::Invalid(_))), "code {code}");
        assert!(decode_records(&Bytes::from(batch)).is_err(), "code {code}");
    }
}

#[test]
fn both_snappy_framings_decode() {
    let uncompressed = sample_batch(Compression::None);
    let expected = decode_records(&uncompressed).unwrap();
    let raw = snap::raw::Encoder::new().compress_vec(&uncompressed[BATCH_HEADER_BYTES..]).unwrap();
    let raw_batch = with_records_section(&uncompressed, Compression::Snappy, &raw);
    let xerial_batch = sample_batch(Compression::Snappy);
    assert_eq!(&xerial_batch[BATCH_HEADER_BYTES..BATCH_HEADER_BYTES + 8], b"\x82SNAPPY\x00");
    for batch in [Bytes::from(raw_batch), xerial_batch] {
        validate(&batch).unwrap();
        assert_eq!(decode_records(&batch).unwrap(), expected);
    }
}

/// Deterministic bytes no codec can shrink (a 64-bit LCG's high bytes).
fn incompressible(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

#[test]
fn incompressible_records_are_sent_uncompressed_so_the_batch_never_outgrows_size_bytes() {
    let value = incompressible(100_000);
    for codec in CODECS {
        let mut builder = BatchBuilder::new().with_compression(codec);
        builder.push(1, None, Some(&value), &[]);
        let bound = builder.size_bytes();
        let batch = builder.finish();
        assert_eq!(batch.len(), bound, "{codec}");
        assert_eq!(validate(&batch).unwrap().compression(), Ok(Compression::None), "{codec}");
    }
}

#[test]
fn stamped_offsets_epoch_and_producer_fields_keep_a_compressed_batch_valid() {
    for codec in CODECS {
        let mut batch = sample_batch(codec).to_vec();
        set_base_offset(&mut batch, 1_000);
        set_partition_leader_epoch(&mut batch, 3);
        set_producer_fields(&mut batch, 9, 2, 77);
        let header = validate(&batch).unwrap();
        assert_eq!((header.producer_id, header.producer_epoch, header.base_sequence), (9, 2, 77));
        let records = decode_records(&Bytes::from(batch)).unwrap();
        assert_eq!((records[0].offset, records[50].offset), (1_000, 1_050), "{codec}");
    }
}

#[test]
fn a_fetch_of_mixed_codecs_decodes_in_order_and_skips_a_torn_tail() {
    let mut buf = Vec::new();
    let mut base_offset = 0;
    for codec in Compression::ALL {
        let mut batch = sample_batch(codec).to_vec();
        set_base_offset(&mut batch, base_offset);
        base_offset += 51;
        buf.extend_from_slice(&batch);
    }
    let torn = sample_batch(Compression::Lz4);
    buf.extend_from_slice(&torn[..torn.len() - 1]);
    let records = decode_records(&Bytes::from(buf)).unwrap();
    assert_eq!(records.len(), 5 * 51);
    assert!(records.iter().enumerate().all(|(i, r)| r.offset == i as u64));
}

/// The records make_fixtures.py writes into every golden batch.
fn assert_fixture_records(name: &str, bytes: &'static [u8], codec: Compression) {
    let batch = Bytes::from_static(bytes);
    let header = validate(&batch).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(header.compression(), Ok(codec), "{name}");
    assert_eq!((header.producer_id, header.producer_epoch, header.base_sequence), (7, 1, 0), "{name}");
    assert_eq!((header.record_count, header.max_timestamp), (3, 1_700_000_000_010), "{name}");
    let records = decode_records(&batch).unwrap();
    let value = |s: &str, n| Some(Bytes::from(s.repeat(n)));
    let header =
        |key: &str, value: Option<&'static [u8]>| Header { key: key.into(), value: value.map(Bytes::from_static) };
    let expected = vec![
        Record {
            offset: 0,
            timestamp_ms: 1_700_000_000_000,
            key: Some(Bytes::from_static(b"key-0")),
            value: value("value ", 20),
            headers: vec![header("trace", Some(b"abc")), header("empty", None)],
        },
        Record { offset: 1, timestamp_ms: 1_700_000_000_005, key: None, value: value("second ", 20), headers: vec![] },
        Record {
            offset: 2,
            timestamp_ms: 1_700_000_000_010,
            key: Some(Bytes::from_static(b"key-2")),
            value: None,
            headers: vec![header("h", Some(b"1"))],
        },
    ];
    assert_eq!(records, expected, "{name}");
}

#[test]
fn batches_kafka_python_compressed_validate_and_decode() {
    let fixtures: [(&str, &'static [u8], Compression); 5] = [
        ("gzip", include_bytes!("../../tests/fixtures/compressed/gzip.bin"), Compression::Gzip),
        ("snappy-xerial", include_bytes!("../../tests/fixtures/compressed/snappy-xerial.bin"), Compression::Snappy),
        ("snappy-raw", include_bytes!("../../tests/fixtures/compressed/snappy-raw.bin"), Compression::Snappy),
        ("lz4", include_bytes!("../../tests/fixtures/compressed/lz4.bin"), Compression::Lz4),
        ("zstd", include_bytes!("../../tests/fixtures/compressed/zstd.bin"), Compression::Zstd),
    ];
    for (name, bytes, codec) in fixtures {
        assert_fixture_records(name, bytes, codec);
    }
}

proptest! {
    #[test]
    fn any_records_round_trip_under_any_codec(
        codec in proptest::sample::select(Compression::ALL.to_vec()),
        values in proptest::collection::vec(proptest::option::of("[a-c]{0,300}"), 1..30),
    ) {
        let mut plain = BatchBuilder::new();
        let mut compressed = BatchBuilder::new().with_compression(codec);
        for (i, value) in values.iter().enumerate() {
            plain.push(i as i64, None, value.as_deref().map(str::as_bytes), &[]);
            compressed.push(i as i64, None, value.as_deref().map(str::as_bytes), &[]);
        }
        let bound = compressed.size_bytes();
        let batch = compressed.finish();
        prop_assert!(batch.len() <= bound);
        validate(&batch).unwrap();
        prop_assert_eq!(decode_records(&batch).unwrap(), decode_records(&plain.finish()).unwrap());
    }

    /// Hostile input: random mutations of compressed batches, CRC recomputed, never panic the decoders.
    #[test]
    fn decoders_never_panic_on_mutated_compressed_batches(
        codec in proptest::sample::select(CODECS.to_vec()),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut batch = sample_batch(codec).to_vec();
        for (at, byte) in flips {
            let i = BATCH_HEADER_BYTES + at % (batch.len() - BATCH_HEADER_BYTES);
            batch[i] = byte;
        }
        restamp(&mut batch);
        let _ = validate(&batch);
        let _ = decode_records(&Bytes::from(batch));
    }
}
