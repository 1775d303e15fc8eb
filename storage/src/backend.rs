//! The narrow IO boundary (`Backend`, `StorageFile`) through which the log touches files, and `FsBackend`,
//! the real implementation over the filesystem with memory-mapped reads.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use memmap2::{Mmap, MmapOptions};

use crate::config::MAP_BYTES_MIN;

/// One open file. Positions are absolute; there is no cursor, so a handle can be shared between the log and a
/// flush job running on another thread.
pub trait StorageFile: Send + Sync {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Writes all of `bufs`, back to back, starting at `pos`. May leave a prefix written when it fails.
    fn write_at(&self, pos: u64, bufs: &[&[u8]]) -> io::Result<()>;
    /// Makes every byte written so far, and the length, durable.
    fn sync(&self) -> io::Result<()>;
    /// Grows (with zeros) or shrinks the file. Shrinking below bytes that a `Bytes` returned by `read` may
    /// still borrow fails with `ErrorKind::ResourceBusy` instead of risking a SIGBUS in that reader.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// `len` bytes at `pos`, which must lie within the file. The real backend returns a slice of a memory map.
    fn read(&self, pos: u64, len: usize) -> io::Result<Bytes>;
    /// Tells the OS that the cached pages of bytes below `upto`, already synced, will not be read soon, so it
    /// may drop them (pages a reader has mapped stay). Reads still see the same bytes, from disk. A hint only:
    /// the default does nothing.
    fn release_cache(&self, upto: u64) -> io::Result<()> {
        let _ = upto;
        Ok(())
    }
    /// Asks the OS to start writing `len` bytes at `pos` to disk, without waiting and without making them
    /// durable (no metadata, no cache flush). A hint only: the default does nothing.
    fn start_writeback(&self, pos: u64, len: u64) -> io::Result<()> {
        let _ = (pos, len);
        Ok(())
    }
}

/// The directory operations the log needs. Paths are absolute or relative to the process, as given to `Log::open`.
pub trait Backend: Send + Sync + 'static {
    /// Opens a file for reading and writing; creates it empty when `create` is set and it does not exist.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    fn exists(&self, path: &Path) -> io::Result<bool>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Atomically replaces `to` with `from`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Names of the entries of a directory (not full paths); names that are not UTF-8 are left out.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real backend: plain files, reads served from a memory map of each file.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsBackend;

impl FsBackend {
    pub fn new() -> FsBackend {
        FsBackend
    }
}

impl Backend for FsBackend {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(true).create(create).truncate(false).open(path)?;
        let len = file.metadata()?.len();
        let inode = inode_mappings(&file)?;
        let state = Mutex::new(HandleState { current: None, len });
        Ok(Arc::new(FsFile { path: path.to_path_buf(), file, inode, state }))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

struct FsFile {
    path: PathBuf,
    file: File,
    /// Every mapping of this file made by any handle in the process: a shrink through any handle must respect
    /// readers of mappings made through another (say, by the log before it was closed and reopened).
    inode: Arc<InodeMappings>,
    state: Mutex<HandleState>,
}

#[derive(Default)]
struct HandleState {
    /// The mapping this handle reads from, and its record in `inode`. It extends past the end of the file (up
    /// to the next power of two of its length) so that bytes appended later are readable without remapping:
    /// pages past the end of a shared file mapping become readable once the file grows over them, and no read
    /// ever touches a page past the current end.
    current: Option<(Arc<Mmap>, Arc<MappingRecord>)>,
    /// The file length as of the last write or resize through this handle (the log's only writer).
    len: u64,
}

/// One mapping of a file and the furthest byte any `Bytes` of it reaches.
struct MappingRecord {
    map: Weak<Mmap>,
    max_end: AtomicU64,
}

/// The mappings of one inode that may still be in use.
#[derive(Default)]
struct InodeMappings(Mutex<Vec<Arc<MappingRecord>>>);

impl InodeMappings {
    fn lock(&self) -> MutexGuard<'_, Vec<Arc<MappingRecord>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, map: &Arc<Mmap>) -> Arc<MappingRecord> {
        let record = Arc::new(MappingRecord { map: Arc::downgrade(map), max_end: AtomicU64::new(0) });
        let mut records = self.lock();
        records.retain(|r| r.map.strong_count() > 0);
        records.push(Arc::clone(&record));
        record
    }

    /// Whether a mapping held by anyone but this handle (`own`) may be read past `len`.
    fn held_beyond(&self, len: u64, own: Option<&Arc<MappingRecord>>) -> bool {
        let mut records = self.lock();
        records.retain(|r| r.map.strong_count() > 0);
        records.iter().any(|r| {
            let own_refs = usize::from(own.is_some_and(|o| Arc::ptr_eq(o, r)));
            r.map.strong_count() > own_refs && r.max_end.load(Ordering::Acquire) > len
        })
    }
}

/// The mapping registries of the files open in this process, by (device, inode). A reused inode number may
/// share a registry with a deleted file that readers still map; that only makes shrinks more cautious.
static INODES: LazyLock<Mutex<InodeRegistry>> = LazyLock::new(Mutex::default);

/// (device, inode) to that inode's mapping registry.
type InodeRegistry = HashMap<(u64, u64), Weak<InodeMappings>>;

fn inode_mappings(file: &File) -> io::Result<Arc<InodeMappings>> {
    let meta = file.metadata()?;
    let mut inodes = INODES.lock().unwrap_or_else(|e| e.into_inner());
    inodes.retain(|_, registry| registry.strong_count() > 0);
    let key = (meta.dev(), meta.ino());
    if let Some(existing) = inodes.get(&key).and_then(Weak::upgrade) {
        return Ok(existing);
    }
    let fresh = Arc::new(InodeMappings::default());
    inodes.insert(key, Arc::downgrade(&fresh));
    Ok(fresh)
}

/// Lets a `Bytes` own a reference to a mapping, and keeps the inode's registry (which records the mapping)
/// alive as long as the bytes are.
struct MapOwner {
    map: Arc<Mmap>,
    _registry: Arc<InodeMappings>,
}

impl AsRef<[u8]> for MapOwner {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl FsFile {
    fn lock(&self) -> MutexGuard<'_, HandleState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl StorageFile for FsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn write_at(&self, pos: u64, bufs: &[&[u8]]) -> io::Result<()> {
        // Two pwrites instead of pwritev: std has no positional vectored write, and the point is not copying
        // the payload, which this achieves.
        let mut at = pos;
        let mut result = Ok(());
        for buf in bufs {
            result = self.file.write_all_at(buf, at);
            if result.is_err() {
                break;
            }
            at += buf.len() as u64;
        }
        let mut state = self.lock();
        match &result {
            Ok(()) => state.len = state.len.max(at),
            // A short write may have grown the file by an unknown amount.
            Err(_) => state.len = self.file.metadata().map_or(state.len, |m| m.len()),
        }
        result
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn release_cache(&self, upto: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let len = libc::off_t::try_from(upto).unwrap_or(libc::off_t::MAX);
        // SAFETY: posix_fadvise only reads its arguments; the descriptor is open for as long as `self`.
        let rc = unsafe { libc::posix_fadvise(self.file.as_raw_fd(), 0, len, libc::POSIX_FADV_DONTNEED) };
        if rc == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(rc)) }
    }

    fn start_writeback(&self, pos: u64, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let (Ok(pos), Ok(len)) = (libc::off64_t::try_from(pos), libc::off64_t::try_from(len)) else {
            return Ok(());
        };
        // SAFETY: sync_file_range only reads its arguments; the descriptor is open for as long as `self`.
        let rc = unsafe { libc::sync_file_range(self.file.as_raw_fd(), pos, len, libc::SYNC_FILE_RANGE_WRITE) };
        if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.lock();
        let current_len = self.file.metadata()?.len();
        if len < current_len {
            let own = state.current.as_ref().map(|(_, record)| record);
            if self.inode.held_beyond(len, own) {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!("{}: cannot shrink while readers hold its mapped bytes", self.path.display()),
                ));
            }
            // Any remaining reader holds only bytes below `len`; new reads get a fresh mapping.
            state.current = None;
        }
        self.file.set_len(len)?;
        state.len = len;
        Ok(())
    }

    fn read(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let end = pos.checked_add(len as u64).ok_or_else(|| io::Error::other("read range overflows"))?;
        let mut state = self.lock();
        if end > state.len {
            state.len = self.file.metadata()?.len();
            if end > state.len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{}: read of {pos}..{end} past the end {}", self.path.display(), state.len),
                ));
            }
        }
        let covered = state.current.as_ref().is_some_and(|(map, _)| map.len() as u64 >= end);
        if !covered {
            let map_len = state.len.max(end).checked_next_power_of_two().unwrap_or(u64::MAX).max(MAP_BYTES_MIN);
            let map_len = usize::try_from(map_len).map_err(|_| io::Error::other("file too large to map"))?;
            // SAFETY: a mapping is invalidated only by shrinking the file below bytes a reader holds, which
            // `set_len` refuses for every mapping of the inode in this process; reads stay below the file's
            // length, so no page past its end is touched; Rill owns the partition directory, so no other
            // process shrinks the file.
            let fresh = Arc::new(unsafe { MmapOptions::new().len(map_len).map(&self.file)? });
            let record = self.inode.register(&fresh);
            state.current = Some((fresh, record));
        }
        let (map, record) = state.current.as_ref().expect("mapped above");
        record.max_end.fetch_max(end, Ordering::AcqRel);
        let owner = MapOwner { map: Arc::clone(map), _registry: Arc::clone(&self.inode) };
        Ok(Bytes::from_owner(owner).slice(pos as usize..end as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file() -> (tempfile::TempDir, Arc<dyn StorageFile>) {
        let dir = tempfile::tempdir().unwrap();
        let file = FsBackend.open(&dir.path().join("f"), true).unwrap();
        (dir, file)
    }

    #[test]
    fn bytes_appended_after_a_read_are_served_from_the_same_mapping() {
        let (_dir, file) = temp_file();
        file.write_at(0, &[b"hello ", b"world"]).unwrap();
        let first = file.read(0, 5).unwrap();
        file.write_at(11, &[b"!!"]).unwrap();
        let later = file.read(6, 7).unwrap();
        assert_eq!(&later[..], b"world!!");
        assert_eq!(later.as_ptr() as usize - first.as_ptr() as usize, 6, "no remap for bytes inside the mapping");
        assert!(file.read(10, 4).is_err(), "reads past the end fail instead of touching unmapped pages");
    }

    #[test]
    fn shrinking_below_bytes_a_reader_holds_is_refused_even_from_a_replaced_mapping() {
        let (_dir, file) = temp_file();
        file.write_at(0, &[&[7u8; 300]]).unwrap();
        let old_reader = file.read(100, 100).unwrap();
        // Grow past the first mapping so the next read maps anew and the old mapping is retired.
        let grown = MAP_BYTES_MIN as usize + 10;
        file.write_at(300, &[&vec![9u8; grown - 300]]).unwrap();
        let tail = file.read(grown as u64 - 10, 10).unwrap();
        drop(tail);
        let busy = file.set_len(150).unwrap_err();
        assert_eq!(busy.kind(), io::ErrorKind::ResourceBusy);
        file.set_len(250).expect("the reader holds nothing past 250");
        assert_eq!(&old_reader[..], &[7u8; 100][..]);
        drop(old_reader);
        file.set_len(10).expect("no reader left");
        assert_eq!(file.len().unwrap(), 10);
        assert_eq!(&file.read(0, 10).unwrap()[..], &[7u8; 10][..]);
    }

    #[test]
    fn readers_of_a_closed_handle_still_stop_a_shrink_through_a_new_one() {
        let (dir, file) = temp_file();
        file.write_at(0, &[&[5u8; 4096]]).unwrap();
        let reader = file.read(1000, 3000).unwrap();
        drop(file);
        let reopened = FsBackend.open(&dir.path().join("f"), false).unwrap();
        let busy = reopened.set_len(100).unwrap_err();
        assert_eq!(busy.kind(), io::ErrorKind::ResourceBusy);
        assert_eq!(&reader[..], &[5u8; 3000][..]);
        drop(reader);
        reopened.set_len(100).expect("the reader is gone");
    }
}
