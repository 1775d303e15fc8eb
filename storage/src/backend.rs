//! The narrow IO boundary (`Backend`, `StorageFile`) through which the log touches files, and `FsBackend`,
//! the real implementation over the filesystem with memory-mapped reads.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

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
        let maps = Mutex::new(MapState { len, ..MapState::default() });
        Ok(Arc::new(FsFile { path: path.to_path_buf(), file, maps }))
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
    maps: Mutex<MapState>,
}

/// The mappings of one file. A read is served from `current`, which is mapped past the end of the file (up to
/// the next power of two of its length) so that the bytes appends add later are readable without remapping:
/// pages past the end of a shared file mapping become readable as soon as the file grows over them, and no
/// read ever touches a page past the current end.
#[derive(Default)]
struct MapState {
    current: Option<Arc<Mmap>>,
    /// The furthest byte any `Bytes` of `current` reaches.
    current_max_end: u64,
    /// Replaced mappings that readers may still hold, each with the furthest byte handed out from it.
    retired: Vec<(Weak<Mmap>, u64)>,
    /// The file length as of the last write or resize through this handle (the log's only writer).
    len: u64,
}

impl MapState {
    /// Whether some live `Bytes` reaches past `len`, so the file must not shrink to `len`.
    fn readers_beyond(&mut self, len: u64) -> bool {
        self.retired.retain(|(map, _)| map.strong_count() > 0);
        let current = self.current.as_ref().is_some_and(|m| Arc::strong_count(m) > 1 && self.current_max_end > len);
        current || self.retired.iter().any(|(_, max_end)| *max_end > len)
    }

    fn retire_current(&mut self) {
        match self.current.take() {
            Some(map) if Arc::strong_count(&map) > 1 => {
                self.retired.push((Arc::downgrade(&map), self.current_max_end));
            }
            _ => {}
        }
        self.current_max_end = 0;
    }
}

/// Lets a `Bytes` own a reference to a mapping.
struct MapOwner(Arc<Mmap>);

impl AsRef<[u8]> for MapOwner {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl FsFile {
    fn lock(&self) -> std::sync::MutexGuard<'_, MapState> {
        self.maps.lock().unwrap_or_else(|e| e.into_inner())
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
        let mut maps = self.lock();
        match &result {
            Ok(()) => maps.len = maps.len.max(at),
            // A short write may have grown the file by an unknown amount.
            Err(_) => maps.len = self.file.metadata().map_or(maps.len, |m| m.len()),
        }
        result
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut maps = self.lock();
        if len < maps.len {
            if maps.readers_beyond(len) {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!("{}: cannot shrink while readers hold its mapped bytes", self.path.display()),
                ));
            }
            // Remaining readers (if any) hold only bytes below `len`; new reads get a fresh mapping.
            maps.retire_current();
        }
        self.file.set_len(len)?;
        maps.len = len;
        Ok(())
    }

    fn read(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let end = pos.checked_add(len as u64).ok_or_else(|| io::Error::other("read range overflows"))?;
        let mut maps = self.lock();
        if end > maps.len {
            maps.len = self.file.metadata()?.len();
            if end > maps.len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{}: read of {pos}..{end} past the end {}", self.path.display(), maps.len),
                ));
            }
        }
        let covered = maps.current.as_ref().is_some_and(|m| m.len() as u64 >= end);
        if !covered {
            maps.retire_current();
            let map_len = maps.len.max(end).checked_next_power_of_two().unwrap_or(u64::MAX).max(MAP_BYTES_MIN);
            let map_len = usize::try_from(map_len).map_err(|_| io::Error::other("file too large to map"))?;
            // SAFETY: the mapping is invalidated only by shrinking the file below bytes a reader holds, which
            // `set_len` refuses; reads stay below the file's length, so no page past its end is touched;
            // Rill owns the partition directory, so no other process shrinks the file.
            let fresh = unsafe { MmapOptions::new().len(map_len).map(&self.file)? };
            maps.current = Some(Arc::new(fresh));
        }
        maps.current_max_end = maps.current_max_end.max(end);
        let current = Arc::clone(maps.current.as_ref().expect("mapped above"));
        Ok(Bytes::from_owner(MapOwner(current)).slice(pos as usize..end as usize))
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
}
