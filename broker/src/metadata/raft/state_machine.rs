//! openraft's `RaftStateMachine` over `MetadataState`: applies committed proposals with `MetadataState::apply`,
//! publishes each new state on a `watch` channel, and builds, stores and installs snapshots.
//!
//! The state itself lives in memory; what makes it durable is the raft log plus the latest snapshot file. On
//! start the state comes from the snapshot and openraft re-applies the committed entries after it.
//!
//! Metadata offsets: the first record of the entry at raft index `i` gets offset `max(i, next_offset)` and the
//! rest follow it. With one record per entry (the common case) the offset is the raft index; raft indexes skip
//! blank and membership entries, so `MetadataState::apply` requires offsets to increase, not to be contiguous.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder};
use tokio::sync::watch;

use super::SNAPSHOT_BYTES_MAX;
use super::files::{encode_frame, invalid_data, read_framed_file, write_atomically};
use super::types::{Entry, NodeId, ProposalOutcome, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::metadata::state::MetadataState;

const SNAPSHOT_FILE: &str = "snapshot";

/// A snapshot as stored and sent: its meta and the JSON of the `MetadataState` it captures.
#[derive(Debug, Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The applied metadata of one node.
pub struct StateMachine {
    dir: PathBuf,
    state: MetadataState,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership,
    published: watch::Sender<Arc<MetadataState>>,
    /// The newest snapshot, shared with builders running beside the state machine. Its mutex also orders
    /// writes of the snapshot file, so an older snapshot never replaces a newer one.
    snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
}

impl StateMachine {
    /// Loads the snapshot in `dir`, if any, and publishes its state on `published`.
    pub fn open(dir: &Path, published: watch::Sender<Arc<MetadataState>>) -> std::io::Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
        let stored = read_snapshot(dir)?;
        let mut machine = StateMachine {
            dir: dir.to_path_buf(),
            state: MetadataState::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            published,
            snapshot: Arc::new(Mutex::new(None)),
        };
        if let Some(stored) = stored {
            machine.state = decode_state(&stored.data)?;
            machine.last_applied = stored.meta.last_log_id;
            machine.membership = stored.meta.last_membership.clone();
            *machine.snapshot_slot() = Some(stored);
        }
        machine.publish();
        Ok(machine)
    }

    fn publish(&self) {
        self.published.send_replace(Arc::new(self.state.clone()));
    }

    fn snapshot_slot(&self) -> std::sync::MutexGuard<'_, Option<StoredSnapshot>> {
        lock_slot(&self.snapshot)
    }

    /// Applies the records of one normal entry at raft index `index`.
    fn apply_proposal(&mut self, index: u64, records: &[crate::metadata::MetadataRecord]) -> ProposalOutcome {
        let first_offset = index.max(self.state.next_offset);
        let mut skipped = Vec::new();
        for (i, record) in records.iter().enumerate() {
            // Saturating: a snapshot may claim the last offset, and `apply` refuses records there.
            if let Err(e) = self.state.apply(first_offset.saturating_add(i as u64), record) {
                // Every node skips the same record the same way, so the replicas stay identical.
                tracing::warn!(error = %e, "skipped metadata record");
                skipped.push(e);
            }
        }
        ProposalOutcome { first_offset, skipped }
    }
}

fn lock_slot(slot: &Mutex<Option<StoredSnapshot>>) -> std::sync::MutexGuard<'_, Option<StoredSnapshot>> {
    slot.lock().expect("snapshot slot is never poisoned: no code panics while holding it")
}

fn decode_state(data: &[u8]) -> std::io::Result<MetadataState> {
    serde_json::from_slice(data).map_err(|e| invalid_data(format!("snapshot state does not decode: {e}")))
}

fn read_snapshot(dir: &Path) -> std::io::Result<Option<StoredSnapshot>> {
    let Some(frames) = read_framed_file(&dir.join(SNAPSHOT_FILE), SNAPSHOT_BYTES_MAX)? else {
        return Ok(None);
    };
    let [meta, data] = frames.as_slice() else {
        return Err(invalid_data(format!("{SNAPSHOT_FILE} holds {} frames, expected 2", frames.len())));
    };
    let meta = serde_json::from_slice(meta).map_err(|e| invalid_data(format!("snapshot meta does not decode: {e}")))?;
    Ok(Some(StoredSnapshot { meta, data: data.clone() }))
}

/// Writes `snapshot` as the snapshot file and into `slot` unless the slot already holds a newer one. Runs on
/// a blocking thread: it fsyncs while holding the slot's lock.
async fn store_snapshot(
    dir: PathBuf,
    slot: Arc<Mutex<Option<StoredSnapshot>>>,
    snapshot: StoredSnapshot,
) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        let mut current = lock_slot(&slot);
        if current.as_ref().is_some_and(|c| c.meta.last_log_id > snapshot.meta.last_log_id) {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(snapshot.data.len() + 64);
        encode_frame(&mut buf, &serde_json::to_vec(&snapshot.meta).expect("snapshot meta always serialises"));
        encode_frame(&mut buf, &snapshot.data);
        write_atomically(&dir, SNAPSHOT_FILE, &buf)?;
        *current = Some(snapshot);
        Ok(())
    })
    .await
    .map_err(|e| std::io::Error::other(format!("snapshot task failed: {e}")))?
}

fn snapshot_error(meta: &SnapshotMeta, verb: ErrorVerb, e: std::io::Error) -> StorageError {
    StorageError::from_io_error(ErrorSubject::Snapshot(Some(meta.signature())), verb, e)
}

/// Captures the state at one point and writes it as a snapshot, beside the running state machine.
pub struct SnapshotBuilder {
    dir: PathBuf,
    state: MetadataState,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership,
    slot: Arc<Mutex<Option<StoredSnapshot>>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let data = serde_json::to_vec(&self.state).expect("metadata state always serialises");
        let snapshot_id = match self.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.leader_id.node_id, id.index),
            None => "empty".to_string(),
        };
        let meta =
            SnapshotMeta { last_log_id: self.last_applied, last_membership: self.membership.clone(), snapshot_id };
        let stored = StoredSnapshot { meta: meta.clone(), data: data.clone() };
        store_snapshot(self.dir.clone(), Arc::clone(&self.slot), stored)
            .await
            .map_err(|e| snapshot_error(&meta, ErrorVerb::Write, e))?;
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "metadata snapshot written");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ProposalOutcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut outcomes = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let outcome = match entry.payload {
                EntryPayload::Normal(proposal) => self.apply_proposal(entry.log_id.index, &proposal.records),
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                    ProposalOutcome { first_offset: self.state.next_offset, skipped: Vec::new() }
                }
                EntryPayload::Blank => ProposalOutcome { first_offset: self.state.next_offset, skipped: Vec::new() },
            };
            outcomes.push(outcome);
        }
        // Published before openraft answers the proposer, so a caller of `propose` sees its change on return.
        self.publish();
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            dir: self.dir.clone(),
            state: self.state.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            slot: Arc::clone(&self.snapshot),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let state = decode_state(&data).map_err(|e| snapshot_error(meta, ErrorVerb::Read, e))?;
        let stored = StoredSnapshot { meta: meta.clone(), data };
        // Durable before the state changes: once openraft purges the log behind it, the file is all there is.
        store_snapshot(self.dir.clone(), Arc::clone(&self.snapshot), stored)
            .await
            .map_err(|e| snapshot_error(meta, ErrorVerb::Write, e))?;
        self.state = state;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        tracing::info!(last_log_id = ?meta.last_log_id, "metadata snapshot installed");
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self
            .snapshot_slot()
            .as_ref()
            .map(|s| Snapshot { meta: s.meta.clone(), snapshot: Box::new(Cursor::new(s.data.clone())) }))
    }
}
