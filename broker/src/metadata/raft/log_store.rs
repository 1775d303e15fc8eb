//! openraft's `RaftLogStorage` over `LogFiles`: every write runs on a blocking thread and returns (and calls
//! openraft's flush callback) only after its fsync; reads are served from an in-memory copy of the unpurged
//! entries, which the snapshot policy keeps short.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, Vote};

use super::segments::{DurableState, LogFiles};
use super::types::{Entry, NodeId, StorageError, TypeConfig};

/// The raft log of one node.
pub struct LogStore {
    /// Taken only on blocking threads, never across an `.await`.
    files: Arc<Mutex<LogFiles>>,
    cache: Arc<RwLock<Cache>>,
}

/// What readers see: the durable state and the entries after the last purged one, as of the last completed
/// write.
#[derive(Debug, Default)]
struct Cache {
    entries: BTreeMap<u64, Entry>,
    state: DurableState,
}

/// A cheap handle openraft's replication tasks read entries through.
#[derive(Clone)]
pub struct LogReader {
    cache: Arc<RwLock<Cache>>,
}

impl LogStore {
    /// Opens the log in `dir` (see `LogFiles::open`).
    pub fn open(dir: &Path, segment_bytes_max: u64) -> std::io::Result<LogStore> {
        let (files, entries) = LogFiles::open(dir, segment_bytes_max)?;
        let cache =
            Cache { entries: entries.into_iter().map(|e| (e.log_id.index, e)).collect(), state: files.state().clone() };
        Ok(LogStore { files: Arc::new(Mutex::new(files)), cache: Arc::new(RwLock::new(cache)) })
    }

    /// Runs `op` on the files on a blocking thread, since it fsyncs.
    async fn with_files<T, F>(&self, op: F) -> std::io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut LogFiles) -> std::io::Result<T> + Send + 'static,
    {
        let files = Arc::clone(&self.files);
        tokio::task::spawn_blocking(move || {
            let mut files = files.lock().map_err(|_| std::io::Error::other("raft log poisoned by an earlier panic"))?;
            op(&mut files)
        })
        .await
        .map_err(|e| std::io::Error::other(format!("raft log task failed: {e}")))?
    }

    fn cache_write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().expect("raft log cache is never poisoned: no code panics while holding it")
    }

    fn cache_read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().expect("raft log cache is never poisoned: no code panics while holding it")
    }
}

fn storage_error(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: std::io::Error) -> StorageError {
    StorageError::from_io_error(subject, verb, e)
}

fn entries_in<RB: RangeBounds<u64>>(cache: &RwLock<Cache>, range: RB) -> Vec<Entry> {
    let cache = cache.read().expect("raft log cache is never poisoned: no code panics while holding it");
    cache.entries.range(range).map(|(_, e)| e.clone()).collect()
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(entries_in(&self.cache, range))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(entries_in(&self.cache, range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let cache = self.cache_read();
        let last_purged_log_id = cache.state.last_purged;
        let last_log_id = cache.entries.last_key_value().map(|(_, e)| e.log_id).or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader { cache: Arc::clone(&self.cache) }
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let vote = *vote;
        self.with_files(move |f| f.save_state(|s| s.vote = Some(vote)))
            .await
            .map_err(|e| storage_error(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        self.cache_write().state.vote = Some(vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.cache_read().state.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError> {
        if self.cache_read().state.committed == committed {
            return Ok(());
        }
        self.with_files(move |f| f.save_state(|s| s.committed = committed))
            .await
            .map_err(|e| storage_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        self.cache_write().state.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self.cache_read().state.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let result = self
            .with_files(move |f| {
                f.append(&entries)?;
                Ok(entries)
            })
            .await;
        match result {
            Ok(entries) => {
                let mut cache = self.cache_write();
                for entry in entries {
                    cache.entries.insert(entry.log_id.index, entry);
                }
                drop(cache);
                // Only now are the entries on disk; openraft may count them towards a quorum from here on.
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::new(e.kind(), e.to_string())));
                Err(storage_error(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let index = log_id.index;
        self.with_files(move |f| f.truncate(index))
            .await
            .map_err(|e| storage_error(ErrorSubject::Log(log_id), ErrorVerb::Delete, e))?;
        self.cache_write().entries.split_off(&index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.with_files(move |f| f.purge(log_id))
            .await
            .map_err(|e| storage_error(ErrorSubject::Log(log_id), ErrorVerb::Delete, e))?;
        let mut cache = self.cache_write();
        cache.entries = cache.entries.split_off(&(log_id.index + 1));
        if cache.state.last_purged.is_none_or(|p| p.index < log_id.index) {
            cache.state.last_purged = Some(log_id);
        }
        Ok(())
    }
}
