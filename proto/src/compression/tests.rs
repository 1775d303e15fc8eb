use super::*;

const CODECS: [Compression; 4] = [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

/// Compressible but not trivial: a few hundred KiB spanning several snappy and lz4 blocks.
fn sample_input() -> Vec<u8> {
    (0..40_000u32).flat_map(|i| format!("record {} of {}; ", i % 97, i / 3).into_bytes()).take(300_000).collect()
}

#[test]
fn every_codec_round_trips_and_shrinks_repetitive_input() {
    let input = sample_input();
    for codec in CODECS {
        let compressed = compress(codec, &input);
        assert!(compressed.len() < input.len() / 2, "{codec}: {} bytes", compressed.len());
        assert_eq!(decompress(codec, &compressed, input.len()).unwrap(), input, "{codec}");
    }
}

#[test]
fn empty_input_round_trips() {
    for codec in CODECS {
        assert_eq!(decompress(codec, &compress(codec, &[]), 0).unwrap(), Vec::<u8>::new(), "{codec}");
    }
}

#[test]
fn output_one_byte_over_the_limit_is_refused() {
    let input = sample_input();
    for codec in CODECS {
        let compressed = compress(codec, &input);
        assert_eq!(
            decompress(codec, &compressed, input.len() - 1),
            Err(BatchError::DecompressedTooLarge { limit_bytes: input.len() - 1 }),
            "{codec}"
        );
    }
}

#[test]
fn snappy_writes_the_xerial_framing_in_32_kib_blocks() {
    let input = sample_input();
    let compressed = compress(Compression::Snappy, &input);
    assert_eq!(&compressed[..8], b"\x82SNAPPY\x00");
    assert_eq!(&compressed[8..16], &[0, 0, 0, 1, 0, 0, 0, 1], "version and compatible version 1");
    let first_block = u32::from_be_bytes(compressed[16..20].try_into().unwrap()) as usize;
    let block = &compressed[20..20 + first_block];
    assert_eq!(snap::raw::decompress_len(block).unwrap(), XERIAL_BLOCK_BYTES);
}

#[test]
fn raw_snappy_as_librdkafka_writes_it_decodes_too() {
    let input = sample_input();
    let raw = snap::raw::Encoder::new().compress_vec(&input).unwrap();
    assert_eq!(decompress(Compression::Snappy, &raw, input.len()).unwrap(), input);
}

#[test]
fn a_raw_snappy_block_claiming_more_than_the_limit_is_refused_before_allocating() {
    // The preamble varint alone claims 2^32 - 1 bytes.
    let claim = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
    assert_eq!(
        decompress(Compression::Snappy, &claim, RECORDS_DECOMPRESSED_BYTES_MAX),
        Err(BatchError::DecompressedTooLarge { limit_bytes: RECORDS_DECOMPRESSED_BYTES_MAX })
    );
}

#[test]
fn a_xerial_block_length_past_the_end_is_corrupt() {
    let mut compressed = compress(Compression::Snappy, b"some records");
    compressed[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(decompress(Compression::Snappy, &compressed, 1 << 20), Err(BatchError::Invalid(_))));
}

#[test]
fn a_cut_off_stream_is_corrupt() {
    let input = sample_input();
    for codec in CODECS {
        let compressed = compress(codec, &input);
        for cut in [1, compressed.len() / 2, compressed.len() - 1] {
            let result = decompress(codec, &compressed[..cut], input.len());
            assert!(
                matches!(result, Err(BatchError::Invalid(_))),
                "{codec} cut at {cut}: {:?}",
                result.map(|o| o.len())
            );
        }
    }
}

#[test]
fn an_lz4_frame_without_its_end_mark_is_corrupt() {
    let input = sample_input();
    let compressed = compress(Compression::Lz4, &input);
    assert_eq!(&compressed[compressed.len() - 4..], &[0, 0, 0, 0], "the end mark closes the frame");
    let result = decompress(Compression::Lz4, &compressed[..compressed.len() - 4], input.len());
    assert!(matches!(result, Err(BatchError::Invalid(_))));
}

#[test]
fn concatenated_streams_decode_whole_and_the_limit_spans_them() {
    for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
        let mut two = compress(codec, b"first ");
        two.extend_from_slice(&compress(codec, b"second"));
        assert_eq!(decompress(codec, &two, 12).unwrap(), b"first second", "{codec}");
        assert_eq!(decompress(codec, &two, 11), Err(BatchError::DecompressedTooLarge { limit_bytes: 11 }), "{codec}");
    }
}

#[test]
fn bytes_after_the_stream_are_corrupt() {
    for codec in CODECS {
        let mut compressed = compress(codec, b"some records");
        compressed.extend_from_slice(b"trailing");
        let result = decompress(codec, &compressed, 100);
        assert!(matches!(result, Err(BatchError::Invalid(_))), "{codec}: {result:?}");
    }
}

#[test]
fn garbage_is_corrupt_for_every_codec() {
    for codec in CODECS {
        let result = decompress(codec, b"this is not compressed data at all", 1 << 20);
        assert!(matches!(result, Err(BatchError::Invalid(_))), "{codec}: {result:?}");
    }
}

#[test]
fn a_zstd_frame_asking_for_a_window_above_the_bound_is_refused() {
    // A frame header: magic, descriptor 0 (no content size, so the window descriptor follows), then a
    // window descriptor of exponent 31 - 10 = 21, i.e. a 2 GiB window.
    let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 21 << 3, 0x01, 0x00, 0x00];
    let result = decompress(Compression::Zstd, &frame, RECORDS_DECOMPRESSED_BYTES_MAX);
    assert!(matches!(result, Err(BatchError::Invalid(_))), "{result:?}");
}

#[test]
fn codes_and_names_follow_kafka() {
    for (code, codec) in Compression::ALL.into_iter().enumerate() {
        assert_eq!(codec.attribute_code(), code as i16);
        assert_eq!(Compression::from_attributes(code as i16 | 0x08), Ok(codec), "other bits are ignored");
        assert_eq!(codec.name().parse::<Compression>(), Ok(codec));
    }
    assert_eq!("ZSTD".parse::<Compression>(), Ok(Compression::Zstd));
    assert!("brotli".parse::<Compression>().is_err());
    for code in 5..8 {
        assert!(matches!(Compression::from_attributes(code), Err(BatchError::Invalid(_))));
    }
}
