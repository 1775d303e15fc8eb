//! The narrow IO boundary (`Backend`, `StorageFile`) through which the log touches files, and `FsBackend`,
//! the real implementation over the filesystem with memory-mapped reads.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use memmap2::Mmap;

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
        Ok(Arc::new(FsFile { path: path.to_path_buf(), file, map: Mutex::new(None) }))
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
    /// The current mapping of the whole file, replaced by a longer one when a read needs bytes past its end.
    /// Readers' `Bytes` hold clones of the `Arc`, so its strong count tells whether any reader remains.
    map: Mutex<Option<Arc<Mmap>>>,
}

/// Lets a `Bytes` own a reference to a mapping.
struct MapOwner(Arc<Mmap>);

impl AsRef<[u8]> for MapOwner {
    fn as_ref(&self) -> &[u8] {
        &self.0
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
        for buf in bufs {
            self.file.write_all_at(buf, at)?;
            at += buf.len() as u64;
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mapped_past_len = map.as_ref().is_some_and(|current| current.len() as u64 > len);
        if mapped_past_len {
            let current = map.as_ref().expect("checked above");
            if Arc::strong_count(current) > 1 {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!("{}: cannot shrink while readers hold its mapped bytes", self.path.display()),
                ));
            }
            // Nobody else sees this mapping: unmap before shrinking so no access past the new end can happen.
            *map = None;
        }
        self.file.set_len(len)
    }

    fn read(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let end = pos.checked_add(len as u64).ok_or_else(|| io::Error::other("read range overflows"))?;
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let covered = map.as_ref().is_some_and(|m| m.len() as u64 >= end);
        if !covered {
            let file_len = self.file.metadata()?.len();
            if file_len < end {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{}: read of {pos}..{end} past the end {file_len}", self.path.display()),
                ));
            }
            // SAFETY: the mapping is only invalidated by shrinking the file, which `set_len` refuses while any
            // `Bytes` of it is alive; Rill owns the partition directory, so no other process shrinks it.
            let fresh = unsafe { Mmap::map(&self.file)? };
            *map = Some(Arc::new(fresh));
        }
        let current = Arc::clone(map.as_ref().expect("mapped above"));
        Ok(Bytes::from_owner(MapOwner(current)).slice(pos as usize..end as usize))
    }
}
