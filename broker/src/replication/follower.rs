//! Follower side of replication: deciding what to fetch next, appending what the leader sends, adopting its
//! epoch boundaries, truncating a diverged tail, and backing off after refusals.

use super::messages::{BatchMeta, Command, FetchAnswer, FetchError, FetchRequest, Warning};
use super::replica::{Replica, RoleState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FetchState {
    /// A fetch is out; only the answer carrying this id is applied.
    InFlight { fetch_id: u64 },
    /// Under fsync, the next fetch waits until the records just appended are flushed, so that it reports them
    /// durable: a caught-up follower's fetch may sit at the leader for a whole long poll, and the HW would wait
    /// that long for news of the flush.
    AwaitingFlush,
    /// Fetch again at the first tick at or after `retry_at_ms`.
    Backoff { retry_at_ms: u64 },
    /// The leader fenced this replica's leader epoch: only newer metadata can help.
    AwaitingMetadata,
}

#[derive(Debug)]
pub(super) struct FollowerState {
    pub(super) leader: u32,
    pub(super) fetch: FetchState,
}

impl FollowerState {
    /// The caller sends the first fetch right away.
    pub(super) fn new(leader: u32) -> Self {
        FollowerState { leader, fetch: FetchState::AwaitingMetadata }
    }
}

impl Replica {
    pub(super) fn send_fetch(&mut self, out: &mut Vec<Command>) {
        let fetch_id = self.next_fetch_id;
        self.next_fetch_id += 1;
        let current_leader_epoch = self.leader_epoch.expect("a follower has applied metadata");
        let fetch_offset = self.log_end_offset;
        let last_fetched_epoch = self.epochs.latest_epoch();
        let flushed_offset = self.flushed_offset;
        let RoleState::Follower(state) = &mut self.role else { unreachable!("only followers fetch") };
        state.fetch = FetchState::InFlight { fetch_id };
        out.push(Command::SendFetch(FetchRequest {
            fetch_id,
            leader: state.leader,
            current_leader_epoch,
            fetch_offset,
            last_fetched_epoch,
            flushed_offset,
        }));
    }

    pub(super) fn on_fetch_response(
        &mut self,
        fetch_id: u64,
        answer: FetchAnswer,
        now_ms: u64,
        out: &mut Vec<Command>,
    ) {
        let RoleState::Follower(state) = &self.role else { return };
        // Answers to fetches abandoned by a role or leader change are dropped.
        if state.fetch != (FetchState::InFlight { fetch_id }) {
            return;
        }
        match answer {
            FetchAnswer::Records { batches, high_watermark, log_start_offset: _ } => {
                self.apply_records(fetch_id, batches, high_watermark, now_ms, out)
            }
            // The leader's HW says nothing of this log until it matches the leader's (see `apply_divergence`).
            FetchAnswer::Diverging { diverging_epoch, end_offset, high_watermark: _ } => {
                self.apply_divergence(diverging_epoch, end_offset, now_ms, out)
            }
            FetchAnswer::Error(error) => self.fetch_refused(error, now_ms, out),
        }
    }

    fn apply_records(
        &mut self,
        fetch_id: u64,
        batches: Vec<BatchMeta>,
        leader_high_watermark: u64,
        now_ms: u64,
        out: &mut Vec<Command>,
    ) {
        if let Err(reason) = self.check_batches(&batches) {
            out.push(Command::Warn(Warning::InvalidFetchAnswer { reason }));
            return self.back_off(now_ms);
        }
        let mut epochs_changed = false;
        for batch in &batches {
            if self.epochs.latest_epoch().is_none_or(|latest| batch.partition_leader_epoch > latest) {
                self.epochs.append(batch.partition_leader_epoch, batch.base_offset);
                epochs_changed = true;
            }
        }
        // The history is persisted before the records: recovery trims a history that runs ahead of the log,
        // but could not tell which epoch wrote records that the history lacks.
        if epochs_changed {
            out.push(Command::PersistEpochHistory { entries: self.epochs.entries().to_vec() });
        }
        if let Some(last) = batches.last() {
            self.log_end_offset = last.last_offset + 1;
            out.push(Command::AppendReplicated { fetch_id, batches });
        }
        self.follow_leader_high_watermark(leader_high_watermark, out);
        self.fetch_next(out);
    }

    /// Batches must continue the log exactly, in non-decreasing epochs no later than the leader's.
    fn check_batches(&self, batches: &[BatchMeta]) -> Result<(), String> {
        let leader_epoch = self.leader_epoch.expect("a follower has applied metadata");
        let mut expected_offset = self.log_end_offset;
        let mut epoch_floor = self.epochs.latest_epoch().unwrap_or(0);
        for batch in batches {
            if batch.base_offset != expected_offset || batch.last_offset < batch.base_offset {
                return Err(format!(
                    "batch {}..={} does not continue the log at {expected_offset}",
                    batch.base_offset, batch.last_offset
                ));
            }
            if batch.partition_leader_epoch < epoch_floor || batch.partition_leader_epoch > leader_epoch {
                return Err(format!(
                    "batch at {} has epoch {}, outside {epoch_floor}..={leader_epoch}",
                    batch.base_offset, batch.partition_leader_epoch
                ));
            }
            expected_offset = batch.last_offset + 1;
            epoch_floor = batch.partition_leader_epoch;
        }
        Ok(())
    }

    /// The leader says epoch `diverging_epoch` ends at `end_offset` in its log. This log's copy of that epoch
    /// can only be trusted up to where both end (KIP-279); if this log ends it earlier than the leader, the
    /// next fetch names an earlier epoch and the leader checks again.
    fn apply_divergence(&mut self, diverging_epoch: Option<u32>, end_offset: u64, now_ms: u64, out: &mut Vec<Command>) {
        let own_end_offset = match diverging_epoch {
            Some(epoch) => self.epochs.end_offset_for(epoch, self.log_end_offset).end_offset,
            None => self.log_end_offset,
        };
        let truncate_offset = end_offset.min(own_end_offset);
        // Refetching without cutting anything would get the same answer forever.
        if truncate_offset >= self.log_end_offset {
            let reason = format!(
                "diverging epoch {diverging_epoch:?} ending at {end_offset} cuts nothing from a log ending at {}",
                self.log_end_offset
            );
            out.push(Command::Warn(Warning::InvalidFetchAnswer { reason }));
            return self.back_off(now_ms);
        }
        self.truncate_log(truncate_offset, out);
        // Not the leader's HW yet: what is left may still differ from the leader's log (this log can end its
        // copy of the epoch earlier than the leader, and the next fetch checks an earlier epoch). Found by
        // rill-sim (varied seed 21286): a HW raised here covered records the next answer truncated, which
        // the truncation assertion caught. The HW follows the leader's once records are accepted.
        self.send_fetch(out);
    }

    /// Cuts the log to end at `offset`. Below the HW that would drop acknowledged records: a broken invariant,
    /// unless the topic's settings allow such loss.
    fn truncate_log(&mut self, offset: u64, out: &mut Vec<Command>) {
        assert!(offset <= self.log_end_offset, "truncation to {offset} beyond the log end {}", self.log_end_offset);
        if offset < self.high_watermark {
            assert!(
                self.acknowledged_loss_allowed(),
                "follower told to truncate to {offset}, below its high watermark {}: acknowledged records would be lost",
                self.high_watermark
            );
            out.push(Command::Warn(Warning::AcknowledgedRecordsLost {
                high_watermark: self.high_watermark,
                truncate_offset: offset,
            }));
            self.high_watermark = offset;
        }
        out.push(Command::Truncate { offset });
        self.log_end_offset = offset;
        self.flushed_offset = self.flushed_offset.min(offset);
        // After the log: recovery trims a history that runs ahead of the log.
        if self.epochs.truncate_from(offset) {
            out.push(Command::PersistEpochHistory { entries: self.epochs.entries().to_vec() });
        }
    }

    /// A fenced epoch means this replica's metadata is behind, which only new metadata fixes; a fetch offset
    /// outside the leader's log is repaired here; every other refusal (the leader's metadata behind, its lease
    /// out, no answer at all) may pass, so retry later.
    fn fetch_refused(&mut self, error: FetchError, now_ms: u64, out: &mut Vec<Command>) {
        out.push(Command::Warn(Warning::FetchRefused { error }));
        match error {
            FetchError::FencedLeaderEpoch => self.set_fetch_state(FetchState::AwaitingMetadata),
            FetchError::OffsetOutOfRange { log_start_offset, .. } if self.log_end_offset < log_start_offset => {
                self.truncate_fully(log_start_offset, out);
                self.send_fetch(out);
            }
            // Only a log without epochs is checked this way (see the leader's `validate_fetch`); with no epoch
            // to compare, the leader's log end is the best guess at where the logs agree.
            FetchError::OffsetOutOfRange { log_end_offset, .. } if self.log_end_offset > log_end_offset => {
                self.truncate_log(log_end_offset, out);
                self.send_fetch(out);
            }
            _ => self.back_off(now_ms),
        }
    }

    /// Restarts the log empty at the leader's log start. Everything this log holds lies below it, so the
    /// leader's retention already deleted it: no replica serves it any more, and dropping it here loses nothing
    /// the HW still protects.
    fn truncate_fully(&mut self, log_start_offset: u64, out: &mut Vec<Command>) {
        // Before the log: a crash in between leaves an epoch-less log, which the leader refuses again and
        // this path repairs again; the reverse order would leave epochs describing deleted records.
        if self.epochs.truncate_from(0) {
            out.push(Command::PersistEpochHistory { entries: Vec::new() });
        }
        out.push(Command::TruncateFully { log_start_offset });
        self.log_start_offset = log_start_offset;
        self.log_end_offset = log_start_offset;
        self.flushed_offset = log_start_offset;
        self.raise_high_watermark(log_start_offset, out);
    }

    /// A follower's HW is its leader's, capped at its own log end, and never moves backwards.
    fn follow_leader_high_watermark(&mut self, leader_high_watermark: u64, out: &mut Vec<Command>) {
        let candidate = leader_high_watermark.min(self.log_end_offset);
        if self.planted().follower_adopts_lower_high_watermark && candidate < self.high_watermark {
            self.high_watermark = candidate;
        }
        self.raise_high_watermark(candidate, out);
    }

    fn back_off(&mut self, now_ms: u64) {
        let retry_at_ms = now_ms.saturating_add(self.config.fetch_backoff_ms);
        self.set_fetch_state(FetchState::Backoff { retry_at_ms });
    }

    fn set_fetch_state(&mut self, fetch: FetchState) {
        if let RoleState::Follower(state) = &mut self.role {
            state.fetch = fetch;
        }
    }

    fn fetch_next(&mut self, out: &mut Vec<Command>) {
        if self.config.durability_fsync && self.flushed_offset < self.log_end_offset {
            self.set_fetch_state(FetchState::AwaitingFlush);
        } else {
            self.send_fetch(out);
        }
    }

    pub(super) fn follower_flushed(&mut self, out: &mut Vec<Command>) {
        let RoleState::Follower(state) = &self.role else { return };
        if state.fetch == FetchState::AwaitingFlush && self.flushed_offset >= self.log_end_offset {
            self.send_fetch(out);
        }
    }

    pub(super) fn follower_tick(&mut self, now_ms: u64, out: &mut Vec<Command>) {
        let RoleState::Follower(state) = &self.role else { return };
        if matches!(state.fetch, FetchState::Backoff { retry_at_ms } if now_ms >= retry_at_ms) {
            self.send_fetch(out);
        }
    }
}
