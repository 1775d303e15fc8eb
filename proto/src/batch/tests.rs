use proptest::prelude::*;

use super::*;

fn sample_batch() -> Bytes {
    let mut b = BatchBuilder::new();
    b.push(1_000, Some(b"key-a"), Some(b"value one"), &[("h1", Some(b"x")), ("h2", None)]);
    b.push(1_005, None, Some(b""), &[]);
    b.push(990, Some(b""), None, &[]);
    b.finish()
}

#[test]
fn header_fields_sit_at_kafka_v2_positions() {
    let batch = sample_batch();
    let h = validate(&batch).unwrap();
    assert_eq!(batch[16], 2, "magic at byte 16");
    assert_eq!(h.size(), batch.len());
    assert_eq!(u32::from_be_bytes(batch[8..12].try_into().unwrap()) as usize, batch.len() - 12);
    assert_eq!(h.record_count, 3);
    assert_eq!(h.last_offset_delta, 2);
    assert_eq!(h.base_timestamp, 1_000);
    assert_eq!(h.max_timestamp, 1_005);
    assert_eq!(h.producer_id, -1);
    assert_eq!(h.partition_leader_epoch, -1);
    assert_eq!(crc32c::crc32c(&batch[21..]), h.crc);
}

#[test]
fn records_decode_with_keys_values_headers_and_timestamps() {
    let mut batch = sample_batch().to_vec();
    set_base_offset(&mut batch, 40);
    set_partition_leader_epoch(&mut batch, 7);
    validate(&batch).expect("stamping base offset and epoch keeps the CRC valid");
    let records = decode_records(&Bytes::from(batch)).unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].offset, 40);
    assert_eq!(records[0].key.as_deref(), Some(&b"key-a"[..]));
    assert_eq!(records[0].headers[0], Header { key: "h1".into(), value: Some(Bytes::from_static(b"x")) });
    assert_eq!(records[0].headers[1].value, None);
    assert_eq!(records[1].key, None);
    assert_eq!(records[1].value.as_deref(), Some(&b""[..]));
    assert_eq!(records[2].offset, 42);
    assert_eq!(records[2].timestamp_ms, 990);
    assert_eq!(records[2].value, None);
}

#[test]
fn a_flipped_byte_anywhere_under_the_crc_is_detected() {
    let batch = sample_batch();
    for i in CRC_COVERED_FROM..batch.len() {
        let mut corrupt = batch.to_vec();
        corrupt[i] ^= 0x01;
        assert!(validate(&corrupt).is_err(), "flip at byte {i} went unnoticed");
    }
}

#[test]
fn truncation_is_reported_as_truncated() {
    let batch = sample_batch();
    for cut in [0, 10, 60, batch.len() - 1] {
        match validate(&batch[..cut]) {
            Err(BatchError::Truncated { .. }) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn transactional_and_control_batches_are_refused_as_unsupported() {
    for attr in [0x0010i16, 0x0020, 0x0011, 0x0024] {
        let mut batch = sample_batch().to_vec();
        batch[21..23].copy_from_slice(&attr.to_be_bytes());
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(validate(&batch), Err(BatchError::Unsupported(_))), "attributes {attr:#x}");
    }
}

#[test]
fn split_batches_walks_back_to_back_batches_and_stops_at_a_torn_one() {
    let a = sample_batch();
    let mut buf = a.to_vec();
    buf.extend_from_slice(&a);
    buf.extend_from_slice(&a[..30]);
    let parts: Vec<_> = split_batches(&buf).collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[1].as_ref().unwrap().1, a.len()..2 * a.len());
    assert!(matches!(parts[2], Err(BatchError::Truncated { .. })));
    // decode_records skips a trailing partial batch, as a fetch cut at max bytes returns one.
    assert_eq!(decode_records(&Bytes::from(buf)).unwrap().len(), 6);
}

/// Golden bytes: a change to the encoder that alters the stored format fails here first.
#[test]
fn encoder_output_matches_the_committed_golden_batch() {
    let mut b = BatchBuilder::new();
    b.set_producer(5, 1, 10);
    b.push(1_700_000_000_000, Some(b"k"), Some(b"v"), &[("h", Some(b"1"))]);
    let hex: String = b.finish().iter().map(|x| format!("{x:02x}")).collect();
    let golden = include_str!("../../tests/fixtures/batch-v2.hex").trim();
    assert_eq!(hex, golden);
}

/// A generated record: timestamp, key, value, headers.
type RecordSpec = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Option<Vec<u8>>)>);

fn record_strategy() -> impl Strategy<Value = RecordSpec> {
    (
        -1_000_000i64..1_000_000_000_000,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        proptest::collection::vec(
            ("[a-z]{0,8}", proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8))),
            0..3,
        ),
    )
}

proptest! {
    #[test]
    fn any_records_round_trip(records in proptest::collection::vec(record_strategy(), 1..20)) {
        let mut b = BatchBuilder::new();
        for (ts, k, v, hs) in &records {
            let hs: Vec<(&str, Option<&[u8]>)> = hs.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
            b.push(*ts, k.as_deref(), v.as_deref(), &hs);
        }
        let batch = b.finish();
        let header = validate(&batch).unwrap();
        prop_assert_eq!(header.record_count as usize, records.len());
        let decoded = decode_records(&batch).unwrap();
        for (i, (d, (ts, k, v, hs))) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(d.offset, i as u64);
            prop_assert_eq!(d.timestamp_ms, *ts);
            prop_assert_eq!(d.key.as_deref(), k.as_deref());
            prop_assert_eq!(d.value.as_deref(), v.as_deref());
            prop_assert_eq!(d.headers.len(), hs.len());
        }
    }

    /// Hostile input: random bytes and random mutations of a valid batch never panic the decoders.
    #[test]
    fn decoders_never_panic_on_hostile_bytes(noise in proptest::collection::vec(any::<u8>(), 0..300),
                                             flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8)) {
        let _ = validate(&noise);
        let _ = decode_records(&Bytes::from(noise.clone()));
        let mut batch = sample_batch().to_vec();
        for (at, byte) in flips {
            let i = at % batch.len();
            batch[i] = byte;
        }
        // Recompute the CRC so the decoder gets past it and meets the mutated lengths.
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        let _ = validate(&batch);
        let _ = decode_records(&Bytes::from(batch));
    }
}

#[test]
fn renumbered_producer_fields_keep_the_batch_valid() {
    let mut builder = BatchBuilder::new();
    builder.set_producer(7, 0, 40);
    builder.push(1, None, Some(b"a"), &[]);
    builder.push(2, None, Some(b"b"), &[]);
    let mut bytes = builder.finish().to_vec();
    set_producer_fields(&mut bytes, 9, 3, 0);
    let header = validate(&bytes).expect("CRC recomputed");
    assert_eq!((header.producer_id, header.producer_epoch, header.base_sequence), (9, 3, 0));
    assert_eq!(header.record_count, 2);
}

#[test]
fn sequences_wrap_after_i32_max() {
    assert_eq!(advance_sequence(0, 5), 5);
    assert_eq!(advance_sequence(i32::MAX, 1), 0);
    assert_eq!(advance_sequence(i32::MAX - 1, 3), 1);
}
