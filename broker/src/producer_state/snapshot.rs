//! The producer-state snapshot file: its bytes ([`ProducerStateTable::encode`] and
//! [`ProducerStateTable::decode`]), its name, and which snapshots recovery, truncation and retention use or
//! delete. docs/FORMAT.md ("Producer-state snapshot") documents every byte. The storage side writes and reads the files.

use std::collections::{BTreeMap, VecDeque};

use super::table::{BatchRecord, ProducerEntry, ProducerStateTable};
use super::{PRODUCER_BATCHES_KEPT, PRODUCER_IDS_PER_PARTITION_MAX};

pub const SNAPSHOT_MAGIC: &[u8; 8] = b"RILLPRST";
pub const SNAPSHOT_VERSION: u16 = 1;
/// Magic, version, reserved, end offset, producer count.
const HEADER_BYTES: usize = 24;
const CRC_BYTES: usize = 4;
/// Producer id, epoch, batch count, last timestamp.
const PRODUCER_BYTES: usize = 20;
/// First and last sequence, base and last offset.
const BATCH_BYTES: usize = 24;
const SNAPSHOT_SUFFIX: &str = ".snapshot";
const OFFSET_DIGITS: usize = 20;

/// The largest snapshot any table can encode; a file beyond it is refused unread.
pub const SNAPSHOT_BYTES_MAX: usize =
    HEADER_BYTES + PRODUCER_IDS_PER_PARTITION_MAX * (PRODUCER_BYTES + PRODUCER_BATCHES_KEPT * BATCH_BYTES) + CRC_BYTES;

// The batch count is stored as a u16.
const _: () = assert!(PRODUCER_BATCHES_KEPT >= 1 && PRODUCER_BATCHES_KEPT <= u16::MAX as usize);
// The producer count is stored as a u32.
const _: () = assert!(PRODUCER_IDS_PER_PARTITION_MAX <= u32::MAX as usize);

impl ProducerStateTable {
    /// The snapshot of this table as the state of the log below `end_offset`: the log end offset when it is
    /// taken (at a segment roll, the new segment's base offset; at clean shutdown, the log end). The file is
    /// named [`snapshot_file_name`]`(end_offset)`.
    ///
    /// # Panics
    ///
    /// If `end_offset` is below the table's own end offset: the snapshot would claim less than it holds.
    pub fn encode(&self, end_offset: u64) -> Vec<u8> {
        assert!(
            end_offset >= self.end_offset,
            "snapshot at offset {end_offset} of a producer state that reaches offset {}",
            self.end_offset
        );
        assert!(self.producers.len() <= PRODUCER_IDS_PER_PARTITION_MAX, "producer table over its limit");
        let batches: usize = self.producers.values().map(|entry| entry.batches.len()).sum();
        let mut out = Vec::with_capacity(
            HEADER_BYTES + self.producers.len() * PRODUCER_BYTES + batches * BATCH_BYTES + CRC_BYTES,
        );
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&end_offset.to_be_bytes());
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (&producer_id, entry) in &self.producers {
            out.extend_from_slice(&producer_id.to_be_bytes());
            out.extend_from_slice(&entry.epoch.to_be_bytes());
            out.extend_from_slice(&(entry.batches.len() as u16).to_be_bytes());
            out.extend_from_slice(&entry.last_timestamp_ms.to_be_bytes());
            for batch in &entry.batches {
                out.extend_from_slice(&batch.first_sequence.to_be_bytes());
                out.extend_from_slice(&batch.last_sequence.to_be_bytes());
                out.extend_from_slice(&batch.base_offset.to_be_bytes());
                out.extend_from_slice(&batch.last_offset.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Reads a snapshot back: the table and the end offset it covers (from which the log is replayed).
    ///
    /// # Errors
    ///
    /// Any file [`encode`](Self::encode) could not have written: wrong length, magic, version or CRC, counts out
    /// of range, producer ids out of order, offsets out of order or at or beyond the end offset. Any input
    /// gives an error or a table, never a panic; no allocation is sized by an unchecked count.
    pub fn decode(bytes: &[u8]) -> Result<(ProducerStateTable, u64), String> {
        if bytes.len() < HEADER_BYTES + CRC_BYTES {
            return Err(format!("producer snapshot of {} bytes is shorter than its header", bytes.len()));
        }
        if bytes.len() > SNAPSHOT_BYTES_MAX {
            return Err(format!("producer snapshot of {} bytes exceeds {SNAPSHOT_BYTES_MAX}", bytes.len()));
        }
        let (body, crc) = bytes.split_at(bytes.len() - CRC_BYTES);
        let stored_crc = u32::from_be_bytes(crc.try_into().expect("4-byte CRC"));
        let computed_crc = crc32c::crc32c(body);
        if stored_crc != computed_crc {
            return Err(format!(
                "producer snapshot CRC mismatch: stored {stored_crc:#010x}, computed {computed_crc:#010x}"
            ));
        }
        let mut reader = Reader { bytes: body, at: 0 };
        if reader.take(8)? != SNAPSHOT_MAGIC {
            return Err("not a producer snapshot (magic)".into());
        }
        let version = reader.u16()?;
        if version != SNAPSHOT_VERSION {
            return Err(format!("producer snapshot version {version}, expected {SNAPSHOT_VERSION}"));
        }
        if reader.u16()? != 0 {
            return Err("producer snapshot reserved field is not zero".into());
        }
        let end_offset = reader.u64()?;
        let producer_count = reader.u32()? as usize;
        if producer_count > PRODUCER_IDS_PER_PARTITION_MAX {
            return Err(format!(
                "producer snapshot holds {producer_count} producers, more than {PRODUCER_IDS_PER_PARTITION_MAX}"
            ));
        }
        if producer_count > reader.remaining() / (PRODUCER_BYTES + BATCH_BYTES) {
            return Err(format!("producer snapshot claims {producer_count} producers in {} bytes", reader.remaining()));
        }
        let mut producers = BTreeMap::new();
        let mut previous_id = None;
        for _ in 0..producer_count {
            let (producer_id, entry) = read_producer(&mut reader, end_offset)?;
            if previous_id.is_some_and(|previous| producer_id <= previous) {
                return Err(format!("producer snapshot ids out of order at {producer_id}"));
            }
            previous_id = Some(producer_id);
            producers.insert(producer_id, entry);
        }
        if reader.remaining() != 0 {
            return Err(format!("{} stray bytes after the producer snapshot's entries", reader.remaining()));
        }
        Ok((ProducerStateTable { producers, end_offset }, end_offset))
    }
}

impl ProducerStateTable {
    /// [`decode`](Self::decode) for a snapshot file read back under `file_name`, which must be a snapshot
    /// name carrying the end offset the contents claim: a file renamed by hand, or contents written for another
    /// offset, would make replay start in the wrong place.
    ///
    /// # Errors
    ///
    /// Everything `decode` refuses, a name that is not a snapshot name, or a name and contents that disagree.
    pub fn decode_file(file_name: &str, bytes: &[u8]) -> Result<ProducerStateTable, String> {
        let Some(named_offset) = parse_snapshot_file_name(file_name) else {
            return Err(format!("{file_name} is not a producer snapshot name"));
        };
        let (table, end_offset) = ProducerStateTable::decode(bytes)?;
        if end_offset != named_offset {
            return Err(format!("producer snapshot {file_name} holds the state at offset {end_offset}"));
        }
        Ok(table)
    }
}

fn read_producer(reader: &mut Reader<'_>, end_offset: u64) -> Result<(i64, ProducerEntry), String> {
    let producer_id = reader.u64()? as i64;
    let epoch = reader.u16()? as i16;
    let batch_count = usize::from(reader.u16()?);
    let last_timestamp_ms = reader.u64()? as i64;
    if producer_id < 0 || epoch < 0 {
        return Err(format!("producer snapshot entry with producer id {producer_id}, epoch {epoch}"));
    }
    if batch_count == 0 || batch_count > PRODUCER_BATCHES_KEPT {
        return Err(format!("producer {producer_id} has {batch_count} batches in the snapshot"));
    }
    let mut batches = VecDeque::with_capacity(batch_count);
    for _ in 0..batch_count {
        let batch = BatchRecord {
            first_sequence: reader.u32()? as i32,
            last_sequence: reader.u32()? as i32,
            base_offset: reader.u64()?,
            last_offset: reader.u64()?,
        };
        let after_previous =
            batches.back().is_none_or(|previous: &BatchRecord| batch.base_offset > previous.last_offset);
        if batch.first_sequence < 0
            || batch.last_sequence < 0
            || batch.base_offset > batch.last_offset
            || batch.last_offset >= end_offset
            || !after_previous
        {
            return Err(format!("producer {producer_id} has an impossible batch in the snapshot: {batch:?}"));
        }
        batches.push_back(batch);
    }
    Ok((producer_id, ProducerEntry { epoch, batches, last_timestamp_ms }))
}

/// Big-endian reads that fail, rather than panic, past the end of the buffer.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], String> {
        if self.remaining() < count {
            return Err(format!("producer snapshot truncated at byte {}", self.at));
        }
        let taken = &self.bytes[self.at..self.at + count];
        self.at += count;
        Ok(taken)
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

/// The name of the snapshot covering the log below `end_offset`: the offset in 20 decimal digits, like segment
/// names, then `.snapshot`. It lives in the partition directory.
pub fn snapshot_file_name(end_offset: u64) -> String {
    format!("{end_offset:0width$}{SNAPSHOT_SUFFIX}", width = OFFSET_DIGITS)
}

/// The end offset a snapshot file name carries, or `None` for any other name (exactly 20 digits are required,
/// so each offset has one name).
pub fn parse_snapshot_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    if digits.len() != OFFSET_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Which snapshot to rebuild from when the log ends at `log_end_offset` (after recovery, or after a
/// truncation to that offset): the latest at or below it. `None`: replay from the log start.
pub fn snapshot_to_load(snapshot_offsets: &[u64], log_end_offset: u64) -> Option<u64> {
    snapshot_offsets.iter().copied().filter(|&offset| offset <= log_end_offset).max()
}

/// The snapshots a truncation of the log to `log_end_offset` invalidates: those covering batches that are gone.
/// Delete them before replaying, so that a crash cannot later load one.
pub fn snapshots_to_delete_on_truncation(snapshot_offsets: &[u64], log_end_offset: u64) -> Vec<u64> {
    snapshot_offsets.iter().copied().filter(|&offset| offset > log_end_offset).collect()
}

/// The snapshots retention no longer needs once the log starts at `log_start_offset`: every one older than the
/// latest at or below the log start, which is kept (with all later ones) to replay from. Retention keeps
/// producer state of deleted batches, as Kafka does since KIP-360; only expiry removes producers.
pub fn snapshots_to_delete_on_retention(snapshot_offsets: &[u64], log_start_offset: u64) -> Vec<u64> {
    match snapshot_to_load(snapshot_offsets, log_start_offset) {
        Some(kept) => snapshot_offsets.iter().copied().filter(|&offset| offset < kept).collect(),
        None => Vec::new(),
    }
}
