//! Byte-level helpers shared by the raft log segments, the durable-state file and the snapshot file: CRC-32C
//! frames and atomic whole-file replacement.
//!
//! A frame is `[length: u32 BE][crc32c of payload: u32 BE][payload]`, the framing of `metadata/log.rs`, so
//! every metadata file on disk is checked the same way (docs/FORMAT.md ("Controller quorum")).

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Bytes before a frame's payload: length and CRC.
pub const FRAME_HEADER_BYTES: usize = 8;

/// Appends one frame holding `payload` to `out`.
pub fn encode_frame(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("frame payloads are bounded far below 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Why a frame could not be read at some position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the header or the declared payload: the write was cut short.
    Torn,
    /// The declared length exceeds the limit: the header itself is garbage.
    TooLong,
    /// The payload does not match its CRC.
    Corrupt,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrameError::Torn => "torn frame",
            FrameError::TooLong => "frame length beyond the limit",
            FrameError::Corrupt => "frame CRC mismatch",
        })
    }
}

/// Reads the frame starting at `pos`. Returns its payload and the position after it, `Ok(None)` at the exact
/// end of `bytes`.
pub fn decode_frame(bytes: &[u8], pos: usize, payload_bytes_max: u32) -> Result<Option<(&[u8], usize)>, FrameError> {
    let rest = &bytes[pos..];
    if rest.is_empty() {
        return Ok(None);
    }
    if rest.len() < FRAME_HEADER_BYTES {
        return Err(FrameError::Torn);
    }
    let len = u32::from_be_bytes(rest[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes"));
    if len > payload_bytes_max {
        return Err(FrameError::TooLong);
    }
    let end = FRAME_HEADER_BYTES + len as usize;
    if rest.len() < end {
        return Err(FrameError::Torn);
    }
    let payload = &rest[FRAME_HEADER_BYTES..end];
    if crc32c::crc32c(payload) != crc {
        return Err(FrameError::Corrupt);
    }
    Ok(Some((payload, pos + end)))
}

/// Replaces `dir/name` with `contents` so that a crash leaves either the old or the new file, never a mix:
/// write `name.tmp`, fsync it, rename over `name`, fsync the directory (which makes the rename durable).
pub fn write_atomically(dir: &Path, name: &str, contents: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Reads a file written by `write_atomically` holding frames only. `Ok(None)` if it does not exist. Any torn
/// or corrupt frame is an error: atomic replacement never leaves one, so it means the disk lost data.
pub fn read_framed_file(path: &Path, payload_bytes_max: u32) -> std::io::Result<Option<Vec<Vec<u8>>>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut frames = Vec::new();
    let mut pos = 0;
    loop {
        match decode_frame(&bytes, pos, payload_bytes_max) {
            Ok(Some((payload, next))) => {
                frames.push(payload.to_vec());
                pos = next;
            }
            Ok(None) => return Ok(Some(frames)),
            Err(e) => return Err(invalid_data(format!("{}: {e} at byte {pos}", path.display()))),
        }
    }
}

/// Makes creations, deletions and renames of entries in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

pub fn invalid_data(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}
