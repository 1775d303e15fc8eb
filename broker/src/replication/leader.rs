//! Leader side of replication: answering follower fetches, tracking each follower's progress, computing the HW
//! over the ISR, and proposing ISR shrinks and expansions to the controller.

use std::collections::{BTreeMap, BTreeSet};

use super::messages::{AcceptedIsr, AlterPartitionError, Command, FetchError, FetchReply, ReplicaFetch, Warning};
use super::replica::{Replica, RoleState};

/// What the leader knows of one follower, from its fetches in the current leader epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FollowerProgress {
    /// The highest registration generation seen in its fetches; lower ones are refused.
    pub(super) broker_epoch: Option<u64>,
    /// `None` until it fetches in this leader epoch: the HW cannot count it before then.
    pub(super) log_end_offset: Option<u64>,
    pub(super) durable_offset: Option<u64>,
    /// The last time its log end reached the leader's (see `record_fetch`).
    pub(super) last_caught_up_ms: u64,
    /// The leader's log end and the time at its previous fetch.
    pub(super) previous_fetch: Option<(u64, u64)>,
}

impl FollowerProgress {
    /// A follower starts with a full `replica_lag_ms_max` of grace: the new leader has not heard from it yet,
    /// which is not evidence that it lags.
    fn new(now_ms: u64) -> Self {
        FollowerProgress {
            broker_epoch: None,
            log_end_offset: None,
            durable_offset: None,
            last_caught_up_ms: now_ms,
            previous_fetch: None,
        }
    }
}

/// An ISR change sent to the controller and not yet answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PendingIsr {
    pub(super) proposal_id: u64,
    pub(super) isr: BTreeSet<u32>,
}

#[derive(Debug)]
pub(super) struct LeaderState {
    pub(super) followers: BTreeMap<u32, FollowerProgress>,
    /// At most one proposal is in flight, so the controller never has to order two from the same leader.
    pub(super) pending_isr: Option<PendingIsr>,
    /// The controller refused a proposal because this leader's metadata is behind; proposing again before the
    /// newer metadata arrives would be refused the same way.
    pub(super) isr_waits_for_metadata: bool,
    /// Brokers that a proposal of unknown outcome (no answer, or a refusal that a retry or duplicate of a
    /// committed proposal also gets) would have added. The controller may have committed it, making them
    /// ISR members a new leader can be elected from, so the HW waits for them until newer metadata or a later
    /// committed proposal says what the ISR is.
    pub(super) unresolved_additions: BTreeSet<u32>,
}

impl LeaderState {
    pub(super) fn new(replicas: &BTreeSet<u32>, broker_id: u32, now_ms: u64) -> Self {
        let followers =
            replicas.iter().filter(|&&id| id != broker_id).map(|&id| (id, FollowerProgress::new(now_ms))).collect();
        LeaderState {
            followers,
            pending_isr: None,
            isr_waits_for_metadata: false,
            unresolved_additions: BTreeSet::new(),
        }
    }

    /// New metadata within the same leader epoch: follow the replica set, and forget any proposal, which the
    /// new partition epoch has either applied or made stale.
    pub(super) fn metadata_changed(&mut self, replicas: &BTreeSet<u32>, broker_id: u32, now_ms: u64) {
        self.followers.retain(|id, _| replicas.contains(id));
        for &id in replicas.iter().filter(|&&id| id != broker_id) {
            self.followers.entry(id).or_insert_with(|| FollowerProgress::new(now_ms));
        }
        self.pending_isr = None;
        self.isr_waits_for_metadata = false;
        // The controller moved past the partition epoch any unanswered proposal was based on: it can no longer
        // commit, and this metadata holds every change that did.
        self.unresolved_additions.clear();
    }
}

impl Replica {
    pub(super) fn on_replica_fetch(&mut self, fetch: ReplicaFetch, out: &mut Vec<Command>) {
        let replica_id = fetch.replica_id;
        let reply = match self.validate_fetch(&fetch) {
            Err(error) => FetchReply::Error(error),
            Ok(()) => self.accept_fetch(fetch, out),
        };
        out.push(Command::ReplyFetch { replica_id, reply });
    }

    /// Epochs are compared first, whatever the role: they tell the follower whose metadata is behind.
    fn validate_fetch(&self, fetch: &ReplicaFetch) -> Result<(), FetchError> {
        let Some(leader_epoch) = self.leader_epoch else { return Err(FetchError::NotLeader) };
        if fetch.current_leader_epoch < leader_epoch {
            return Err(FetchError::FencedLeaderEpoch);
        }
        if fetch.current_leader_epoch > leader_epoch {
            return Err(FetchError::UnknownLeaderEpoch);
        }
        let RoleState::Leader(leader) = &self.role else { return Err(FetchError::NotLeader) };
        if !self.lease_valid {
            return Err(FetchError::NotLeader);
        }
        let Some(progress) = leader.followers.get(&fetch.replica_id) else { return Err(FetchError::UnknownReplica) };
        if progress.broker_epoch.is_some_and(|seen| fetch.broker_epoch < seen) {
            return Err(FetchError::StaleBrokerEpoch);
        }
        // With a last fetched epoch, a fetch offset past the log end is a divergence, answered as such.
        let past_end = fetch.last_fetched_epoch.is_none() && fetch.fetch_offset > self.log_end_offset;
        if fetch.fetch_offset < self.log_start_offset || past_end {
            return Err(FetchError::OffsetOutOfRange {
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset,
            });
        }
        Ok(())
    }

    fn accept_fetch(&mut self, fetch: ReplicaFetch, out: &mut Vec<Command>) -> FetchReply {
        if let Some(last_fetched_epoch) = fetch.last_fetched_epoch.filter(|_| !self.planted().skip_divergence_check) {
            let end = self.epochs.end_offset_for(last_fetched_epoch, self.log_end_offset);
            // The follower's log matches up to its fetch offset only if its last epoch is one this log holds
            // and that epoch reaches at least as far here.
            if end.epoch != Some(last_fetched_epoch) || end.end_offset < fetch.fetch_offset {
                return FetchReply::Diverging {
                    diverging_epoch: end.epoch,
                    end_offset: end.end_offset,
                    high_watermark: self.high_watermark,
                };
            }
        }
        self.record_fetch(&fetch);
        self.update_high_watermark(out);
        self.propose_isr_change_if_needed(fetch.now_ms, out);
        FetchReply::Read {
            fetch_offset: fetch.fetch_offset,
            high_watermark: self.high_watermark,
            log_start_offset: self.log_start_offset,
        }
    }

    /// Updates a follower's progress from a fetch that passed every check.
    fn record_fetch(&mut self, fetch: &ReplicaFetch) {
        let log_end_offset = self.log_end_offset;
        let durability_fsync = self.config.durability_fsync;
        let RoleState::Leader(leader) = &mut self.role else { unreachable!("validated as leader") };
        let progress = leader.followers.get_mut(&fetch.replica_id).expect("validated as a follower");
        progress.broker_epoch = progress.broker_epoch.max(Some(fetch.broker_epoch));
        progress.log_end_offset = Some(fetch.fetch_offset);
        // Under fsync only what the follower synced counts; a flushed offset past its log end is bad input.
        let durable_offset =
            if durability_fsync { fetch.flushed_offset.min(fetch.fetch_offset) } else { fetch.fetch_offset };
        progress.durable_offset = Some(durable_offset);
        // KIP-392: under steady produce load a follower is always a little behind the leader's log end, so
        // reaching the log end the leader had at its previous fetch also counts as caught up, as of then.
        let caught_up_ms = if fetch.fetch_offset >= log_end_offset {
            Some(fetch.now_ms)
        } else {
            progress
                .previous_fetch
                .filter(|&(previous_end, _)| fetch.fetch_offset >= previous_end)
                .map(|(_, at_ms)| at_ms)
        };
        if let Some(caught_up_ms) = caught_up_ms {
            progress.last_caught_up_ms = progress.last_caught_up_ms.max(caught_up_ms);
        }
        progress.previous_fetch = Some((log_end_offset, fetch.now_ms));
    }

    /// The committed ISR plus any proposed additions: until the controller answers, either ISR may be the one
    /// a new leader is elected from, so a record is committed only when both hold it. Additions of a proposal
    /// that got no answer count too, until its outcome is known.
    pub fn effective_isr(&self) -> BTreeSet<u32> {
        let mut isr = self.isr.clone();
        if let RoleState::Leader(leader) = &self.role {
            if let Some(pending) = &leader.pending_isr {
                isr.extend(pending.isr.iter().copied());
            }
            isr.extend(leader.unresolved_additions.iter().copied());
        }
        isr
    }

    /// The proposed ISR awaiting the controller's answer, if any.
    pub fn pending_isr(&self) -> Option<&BTreeSet<u32>> {
        match &self.role {
            RoleState::Leader(LeaderState { pending_isr: Some(pending), .. }) => Some(&pending.isr),
            _ => None,
        }
    }

    /// HW = min over the effective ISR of durable offsets, the leader's own included; it waits while an ISR
    /// member has not fetched in this leader epoch.
    pub(super) fn update_high_watermark(&mut self, out: &mut Vec<Command>) {
        let RoleState::Leader(leader) = &self.role else { return };
        if !self.lease_valid {
            return;
        }
        let planted = self.planted();
        if planted.high_watermark_at_log_end {
            return self.raise_high_watermark(self.log_end_offset, out);
        }
        let mut candidate = self.durable_offset();
        for id in self.effective_isr() {
            if id == self.config.broker_id {
                continue;
            }
            match leader.followers.get(&id).and_then(|progress| progress.durable_offset) {
                Some(durable_offset) => candidate = candidate.min(durable_offset),
                None if planted.high_watermark_skips_unfetched_followers => {}
                None => return,
            }
        }
        self.raise_high_watermark(candidate, out);
    }

    pub(super) fn leader_tick(&mut self, now_ms: u64, out: &mut Vec<Command>) {
        self.propose_isr_change_if_needed(now_ms, out);
    }

    /// Proposes the ISR that follower progress calls for: without members that have not caught up for longer
    /// than `replica_lag_ms_max`, with outsiders that hold everything committed.
    fn propose_isr_change_if_needed(&mut self, now_ms: u64, out: &mut Vec<Command>) {
        let broker_id = self.config.broker_id;
        let replica_lag_ms_max = self.config.replica_lag_ms_max;
        let high_watermark = self.high_watermark;
        let (Some(leader_epoch), Some(partition_epoch)) = (self.leader_epoch, self.partition_epoch) else { return };
        // A follower that has not reached this epoch's first offset could still hold a diverging tail.
        let epoch_start_offset = self.epochs.start_offset_of(leader_epoch).unwrap_or(self.log_end_offset);
        if !self.lease_valid {
            return;
        }
        let RoleState::Leader(leader) = &mut self.role else { return };
        if leader.pending_isr.is_some() || leader.isr_waits_for_metadata {
            return;
        }
        let mut isr = self.isr.clone();
        for (&id, progress) in &leader.followers {
            let recently_caught_up = now_ms.saturating_sub(progress.last_caught_up_ms) <= replica_lag_ms_max;
            if isr.contains(&id) && id != broker_id && !recently_caught_up {
                isr.remove(&id);
            }
            let holds_committed = progress.durable_offset.is_some_and(|durable| durable >= high_watermark)
                && progress.log_end_offset.is_some_and(|end| end >= epoch_start_offset);
            if !self.isr.contains(&id) && holds_committed && recently_caught_up {
                isr.insert(id);
            }
        }
        // With an outcome unknown, even an unchanged ISR is proposed: its answer (or the metadata a refusal
        // announces) settles the unknown one, which would otherwise hold the HW back for good.
        if isr == self.isr && leader.unresolved_additions.is_empty() {
            return;
        }
        let proposal_id = self.next_proposal_id;
        self.next_proposal_id += 1;
        leader.pending_isr = Some(PendingIsr { proposal_id, isr: isr.clone() });
        out.push(Command::ProposeIsr { proposal_id, leader_epoch, partition_epoch, isr: isr.into_iter().collect() });
    }

    pub(super) fn on_alter_partition_response(
        &mut self,
        proposal_id: u64,
        result: Result<AcceptedIsr, AlterPartitionError>,
        out: &mut Vec<Command>,
    ) {
        // An answer for a leadership since lost, or for a proposal that metadata already overtook, is moot.
        let RoleState::Leader(leader) = &mut self.role else { return };
        if leader.pending_isr.as_ref().is_none_or(|pending| pending.proposal_id != proposal_id) {
            return;
        }
        let pending = leader.pending_isr.take().expect("checked above");
        match result {
            Ok(accepted) => {
                if self.partition_epoch.is_none_or(|current| accepted.partition_epoch > current) {
                    self.isr = accepted.isr.into_iter().collect();
                    self.partition_epoch = Some(accepted.partition_epoch);
                    // Any unanswered proposal was based on an older partition epoch: it can no longer commit.
                    leader.unresolved_additions.clear();
                }
            }
            Err(error) => {
                if matches!(error, AlterPartitionError::StalePartitionEpoch | AlterPartitionError::FencedLeaderEpoch) {
                    leader.isr_waits_for_metadata = true;
                }
                // No answer, or a refusal (which a retry or a duplicate of the request also gets when another
                // copy of it was, or will be, committed: eligibility and epochs change between copies), leaves
                // open whether the controller committed the change: until metadata or a committed answer says,
                // the additions count for the HW. Found by rill-sim (an answer lost; a duplicate refused as
                // stale, or as ineligible, around its committed original); regression seeds in
                // sim/tests/seeds.rs.
                leader.unresolved_additions.extend(pending.isr.difference(&self.isr).copied());
                out.push(Command::Warn(Warning::IsrChangeRefused { error }));
            }
        }
        // A committed shrink or a dropped expansion can let the HW advance.
        self.update_high_watermark(out);
    }

    pub(super) fn on_lease_renewed(&mut self, now_ms: u64, out: &mut Vec<Command>) {
        let RoleState::Leader(leader) = &mut self.role else { return };
        for progress in leader.followers.values_mut() {
            progress.last_caught_up_ms = progress.last_caught_up_ms.max(now_ms);
        }
        self.update_high_watermark(out);
    }

    /// Each follower's last known log end and when it last caught up with the leader's log end (empty unless
    /// leading), for lag metrics.
    pub fn followers(&self) -> Vec<(u32, Option<u64>, u64)> {
        match &self.role {
            RoleState::Leader(leader) => {
                leader.followers.iter().map(|(id, p)| (*id, p.log_end_offset, p.last_caught_up_ms)).collect()
            }
            _ => Vec::new(),
        }
    }

    /// What the leader knows of a follower's log end (for tests and metrics).
    pub fn follower_log_end_offset(&self, replica_id: u32) -> Option<u64> {
        match &self.role {
            RoleState::Leader(leader) => leader.followers.get(&replica_id).and_then(|progress| progress.log_end_offset),
            _ => None,
        }
    }
}
