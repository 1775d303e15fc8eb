//! The replication checkpoints of a partition directory: the leader-epoch history (`leader-epoch.checkpoint`,
//! rewritten whenever it changes) and the high watermark (`high-watermark.checkpoint`, rewritten periodically).
//! Both are small, versioned, CRC-32C protected and replaced atomically; the replication layer decides what
//! they hold, storage only keeps them safe. Layouts in docs/FORMAT.md ("Replication checkpoints").

use std::io;
use std::path::Path;

use crate::checkpoint::replace_file;
use crate::error::StorageError;
use crate::log::Log;

pub(crate) const LEADER_EPOCH_FILE: &str = "leader-epoch.checkpoint";
const LEADER_EPOCH_TMP_FILE: &str = "leader-epoch.checkpoint.tmp";
pub(crate) const HIGH_WATERMARK_FILE: &str = "high-watermark.checkpoint";
const HIGH_WATERMARK_TMP_FILE: &str = "high-watermark.checkpoint.tmp";

const EPOCH_MAGIC: &[u8; 8] = b"RILLEPCH";
const HW_MAGIC: &[u8; 8] = b"RILLHWMK";
const VERSION: u16 = 1;
/// Magic, version, reserved: the common start of both files.
const PREAMBLE_BYTES: usize = 12;
const EPOCH_ENTRY_BYTES: usize = 12;
/// A history longer than this is treated as corruption: a partition changes leaders far less often.
pub const LEADER_EPOCH_ENTRIES_MAX: usize = 1 << 20;

/// One entry of the leader-epoch history: leader epoch `epoch` wrote its first record at `start_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: u32,
    pub start_offset: u64,
}

fn preamble(magic: &[u8; 8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(magic);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Checks magic, version and CRC; returns the body between the preamble and the CRC.
fn open_body<'a>(bytes: &'a [u8], magic: &[u8; 8]) -> Result<&'a [u8], String> {
    if bytes.len() < PREAMBLE_BYTES + 4 {
        return Err(format!("{} bytes, too short", bytes.len()));
    }
    if &bytes[..8] != magic {
        return Err("bad magic".into());
    }
    let (covered, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(covered);
    if stored != computed {
        return Err(format!("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"));
    }
    let version = u16::from_be_bytes([bytes[8], bytes[9]]);
    if version != VERSION {
        return Err(format!("version {version}, this build reads {VERSION}"));
    }
    Ok(&covered[PREAMBLE_BYTES..])
}

pub(crate) fn encode_epochs(entries: &[EpochEntry]) -> Vec<u8> {
    let mut out = preamble(EPOCH_MAGIC);
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        out.extend_from_slice(&e.epoch.to_be_bytes());
        out.extend_from_slice(&e.start_offset.to_be_bytes());
    }
    seal(out)
}

pub(crate) fn decode_epochs(bytes: &[u8]) -> Result<Vec<EpochEntry>, String> {
    let body = open_body(bytes, EPOCH_MAGIC)?;
    if body.len() < 4 {
        return Err("missing entry count".into());
    }
    let count = u32::from_be_bytes(body[..4].try_into().expect("4 bytes")) as usize;
    if count > LEADER_EPOCH_ENTRIES_MAX || body.len() != 4 + count * EPOCH_ENTRY_BYTES {
        return Err(format!("{count} entries do not fit {} bytes", body.len()));
    }
    let entries: Vec<EpochEntry> = body[4..]
        .chunks_exact(EPOCH_ENTRY_BYTES)
        .map(|c| EpochEntry {
            epoch: u32::from_be_bytes(c[..4].try_into().expect("4 bytes")),
            start_offset: u64::from_be_bytes(c[4..].try_into().expect("8 bytes")),
        })
        .collect();
    if entries.windows(2).any(|w| w[1].epoch <= w[0].epoch || w[1].start_offset < w[0].start_offset) {
        return Err("entries are not in increasing epoch and offset order".into());
    }
    Ok(entries)
}

pub(crate) fn encode_high_watermark(high_watermark: u64) -> Vec<u8> {
    let mut out = preamble(HW_MAGIC);
    out.extend_from_slice(&high_watermark.to_be_bytes());
    seal(out)
}

pub(crate) fn decode_high_watermark(bytes: &[u8]) -> Result<u64, String> {
    let body = open_body(bytes, HW_MAGIC)?;
    let body: [u8; 8] = body.try_into().map_err(|_| format!("{} body bytes, expected 8", body.len()))?;
    Ok(u64::from_be_bytes(body))
}

impl Log {
    fn read_small_file(&self, name: &str) -> Result<Option<bytes::Bytes>, StorageError> {
        let path = self.dir.join(name);
        let file = match self.backend.open(&path, false) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io("open", path, e)),
        };
        let len = file.len().map_err(|e| StorageError::io("stat", &path, e))?;
        let limit = (PREAMBLE_BYTES + 8 + LEADER_EPOCH_ENTRIES_MAX * EPOCH_ENTRY_BYTES) as u64;
        if len > limit {
            return Err(corrupt(&path, format!("{len} bytes long")));
        }
        file.read(0, len as usize).map(Some).map_err(|e| StorageError::io("read", &path, e))
    }

    /// Persists the leader-epoch history durably (atomic replace).
    ///
    /// # Errors
    ///
    /// `Io` when the file cannot be written; the previous history then stays in place.
    pub fn write_leader_epochs(&self, entries: &[EpochEntry]) -> Result<(), StorageError> {
        assert!(
            entries.windows(2).all(|w| w[1].epoch > w[0].epoch && w[1].start_offset >= w[0].start_offset),
            "a leader-epoch history grows in epoch and offset"
        );
        let bytes = encode_epochs(entries);
        replace_file(&*self.backend, &self.dir, LEADER_EPOCH_FILE, LEADER_EPOCH_TMP_FILE, &bytes)
    }

    /// The persisted leader-epoch history; `None` when none was ever written.
    ///
    /// # Errors
    ///
    /// `Corrupt` when the file fails its checks (rebuild with [`Log::leader_epochs_from_batches`]); `Io`.
    pub fn read_leader_epochs(&self) -> Result<Option<Vec<EpochEntry>>, StorageError> {
        let Some(bytes) = self.read_small_file(LEADER_EPOCH_FILE)? else { return Ok(None) };
        decode_epochs(&bytes).map(Some).map_err(|reason| corrupt(&self.dir.join(LEADER_EPOCH_FILE), reason))
    }

    /// Persists the high watermark durably (atomic replace).
    ///
    /// # Errors
    ///
    /// `Io` when the file cannot be written.
    pub fn write_high_watermark(&self, high_watermark: u64) -> Result<(), StorageError> {
        let bytes = encode_high_watermark(high_watermark);
        replace_file(&*self.backend, &self.dir, HIGH_WATERMARK_FILE, HIGH_WATERMARK_TMP_FILE, &bytes)
    }

    /// The persisted high watermark; `None` when none was ever written.
    ///
    /// # Errors
    ///
    /// `Corrupt` when the file fails its checks; `Io`.
    pub fn read_high_watermark(&self) -> Result<Option<u64>, StorageError> {
        let Some(bytes) = self.read_small_file(HIGH_WATERMARK_FILE)? else { return Ok(None) };
        decode_high_watermark(&bytes).map(Some).map_err(|reason| corrupt(&self.dir.join(HIGH_WATERMARK_FILE), reason))
    }

    /// Rebuilds the leader-epoch history from the partition leader epoch stamped in every stored batch: the
    /// first batch of each new epoch starts an entry. Reads the whole log, so it is for the rare case of a
    /// missing or corrupt checkpoint. Batches without an epoch (negative) are skipped.
    ///
    /// # Errors
    ///
    /// As [`Log::read`]: `Corrupt` for a batch failing its CRC, `Io`.
    pub fn leader_epochs_from_batches(&self) -> Result<Vec<EpochEntry>, StorageError> {
        let mut entries: Vec<EpochEntry> = Vec::new();
        let mut offset = self.log_start_offset();
        let end = self.end_offset();
        while offset < end {
            let read = self.read(offset, 8 << 20, end)?;
            for item in rill_proto::batch::split_batches(&read.records) {
                let (header, _) = item.map_err(|e| corrupt(&self.dir, e.to_string()))?;
                let Ok(epoch) = u32::try_from(header.partition_leader_epoch) else { continue };
                if entries.last().is_none_or(|last| epoch > last.epoch) {
                    entries.push(EpochEntry { epoch, start_offset: header.base_offset });
                }
            }
            assert!(read.next_offset > offset, "a read below the log end makes progress");
            offset = read.next_offset;
        }
        Ok(entries)
    }
}

fn corrupt(path: &Path, reason: String) -> StorageError {
    StorageError::Corrupt { segment: path.to_path_buf(), offset: 0, reason }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rill_proto::batch::BatchBuilder;

    use super::*;
    use crate::{FaultyBackend, LogConfig};

    fn entries() -> Vec<EpochEntry> {
        vec![EpochEntry { epoch: 0, start_offset: 0 }, EpochEntry { epoch: 3, start_offset: 40 }]
    }

    #[test]
    fn both_files_round_trip_and_reject_any_flipped_byte() {
        let epochs = encode_epochs(&entries());
        assert_eq!(decode_epochs(&epochs), Ok(entries()));
        let hw = encode_high_watermark(77);
        assert_eq!(decode_high_watermark(&hw), Ok(77));
        for at in 0..epochs.len() {
            let mut bad = epochs.clone();
            bad[at] ^= 0x08;
            assert!(decode_epochs(&bad).is_err(), "flip at {at}");
        }
        for at in 0..hw.len() {
            let mut bad = hw.clone();
            bad[at] ^= 0x08;
            assert!(decode_high_watermark(&bad).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn checkpoints_survive_reopen_and_missing_ones_read_as_none() {
        let backend = Arc::new(FaultyBackend::new());
        let dir = Path::new("/p/t-0");
        let (log, _) = Log::open(backend.clone(), dir, LogConfig::default(), 0).unwrap();
        assert_eq!(log.read_leader_epochs().unwrap(), None);
        assert_eq!(log.read_high_watermark().unwrap(), None);
        log.write_leader_epochs(&entries()).unwrap();
        log.write_high_watermark(12).unwrap();
        log.close().unwrap();
        let (log, _) = Log::open(backend, dir, LogConfig::default(), 0).unwrap();
        assert_eq!(log.read_leader_epochs().unwrap(), Some(entries()));
        assert_eq!(log.read_high_watermark().unwrap(), Some(12));
    }

    #[test]
    fn a_crash_leaves_the_old_or_the_new_checkpoint_never_a_broken_one() {
        let backend = Arc::new(FaultyBackend::strict_directories());
        let dir = Path::new("/p/t-0");
        let (log, _) = Log::open(backend.clone(), dir, LogConfig::default(), 0).unwrap();
        log.write_high_watermark(5).unwrap();
        drop(log);
        for seed in 0..20 {
            let (log, _) = Log::open(backend.clone(), dir, LogConfig::default(), 0).unwrap();
            backend.fail_writes_after(1 + seed % 3, io::ErrorKind::StorageFull);
            let _ = log.write_high_watermark(100 + seed);
            drop(log);
            backend.heal();
            backend.crash(seed);
            let (log, _) = Log::open(backend.clone(), dir, LogConfig::default(), 0).unwrap();
            let hw = log.read_high_watermark().unwrap().expect("some checkpoint survives");
            assert!(hw == 5 || hw >= 100, "seed {seed}: {hw}");
            log.write_high_watermark(5).unwrap();
        }
    }

    #[test]
    fn the_history_is_rebuilt_from_stamped_batches() {
        let (mut log, _) =
            Log::open(Arc::new(FaultyBackend::new()), Path::new("/p/t-0"), LogConfig::default(), 0).unwrap();
        for (epoch, records) in [(1, 2), (1, 1), (4, 3), (7, 1)] {
            let mut b = BatchBuilder::new();
            for _ in 0..records {
                b.push(0, None, Some(b"v"), &[]);
            }
            log.append(&b.finish(), epoch, 0).unwrap();
        }
        let rebuilt = log.leader_epochs_from_batches().unwrap();
        let expected = [(1, 0), (4, 3), (7, 6)].map(|(epoch, start_offset)| EpochEntry { epoch, start_offset });
        assert_eq!(rebuilt, expected);
    }
}
