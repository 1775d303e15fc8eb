//! The durable metadata log. Today one local file; the replication issue puts openraft's log underneath the
//! same `MetadataLog` trait, so the controller and the state machine do not change.
//!
//! File format (docs/FORMAT.md, "Metadata log"): frames of `[length: u32 BE][crc32c of payload: u32 BE]
//! [payload: JSON of one MetadataRecord]`. The first frame that is torn or fails its CRC ends the log, and the
//! file is cut there on open, since a crash can only tear the last write.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::records::MetadataRecord;
use crate::limits::METADATA_RECORD_BYTES_MAX;

const FRAME_HEADER_BYTES: usize = 8;

/// An ordered, durable log of metadata records, offsets starting at 0.
pub trait MetadataLog: Send {
    /// Appends `records` durably (returns after they survive a crash) and returns the offset of the first.
    fn append(&mut self, records: &[MetadataRecord]) -> std::io::Result<u64>;
    /// Offset the next appended record gets.
    fn next_offset(&self) -> u64;
}

pub struct FileMetadataLog {
    path: PathBuf,
    file: File,
    next_offset: u64,
}

impl FileMetadataLog {
    /// Opens (creating if needed) the log in `dir` and returns it with every record it holds.
    pub fn open(dir: &Path) -> std::io::Result<(FileMetadataLog, Vec<MetadataRecord>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("metadata.log");
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, valid_len) = decode_frames(&bytes);
        if valid_len < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                valid_len,
                dropped_bytes = bytes.len() - valid_len,
                "metadata log has a torn or corrupt tail; truncating it"
            );
            file.set_len(valid_len as u64)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        sync_dir(dir)?;
        let log = FileMetadataLog { path, file, next_offset: records.len() as u64 };
        Ok((log, records))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Decodes frames until the first torn or corrupt one; returns the records and the length of the valid prefix.
fn decode_frames(bytes: &[u8]) -> (Vec<MetadataRecord>, usize) {
    let mut records = Vec::new();
    let mut pos = 0;
    while bytes.len() - pos >= FRAME_HEADER_BYTES {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes"));
        let crc = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into().expect("4 bytes"));
        if len > METADATA_RECORD_BYTES_MAX || bytes.len() - pos - FRAME_HEADER_BYTES < len as usize {
            break;
        }
        let payload = &bytes[pos + FRAME_HEADER_BYTES..pos + FRAME_HEADER_BYTES + len as usize];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        match serde_json::from_slice(payload) {
            Ok(record) => records.push(record),
            Err(e) => {
                tracing::error!(offset = records.len(), error = %e, "metadata record with a valid CRC does not decode");
                break;
            }
        }
        pos += FRAME_HEADER_BYTES + len as usize;
    }
    (records, pos)
}

fn encode_frame(out: &mut Vec<u8>, record: &MetadataRecord) {
    let payload = serde_json::to_vec(record).expect("metadata records always serialise");
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl MetadataLog for FileMetadataLog {
    fn append(&mut self, records: &[MetadataRecord]) -> std::io::Result<u64> {
        let mut buf = Vec::new();
        for r in records {
            encode_frame(&mut buf, r);
        }
        let len_before = self.file.metadata()?.len();
        let result = self.file.write_all(&buf).and_then(|()| self.file.sync_data());
        if let Err(e) = result {
            // Leave no partial record behind (e.g. after ENOSPC) so the next append starts at a frame boundary.
            let _ = self.file.set_len(len_before);
            return Err(e);
        }
        let first = self.next_offset;
        self.next_offset += records.len() as u64;
        Ok(first)
    }

    fn next_offset(&self) -> u64 {
        self.next_offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(id: u32) -> MetadataRecord {
        MetadataRecord::RegisterBroker { broker_id: id, broker_epoch: 0, address: format!("h:{id}") }
    }

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, records) = FileMetadataLog::open(dir.path()).unwrap();
        assert!(records.is_empty());
        assert_eq!(log.append(&[register(1), register(2)]).unwrap(), 0);
        assert_eq!(log.append(&[register(3)]).unwrap(), 2);
        drop(log);
        let (log, records) = FileMetadataLog::open(dir.path()).unwrap();
        assert_eq!(records, vec![register(1), register(2), register(3)]);
        assert_eq!(log.next_offset(), 3);
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_and_appends_continue_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = FileMetadataLog::open(dir.path()).unwrap();
        log.append(&[register(1), register(2)]).unwrap();
        let path = log.path().to_path_buf();
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff; // corrupt the second record's payload
        bytes.extend_from_slice(&[0, 0, 0]); // and a torn frame header after it
        std::fs::write(&path, &bytes).unwrap();
        let (mut log, records) = FileMetadataLog::open(dir.path()).unwrap();
        assert_eq!(records, vec![register(1)]);
        assert_eq!(log.append(&[register(4)]).unwrap(), 1);
        drop(log);
        let (_, records) = FileMetadataLog::open(dir.path()).unwrap();
        assert_eq!(records, vec![register(1), register(4)]);
    }
}
