//! The compression codecs of a record batch's records section (attribute bits 0-2), in the exact on-the-wire
//! forms Kafka's clients and librdkafka use: gzip is a gzip stream, lz4 is the LZ4 frame format, zstd is a
//! zstd frame, and snappy is either snappy-java's "xerial" framing (what Kafka's Java clients write, and what
//! Rill writes so Java consumers read it) or one raw snappy block (what librdkafka writes). See docs/FORMAT.md.
//!
//! Decompression treats its input as hostile: the output is capped at [`RECORDS_DECOMPRESSED_BYTES_MAX`] so a
//! small batch cannot make its reader allocate without bound, and a corrupt payload is an error, never a panic.

use std::io::{Read, Write};

use crate::batch::{ATTR_COMPRESSION_MASK, BatchError};

/// The largest records section a compressed batch may decompress to. The broker's batch limit defaults to
/// 8 MiB of compressed bytes, and producers that size batches after compression (Kafka's do) can carry
/// several times that uncompressed; 64 MiB leaves room for an 8:1 ratio at that default while bounding the
/// memory one validation, or one decoded batch of a fetch, can take. A zip bomb stops here.
pub const RECORDS_DECOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Kafka's default gzip level (`java.util.zip.Deflater.DEFAULT_COMPRESSION`).
const GZIP_LEVEL: u32 = 6;
/// Kafka's and librdkafka's default zstd level.
const ZSTD_LEVEL: i32 = 3;
/// A zstd window never needs to be larger than the largest output it may produce; refusing larger windows
/// keeps a hostile frame header from making the decoder allocate more than the output bound.
const ZSTD_WINDOW_LOG_MAX: u32 = RECORDS_DECOMPRESSED_BYTES_MAX.trailing_zeros();
const _: () = assert!(1 << ZSTD_WINDOW_LOG_MAX == RECORDS_DECOMPRESSED_BYTES_MAX);

/// snappy-java's stream header: the magic `\x82SNAPPY\x00`, then a big-endian version and the oldest
/// compatible version, both 1.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;
const XERIAL_VERSION: u32 = 1;
/// Uncompressed bytes per xerial block, snappy-java's default block size (which Kafka's Java producer uses).
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

/// The first output buffer a decompression starts with, grown by doubling up to the bound.
const DECOMPRESS_INITIAL_BYTES: usize = 4 * 1024;

/// The codec of a batch's records section, with Kafka's attribute codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// Every codec, in attribute-code order.
    pub const ALL: [Compression; 5] =
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    /// The codec named by a batch's attributes.
    ///
    /// # Errors
    ///
    /// [`BatchError::Invalid`] for the codes 5-7, which no Kafka version defines.
    pub fn from_attributes(attributes: i16) -> Result<Compression, BatchError> {
        match attributes & ATTR_COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            code => Err(BatchError::Invalid(format!("unknown compression codec {code}"))),
        }
    }

    /// The code this codec sets in attribute bits 0-2.
    pub fn attribute_code(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The lower-case name Kafka's `compression.type` uses.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    /// Parses a name as [`Compression::name`] gives it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown compression '{s}' (expected none, gzip, snappy, lz4 or zstd)"))
    }
}

/// Compresses a records section. `None` returns the input unchanged.
pub(crate) fn compress(codec: Compression, input: &[u8]) -> Vec<u8> {
    match codec {
        Compression::None => input.to_vec(),
        Compression::Gzip => compress_gzip(input),
        Compression::Snappy => compress_xerial_snappy(input),
        Compression::Lz4 => compress_lz4(input),
        Compression::Zstd => zstd::bulk::compress(input, ZSTD_LEVEL).expect("zstd compresses into a Vec"),
    }
}

fn compress_gzip(input: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
    encoder.write_all(input).expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// Independent 64 KiB blocks, no checksums beyond the header's: the frame Kafka's Java producer writes, and
/// the only block mode its consumer reads (it decompresses each block on its own).
fn compress_lz4(input: &[u8]) -> Vec<u8> {
    let info = lz4_flex::frame::FrameInfo::new()
        .block_mode(lz4_flex::frame::BlockMode::Independent)
        .block_size(lz4_flex::frame::BlockSize::Max64KB);
    let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
    encoder.write_all(input).expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

fn compress_xerial_snappy(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(XERIAL_HEADER_BYTES + snap::raw::max_compress_len(input.len()));
    out.extend_from_slice(XERIAL_MAGIC);
    out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
    out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for block in input.chunks(XERIAL_BLOCK_BYTES) {
        let compressed = encoder.compress_vec(block).expect("a 32 KiB block is within snappy's limits");
        out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    out
}

/// Decompresses a records section, refusing output above `limit_bytes`.
///
/// # Errors
///
/// [`BatchError::DecompressedTooLarge`] past the limit, [`BatchError::Invalid`] for a corrupt payload.
pub(crate) fn decompress(codec: Compression, input: &[u8], limit_bytes: usize) -> Result<Vec<u8>, BatchError> {
    match codec {
        Compression::None => {
            if input.len() > limit_bytes {
                return Err(BatchError::DecompressedTooLarge { limit_bytes });
            }
            Ok(input.to_vec())
        }
        Compression::Gzip => read_bounded(codec, flate2::read::MultiGzDecoder::new(input), input.len(), limit_bytes),
        Compression::Snappy => decompress_snappy(input, limit_bytes),
        Compression::Lz4 => decompress_lz4(input, limit_bytes),
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(input).map_err(|e| corrupt(codec, &e))?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(|e| corrupt(codec, &e))?;
            read_bounded(codec, decoder, input.len(), limit_bytes)
        }
    }
}

fn corrupt(codec: Compression, error: &dyn std::fmt::Display) -> BatchError {
    BatchError::Invalid(format!("corrupt {codec} records section: {error}"))
}

/// Reads a decoder to its end into a buffer that grows by doubling but never past `limit_bytes + 1`, so
/// neither the output nor the buffer's spare capacity can exceed the bound.
fn read_bounded(
    codec: Compression,
    mut reader: impl Read,
    input_bytes: usize,
    limit_bytes: usize,
) -> Result<Vec<u8>, BatchError> {
    let cap_bytes = limit_bytes.saturating_add(1);
    let mut out = vec![0; input_bytes.saturating_mul(2).max(DECOMPRESS_INITIAL_BYTES).min(cap_bytes)];
    let mut filled = 0;
    loop {
        if filled == out.len() {
            if filled >= cap_bytes {
                return Err(BatchError::DecompressedTooLarge { limit_bytes });
            }
            out.resize(filled.saturating_mul(2).min(cap_bytes), 0);
        }
        match reader.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(corrupt(codec, &e)),
        }
    }
    if filled > limit_bytes {
        return Err(BatchError::DecompressedTooLarge { limit_bytes });
    }
    out.truncate(filled);
    Ok(out)
}

/// The LZ4 frame magic number (little-endian on the wire).
const LZ4_FRAME_MAGIC: u32 = 0x184D_2204;

/// One or more whole LZ4 frames, each decoded on its own. lz4_flex's decoder takes input that stops between
/// two blocks for the end of the stream, and stops at the end of the first frame, so the frames are first
/// delimited here by walking their framing (header flags, block lengths): a frame cut off before its end mark,
/// which Kafka's and librdkafka's readers refuse, is refused, and bytes after a frame are not ignored.
fn decompress_lz4(mut input: &[u8], limit_bytes: usize) -> Result<Vec<u8>, BatchError> {
    let codec = Compression::Lz4;
    let mut out = Vec::new();
    while !input.is_empty() {
        let Some(frame_bytes) = lz4_frame_bytes(input) else {
            return Err(corrupt(codec, &"not a whole LZ4 frame"));
        };
        let (frame, rest) = input.split_at(frame_bytes);
        let decoder = lz4_flex::frame::FrameDecoder::new(frame);
        let decoded = read_bounded(codec, decoder, frame.len(), limit_bytes - out.len()).map_err(|e| match e {
            // Report the bound of the whole section, not what was left of it for this frame.
            BatchError::DecompressedTooLarge { .. } => BatchError::DecompressedTooLarge { limit_bytes },
            other => other,
        })?;
        out.extend_from_slice(&decoded);
        input = rest;
    }
    Ok(out)
}

/// The length of the LZ4 frame at the start of `input`, or `None` if it is not one or is cut off.
fn lz4_frame_bytes(input: &[u8]) -> Option<usize> {
    let word_at = |at: usize| input.get(at..at.checked_add(4)?).map(|w| u32::from_le_bytes(w.try_into().unwrap()));
    if word_at(0)? != LZ4_FRAME_MAGIC {
        return None;
    }
    let flags = *input.get(4)?;
    let field_bytes = |bit: u8, bytes: usize| if flags & bit != 0 { bytes } else { 0 };
    // Magic, FLG, BD, the optional content size and dictionary id, then the header checksum.
    let mut at = 6 + field_bytes(0x08, 8) + field_bytes(0x01, 4) + 1;
    loop {
        let block = word_at(at)?;
        at += 4;
        if block == 0 {
            break;
        }
        // The high bit marks an uncompressed block; the rest is the block's length.
        at = at.checked_add((block & 0x7fff_ffff) as usize + field_bytes(0x10, 4))?;
    }
    at += field_bytes(0x04, 4);
    (at <= input.len()).then_some(at)
}

/// Snappy in either framing: snappy-java's xerial stream when the input starts with its magic (the test
/// librdkafka uses), one raw snappy block otherwise.
fn decompress_snappy(input: &[u8], limit_bytes: usize) -> Result<Vec<u8>, BatchError> {
    match input.strip_prefix(XERIAL_MAGIC.as_slice()) {
        Some(rest) if rest.len() >= XERIAL_HEADER_BYTES - XERIAL_MAGIC.len() => {
            decompress_xerial_blocks(&rest[XERIAL_HEADER_BYTES - XERIAL_MAGIC.len()..], limit_bytes)
        }
        _ => {
            let mut out = Vec::new();
            decompress_snappy_block(input, &mut out, limit_bytes)?;
            Ok(out)
        }
    }
}

/// The xerial blocks after the header: each a big-endian u32 length and that many bytes of raw snappy. The
/// version fields are not checked, as neither Kafka's consumer nor librdkafka checks them.
fn decompress_xerial_blocks(mut blocks: &[u8], limit_bytes: usize) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    while !blocks.is_empty() {
        let Some((length, rest)) = blocks.split_first_chunk::<4>() else {
            return Err(corrupt(Compression::Snappy, &"xerial block length cut off"));
        };
        let length = u32::from_be_bytes(*length) as usize;
        if length > rest.len() {
            return Err(corrupt(Compression::Snappy, &format!("xerial block of {length} bytes runs past the end")));
        }
        decompress_snappy_block(&rest[..length], &mut out, limit_bytes)?;
        blocks = &rest[length..];
    }
    Ok(out)
}

/// Appends one raw snappy block's output to `out`, checking the length its preamble claims against the
/// bound before allocating for it.
fn decompress_snappy_block(block: &[u8], out: &mut Vec<u8>, limit_bytes: usize) -> Result<(), BatchError> {
    let codec = Compression::Snappy;
    let length = snap::raw::decompress_len(block).map_err(|e| corrupt(codec, &e))?;
    if length > limit_bytes.saturating_sub(out.len()) {
        return Err(BatchError::DecompressedTooLarge { limit_bytes });
    }
    let start = out.len();
    out.resize(start + length, 0);
    let written = snap::raw::Decoder::new().decompress(block, &mut out[start..]).map_err(|e| corrupt(codec, &e))?;
    out.truncate(start + written);
    Ok(())
}

#[cfg(test)]
mod tests;
