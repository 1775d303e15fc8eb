//! The partition checkpoint file (`recovery.checkpoint`: log start offset and recovery point, versioned and
//! CRC-protected, replaced atomically) and the clean-shutdown marker.

use std::io;
use std::path::Path;

use crate::backend::Backend;
use crate::error::StorageError;

pub(crate) const CHECKPOINT_FILE: &str = "recovery.checkpoint";
pub(crate) const CHECKPOINT_TMP_FILE: &str = "recovery.checkpoint.tmp";
/// Present only between a clean `close` and the next `open`: says the files need no scan.
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

const MAGIC: &[u8; 8] = b"RILLCKPT";
const VERSION: u16 = 1;
/// Total size of a version 1 checkpoint, CRC included.
pub(crate) const CHECKPOINT_BYTES: usize = 56;
const CRC_AT: usize = CHECKPOINT_BYTES - 4;

/// What a checkpoint claims: everything below `recovery_point` is durable, and the batch at the recovery point
/// would start at `segment_position` of the segment `segment_base`, whose first index entries are durable too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub log_start_offset: u64,
    pub recovery_point: u64,
    pub segment_base: u64,
    pub segment_position: u64,
    pub offset_index_entries: u32,
    pub time_index_entries: u32,
}

/// How reading the checkpoint went, for the recovery report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointStatus {
    Valid,
    Missing,
    /// Unreadable (bad magic, version or CRC); the reason says which.
    Corrupt(String),
    /// Readable but not matching the segment files (for example pointing past a file's end).
    Inconsistent(String),
}

impl Checkpoint {
    pub fn encode(&self) -> [u8; CHECKPOINT_BYTES] {
        let mut out = [0u8; CHECKPOINT_BYTES];
        out[0..8].copy_from_slice(MAGIC);
        out[8..10].copy_from_slice(&VERSION.to_be_bytes());
        // 10..12 reserved, zero.
        out[12..16].copy_from_slice(&self.offset_index_entries.to_be_bytes());
        out[16..24].copy_from_slice(&self.log_start_offset.to_be_bytes());
        out[24..32].copy_from_slice(&self.recovery_point.to_be_bytes());
        out[32..40].copy_from_slice(&self.segment_base.to_be_bytes());
        out[40..48].copy_from_slice(&self.segment_position.to_be_bytes());
        out[48..52].copy_from_slice(&self.time_index_entries.to_be_bytes());
        let crc = crc32c::crc32c(&out[..CRC_AT]);
        out[CRC_AT..].copy_from_slice(&crc.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
        if bytes.len() != CHECKPOINT_BYTES {
            return Err(format!("{} bytes, expected {CHECKPOINT_BYTES}", bytes.len()));
        }
        if &bytes[0..8] != MAGIC {
            return Err("bad magic".into());
        }
        let u32_at = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let stored = u32_at(CRC_AT);
        let computed = crc32c::crc32c(&bytes[..CRC_AT]);
        if stored != computed {
            return Err(format!("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"));
        }
        let version = u16::from_be_bytes([bytes[8], bytes[9]]);
        if version != VERSION {
            return Err(format!("version {version}, this build reads {VERSION}"));
        }
        let checkpoint = Checkpoint {
            offset_index_entries: u32_at(12),
            log_start_offset: u64_at(16),
            recovery_point: u64_at(24),
            segment_base: u64_at(32),
            segment_position: u64_at(40),
            time_index_entries: u32_at(48),
        };
        if checkpoint.segment_base > checkpoint.recovery_point
            || checkpoint.log_start_offset > checkpoint.recovery_point
        {
            return Err("recovery point below its segment or the log start".into());
        }
        Ok(checkpoint)
    }
}

/// Reads the checkpoint of `dir`.
pub(crate) fn read_checkpoint(
    backend: &dyn Backend,
    dir: &Path,
) -> Result<(Option<Checkpoint>, CheckpointStatus), StorageError> {
    let path = dir.join(CHECKPOINT_FILE);
    let file = match backend.open(&path, false) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((None, CheckpointStatus::Missing)),
        Err(e) => return Err(StorageError::io("open checkpoint", path, e)),
    };
    let len = file.len().map_err(|e| StorageError::io("stat checkpoint", &path, e))?;
    if len > CHECKPOINT_BYTES as u64 * 16 {
        return Ok((None, CheckpointStatus::Corrupt(format!("{len} bytes long"))));
    }
    let bytes = file.read(0, len as usize).map_err(|e| StorageError::io("read checkpoint", &path, e))?;
    Ok(match Checkpoint::decode(&bytes) {
        Ok(checkpoint) => (Some(checkpoint), CheckpointStatus::Valid),
        Err(reason) => (None, CheckpointStatus::Corrupt(reason)),
    })
}

/// Replaces the checkpoint atomically.
pub(crate) fn write_checkpoint(backend: &dyn Backend, dir: &Path, checkpoint: &Checkpoint) -> Result<(), StorageError> {
    replace_file(backend, dir, CHECKPOINT_FILE, CHECKPOINT_TMP_FILE, &checkpoint.encode())
}

/// Replaces `dir/name` with `bytes` atomically: write `dir/tmp_name`, fsync it, rename it over, fsync the
/// directory. A crash leaves either the old or the new file whole (and perhaps a stray temporary file).
pub(crate) fn replace_file(
    backend: &dyn Backend,
    dir: &Path,
    name: &str,
    tmp_name: &str,
    bytes: &[u8],
) -> Result<(), StorageError> {
    let tmp = dir.join(tmp_name);
    let path = dir.join(name);
    let file = backend.open(&tmp, true).map_err(|e| StorageError::io("create", &tmp, e))?;
    file.set_len(0).map_err(|e| StorageError::io("reset", &tmp, e))?;
    file.write_at(0, &[bytes]).map_err(|e| StorageError::io("write", &tmp, e))?;
    file.sync().map_err(|e| StorageError::io("fsync", &tmp, e))?;
    backend.rename(&tmp, &path).map_err(|e| StorageError::io("rename over", &path, e))?;
    backend.sync_dir(dir).map_err(|e| StorageError::io("fsync directory", dir, e))
}

/// Writes the clean-shutdown marker durably.
pub(crate) fn write_clean_marker(backend: &dyn Backend, dir: &Path) -> Result<(), StorageError> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    let file = backend.open(&path, true).map_err(|e| StorageError::io("create", &path, e))?;
    file.sync().map_err(|e| StorageError::io("fsync", &path, e))?;
    backend.sync_dir(dir).map_err(|e| StorageError::io("fsync directory", dir, e))
}

/// Removes the clean-shutdown marker durably, so a later crash is not mistaken for a clean stop.
pub(crate) fn remove_clean_marker(backend: &dyn Backend, dir: &Path) -> Result<(), StorageError> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    match backend.remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::io("remove", path, e)),
    }
    backend.sync_dir(dir).map_err(|e| StorageError::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            log_start_offset: 10,
            recovery_point: 250,
            segment_base: 200,
            segment_position: 4_321,
            offset_index_entries: 3,
            time_index_entries: 2,
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!(Checkpoint::decode(&sample().encode()), Ok(sample()));
    }

    #[test]
    fn any_flipped_byte_is_rejected() {
        let good = sample().encode();
        for at in 0..CHECKPOINT_BYTES {
            let mut bad = good;
            bad[at] ^= 0x40;
            assert!(Checkpoint::decode(&bad).is_err(), "flip at byte {at} went unnoticed");
        }
        assert!(Checkpoint::decode(&good[..CHECKPOINT_BYTES - 1]).is_err());
    }
}
