//! The record batch: byte for byte Kafka's record batch v2 (magic 2), see docs/FORMAT.md.
//!
//! The client encodes batches with [`BatchBuilder`]; the broker checks each one once with [`validate`] and then
//! stores and serves the bytes verbatim, stamping only the base offset and the partition leader epoch, which
//! lie outside the CRC. A compressed batch (see [`crate::compression`]) is stored as it came: the CRC covers
//! the compressed bytes, and validation decompresses the records section only to check every record. Every
//! decoder here treats its input as hostile: lengths are checked against the buffer before use and no input
//! makes them panic.

use bytes::Bytes;

use crate::compression::{self, Compression, RECORDS_DECOMPRESSED_BYTES_MAX};
use crate::varint::{Reader, put_varint, put_varlong, varlong_len};

/// Size of the fixed batch header, from the base offset to the record count.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before the `batch_length` count starts: base offset (8) and batch length (4).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The only batch format version Rill reads and writes.
pub const MAGIC_V2: i8 = 2;
/// Producer id of a batch from a producer without idempotence.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;
pub const NO_SEQUENCE: i32 = -1;

const BATCH_LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
/// The CRC-32C covers every byte from the attributes to the end of the batch.
const CRC_COVERED_FROM: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

/// Attribute bits: 0-2 compression codec, 3 timestamp type, 4 transactional, 5 control batch.
pub(crate) const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_LOG_APPEND: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than the batch claims: a torn write on disk, or a cut-off request.
    #[error("batch truncated: {needed} bytes needed, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("invalid batch: {0}")]
    Invalid(String),
    #[error("unsupported batch feature: {0}")]
    Unsupported(String),
    /// A compressed records section inflates past the bound (a zip bomb, or a batch far larger than any
    /// producer should build).
    #[error("records section decompresses to more than {limit_bytes} bytes")]
    DecompressedTooLarge { limit_bytes: usize },
}

/// The 61-byte header of a batch, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: u64,
    /// Bytes after this field to the end of the batch; the whole batch is `12 + batch_length` bytes.
    pub batch_length: u32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: u32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: u32,
}

fn be_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(buf[at..at + 4].try_into().expect("4-byte slice"))
}

fn be_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(buf[at..at + 8].try_into().expect("8-byte slice"))
}

fn be_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(buf[at..at + 2].try_into().expect("2-byte slice"))
}

impl BatchHeader {
    /// Decodes the header at the start of `buf` and checks the fields that say how long the batch is. It does
    /// not check the CRC nor that `buf` holds the whole batch: see [`validate`] and [`check_crc`].
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated { needed: BATCH_HEADER_BYTES, available: buf.len() });
        }
        let magic = buf[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::Invalid(format!("magic {magic}, expected {MAGIC_V2}")));
        }
        let batch_length = be_u32(buf, BATCH_LENGTH_AT);
        if (batch_length as usize) < BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES || batch_length > i32::MAX as u32 {
            return Err(BatchError::Invalid(format!("batch length {batch_length} out of range")));
        }
        let last_offset_delta = be_u32(buf, LAST_OFFSET_DELTA_AT);
        let record_count = be_u32(buf, RECORD_COUNT_AT);
        if last_offset_delta > i32::MAX as u32 || record_count > i32::MAX as u32 {
            return Err(BatchError::Invalid("negative last offset delta or record count".into()));
        }
        let base_offset = be_u64(buf, 0);
        if base_offset > i64::MAX as u64 {
            return Err(BatchError::Invalid("negative base offset".into()));
        }
        Ok(BatchHeader {
            base_offset,
            batch_length,
            partition_leader_epoch: be_u32(buf, LEADER_EPOCH_AT) as i32,
            magic,
            crc: be_u32(buf, CRC_AT),
            attributes: be_i16(buf, 21),
            last_offset_delta,
            base_timestamp: be_u64(buf, BASE_TIMESTAMP_AT) as i64,
            max_timestamp: be_u64(buf, MAX_TIMESTAMP_AT) as i64,
            producer_id: be_u64(buf, PRODUCER_ID_AT) as i64,
            producer_epoch: be_i16(buf, PRODUCER_EPOCH_AT),
            base_sequence: be_u32(buf, BASE_SEQUENCE_AT) as i32,
            record_count,
        })
    }

    /// Size of the whole batch in bytes.
    pub fn size(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length as usize
    }

    /// Offset of the batch's last record.
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta)
    }

    /// Offset after the batch's last record.
    pub fn next_offset(&self) -> u64 {
        self.last_offset() + 1
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_LOG_APPEND != 0
    }

    /// The codec of the records section.
    ///
    /// # Errors
    ///
    /// [`BatchError::Invalid`] for an attribute code no Kafka version defines.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.attributes)
    }
}

/// Checks the CRC-32C of the batch that `batch` holds exactly.
pub fn check_crc(batch: &[u8]) -> Result<(), BatchError> {
    let header = BatchHeader::parse(batch)?;
    if batch.len() < header.size() {
        return Err(BatchError::Truncated { needed: header.size(), available: batch.len() });
    }
    let computed = crc32c::crc32c(&batch[CRC_COVERED_FROM..header.size()]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch { stored: header.crc, computed });
    }
    Ok(())
}

/// Fully validates one batch that `batch` holds exactly: header, CRC (over the bytes as sent, compressed or
/// not), attributes, and every record's lengths, offset deltas and timestamps, decompressing the records
/// section of a compressed batch up to [`RECORDS_DECOMPRESSED_BYTES_MAX`]. This is the broker's single check
/// before storing a batch.
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if batch.len() != header.size() {
        if batch.len() < header.size() {
            return Err(BatchError::Truncated { needed: header.size(), available: batch.len() });
        }
        return Err(BatchError::Invalid(format!(
            "batch length says {} bytes, buffer holds {}",
            header.size(),
            batch.len()
        )));
    }
    check_crc(batch)?;
    let codec = header.compression()?;
    if header.attributes & (ATTR_TRANSACTIONAL | ATTR_CONTROL) != 0 {
        return Err(BatchError::Unsupported("transactional or control batches".into()));
    }
    if header.record_count == 0 {
        return Err(BatchError::Invalid("batch has no records".into()));
    }
    if header.last_offset_delta != header.record_count - 1 {
        return Err(BatchError::Invalid(format!(
            "last offset delta {} does not match record count {}",
            header.last_offset_delta, header.record_count
        )));
    }
    let decompressed;
    let body = match codec {
        Compression::None => &batch[BATCH_HEADER_BYTES..],
        codec => {
            decompressed =
                compression::decompress(codec, &batch[BATCH_HEADER_BYTES..], RECORDS_DECOMPRESSED_BYTES_MAX)?;
            &decompressed[..]
        }
    };
    let mut max_timestamp = i64::MIN;
    let mut index = 0u32;
    walk_records(body, header.record_count, |record| {
        if record.offset_delta != index as i32 {
            return Err(BatchError::Invalid(format!("record {index} has offset delta {}", record.offset_delta)));
        }
        index += 1;
        max_timestamp = max_timestamp.max(header.base_timestamp.saturating_add(record.timestamp_delta));
        Ok(())
    })?;
    if !header.is_log_append_time() && max_timestamp != header.max_timestamp {
        return Err(BatchError::Invalid(format!(
            "max timestamp {} does not match the records' {max_timestamp}",
            header.max_timestamp
        )));
    }
    Ok(header)
}

/// Where a byte field lies inside its batch's records section: `(start, length)`.
type FieldSpan = (usize, usize);

/// A header's key range and value span inside its batch.
type HeaderSpan = (std::ops::Range<usize>, Option<FieldSpan>);

/// Positions of one record's fields inside its records section. The headers borrow a buffer the walk reuses, so
/// walking a batch allocates nothing per record.
struct RawRecord<'a> {
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<FieldSpan>,
    value: Option<FieldSpan>,
    headers: &'a [HeaderSpan],
}

/// Walks the `record_count` records of a batch's (decompressed) records section, checking every length and
/// that nothing follows the last record; `visit` sees each.
fn walk_records(
    body: &[u8],
    record_count: u32,
    mut visit: impl FnMut(RawRecord<'_>) -> Result<(), BatchError>,
) -> Result<(), BatchError> {
    let mut reader = Reader::new(body);
    let mut headers: Vec<HeaderSpan> = Vec::new();
    for _ in 0..record_count {
        let length = reader.varint()?;
        let length =
            usize::try_from(length).map_err(|_| BatchError::Invalid(format!("negative record length {length}")))?;
        let start = reader.position();
        let record_bytes = reader.take(length)?;
        let mut r = Reader::new(record_bytes);
        let _attributes = r.i8()?;
        let timestamp_delta = r.varlong()?;
        let offset_delta = r.varint()?;
        let shift = |field: Option<(usize, usize)>| field.map(|(at, len)| (start + at, len));
        let key = shift(r.nullable_bytes()?);
        let value = shift(r.nullable_bytes()?);
        let header_count = r.varint()?;
        let header_count = usize::try_from(header_count)
            .map_err(|_| BatchError::Invalid(format!("negative header count {header_count}")))?;
        // Each header takes at least two bytes, so a count above that bound is hostile; do not reserve for it.
        if header_count > r.remaining() / 2 {
            return Err(BatchError::Invalid(format!("header count {header_count} exceeds the record")));
        }
        headers.clear();
        for _ in 0..header_count {
            let Some((at, len)) = r.nullable_bytes()? else {
                return Err(BatchError::Invalid("null header key".into()));
            };
            if std::str::from_utf8(&record_bytes[at..at + len]).is_err() {
                return Err(BatchError::Invalid("header key is not UTF-8".into()));
            }
            let key_at = start + at;
            headers.push((key_at..key_at + len, shift(r.nullable_bytes()?)));
        }
        if r.remaining() != 0 {
            return Err(BatchError::Invalid(format!("{} stray bytes after a record", r.remaining())));
        }
        visit(RawRecord { timestamp_delta, offset_delta, key, value, headers: &headers })?;
    }
    if reader.remaining() != 0 {
        return Err(BatchError::Invalid(format!("{} bytes after the last record", reader.remaining())));
    }
    Ok(())
}

/// Writes the base offset into a batch. The CRC does not cover it, so the batch stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: u64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes the partition leader epoch into a batch; outside the CRC like the base offset.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Rewrites a sealed batch's producer id, epoch and base sequence and recomputes its CRC: an idempotent
/// producer that had to take a new epoch renumbers batches it had built but never got written.
pub fn set_producer_fields(batch: &mut [u8], producer_id: i64, producer_epoch: i16, base_sequence: i32) {
    batch[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&producer_id.to_be_bytes());
    batch[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2].copy_from_slice(&producer_epoch.to_be_bytes());
    batch[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_COVERED_FROM..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The sequence `count` records after `sequence`. Sequences run from 0 to `i32::MAX` and then start again at 0,
/// as in Kafka, so a long-lived producer never runs out of them.
pub fn advance_sequence(sequence: i32, count: u32) -> i32 {
    debug_assert!(sequence >= 0, "sequence {sequence} is negative");
    let modulus = i64::from(i32::MAX) + 1;
    ((i64::from(sequence) + i64::from(count)) % modulus) as i32
}

/// Splits back-to-back batches into `(header, byte range)` pairs without checking CRCs. Stops with an error at
/// the first batch whose header is invalid or which runs past the end of `buf`.
pub fn split_batches(buf: &[u8]) -> SplitBatches<'_> {
    SplitBatches { buf, pos: 0, failed: false }
}

pub struct SplitBatches<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl Iterator for SplitBatches<'_> {
    type Item = Result<(BatchHeader, std::ops::Range<usize>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let result = BatchHeader::parse(rest).and_then(|header| {
            if rest.len() < header.size() {
                Err(BatchError::Truncated { needed: header.size(), available: rest.len() })
            } else {
                Ok(header)
            }
        });
        match result {
            Ok(header) => {
                let range = self.pos..self.pos + header.size();
                self.pos = range.end;
                Some(Ok((header, range)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// A record header: a UTF-8 key and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

/// One decoded record. Key, value and header values borrow the batch's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// Decodes every record of the batches in `buf` (back to back, as a fetch returns them), checking each
/// batch's CRC first and decompressing a compressed batch's records section (up to
/// [`RECORDS_DECOMPRESSED_BYTES_MAX`]). A trailing partial batch, which a fetch may return when it stops at
/// its byte limit, is skipped; any other fault is an error. Keys and values of an uncompressed batch borrow
/// `buf`; those of a compressed batch share one buffer per batch.
pub fn decode_records(buf: &Bytes) -> Result<Vec<Record>, BatchError> {
    let mut out = Vec::new();
    for item in split_batches(buf) {
        let (header, range) = match item {
            Ok(batch) => batch,
            Err(BatchError::Truncated { .. }) => break,
            Err(e) => return Err(e),
        };
        check_crc(&buf[range.clone()])?;
        let body = records_section(buf, range, &header)?;
        decode_batch_records(&header, &body, &mut out)?;
    }
    Ok(out)
}

/// The records section of the batch at `range` in `buf`, decompressed if the batch is compressed.
fn records_section(buf: &Bytes, range: std::ops::Range<usize>, header: &BatchHeader) -> Result<Bytes, BatchError> {
    let section = buf.slice(range.start + BATCH_HEADER_BYTES..range.end);
    match header.compression()? {
        Compression::None => Ok(section),
        codec => Ok(Bytes::from(compression::decompress(codec, &section, RECORDS_DECOMPRESSED_BYTES_MAX)?)),
    }
}

/// Appends the records of one batch, whose records section is `body`, to `out`.
fn decode_batch_records(header: &BatchHeader, body: &Bytes, out: &mut Vec<Record>) -> Result<(), BatchError> {
    let slice = |field: Option<(usize, usize)>| field.map(|(at, len)| body.slice(at..at + len));
    let log_append = header.is_log_append_time();
    walk_records(body, header.record_count, |raw| {
        let headers = raw
            .headers
            .iter()
            .map(|(key, value)| Header {
                key: String::from_utf8_lossy(&body[key.clone()]).into_owned(),
                value: slice(*value),
            })
            .collect();
        let offset_delta = u64::try_from(raw.offset_delta)
            .map_err(|_| BatchError::Invalid(format!("negative offset delta {}", raw.offset_delta)))?;
        out.push(Record {
            offset: header.base_offset + offset_delta,
            timestamp_ms: if log_append {
                header.max_timestamp
            } else {
                header.base_timestamp.saturating_add(raw.timestamp_delta)
            },
            key: slice(raw.key),
            value: slice(raw.value),
            headers,
        });
        Ok(())
    })
}

/// Encodes records into one batch with base offset 0, ready to send in a produce request, uncompressed or
/// compressed with the codec [`BatchBuilder::with_compression`] chose.
///
/// ```
/// use rill_proto::batch::{BatchBuilder, decode_records, validate};
/// let mut builder = BatchBuilder::new();
/// builder.push(1_700_000_000_000, Some(b"k"), Some(b"hello"), &[]);
/// let batch = builder.finish();
/// validate(&batch).unwrap();
/// let records = decode_records(&batch).unwrap();
/// assert_eq!(records[0].value.as_deref(), Some(&b"hello"[..]));
/// ```
///
/// Compressed:
///
/// ```
/// use rill_proto::Compression;
/// use rill_proto::batch::{BatchBuilder, decode_records, validate};
/// let mut builder = BatchBuilder::new().with_compression(Compression::Zstd);
/// for _ in 0..100 {
///     builder.push(1_700_000_000_000, None, Some(b"the same value, over and over"), &[]);
/// }
/// let uncompressed_bytes = builder.size_bytes();
/// let batch = builder.finish();
/// assert!(batch.len() < uncompressed_bytes);
/// assert_eq!(validate(&batch).unwrap().compression().unwrap(), Compression::Zstd);
/// assert_eq!(decode_records(&batch).unwrap().len(), 100);
/// ```
#[derive(Debug)]
pub struct BatchBuilder {
    /// The header's room and the uncompressed records section; compressed only by `finish`.
    buf: Vec<u8>,
    compression: Compression,
    base_timestamp: i64,
    max_timestamp: i64,
    record_count: u32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    pub fn new() -> Self {
        Self::with_capacity(BATCH_HEADER_BYTES)
    }

    /// A builder whose buffer starts with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(BATCH_HEADER_BYTES));
        buf.resize(BATCH_HEADER_BYTES, 0);
        BatchBuilder {
            buf,
            compression: Compression::None,
            base_timestamp: 0,
            max_timestamp: i64::MIN,
            record_count: 0,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
        }
    }

    /// The codec `finish` compresses the records section with (none by default).
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Marks the batch as coming from an idempotent producer.
    pub fn set_producer(&mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
    }

    pub fn record_count(&self) -> usize {
        self.record_count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Bytes the batch takes if finished now, uncompressed. With a codec set this is an upper bound: `finish`
    /// keeps the compressed form only when it is smaller, so a batch never outgrows the limit it was filled to.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Upper bound on the bytes one more record of these sizes adds.
    pub fn record_size_bound(key_len: usize, value_len: usize, header_bytes: usize) -> usize {
        // length, attributes, timestamp delta, offset delta, two lengths, header count: at most 5+1+10+5+5+5+5.
        36 + key_len + value_len + header_bytes
    }

    /// Appends a record. Its timestamp is stored as a delta from the batch's first record.
    pub fn push(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) {
        if self.record_count == 0 {
            self.base_timestamp = timestamp_ms;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        let timestamp_delta = timestamp_ms.wrapping_sub(self.base_timestamp);
        let offset_delta = i64::from(self.record_count);
        let bytes_len = |b: Option<&[u8]>| match b {
            Some(b) => varlong_len(b.len() as i64) + b.len(),
            None => 1,
        };
        let mut body_len =
            1 + varlong_len(timestamp_delta) + varlong_len(offset_delta) + bytes_len(key) + bytes_len(value);
        body_len += varlong_len(headers.len() as i64);
        for (k, v) in headers {
            body_len += bytes_len(Some(k.as_bytes())) + bytes_len(*v);
        }
        put_varlong(&mut self.buf, body_len as i64);
        self.buf.push(0);
        put_varlong(&mut self.buf, timestamp_delta);
        put_varlong(&mut self.buf, offset_delta);
        self.put_bytes(key);
        self.put_bytes(value);
        put_varint(&mut self.buf, headers.len() as i32);
        for (k, v) in headers {
            self.put_bytes(Some(k.as_bytes()));
            self.put_bytes(*v);
        }
        self.record_count += 1;
    }

    /// Replaces the records section with its compressed form and returns the attributes that name the codec.
    /// Records that do not shrink stay uncompressed (attributes 0), which keeps `size_bytes` an upper bound;
    /// so do records past the bound a reader decompresses to, which keeps every finished batch valid.
    fn compress_records(&mut self) -> i16 {
        let records = &self.buf[BATCH_HEADER_BYTES..];
        if self.compression == Compression::None || records.len() > RECORDS_DECOMPRESSED_BYTES_MAX {
            return 0;
        }
        let compressed = compression::compress(self.compression, records);
        if compressed.len() >= records.len() {
            return 0;
        }
        self.buf.truncate(BATCH_HEADER_BYTES);
        self.buf.extend_from_slice(&compressed);
        self.compression.attribute_code()
    }

    fn put_bytes(&mut self, bytes: Option<&[u8]>) {
        match bytes {
            Some(b) => {
                put_varlong(&mut self.buf, b.len() as i64);
                self.buf.extend_from_slice(b);
            }
            None => put_varint(&mut self.buf, -1),
        }
    }

    /// Compresses the records section if a codec is set, writes the header and CRC (over the bytes as sent)
    /// and returns the batch.
    ///
    /// # Panics
    ///
    /// If no record was pushed: an empty batch is not valid.
    pub fn finish(mut self) -> Bytes {
        assert!(self.record_count > 0, "a batch needs at least one record");
        let attributes = self.compress_records();
        let batch_length = (self.buf.len() - LOG_OVERHEAD_BYTES) as u32;
        let b = &mut self.buf;
        b[0..8].copy_from_slice(&0u64.to_be_bytes());
        b[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
        b[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&(-1i32).to_be_bytes());
        b[MAGIC_AT] = MAGIC_V2 as u8;
        b[CRC_COVERED_FROM..CRC_COVERED_FROM + 2].copy_from_slice(&attributes.to_be_bytes());
        b[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&(self.record_count - 1).to_be_bytes());
        b[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&self.base_timestamp.to_be_bytes());
        b[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&self.max_timestamp.to_be_bytes());
        b[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&self.producer_id.to_be_bytes());
        b[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2].copy_from_slice(&self.producer_epoch.to_be_bytes());
        b[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&self.base_sequence.to_be_bytes());
        b[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&self.record_count.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_COVERED_FROM..]);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(self.buf)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod compressed_tests;
