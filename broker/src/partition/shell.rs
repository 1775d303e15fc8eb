//! Carrying out the replication state machine's commands for one partition: log writes and truncations,
//! checkpoints, fetches to the leader and ISR proposals to the controller (started as tasks whose answers
//! come back as events), and the reply to a follower's fetch (handed back to the RPC handler).

use rill_proto::batch;

use crate::clock::now_ms;
use crate::replication::{Command, Event, FetchReply, Replica, Warning};

use super::{Offline, Partition, producers, storage_epochs};
use crate::producer_state::ProducerBatch;

impl Partition {
    /// Runs `commands` in order, with the replica lock held by the caller, then publishes the new offsets.
    /// Returns the reply to a replica fetch if the step produced one.
    pub(super) fn execute(&self, replica: &mut Replica, commands: Vec<Command>) -> Option<FetchReply> {
        let mut fetch_reply = None;
        for command in commands {
            match command {
                Command::ReplyFetch { reply, .. } => fetch_reply = Some(reply),
                Command::PersistEpochHistory { entries } => {
                    if let Err(e) = self.read_log().write_leader_epochs(&storage_epochs(&entries)) {
                        self.fail(Offline::StorageFailed(format!("leader-epoch checkpoint: {e}")));
                    }
                }
                // Published below; acks=all waiters and consumers watch the published offsets, and the HW
                // is checkpointed by the periodic upkeep.
                Command::HighWatermarkAdvanced { .. } => {}
                Command::SendFetch(request) => {
                    if let Some(me) = self.me.upgrade() {
                        tokio::spawn(me.fetch_from_leader(request));
                    }
                }
                Command::AppendReplicated { fetch_id, batches } => self.append_replicated(fetch_id, &batches),
                Command::Truncate { offset } => {
                    let mut producers = self.lock_producers();
                    let mut log = self.write_log();
                    tracing::info!(partition = %self.name(), offset, log_end = log.end_offset(), "truncating the log to the leader's");
                    let truncated = log.truncate_to(offset).map_err(|e| format!("truncation to {offset}: {e}"));
                    let result = truncated.and_then(|()| {
                        producers::after_truncation(&log, &mut producers, &self.name()).map_err(|e| e.to_string())
                    });
                    if let Err(reason) = result {
                        drop(log);
                        self.fail(Offline::StorageFailed(reason));
                    }
                }
                Command::TruncateFully { log_start_offset } => {
                    let mut producers = self.lock_producers();
                    let mut log = self.write_log();
                    tracing::info!(partition = %self.name(), log_start_offset, log_end = log.end_offset(), "restarting the log at the leader's log start");
                    let restarted = log
                        .truncate_fully_and_start_at(log_start_offset)
                        .map_err(|e| format!("restart of the log at {log_start_offset}: {e}"));
                    let result = restarted.and_then(|()| {
                        producers::after_truncation(&log, &mut producers, &self.name()).map_err(|e| e.to_string())
                    });
                    if let Err(reason) = result {
                        drop(log);
                        self.fail(Offline::StorageFailed(reason));
                    }
                }
                Command::ProposeIsr { proposal_id, leader_epoch, partition_epoch, isr } => {
                    if let Some(me) = self.me.upgrade() {
                        tokio::spawn(async move {
                            let result =
                                me.link.alter_partition(&me.topic, me.index, leader_epoch, partition_epoch, isr).await;
                            // Stepping may persist the epoch history: off the async workers.
                            let stepped = tokio::task::spawn_blocking(move || {
                                me.step(Event::AlterPartitionResponse { proposal_id, result });
                            });
                            if let Err(e) = stepped.await {
                                tracing::error!(error = %e, "stepping an ISR change answer failed");
                            }
                        });
                    }
                }
                Command::Warn(warning) => self.warn(&warning),
            }
        }
        self.publish(replica);
        fetch_reply
    }

    /// Appends the batches of the fetch answer being stepped that the replica accepted, verbatim.
    fn append_replicated(&self, fetch_id: u64, accepted: &[crate::replication::BatchMeta]) {
        let pending = self.pending_fetch.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some((pending_id, records)) = pending.filter(|(id, _)| *id == fetch_id) else {
            return self.fail(Offline::StorageFailed(format!("records of fetch {fetch_id} went missing")));
        };
        assert_eq!(pending_id, fetch_id);
        let mut appended = 0;
        {
            // Followers keep the same producer state as their leader, so that a new leader deduplicates alike.
            let mut producers = self.lock_producers();
            let mut log = self.write_log();
            for item in batch::split_batches(&records) {
                let Ok((header, range)) = item else { break };
                if !accepted.iter().any(|b| b.base_offset == header.base_offset) {
                    continue;
                }
                let segments_before = log.segment_count();
                if let Err(e) = log.append_replicated(&records[range], now_ms()) {
                    drop(log);
                    return self.fail(Offline::StorageFailed(format!("replicated append: {e}")));
                }
                if log.segment_count() > segments_before
                    && let Err(e) = producers::write_snapshot(&log, &producers)
                {
                    tracing::warn!(partition = %self.name(), error = %e, "producer snapshot failed");
                }
                let producer_batch = ProducerBatch::from_header(&header);
                producers.apply(&producer_batch, header.base_offset, header.last_offset(), header.max_timestamp);
                appended += 1;
            }
        }
        assert_eq!(appended, accepted.len(), "every batch the replica accepted is in the fetch answer");
        if self.config().log.durability == rill_storage::Durability::Fsync
            && let Some(me) = self.me.upgrade()
        {
            me.request_flush();
        }
    }

    fn warn(&self, warning: &Warning) {
        match warning {
            Warning::AcknowledgedRecordsLost { .. } => {
                tracing::error!(partition = %self.name(), ?warning, "acknowledged records lost (allowed by topic settings)")
            }
            Warning::FetchRefused { .. } => tracing::debug!(partition = %self.name(), ?warning, "replication"),
            _ => tracing::warn!(partition = %self.name(), ?warning, "replication"),
        }
    }
}
