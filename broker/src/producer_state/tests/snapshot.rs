//! The snapshot file: round trips, corruption of every kind is refused, and the name and selection rules.

use super::*;

/// A table with several producers, a full window, a bumped epoch and a wrapped sequence.
fn busy_table() -> ProducerStateTable {
    let mut partition = Partition::new();
    partition.append_run(1, 0, 0, 7, 2);
    partition.append(plain_batch(3), T0_MS);
    // Producer 2 wrote long enough for its sequence to wrap.
    let end = partition.log_end_offset;
    partition.table.apply(&batch(2, 4, i32::MAX - 1, 1), end, end, T0_MS);
    partition.log_end_offset += 1;
    partition.append_run(2, 4, i32::MAX, 2, 1);
    partition.append_run(1, 1, 0, 1, 1);
    partition.table
}

#[test]
fn a_snapshot_decodes_to_the_table_it_was_taken_from() {
    let table = busy_table();
    let end_offset = table.end_offset() + 10;
    let (decoded, offset) = ProducerStateTable::decode(&table.encode(end_offset)).unwrap();
    assert_eq!(offset, end_offset);
    assert_eq!(decoded.end_offset(), end_offset);
    assert_eq!(decoded.producers().collect::<Vec<_>>(), table.producers().collect::<Vec<_>>());
}

#[test]
fn an_empty_table_round_trips() {
    let bytes = ProducerStateTable::starting_at(0).encode(0);
    assert_eq!(bytes.len(), 28);
    assert_eq!(ProducerStateTable::decode(&bytes).unwrap(), (ProducerStateTable::starting_at(0), 0));
}

#[test]
fn the_snapshot_layout_is_the_documented_one() {
    let mut table = ProducerStateTable::starting_at(0);
    table.apply(&batch(0x0102, 3, 0x10, 2), 5, 6, 0x77);
    let bytes = table.encode(9);
    let mut expected = Vec::new();
    expected.extend_from_slice(b"RILLPRST");
    expected.extend_from_slice(&[0, 1, 0, 0]);
    expected.extend_from_slice(&9u64.to_be_bytes());
    expected.extend_from_slice(&1u32.to_be_bytes());
    expected.extend_from_slice(&0x0102i64.to_be_bytes());
    expected.extend_from_slice(&[0, 3, 0, 1]);
    expected.extend_from_slice(&0x77i64.to_be_bytes());
    expected.extend_from_slice(&0x10i32.to_be_bytes());
    expected.extend_from_slice(&0x11i32.to_be_bytes());
    expected.extend_from_slice(&5u64.to_be_bytes());
    expected.extend_from_slice(&6u64.to_be_bytes());
    let crc = crc32c::crc32c(&expected);
    expected.extend_from_slice(&crc.to_be_bytes());
    assert_eq!(bytes, expected);
}

#[test]
fn every_flipped_bit_of_a_snapshot_is_refused() {
    let bytes = busy_table().encode(100);
    for at in 0..bytes.len() {
        for bit in 0..8 {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= 1 << bit;
            assert!(ProducerStateTable::decode(&corrupt).is_err(), "flipped bit {bit} of byte {at} was accepted");
        }
    }
}

#[test]
fn a_cut_or_extended_snapshot_is_refused() {
    let bytes = busy_table().encode(100);
    for len in 0..bytes.len() {
        assert!(ProducerStateTable::decode(&bytes[..len]).is_err(), "cut to {len} bytes");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(ProducerStateTable::decode(&longer).is_err());
}

/// Re-signs a snapshot body so that decode gets past the CRC to the structural checks.
fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&body);
    body.extend_from_slice(&crc.to_be_bytes());
    body
}

fn body_of(table: &ProducerStateTable, end_offset: u64) -> Vec<u8> {
    let mut bytes = table.encode(end_offset);
    bytes.truncate(bytes.len() - 4);
    bytes
}

#[test]
fn a_snapshot_with_a_valid_crc_but_impossible_contents_is_refused() {
    let mut table = ProducerStateTable::starting_at(0);
    table.apply(&batch(1, 0, 0, 1), 0, 0, T0_MS);
    table.apply(&batch(2, 0, 0, 1), 1, 1, T0_MS);
    table.apply(&batch(2, 0, 1, 1), 2, 2, T0_MS);
    let body = body_of(&table, 3);
    // Producer entries start at 24 (producer 1: one batch, 44 bytes) and 68 (producer 2: two batches).
    let patches: &[(&str, usize, &[u8])] = &[
        ("version", 8, &[0, 2]),
        ("reserved", 10, &[0, 1]),
        ("end offset below a batch", 12, &2u64.to_be_bytes()),
        ("producer count too large", 20, &u32::MAX.to_be_bytes()),
        ("producer count too small", 20, &1u32.to_be_bytes()),
        ("negative producer id", 24, &(-1i64).to_be_bytes()),
        ("producer ids out of order", 68, &1i64.to_be_bytes()),
        ("negative epoch", 32, &(-1i16).to_be_bytes()),
        ("no batches", 34, &[0, 0]),
        ("more batches than kept", 34, &[0, 6]),
        ("negative first sequence", 44, &(-1i32).to_be_bytes()),
        ("negative last sequence", 48, &(-1i32).to_be_bytes()),
        ("base offset after last offset", 52, &1u64.to_be_bytes()),
        ("batches out of offset order", 88 + 24 + 8, &1u64.to_be_bytes()),
    ];
    assert!(ProducerStateTable::decode(&with_crc(body.clone())).is_ok());
    for (what, at, patch) in patches {
        let mut corrupt = body.clone();
        corrupt[*at..*at + patch.len()].copy_from_slice(patch);
        assert!(ProducerStateTable::decode(&with_crc(corrupt)).is_err(), "{what} was accepted");
    }
}

#[test]
fn a_snapshot_claiming_more_producers_than_its_bytes_hold_is_refused_without_allocating() {
    let mut body = body_of(&ProducerStateTable::starting_at(0), 0);
    body[20..24].copy_from_slice(&(PRODUCER_IDS_PER_PARTITION_MAX as u32).to_be_bytes());
    let error = ProducerStateTable::decode(&with_crc(body)).unwrap_err();
    assert!(error.contains("claims"), "{error}");
}

#[test]
#[should_panic(expected = "reaches offset")]
fn a_snapshot_below_the_tables_end_offset_is_a_broken_invariant() {
    busy_table().encode(1);
}

#[test]
fn snapshot_file_names_are_the_end_offset_in_twenty_digits() {
    assert_eq!(snapshot_file_name(0), "00000000000000000000.snapshot");
    assert_eq!(snapshot_file_name(1234), "00000000000000001234.snapshot");
    assert_eq!(snapshot_file_name(u64::MAX), "18446744073709551615.snapshot");
    for offset in [0, 1234, u64::MAX] {
        assert_eq!(parse_snapshot_file_name(&snapshot_file_name(offset)), Some(offset));
    }
}

#[test]
fn other_file_names_are_not_snapshots() {
    for name in [
        "1234.snapshot",
        "000000000000000001234.snapshot",
        "0000000000000000123a.snapshot",
        "+0000000000000001234.snapshot",
        "00000000000000001234.snapshot.tmp",
        "00000000000000001234.log",
        "99999999999999999999.snapshot",
        ".snapshot",
    ] {
        assert_eq!(parse_snapshot_file_name(name), None, "{name}");
    }
}

#[test]
fn recovery_loads_the_latest_snapshot_at_or_below_the_log_end() {
    let offsets = [0, 100, 250, 400];
    assert_eq!(snapshot_to_load(&offsets, 400), Some(400));
    assert_eq!(snapshot_to_load(&offsets, 399), Some(250));
    assert_eq!(snapshot_to_load(&[100], 50), None);
    assert_eq!(snapshot_to_load(&[], 50), None);
}

#[test]
fn truncation_deletes_the_snapshots_past_the_new_log_end() {
    assert_eq!(snapshots_to_delete_on_truncation(&[0, 100, 250, 400], 250), vec![400]);
    assert_eq!(snapshots_to_delete_on_truncation(&[0, 100], 250), Vec::<u64>::new());
}

#[test]
fn retention_keeps_the_latest_snapshot_at_or_below_the_log_start_and_all_later_ones() {
    assert_eq!(snapshots_to_delete_on_retention(&[0, 100, 250, 400], 300), vec![0, 100]);
    assert_eq!(snapshots_to_delete_on_retention(&[0, 100, 250, 400], 250), vec![0, 100]);
    assert_eq!(snapshots_to_delete_on_retention(&[100, 250], 50), Vec::<u64>::new());
}

#[test]
fn a_snapshot_file_must_carry_the_offset_its_name_gives() {
    let table = busy_table();
    let end_offset = table.end_offset();
    let bytes = table.encode(end_offset);
    let decoded = ProducerStateTable::decode_file(&snapshot_file_name(end_offset), &bytes).unwrap();
    assert_eq!(decoded.end_offset(), end_offset);
    assert!(ProducerStateTable::decode_file(&snapshot_file_name(end_offset + 1), &bytes).is_err());
    assert!(ProducerStateTable::decode_file("snapshot", &bytes).is_err());
}
