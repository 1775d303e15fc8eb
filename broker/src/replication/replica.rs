//! The state of one partition replica and the events common to both roles: metadata transitions, local log
//! progress, the controller lease, and the invariants checked after every step.

use std::collections::BTreeSet;

use super::epochs::EpochHistory;
use super::follower::FollowerState;
use super::leader::LeaderState;
use super::messages::{Command, Event, ProduceError, Warning};
use super::planted::PlantedBugs;

/// Settings of one replica; the topic's (min ISR, durability, unclean election) may change while it runs
/// (`Replica::set_topic_settings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// This broker's id.
    pub broker_id: u32,
    /// An ISR follower that has not caught up with the leader's log end for longer than this is proposed for
    /// removal from the ISR.
    pub replica_lag_ms_max: u64,
    /// acks=all produce requests are refused while the ISR is smaller than this.
    pub min_insync_replicas: usize,
    /// The topic's durability policy is `fsync`: a replica's durable offset is its flushed offset, otherwise
    /// its log end offset.
    pub durability_fsync: bool,
    /// How long a follower waits before fetching again after a refused or failed fetch.
    pub fetch_backoff_ms: u64,
    /// The topic opted into unclean leader election, so a new leader may lack acknowledged records.
    pub unclean_leader_election: bool,
}

/// What the shell recovered from disk for this partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredLog {
    pub log_start_offset: u64,
    pub log_end_offset: u64,
    pub flushed_offset: u64,
    /// The last checkpointed HW; it may lie above the recovered log end after a crash.
    pub high_watermark: u64,
    pub epochs: EpochHistory,
}

/// A replica's role as metadata last told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No metadata for this partition has been applied yet.
    Unassigned,
    Leader,
    Follower {
        leader: u32,
    },
}

#[derive(Debug)]
pub(super) enum RoleState {
    Unassigned,
    Leader(LeaderState),
    Follower(FollowerState),
}

/// One partition replica's replication state machine. See the module documentation for how it is driven.
#[derive(Debug)]
pub struct Replica {
    pub(super) config: ReplicaConfig,
    pub(super) role: RoleState,
    /// `None` until the first metadata for the partition is applied.
    pub(super) leader_epoch: Option<u32>,
    pub(super) partition_epoch: Option<u32>,
    pub(super) replicas: BTreeSet<u32>,
    /// The ISR as the controller last committed it.
    pub(super) isr: BTreeSet<u32>,
    pub(super) log_start_offset: u64,
    pub(super) log_end_offset: u64,
    pub(super) flushed_offset: u64,
    pub(super) high_watermark: u64,
    pub(super) epochs: EpochHistory,
    /// False while the broker's controller session may have expired (see `Event::LeaseExpired`).
    pub(super) lease_valid: bool,
    /// Counters rather than random ids keep runs replayable; they never repeat within a replica's life.
    pub(super) next_fetch_id: u64,
    pub(super) next_proposal_id: u64,
    #[cfg(feature = "planted-bugs")]
    planted: PlantedBugs,
}

impl Replica {
    /// A replica over a recovered log, with no role until metadata arrives. The returned commands persist the
    /// epoch history if recovery cut epochs off it.
    pub fn new(config: ReplicaConfig, recovered: RecoveredLog) -> (Self, Vec<Command>) {
        let RecoveredLog { log_start_offset, log_end_offset, flushed_offset, high_watermark, mut epochs } = recovered;
        assert!(
            flushed_offset <= log_end_offset,
            "recovered flushed offset {flushed_offset} above log end {log_end_offset}"
        );
        assert!(
            log_start_offset <= log_end_offset,
            "recovered log start {log_start_offset} above log end {log_end_offset}"
        );
        let mut out = Vec::new();
        // A crash can cut the tail of the log; epochs that began in the lost tail describe no record.
        if epochs.truncate_from(log_end_offset) {
            out.push(Command::PersistEpochHistory { entries: epochs.entries().to_vec() });
        }
        let replica = Replica {
            config,
            role: RoleState::Unassigned,
            leader_epoch: None,
            partition_epoch: None,
            replicas: BTreeSet::new(),
            isr: BTreeSet::new(),
            log_start_offset,
            log_end_offset,
            flushed_offset,
            // A follower's checkpointed HW can exceed what survived a crash of its unflushed tail; the records
            // themselves are safe on the ISR, and this replica learns the HW again from its leader.
            high_watermark: high_watermark.min(log_end_offset).max(log_start_offset),
            epochs,
            lease_valid: true,
            next_fetch_id: 0,
            next_proposal_id: 0,
            #[cfg(feature = "planted-bugs")]
            planted: PlantedBugs::default(),
        };
        replica.check_invariants();
        (replica, out)
    }

    /// Applies one event and returns what the shell must do, in order.
    pub fn step(&mut self, event: Event) -> Vec<Command> {
        let mut out = Vec::new();
        let high_watermark_before = self.high_watermark;
        let leader_epoch_before = self.leader_epoch;
        let partition_epoch_before = self.partition_epoch;
        match event {
            Event::BecomeLeader { leader_epoch, partition_epoch, replicas, isr, now_ms } => {
                self.become_leader(leader_epoch, partition_epoch, replicas, isr, now_ms, &mut out)
            }
            Event::BecomeFollower { leader, leader_epoch, partition_epoch, replicas, isr } => {
                self.become_follower(leader, leader_epoch, partition_epoch, replicas, isr, &mut out)
            }
            Event::Appended { log_end_offset } => self.on_appended(log_end_offset, &mut out),
            Event::Flushed { flushed_offset } => self.on_flushed(flushed_offset, &mut out),
            Event::LogStartAdvanced { log_start_offset } => {
                assert!(log_start_offset <= self.log_end_offset, "log start {log_start_offset} above the log end");
                self.log_start_offset = self.log_start_offset.max(log_start_offset);
            }
            Event::ReplicaFetch(fetch) => self.on_replica_fetch(fetch, &mut out),
            Event::FetchResponse { fetch_id, answer, now_ms } => {
                self.on_fetch_response(fetch_id, answer, now_ms, &mut out)
            }
            Event::Tick { now_ms } => match self.role {
                RoleState::Leader(_) => self.leader_tick(now_ms, &mut out),
                RoleState::Follower(_) => self.follower_tick(now_ms, &mut out),
                RoleState::Unassigned => {}
            },
            Event::AlterPartitionResponse { proposal_id, result } => {
                self.on_alter_partition_response(proposal_id, result, &mut out)
            }
            Event::LeaseExpired => self.lease_valid = false,
            Event::LeaseRenewed { now_ms } => {
                self.lease_valid = true;
                self.on_lease_renewed(now_ms, &mut out);
            }
        }
        let lost = out.iter().any(|command| matches!(command, Command::Warn(Warning::AcknowledgedRecordsLost { .. })));
        // The HW never moves backwards, except through a truncation that the topic's settings allow to lose
        // acknowledged records (reported as such).
        assert!(
            self.high_watermark >= high_watermark_before || lost || self.planted().any(),
            "high watermark moved backwards from {high_watermark_before} to {}",
            self.high_watermark
        );
        assert!(self.leader_epoch >= leader_epoch_before, "leader epoch moved backwards");
        assert!(self.partition_epoch >= partition_epoch_before, "partition epoch moved backwards");
        self.check_invariants();
        out
    }

    fn check_invariants(&self) {
        assert!(
            self.high_watermark <= self.log_end_offset,
            "high watermark {} above log end {}",
            self.high_watermark,
            self.log_end_offset
        );
        assert!(
            self.flushed_offset <= self.log_end_offset,
            "flushed offset {} above log end {}",
            self.flushed_offset,
            self.log_end_offset
        );
        if let Some(latest) = self.epochs.latest() {
            assert!(latest.start_offset <= self.log_end_offset, "epoch {} starts beyond the log end", latest.epoch);
        }
        if let (Some(latest), Some(leader_epoch)) = (self.epochs.latest_epoch(), self.leader_epoch) {
            assert!(
                latest <= leader_epoch,
                "the log holds epoch {latest}, later than the known leader epoch {leader_epoch}"
            );
        }
    }

    /// Metadata older than what this replica has applied, or older than its own log, is ignored: metadata
    /// arrives in order, so it can only be a replay or a duplicate.
    fn is_duplicate(&self, leader_epoch: u32, partition_epoch: u32) -> bool {
        // The controller's answer to this leader's own ISR proposal already applied what this metadata says.
        self.leader_epoch == Some(leader_epoch) && self.partition_epoch == Some(partition_epoch)
    }

    fn is_stale(&self, leader_epoch: u32, partition_epoch: u32) -> bool {
        let behind_log = self.epochs.latest_epoch().is_some_and(|latest| leader_epoch < latest);
        let behind_metadata = match (self.leader_epoch, self.partition_epoch) {
            (Some(current_leader), Some(current_partition)) => {
                leader_epoch < current_leader || partition_epoch <= current_partition
            }
            _ => false,
        };
        behind_log || behind_metadata
    }

    fn warn_stale(&self, leader_epoch: u32, partition_epoch: u32, out: &mut Vec<Command>) {
        out.push(Command::Warn(Warning::StaleMetadata {
            leader_epoch,
            partition_epoch,
            current_leader_epoch: self.leader_epoch.or(self.epochs.latest_epoch()).unwrap_or(0),
            current_partition_epoch: self.partition_epoch.unwrap_or(0),
        }));
    }

    fn become_leader(
        &mut self,
        leader_epoch: u32,
        partition_epoch: u32,
        replicas: Vec<u32>,
        isr: Vec<u32>,
        now_ms: u64,
        out: &mut Vec<Command>,
    ) {
        if self.is_duplicate(leader_epoch, partition_epoch) {
            return;
        }
        if self.is_stale(leader_epoch, partition_epoch) {
            return self.warn_stale(leader_epoch, partition_epoch, out);
        }
        let same_term = self.leader_epoch == Some(leader_epoch);
        if same_term && matches!(self.role, RoleState::Follower(_)) {
            let reason = format!("leader epoch {leader_epoch} names this broker leader after another broker");
            return out.push(Command::Warn(Warning::InvalidMetadata { reason }));
        }
        // Only this broker writes records of an epoch it leads, so its log holding `leader_epoch` while it is
        // not leading means it led that epoch before a restart. It may have lost unflushed records of the epoch
        // that followers copied; writing new ones at the same offsets in the same epoch would make two
        // different records look identical to the divergence check. The controller must elect it anew.
        if !matches!(self.role, RoleState::Leader(_)) && self.epochs.latest_epoch() == Some(leader_epoch) {
            let reason = format!("this broker led epoch {leader_epoch} before a restart; it can lead only a new epoch");
            return out.push(Command::Warn(Warning::InvalidMetadata { reason }));
        }
        self.leader_epoch = Some(leader_epoch);
        self.partition_epoch = Some(partition_epoch);
        self.replicas = replicas.into_iter().collect();
        self.isr = isr.into_iter().collect();
        if !self.isr.contains(&self.config.broker_id) {
            let reason = format!("leader {} is not in its own ISR {:?}", self.config.broker_id, self.isr);
            out.push(Command::Warn(Warning::InvalidMetadata { reason }));
        }
        match &mut self.role {
            // A new partition epoch in the same leader epoch: the ISR or replica set changed under this leader.
            RoleState::Leader(leader) if same_term => {
                leader.metadata_changed(&self.replicas, self.config.broker_id, now_ms)
            }
            _ => {
                self.epochs.append(leader_epoch, self.log_end_offset);
                out.push(Command::PersistEpochHistory { entries: self.epochs.entries().to_vec() });
                self.role = RoleState::Leader(LeaderState::new(&self.replicas, self.config.broker_id, now_ms));
            }
        }
        self.update_high_watermark(out);
    }

    fn become_follower(
        &mut self,
        leader: u32,
        leader_epoch: u32,
        partition_epoch: u32,
        replicas: Vec<u32>,
        isr: Vec<u32>,
        out: &mut Vec<Command>,
    ) {
        if self.is_duplicate(leader_epoch, partition_epoch) {
            return;
        }
        if self.is_stale(leader_epoch, partition_epoch) {
            return self.warn_stale(leader_epoch, partition_epoch, out);
        }
        let same_term = self.leader_epoch == Some(leader_epoch);
        let invalid = if leader == self.config.broker_id {
            Some(format!("leader epoch {leader_epoch} names this broker as a follower of itself"))
        } else if same_term && matches!(self.role, RoleState::Leader(_)) {
            Some(format!("leader epoch {leader_epoch} names broker {leader} leader after this broker"))
        } else {
            None
        };
        if let Some(reason) = invalid {
            return out.push(Command::Warn(Warning::InvalidMetadata { reason }));
        }
        self.leader_epoch = Some(leader_epoch);
        self.partition_epoch = Some(partition_epoch);
        self.replicas = replicas.into_iter().collect();
        self.isr = isr.into_iter().collect();
        if same_term && matches!(&self.role, RoleState::Follower(state) if state.leader == leader) {
            // Only the ISR or replica set changed: keep fetching from the same leader.
            return;
        }
        // An epoch this replica began as leader but wrote nothing in would otherwise be sent as the last
        // fetched epoch, naming an epoch that owns no record.
        if self.epochs.truncate_from(self.log_end_offset) {
            out.push(Command::PersistEpochHistory { entries: self.epochs.entries().to_vec() });
        }
        self.role = RoleState::Follower(FollowerState::new(leader));
        self.send_fetch(out);
    }

    fn on_appended(&mut self, log_end_offset: u64, out: &mut Vec<Command>) {
        if !matches!(self.role, RoleState::Leader(_)) {
            return;
        }
        assert!(
            log_end_offset >= self.log_end_offset,
            "leader log end moved backwards from {} to {log_end_offset}",
            self.log_end_offset
        );
        self.log_end_offset = log_end_offset;
        self.update_high_watermark(out);
    }

    fn on_flushed(&mut self, flushed_offset: u64, out: &mut Vec<Command>) {
        assert!(
            flushed_offset <= self.log_end_offset,
            "flushed offset {flushed_offset} reported above the log end {}",
            self.log_end_offset
        );
        // Reports can arrive out of order; an older, smaller one says nothing new.
        self.flushed_offset = self.flushed_offset.max(flushed_offset);
        match self.role {
            RoleState::Leader(_) => self.update_high_watermark(out),
            RoleState::Follower(_) => self.follower_flushed(out),
            RoleState::Unassigned => {}
        }
    }

    /// The offset below which this replica's records survive a crash under the topic's durability policy.
    pub fn durable_offset(&self) -> u64 {
        if self.config.durability_fsync { self.flushed_offset } else { self.log_end_offset }
    }

    /// Moves the HW up to `candidate` if that is higher, and tells the shell.
    pub(super) fn raise_high_watermark(&mut self, candidate: u64, out: &mut Vec<Command>) {
        if candidate <= self.high_watermark {
            return;
        }
        assert!(
            candidate <= self.log_end_offset,
            "high watermark {candidate} would pass the log end {}",
            self.log_end_offset
        );
        self.high_watermark = candidate;
        out.push(Command::HighWatermarkAdvanced { high_watermark: candidate });
    }

    /// Whether this topic's settings allow a truncation below the HW (which loses acknowledged records).
    pub(super) fn acknowledged_loss_allowed(&self) -> bool {
        // A planted bug may lose acknowledged records; the simulator's checker, not this assertion, must say so.
        !self.config.durability_fsync || self.config.unclean_leader_election || self.planted().any()
    }

    /// The bugs planted in this replica (none without the `planted-bugs` feature).
    #[cfg(feature = "planted-bugs")]
    pub(super) fn planted(&self) -> PlantedBugs {
        self.planted
    }

    #[cfg(not(feature = "planted-bugs"))]
    #[inline(always)]
    pub(super) fn planted(&self) -> PlantedBugs {
        PlantedBugs::default()
    }

    /// Plants bugs in this replica, for the simulator's tests of its checker.
    #[cfg(feature = "planted-bugs")]
    pub fn plant(&mut self, bugs: PlantedBugs) {
        self.planted = bugs;
    }

    // Accessors.

    pub fn role(&self) -> Role {
        match &self.role {
            RoleState::Unassigned => Role::Unassigned,
            RoleState::Leader(_) => Role::Leader,
            RoleState::Follower(state) => Role::Follower { leader: state.leader },
        }
    }

    /// Leading and holding a lease: the only state in which produce requests and follower fetches are served.
    pub fn is_acting_leader(&self) -> bool {
        matches!(self.role, RoleState::Leader(_)) && self.lease_valid
    }

    /// The topic's config changed: later decisions (acks=all admission, the durable offset, elections)
    /// use the new settings.
    pub fn set_topic_settings(&mut self, min_insync_replicas: usize, durability_fsync: bool, unclean: bool) {
        self.config.min_insync_replicas = min_insync_replicas;
        self.config.durability_fsync = durability_fsync;
        self.config.unclean_leader_election = unclean;
    }

    pub fn config(&self) -> &ReplicaConfig {
        &self.config
    }

    pub fn leader_epoch(&self) -> Option<u32> {
        self.leader_epoch
    }

    pub fn partition_epoch(&self) -> Option<u32> {
        self.partition_epoch
    }

    pub fn replicas(&self) -> &BTreeSet<u32> {
        &self.replicas
    }

    /// The ISR the controller committed (a proposed change is not included; see `effective_isr`).
    pub fn isr(&self) -> &BTreeSet<u32> {
        &self.isr
    }

    pub fn high_watermark(&self) -> u64 {
        self.high_watermark
    }

    pub fn log_start_offset(&self) -> u64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> u64 {
        self.log_end_offset
    }

    pub fn flushed_offset(&self) -> u64 {
        self.flushed_offset
    }

    pub fn epoch_history(&self) -> &EpochHistory {
        &self.epochs
    }

    pub fn lease_valid(&self) -> bool {
        self.lease_valid
    }

    /// Whether a produce request may be appended now: only by an acting leader, and for acks=all only while
    /// the ISR has at least `min_insync_replicas` members.
    ///
    /// # Errors
    ///
    /// `NotLeader` when not an acting leader; `NotEnoughReplicas` for acks=all with too small an ISR.
    pub fn check_produce(&self, acks_all: bool) -> Result<(), ProduceError> {
        let leading_without_lease = self.planted().produce_without_lease && matches!(self.role, RoleState::Leader(_));
        if !self.is_acting_leader() && !leading_without_lease {
            return Err(ProduceError::NotLeader);
        }
        let min_insync_replicas = self.config.min_insync_replicas;
        if acks_all && self.isr.len() < min_insync_replicas {
            return Err(ProduceError::NotEnoughReplicas { isr_size: self.isr.len(), min_insync_replicas });
        }
        Ok(())
    }
}
