//! The raft log on disk: segment files of CRC-framed entries plus the durable-state file (vote, committed log
//! id, last purged log id). Synchronous file IO only; `log_store.rs` runs it on blocking threads and adapts it
//! to openraft. Byte layouts are in docs/FORMAT.md ("Controller quorum").
//!
//! Segments are named by the index of their first entry (`log-00000000000000000001.raft`) and roll once they
//! pass `segment_bytes_max`, so purging the log behind a snapshot deletes whole files instead of rewriting one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use openraft::{LogId, Vote};
use serde::{Deserialize, Serialize};

use super::files::{
    FrameError, decode_frame, encode_frame, invalid_data, read_framed_file, sync_dir, write_atomically,
};
use super::types::Entry;
use super::{ENTRY_BYTES_MAX, STATE_FILE_BYTES_MAX};

const STATE_FILE: &str = "raft-state";
const SEGMENT_PREFIX: &str = "log-";
const SEGMENT_SUFFIX: &str = ".raft";

/// What Raft must remember across restarts besides the entries. Replaced as a whole, atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurableState {
    pub vote: Option<Vote<u64>>,
    pub committed: Option<LogId<u64>>,
    /// Entries up to and including this id are gone (covered by a snapshot).
    pub last_purged: Option<LogId<u64>>,
}

/// One segment file: the entries `first_index..first_index + positions.len()`.
#[derive(Debug)]
struct Segment {
    first_index: u64,
    path: PathBuf,
    /// Byte position of each entry's frame; a truncation cuts the file at one of them.
    positions: Vec<u64>,
    bytes: u64,
}

impl Segment {
    /// Index after the last entry.
    fn end_index(&self) -> u64 {
        self.first_index + self.positions.len() as u64
    }
}

/// The open log directory. Every mutating call returns only after its changes are durable.
#[derive(Debug)]
pub struct LogFiles {
    dir: PathBuf,
    segment_bytes_max: u64,
    /// Ordered by first index; the last one takes appends.
    segments: Vec<Segment>,
    /// Append handle of the last segment, if there is one.
    active: Option<File>,
    state: DurableState,
}

/// Entries read back on open, oldest first, with none at or below the last purged index.
pub type RecoveredEntries = Vec<Entry>;

impl LogFiles {
    /// Opens (creating if needed) the log in `dir`: reads the durable state and every segment, cuts a torn or
    /// corrupt tail off the last segment, and finishes a purge a crash interrupted.
    ///
    /// # Errors
    /// IO errors, and damage a crash cannot explain: a bad frame before the last segment, an entry whose
    /// index does not follow its predecessor, or a valid frame that does not decode.
    pub fn open(dir: &Path, segment_bytes_max: u64) -> std::io::Result<(LogFiles, RecoveredEntries)> {
        std::fs::create_dir_all(dir)?;
        let state = read_state(dir)?;
        let mut names = segment_names(dir)?;
        names.sort();
        let count = names.len();
        let mut segments = Vec::with_capacity(count);
        let mut entries = Vec::new();
        for (i, (first_index, path)) in names.into_iter().enumerate() {
            let is_last = i + 1 == count;
            let segment = read_segment(first_index, path, is_last, &mut entries)?;
            if let Some(previous) = segments.last().map(Segment::end_index)
                && previous != first_index
            {
                return Err(invalid_data(format!(
                    "raft log segments are not contiguous: entries end at {previous}, the next segment starts at \
                     {first_index}"
                )));
            }
            segments.push(segment);
        }
        let mut files = LogFiles { dir: dir.to_path_buf(), segment_bytes_max, segments, active: None, state };
        let purged_end = match files.state.last_purged {
            Some(id) => {
                id.index.checked_add(1).ok_or_else(|| invalid_data(format!("{STATE_FILE}: purged up to u64::MAX")))?
            }
            None => 0,
        };
        entries.retain(|e| e.log_id.index >= purged_end);
        if let Some(first) = entries.first()
            && files.state.last_purged.is_some()
            && first.log_id.index != purged_end
        {
            return Err(invalid_data(format!(
                "raft log starts at index {} but the last purged index is {}",
                first.log_id.index,
                purged_end - 1
            )));
        }
        files.delete_segments_before(purged_end)?;
        files.open_active()?;
        Ok((files, entries))
    }

    pub fn state(&self) -> &DurableState {
        &self.state
    }

    /// Changes the durable state and replaces its file atomically.
    pub fn save_state(&mut self, change: impl FnOnce(&mut DurableState)) -> std::io::Result<()> {
        let mut next = self.state.clone();
        change(&mut next);
        let mut buf = Vec::new();
        encode_frame(&mut buf, &serde_json::to_vec(&next).expect("the durable raft state always serialises"));
        write_atomically(&self.dir, STATE_FILE, &buf)?;
        self.state = next;
        Ok(())
    }

    /// Index the next appended entry must have, if the log holds or held any entry.
    pub fn next_index(&self) -> Option<u64> {
        match self.segments.last() {
            Some(s) => Some(s.end_index()),
            None => self.state.last_purged.map(|id| id.index + 1),
        }
    }

    /// Appends `entries` (consecutive, following the log's last entry) and fsyncs them.
    ///
    /// # Errors
    /// IO errors; on a failed write the segment is cut back to where it was, so no partial frame remains.
    pub fn append(&mut self, entries: &[Entry]) -> std::io::Result<()> {
        let Some(first) = entries.first() else { return Ok(()) };
        if let Some(expected) = self.next_index() {
            // A gap or overlap here would be an openraft contract violation; refusing it keeps the files sane.
            if first.log_id.index != expected {
                return Err(invalid_data(format!(
                    "raft append at index {} but the log continues at {expected}",
                    first.log_id.index
                )));
            }
        }
        if self.active.is_none() || self.segments.last().is_some_and(|s| s.bytes >= self.segment_bytes_max) {
            self.roll(first.log_id.index)?;
        }
        let mut buf = Vec::new();
        let mut positions = Vec::with_capacity(entries.len());
        let segment = self.segments.last_mut().expect("roll created a segment");
        for (i, entry) in entries.iter().enumerate() {
            assert_eq!(entry.log_id.index, first.log_id.index + i as u64, "raft entries appended out of order");
            positions.push(segment.bytes + buf.len() as u64);
            let payload = serde_json::to_vec(entry).expect("raft entries always serialise");
            if payload.len() > ENTRY_BYTES_MAX as usize {
                return Err(invalid_data(format!(
                    "raft entry {} is {} bytes, above the {ENTRY_BYTES_MAX}-byte limit",
                    entry.log_id.index,
                    payload.len()
                )));
            }
            encode_frame(&mut buf, &payload);
        }
        let file = self.active.as_mut().expect("roll opened the active segment");
        if let Err(e) = file.write_all(&buf).and_then(|()| file.sync_data()) {
            // Best effort: leave no partial frame for the next append to follow.
            let _ = file.set_len(segment.bytes);
            return Err(e);
        }
        segment.bytes += buf.len() as u64;
        segment.positions.extend(positions);
        Ok(())
    }

    /// Removes every entry at or after `index`. Newer segments are deleted first, so a crash midway leaves a
    /// prefix of the old log.
    pub fn truncate(&mut self, index: u64) -> std::io::Result<()> {
        let mut removed_files = false;
        while self.segments.last().is_some_and(|s| s.first_index >= index) {
            let segment = self.segments.pop().expect("checked non-empty");
            self.active = None;
            std::fs::remove_file(&segment.path)?;
            removed_files = true;
        }
        if removed_files {
            sync_dir(&self.dir)?;
        }
        if let Some(segment) = self.segments.last_mut()
            && index < segment.end_index()
        {
            let keep = (index - segment.first_index) as usize;
            let new_len = segment.positions[keep];
            let file = OpenOptions::new().write(true).open(&segment.path)?;
            file.set_len(new_len)?;
            file.sync_all()?;
            segment.positions.truncate(keep);
            segment.bytes = new_len;
        }
        self.open_active()
    }

    /// Forgets every entry up to and including `log_id`: records it durably first (so a reopen ignores those
    /// entries even if their files survive a crash), then deletes the segments that hold nothing newer.
    pub fn purge(&mut self, log_id: LogId<u64>) -> std::io::Result<()> {
        if self.state.last_purged.is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        self.save_state(|s| s.last_purged = Some(log_id))?;
        self.delete_segments_before(log_id.index + 1)?;
        self.open_active()
    }

    /// Number of segment files, for tests and status.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Deletes, oldest first, the segments whose entries all lie below `index`.
    fn delete_segments_before(&mut self, index: u64) -> std::io::Result<()> {
        let doomed = self.segments.iter().take_while(|s| s.end_index() <= index).count();
        if doomed == 0 {
            return Ok(());
        }
        for segment in self.segments.drain(..doomed) {
            std::fs::remove_file(&segment.path)?;
        }
        if self.segments.is_empty() {
            self.active = None;
        }
        sync_dir(&self.dir)
    }

    /// Starts a new segment whose first entry will have `first_index`.
    fn roll(&mut self, first_index: u64) -> std::io::Result<()> {
        let path = self.dir.join(segment_name(first_index));
        let file = OpenOptions::new().create_new(true).append(true).open(&path)?;
        // The new name must survive a crash before any entry in it is reported durable.
        sync_dir(&self.dir)?;
        self.segments.push(Segment { first_index, path, positions: Vec::new(), bytes: 0 });
        self.active = Some(file);
        Ok(())
    }

    fn open_active(&mut self) -> std::io::Result<()> {
        self.active = match self.segments.last() {
            Some(segment) => Some(OpenOptions::new().append(true).open(&segment.path)?),
            None => None,
        };
        Ok(())
    }
}

fn segment_name(first_index: u64) -> String {
    format!("{SEGMENT_PREFIX}{first_index:020}{SEGMENT_SUFFIX}")
}

/// Segment files in `dir` with the first index their name gives. Stray `.tmp` files from an interrupted
/// atomic write are removed.
fn segment_names(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut names = Vec::new();
    for dirent in std::fs::read_dir(dir)? {
        let dirent = dirent?;
        let name = dirent.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            std::fs::remove_file(dirent.path())?;
            continue;
        }
        let Some(digits) = name.strip_prefix(SEGMENT_PREFIX).and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)) else {
            continue;
        };
        let first_index =
            digits.parse::<u64>().map_err(|e| invalid_data(format!("bad raft segment name {name}: {e}")))?;
        names.push((first_index, dirent.path()));
    }
    Ok(names)
}

/// Reads one segment's entries into `entries`. The last segment may end in a torn or corrupt frame (the write
/// a crash interrupted), which is cut off; anywhere else that is damage and an error.
fn read_segment(first_index: u64, path: PathBuf, is_last: bool, entries: &mut Vec<Entry>) -> std::io::Result<Segment> {
    let bytes = std::fs::read(&path)?;
    let mut segment = Segment { first_index, path, positions: Vec::new(), bytes: 0 };
    let mut pos = 0;
    loop {
        let (payload, next) = match decode_frame(&bytes, pos, ENTRY_BYTES_MAX) {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) if is_last => {
                cut_torn_tail(&segment.path, pos, bytes.len(), e)?;
                break;
            }
            Err(e) => {
                return Err(invalid_data(format!("{}: {e} at byte {pos} in a sealed segment", segment.path.display())));
            }
        };
        let entry: Entry = serde_json::from_slice(payload).map_err(|e| {
            invalid_data(format!(
                "{}: entry at byte {pos} has a valid CRC but does not decode: {e}",
                segment.path.display()
            ))
        })?;
        let expected = segment.end_index();
        // No entry can follow index u64::MAX, and counting past it would overflow (found by the
        // `metadata_log` fuzz target); openraft never gets there.
        if entry.log_id.index == u64::MAX {
            return Err(invalid_data(format!("{}: entry at byte {pos} has index u64::MAX", segment.path.display())));
        }
        if entry.log_id.index != expected {
            return Err(invalid_data(format!(
                "{}: entry at byte {pos} has index {}, expected {expected}",
                segment.path.display(),
                entry.log_id.index
            )));
        }
        segment.positions.push(pos as u64);
        entries.push(entry);
        pos = next;
    }
    segment.bytes = pos as u64;
    Ok(segment)
}

fn cut_torn_tail(path: &Path, valid_len: usize, file_len: usize, reason: FrameError) -> std::io::Result<()> {
    tracing::warn!(
        path = %path.display(),
        valid_len,
        dropped_bytes = file_len - valid_len,
        %reason,
        "raft log segment has a torn or corrupt tail; truncating it"
    );
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(valid_len as u64)?;
    file.sync_all()
}

fn read_state(dir: &Path) -> std::io::Result<DurableState> {
    let Some(frames) = read_framed_file(&dir.join(STATE_FILE), STATE_FILE_BYTES_MAX)? else {
        return Ok(DurableState::default());
    };
    let [payload] = frames.as_slice() else {
        return Err(invalid_data(format!("{STATE_FILE} holds {} frames, expected 1", frames.len())));
    };
    serde_json::from_slice(payload).map_err(|e| invalid_data(format!("{STATE_FILE} does not decode: {e}")))
}
