//! `FaultyBackend`: an in-memory backend for tests that loses unsynced bytes on a simulated crash, can tear
//! the last write, and can fail writes (for example with ENOSPC) after a chosen number of them.
//!
//! By default directory operations (create, rename, remove) are durable at once and only file contents and
//! lengths wait for `sync`. With `strict_directories` they too wait for a `sync_dir` of their directory, as
//! POSIX demands: a crash brings back the names as of each directory's last sync.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;

use crate::backend::{Backend, StorageFile};

/// An in-memory filesystem with crash and fault injection. Cloning shares the same files.
#[derive(Clone, Default)]
pub struct FaultyBackend {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    names: Mutex<Names>,
    faults: Mutex<Faults>,
}

/// The namespace: which path names which file, now and as of the last directory syncs.
#[derive(Default)]
struct Names {
    current: BTreeMap<PathBuf, Arc<FaultyFile>>,
    durable: BTreeMap<PathBuf, Arc<FaultyFile>>,
    /// Whether a crash reverts the namespace to `durable`.
    strict: bool,
}

#[derive(Default)]
struct Faults {
    writes_done: u64,
    /// Writes fail once `writes_done` reaches this, until `heal`.
    fail_from_write: Option<u64>,
    error_kind: Option<io::ErrorKind>,
}

struct FaultyFile {
    path: PathBuf,
    shared: Weak<Shared>,
    state: Mutex<FileState>,
}

#[derive(Default)]
struct FileState {
    data: Vec<u8>,
    /// The contents as of the last sync: what survives a crash.
    durable: Vec<u8>,
    /// The last write since the last sync, which a crash may keep in part (a torn write).
    last_unsynced_write: Option<(u64, usize)>,
    /// Readers' guards and the end of the range each read, so a shrink can refuse like the mmap backend.
    readers: Vec<(Weak<()>, u64)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// SplitMix64: a tiny deterministic generator so crashes replay from their seed without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

impl FaultyBackend {
    pub fn new() -> FaultyBackend {
        FaultyBackend::default()
    }

    /// A backend whose directory entries (creations, renames, removals) survive a crash only after a
    /// `sync_dir` of their directory.
    pub fn strict_directories() -> FaultyBackend {
        let backend = FaultyBackend::default();
        lock(&backend.shared.names).strict = true;
        backend
    }

    /// Simulates power loss: every file falls back to its last synced contents, except that the last unsynced
    /// write of a file may survive in part (a random prefix), possibly with one byte garbled; with strict
    /// directories, the names fall back to those of the last directory syncs. Handles opened before the crash
    /// must not be used afterwards; reopen the log.
    pub fn crash(&self, seed: u64) {
        let mut rng = SplitMix64(seed);
        let mut names = lock(&self.shared.names);
        if names.strict {
            names.current = names.durable.clone();
        }
        for file in names.current.values() {
            let mut state = lock(&file.state);
            let mut survivor = state.durable.clone();
            let torn = state.last_unsynced_write.filter(|_| rng.below(2) == 0);
            if let Some((pos, len)) = torn {
                let start = (pos as usize).min(state.data.len());
                let end = (pos as usize + len).min(state.data.len());
                let kept = rng.below((end - start) as u64 + 1) as usize;
                if survivor.len() < start + kept {
                    survivor.resize(start + kept, 0);
                }
                survivor[start..start + kept].copy_from_slice(&state.data[start..start + kept]);
                if kept > 0 && rng.below(2) == 0 {
                    let at = start + rng.below(kept as u64) as usize;
                    survivor[at] ^= 1 + rng.below(255) as u8;
                }
            }
            state.data = survivor.clone();
            state.durable = survivor;
            state.last_unsynced_write = None;
            state.readers.clear();
        }
    }

    /// Makes every write after the next `writes_ok` successful ones fail with `kind` (after writing half of
    /// its first buffer, as a real short write would), until `heal`.
    pub fn fail_writes_after(&self, writes_ok: u64, kind: io::ErrorKind) {
        let mut faults = lock(&self.shared.faults);
        faults.fail_from_write = Some(faults.writes_done + writes_ok);
        faults.error_kind = Some(kind);
    }

    /// Stops injecting write errors.
    pub fn heal(&self) {
        let mut faults = lock(&self.shared.faults);
        faults.fail_from_write = None;
        faults.error_kind = None;
    }

    /// Successful writes so far, across all files.
    pub fn writes_done(&self) -> u64 {
        lock(&self.shared.faults).writes_done
    }

    /// The current contents of a file, or None if it does not exist.
    pub fn file_contents(&self, path: &Path) -> Option<Vec<u8>> {
        let file = lock(&self.shared.names).current.get(path).cloned()?;
        Some(lock(&file.state).data.clone())
    }

    /// How many bytes of a file are durable (would survive a crash without tearing).
    pub fn synced_len(&self, path: &Path) -> Option<u64> {
        let file = lock(&self.shared.names).current.get(path).cloned()?;
        Some(lock(&file.state).durable.len() as u64)
    }

    /// Replaces a file's contents, durably, as if written by someone else (for fixtures and damage tests).
    pub fn put_file(&self, path: &Path, contents: &[u8]) {
        let file = self.file_entry(path);
        lock(&self.shared.names).durable.insert(path.to_path_buf(), Arc::clone(&file));
        let mut state = lock(&file.state);
        state.data = contents.to_vec();
        state.durable = contents.to_vec();
        state.last_unsynced_write = None;
    }

    /// Flips the bits of one byte of a file, durably, to simulate media corruption.
    ///
    /// # Panics
    ///
    /// If the file does not exist or is shorter than `pos + 1`: the test itself is wrong.
    pub fn flip_byte(&self, path: &Path, pos: u64) {
        let file = lock(&self.shared.names).current.get(path).cloned().expect("flip_byte: no such file");
        let mut state = lock(&file.state);
        state.data[pos as usize] ^= 0xFF;
        if let Some(byte) = state.durable.get_mut(pos as usize) {
            *byte ^= 0xFF;
        }
    }

    fn file_entry(&self, path: &Path) -> Arc<FaultyFile> {
        let mut names = lock(&self.shared.names);
        let file = names.current.entry(path.to_path_buf()).or_insert_with(|| {
            Arc::new(FaultyFile {
                path: path.to_path_buf(),
                shared: Arc::downgrade(&self.shared),
                state: Mutex::new(FileState::default()),
            })
        });
        Arc::clone(file)
    }

    fn not_found(path: &Path) -> io::Error {
        io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file", path.display()))
    }
}

impl Backend for FaultyBackend {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        if !create && !lock(&self.shared.names).current.contains_key(path) {
            return Err(Self::not_found(path));
        }
        Ok(self.file_entry(path))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let names = lock(&self.shared.names);
        Ok(names.current.contains_key(path) || names.current.keys().any(|p| p.starts_with(path)))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        lock(&self.shared.names).current.remove(path).map(|_| ()).ok_or_else(|| Self::not_found(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut names = lock(&self.shared.names);
        let file = names.current.remove(from).ok_or_else(|| Self::not_found(from))?;
        names.current.insert(to.to_path_buf(), file);
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let names = lock(&self.shared.names);
        Ok(names
            .current
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        // Directories exist implicitly as path prefixes of files.
        Ok(())
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        // Removing a whole partition is treated as durable at once: nothing in Rill reopens a deleted partition.
        let mut names = lock(&self.shared.names);
        names.current.retain(|p, _| !p.starts_with(dir));
        names.durable.retain(|p, _| !p.starts_with(dir));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut names = lock(&self.shared.names);
        let Names { current, durable, .. } = &mut *names;
        durable.retain(|p, _| p.parent() != Some(dir));
        durable
            .extend(current.iter().filter(|(p, _)| p.parent() == Some(dir)).map(|(p, f)| (p.clone(), Arc::clone(f))));
        Ok(())
    }
}

/// A copy of read bytes plus a guard that marks the read as outstanding while any `Bytes` of it lives.
struct ReadCopy {
    bytes: Vec<u8>,
    _guard: Arc<()>,
}

impl AsRef<[u8]> for ReadCopy {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl FaultyFile {
    /// Counts a write and says whether it must fail.
    fn admit_write(&self) -> Result<(), io::ErrorKind> {
        let Some(shared) = self.shared.upgrade() else { return Ok(()) };
        let mut faults = lock(&shared.faults);
        match (faults.fail_from_write, faults.error_kind) {
            (Some(from), Some(kind)) if faults.writes_done >= from => return Err(kind),
            _ => {}
        }
        faults.writes_done += 1;
        Ok(())
    }
}

impl StorageFile for FaultyFile {
    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.state).data.len() as u64)
    }

    fn write_at(&self, pos: u64, bufs: &[&[u8]]) -> io::Result<()> {
        let admitted = self.admit_write();
        let mut state = lock(&self.state);
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut payload: Vec<u8> = bufs.concat();
        if admitted.is_err() {
            payload.truncate(bufs.first().map_or(0, |b| b.len() / 2));
        }
        let start = pos as usize;
        if state.data.len() < start + payload.len() {
            state.data.resize(start + payload.len(), 0);
        }
        state.data[start..start + payload.len()].copy_from_slice(&payload);
        state.last_unsynced_write = Some((pos, payload.len()));
        match admitted {
            Ok(()) => {
                assert_eq!(payload.len(), total, "an admitted write is written whole");
                Ok(())
            }
            Err(kind) => Err(io::Error::new(kind, format!("{}: injected write failure", self.path.display()))),
        }
    }

    fn sync(&self) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.durable = state.data.clone();
        state.last_unsynced_write = None;
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.readers.retain(|(guard, _)| guard.strong_count() > 0);
        if state.readers.iter().any(|(_, end)| *end > len) {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!("{}: cannot shrink while readers hold its bytes", self.path.display()),
            ));
        }
        state.data.resize(len as usize, 0);
        Ok(())
    }

    fn read(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let mut state = lock(&self.state);
        let end = pos as usize + len;
        if end > state.data.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: read of {pos}..{end} past the end {}", self.path.display(), state.data.len()),
            ));
        }
        let guard = Arc::new(());
        state.readers.push((Arc::downgrade(&guard), end as u64));
        let bytes = state.data[pos as usize..end].to_vec();
        Ok(Bytes::from_owner(ReadCopy { bytes, _guard: guard }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(backend: &FaultyBackend, path: &str, bytes: &[u8]) -> Arc<dyn StorageFile> {
        let file = backend.open(Path::new(path), true).unwrap();
        let len = file.len().unwrap();
        file.write_at(len, &[bytes]).unwrap();
        file
    }

    #[test]
    fn a_crash_keeps_synced_bytes_and_at_most_a_prefix_of_the_last_write() {
        for seed in 0..32 {
            let backend = FaultyBackend::new();
            let file = write(&backend, "/d/f", b"durable");
            file.sync().unwrap();
            write(&backend, "/d/f", b"-lost-");
            write(&backend, "/d/f", b"-torn?");
            backend.crash(seed);
            let after = backend.file_contents(Path::new("/d/f")).unwrap();
            assert!(after.starts_with(b"durable"), "seed {seed}");
            assert!(after.len() <= 7 + 6 + 6, "seed {seed}");
            // The earlier unsynced write is gone: at most a hole of zeros before the torn prefix of the last.
            assert!(after[7..after.len().min(13)].iter().all(|&b| b == 0), "seed {seed}: {after:?}");
        }
    }

    #[test]
    fn strict_directories_forget_unsynced_names() {
        let backend = FaultyBackend::strict_directories();
        write(&backend, "/d/kept", b"x").sync().unwrap();
        backend.sync_dir(Path::new("/d")).unwrap();
        write(&backend, "/d/new", b"y").sync().unwrap();
        backend.rename(Path::new("/d/kept"), Path::new("/d/renamed")).unwrap();
        backend.crash(0);
        let mut names = backend.list_dir(Path::new("/d")).unwrap();
        names.sort();
        assert_eq!(names, vec!["kept".to_string()], "the creation and the rename were never synced");
        assert_eq!(backend.file_contents(Path::new("/d/kept")).unwrap(), b"x");
    }

    #[test]
    fn injected_failures_write_half_and_stop_until_healed() {
        let backend = FaultyBackend::new();
        let file = write(&backend, "/d/f", b"ok");
        backend.fail_writes_after(1, io::ErrorKind::StorageFull);
        file.write_at(2, &[b"fine"]).unwrap();
        let error = file.write_at(6, &[b"full"]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
        assert_eq!(backend.file_contents(Path::new("/d/f")).unwrap(), b"okfinefu");
        backend.heal();
        file.write_at(6, &[b"LL"]).unwrap();
        assert_eq!(backend.file_contents(Path::new("/d/f")).unwrap(), b"okfineLL");
    }
}
