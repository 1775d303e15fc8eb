//! One group of Kafka's classic consumer-group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) as a pure
//! state machine. The assignor runs in the group's leader (range, roundrobin, cooperative-sticky, ...): the
//! coordinator never looks inside protocol metadata or assignments, it only chooses a protocol, relays the
//! members' metadata to the leader and the leader's assignments to the members.
//!
//! Every operation takes the time as `now_ms` and returns what the shell must do: answer the request now
//! ([`Reply::Now`]), or park it ([`Reply::Wait`]) until a later operation or [`ClassicGroup::tick`] returns its
//! answer as a [`Completion`]. Nothing here does IO, reads a clock or draws randomness, and every output is in
//! a deterministic order.
//!
//! States, as Kafka's GroupCoordinator names them:
//! - `Empty`: no members.
//! - `PreparingRebalance`: members join (again). The join phase completes when every member has a pending join,
//!   or when the rebalance deadline passes (members that did not join are removed); a group that was empty
//!   first waits the initial rebalance delay, so consumers started together land in one generation.
//! - `CompletingRebalance`: the generation is formed and the leader has every member's metadata; syncs wait
//!   for the leader's, which carries the assignments.
//! - `Stable`: the leader's assignments were handed out.
//!
//! Simplifications against Kafka, each safe for clients: any join (even a follower's with unchanged metadata)
//! starts a rebalance; new members are admitted at once (no MEMBER_ID_REQUIRED round trip, KIP-394); there is
//! no static membership (KIP-345). Membership is not persisted: the shell rebuilds a coordinator with a new
//! `incarnation`, members of the old one get `UnknownMemberId` and join again, and the new ids never collide
//! with the old ones.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::limits::{
    CLASSIC_GROUP_MEMBERS_MAX, CLASSIC_MEMBER_METADATA_BYTES_MAX, CLASSIC_REBALANCE_TIMEOUT_MS_MAX,
    CLIENT_ID_BYTES_MAX, GROUP_SESSION_TIMEOUT_MS_MAX, GROUP_SESSION_TIMEOUT_MS_MIN,
};

mod messages;

pub use messages::{ClassicError, ClassicJoin, Completion, JoinAnswer, Reply, SyncAnswer};

/// The group's state, for DescribeGroups and ListGroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassicState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl ClassicState {
    /// Kafka's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
        }
    }
}

/// A member as the coordinator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicMember {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    /// As given, capped at `CLASSIC_REBALANCE_TIMEOUT_MS_MAX`.
    pub rebalance_timeout_ms: u64,
    /// (name, metadata) in the member's order of preference, from its latest join.
    pub protocols: Vec<(String, Bytes)>,
    /// Its metadata for the protocol chosen when the current generation formed.
    pub metadata: Bytes,
    /// What the leader assigned it in the current generation (empty until the leader syncs).
    pub assignment: Bytes,
    /// Order of first joining the group: the oldest member leads when the leader is gone.
    seq: u64,
    session_deadline_ms: u64,
    join_pending: bool,
    sync_pending: bool,
    /// Sent a sync in the current generation.
    synced: bool,
}

impl ClassicMember {
    fn metadata_for(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols.iter().find(|(name, _)| name == protocol).map(|(_, metadata)| metadata)
    }

    fn supports(&self, protocol: &str) -> bool {
        self.metadata_for(protocol).is_some()
    }

    fn renew_session(&mut self, now_ms: u64) {
        self.session_deadline_ms = now_ms.saturating_add(self.session_timeout_ms);
    }
}

/// The state with what only that state needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Empty,
    /// Members that have not joined by `deadline_ms` are removed; while `now_ms < delay_until_ms` the phase
    /// does not complete even when everyone has joined (the initial rebalance delay).
    Preparing {
        deadline_ms: u64,
        delay_until_ms: Option<u64>,
    },
    /// Members that have not synced by `sync_deadline_ms` are removed (the leader's sync may never come).
    Completing {
        sync_deadline_ms: u64,
    },
    /// `None` once every member synced.
    Stable {
        sync_deadline_ms: Option<u64>,
    },
}

/// One classic-protocol group. See the module documentation.
#[derive(Debug, Clone)]
pub struct ClassicGroup {
    group_id: String,
    /// Part of every member id, so ids differ across coordinator incarnations.
    incarnation: String,
    initial_rebalance_delay_ms: u64,
    phase: Phase,
    generation: i32,
    /// The members' protocol type; kept when the group empties, for DescribeGroups.
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, ClassicMember>,
    next_member_seq: u64,
}

impl ClassicGroup {
    /// An empty group. `incarnation` must change whenever the coordinator's state is rebuilt (a failover), so
    /// a member of an earlier incarnation can never be mistaken for one of this one.
    pub fn new(group_id: &str, incarnation: &str, initial_rebalance_delay_ms: u64) -> Self {
        ClassicGroup {
            group_id: group_id.to_string(),
            incarnation: incarnation.to_string(),
            initial_rebalance_delay_ms,
            phase: Phase::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            next_member_seq: 0,
        }
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// No members: nothing is pending and nothing will happen on a tick.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn state(&self) -> ClassicState {
        match self.phase {
            Phase::Empty => ClassicState::Empty,
            Phase::Preparing { .. } => ClassicState::PreparingRebalance,
            Phase::Completing { .. } => ClassicState::CompletingRebalance,
            Phase::Stable { .. } => ClassicState::Stable,
        }
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// The protocol of the current generation; `None` when the group is empty.
    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// Every member, in member id order.
    pub fn members(&self) -> impl Iterator<Item = &ClassicMember> {
        self.members.values()
    }

    /// A JoinGroup. A new member (empty member id) gets an id at once. Every join starts a rebalance or takes
    /// part in the one under way; the join waits until the join phase completes, unless this join completes
    /// it. The completions answer other members' parked requests.
    pub fn join(&mut self, join: ClassicJoin, now_ms: u64) -> (Reply<JoinAnswer>, Vec<Completion>) {
        let (member_id, is_new) = match self.admit(join, now_ms) {
            Ok(admitted) => admitted,
            Err(error) => return (Reply::Now(Err(error)), Vec::new()),
        };
        let mut completions = Vec::new();
        match self.phase {
            Phase::Preparing { deadline_ms, delay_until_ms: Some(until_ms) } if is_new && now_ms < until_ms => {
                // Another consumer is starting: give the rest of its cohort time too, within the deadline. Once
                // the delay is over (the tick may not have run yet) a newcomer simply completes the phase.
                let delay_until_ms = now_ms.saturating_add(self.initial_rebalance_delay_ms).min(deadline_ms);
                self.phase = Phase::Preparing { deadline_ms, delay_until_ms: Some(delay_until_ms) };
            }
            Phase::Preparing { .. } => {}
            _ => self.start_rebalance(now_ms, &mut completions),
        }
        self.try_complete_join(now_ms, &mut completions);
        let reply = take_own_join(&member_id, &mut completions);
        (reply, completions)
    }

    /// A SyncGroup. In `CompletingRebalance` a follower's sync waits for the leader's, whose `assignments`
    /// (member id, assignment) are handed out (members it names none get empty bytes; ids of non-members are
    /// ignored). In `Stable` a sync is answered with the member's assignment at once.
    pub fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now_ms: u64,
    ) -> (Reply<SyncAnswer>, Vec<Completion>) {
        if let Err(error) = self.check_member(member_id, generation) {
            return (Reply::Now(Err(error)), Vec::new());
        }
        let formed = matches!(self.phase, Phase::Completing { .. } | Phase::Stable { .. });
        let member = self.members.get_mut(member_id).expect("checked above");
        member.renew_session(now_ms);
        member.synced |= formed;
        member.sync_pending = matches!(self.phase, Phase::Completing { .. });
        let mut completions = Vec::new();
        let reply = match self.phase {
            Phase::Empty | Phase::Preparing { .. } => Reply::Now(Err(self.rebalance_in_progress(member_id))),
            Phase::Completing { .. } => {
                if self.leader.as_deref() == Some(member_id) {
                    self.hand_out(assignments, &mut completions);
                    take_own_sync(member_id, &mut completions)
                } else {
                    Reply::Wait { member_id: member_id.to_string() }
                }
            }
            Phase::Stable { .. } => Reply::Now(Ok(self.sync_answer(member_id))),
        };
        self.clear_sync_deadline_when_all_synced();
        (reply, completions)
    }

    /// A Heartbeat: renews the member's session. `RebalanceInProgress` while the group prepares a rebalance
    /// tells the member to join again.
    pub fn heartbeat(&mut self, member_id: &str, generation: i32, now_ms: u64) -> Result<(), ClassicError> {
        self.check_member(member_id, generation)?;
        self.members.get_mut(member_id).expect("checked above").renew_session(now_ms);
        match self.phase {
            Phase::Preparing { .. } => Err(self.rebalance_in_progress(member_id)),
            _ => Ok(()),
        }
    }

    /// A LeaveGroup of one or more members: one result per id given, in order. Their parked requests are
    /// answered `UnknownMemberId`, and the others rebalance.
    pub fn leave(&mut self, member_ids: &[String], now_ms: u64) -> (Vec<Result<(), ClassicError>>, Vec<Completion>) {
        let mut completions = Vec::new();
        let results: Vec<Result<(), ClassicError>> = member_ids
            .iter()
            .map(|id| if self.remove_member(id, &mut completions) { Ok(()) } else { Err(self.unknown_member(id)) })
            .collect();
        if results.iter().any(Result::is_ok) {
            self.after_removal(now_ms, &mut completions);
        }
        (results, completions)
    }

    /// Runs the group's timers: removes members whose session ran out (never one with a parked join or sync)
    /// or that did not sync in time, and completes the join phase when its deadline passes or the initial
    /// delay ends. The shell calls it every `GROUP_TICK_MS`.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Completion> {
        let mut completions = Vec::new();
        let late: Vec<String> =
            self.members.values().filter(|m| self.is_late(m, now_ms)).map(|m| m.member_id.clone()).collect();
        for id in &late {
            self.remove_member(id, &mut completions);
        }
        if !late.is_empty() {
            self.after_removal(now_ms, &mut completions);
        }
        if let Phase::Preparing { deadline_ms, .. } = self.phase
            && now_ms > deadline_ms
        {
            self.complete_join(now_ms, &mut completions);
        }
        self.try_complete_join(now_ms, &mut completions);
        completions
    }

    /// May `member_id` in `generation` commit offsets now? Members of the current generation may, except while
    /// the leader's assignment is awaited; in `PreparingRebalance` they may, since eager consumers commit
    /// while revoking, before they join again. A standalone commit (empty member id, negative generation) is
    /// accepted only while the group has no members.
    pub fn check_commit(&self, member_id: &str, generation: i32) -> Result<(), ClassicError> {
        if member_id.is_empty() && generation < 0 {
            return if self.members.is_empty() { Ok(()) } else { Err(self.unknown_member(member_id)) };
        }
        self.check_member(member_id, generation)?;
        match self.phase {
            Phase::Completing { .. } => Err(self.rebalance_in_progress(member_id)),
            _ => Ok(()),
        }
    }

    /// Validates a join and adds or updates its member, with its join pending. Returns the member id and
    /// whether the member is new.
    fn admit(&mut self, join: ClassicJoin, now_ms: u64) -> Result<(String, bool), ClassicError> {
        if !(GROUP_SESSION_TIMEOUT_MS_MIN..=GROUP_SESSION_TIMEOUT_MS_MAX).contains(&join.session_timeout_ms) {
            return Err(ClassicError::InvalidSessionTimeout {
                group: self.group_id.clone(),
                member: join.member_id,
                timeout_ms: join.session_timeout_ms,
            });
        }
        let bytes: usize = join.protocols.iter().map(|(name, metadata)| name.len() + metadata.len()).sum();
        if bytes > CLASSIC_MEMBER_METADATA_BYTES_MAX {
            return Err(ClassicError::MetadataTooLarge { group: self.group_id.clone(), member: join.member_id, bytes });
        }
        let is_new = join.member_id.is_empty();
        if is_new && self.members.len() >= CLASSIC_GROUP_MEMBERS_MAX {
            return Err(ClassicError::GroupMaxSizeReached { group: self.group_id.clone() });
        }
        if !is_new && !self.members.contains_key(&join.member_id) {
            return Err(self.unknown_member(&join.member_id));
        }
        self.check_protocols(&join)?;
        if self.members.keys().all(|id| *id == join.member_id) {
            self.protocol_type = Some(join.protocol_type.clone());
        }
        let member_id = if is_new { self.add_member(&join) } else { join.member_id.clone() };
        let member = self.members.get_mut(&member_id).expect("added or checked above");
        member.client_id = join.client_id;
        member.client_host = join.client_host;
        member.session_timeout_ms = join.session_timeout_ms;
        member.rebalance_timeout_ms = join.rebalance_timeout_ms.min(CLASSIC_REBALANCE_TIMEOUT_MS_MAX);
        member.protocols = join.protocols;
        member.join_pending = true;
        member.renew_session(now_ms);
        Ok((member_id, is_new))
    }

    /// A join must name a protocol type and protocols; with other members, the same protocol type and a
    /// protocol every one of them supports (so the group always has a protocol in common).
    fn check_protocols(&self, join: &ClassicJoin) -> Result<(), ClassicError> {
        let inconsistent = |reason: String| ClassicError::InconsistentGroupProtocol {
            group: self.group_id.clone(),
            member: join.member_id.clone(),
            reason,
        };
        if join.protocol_type.is_empty() || join.protocols.is_empty() {
            return Err(inconsistent("it gave no protocol type or no protocols".into()));
        }
        let mut others = self.members.values().filter(|m| m.member_id != join.member_id).peekable();
        if others.peek().is_none() {
            return Ok(());
        }
        let group_type = self.protocol_type.as_deref().unwrap_or_default();
        if join.protocol_type != group_type {
            return Err(inconsistent(format!(
                "its protocol type '{}' is not the group's '{group_type}'",
                join.protocol_type
            )));
        }
        let others: Vec<&ClassicMember> = others.collect();
        if !join.protocols.iter().any(|(name, _)| others.iter().all(|m| m.supports(name))) {
            let names: Vec<&str> = join.protocols.iter().map(|(name, _)| name.as_str()).collect();
            return Err(inconsistent(format!("none of its protocols {names:?} is supported by every member")));
        }
        Ok(())
    }

    /// Adds a new member with an id unique across incarnations: `{client_id}-{incarnation}-{seq}`.
    fn add_member(&mut self, join: &ClassicJoin) -> String {
        let client_id =
            if join.client_id.is_empty() { "member" } else { truncate(&join.client_id, CLIENT_ID_BYTES_MAX) };
        let member_id = format!("{client_id}-{}-{}", self.incarnation, self.next_member_seq);
        let member = ClassicMember {
            member_id: member_id.clone(),
            client_id: String::new(),
            client_host: String::new(),
            session_timeout_ms: 0,
            rebalance_timeout_ms: 0,
            protocols: Vec::new(),
            metadata: Bytes::new(),
            assignment: Bytes::new(),
            seq: self.next_member_seq,
            session_deadline_ms: 0,
            join_pending: false,
            sync_pending: false,
            synced: false,
        };
        self.next_member_seq += 1;
        self.members.insert(member_id.clone(), member);
        member_id
    }

    /// Moves a group that is not preparing a rebalance to `PreparingRebalance`. Parked syncs are answered
    /// `RebalanceInProgress`; an empty group first waits the initial rebalance delay.
    fn start_rebalance(&mut self, now_ms: u64, completions: &mut Vec<Completion>) {
        let was_empty = self.phase == Phase::Empty;
        for member in self.members.values_mut().filter(|m| m.sync_pending) {
            member.sync_pending = false;
            let error =
                ClassicError::RebalanceInProgress { group: self.group_id.clone(), member: member.member_id.clone() };
            completions.push(Completion::Sync { member_id: member.member_id.clone(), answer: Err(error) });
        }
        let deadline_ms = now_ms.saturating_add(self.rebalance_timeout_ms());
        let delay_until_ms = (was_empty && self.initial_rebalance_delay_ms > 0)
            .then(|| now_ms.saturating_add(self.initial_rebalance_delay_ms).min(deadline_ms));
        self.phase = Phase::Preparing { deadline_ms, delay_until_ms };
    }

    /// Completes the join phase if nothing is left to wait for: no members, or every member has joined and
    /// the initial delay is over.
    fn try_complete_join(&mut self, now_ms: u64, completions: &mut Vec<Completion>) {
        let Phase::Preparing { delay_until_ms, .. } = self.phase else { return };
        let delaying = delay_until_ms.is_some_and(|until_ms| now_ms < until_ms);
        if self.members.is_empty() || (!delaying && self.members.values().all(|m| m.join_pending)) {
            self.complete_join(now_ms, completions);
        }
    }

    /// Forms the next generation from the members that joined (the others are removed) and answers their
    /// joins.
    fn complete_join(&mut self, now_ms: u64, completions: &mut Vec<Completion>) {
        let absent: Vec<String> =
            self.members.values().filter(|m| !m.join_pending).map(|m| m.member_id.clone()).collect();
        for id in &absent {
            self.remove_member(id, completions);
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.phase = Phase::Empty;
            self.protocol_name = None;
            self.leader = None;
            return;
        }
        let protocol = self.choose_protocol();
        if !self.leader.as_ref().is_some_and(|leader| self.members.contains_key(leader)) {
            self.leader = self.members.values().min_by_key(|m| m.seq).map(|m| m.member_id.clone());
        }
        for member in self.members.values_mut() {
            member.metadata = member.metadata_for(&protocol).cloned().expect("the protocol is supported by all");
            member.assignment = Bytes::new();
            member.join_pending = false;
            member.synced = false;
            member.renew_session(now_ms);
        }
        self.protocol_name = Some(protocol);
        self.phase = Phase::Completing { sync_deadline_ms: now_ms.saturating_add(self.rebalance_timeout_ms()) };
        for member_id in self.members.keys() {
            completions
                .push(Completion::Join { member_id: member_id.clone(), answer: Ok(self.join_answer(member_id)) });
        }
    }

    /// Among the protocols every member supports, the one most members list first; a tie goes to the name that
    /// sorts first.
    fn choose_protocol(&self) -> String {
        let first = self.members.values().next().expect("the group has members");
        let common: BTreeSet<&str> = first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        assert!(!common.is_empty(), "group '{}': joins admit only members sharing a protocol", self.group_id);
        let mut votes: BTreeMap<&str, usize> = common.iter().map(|name| (*name, 0)).collect();
        for member in self.members.values() {
            let vote = member.protocols.iter().map(|(name, _)| name.as_str()).find(|name| common.contains(name));
            *votes.get_mut(vote.expect("common protocols are supported by all")).expect("a common protocol") += 1;
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, most)| count > most) {
                best = Some((name, count));
            }
        }
        best.expect("at least one common protocol").0.to_string()
    }

    /// The leader's sync: stores every member's assignment, answers the parked syncs and makes the group
    /// `Stable`; members yet to sync get their assignment when they do.
    fn hand_out(&mut self, assignments: Vec<(String, Bytes)>, completions: &mut Vec<Completion>) {
        let mut assignments: BTreeMap<String, Bytes> = assignments.into_iter().collect();
        for member in self.members.values_mut() {
            member.assignment = assignments.remove(&member.member_id).unwrap_or_default();
        }
        let Phase::Completing { sync_deadline_ms } = self.phase else { unreachable!("only while completing") };
        self.phase = Phase::Stable { sync_deadline_ms: Some(sync_deadline_ms) };
        let parked: Vec<String> =
            self.members.values().filter(|m| m.sync_pending).map(|m| m.member_id.clone()).collect();
        for member_id in parked {
            self.members.get_mut(&member_id).expect("a member").sync_pending = false;
            completions.push(Completion::Sync { answer: Ok(self.sync_answer(&member_id)), member_id });
        }
    }

    fn clear_sync_deadline_when_all_synced(&mut self) {
        if matches!(self.phase, Phase::Stable { sync_deadline_ms: Some(_) }) && self.members.values().all(|m| m.synced)
        {
            self.phase = Phase::Stable { sync_deadline_ms: None };
        }
    }

    /// A member is removed by `tick` when its session ran out while it had nothing parked, or when it has not
    /// synced by the sync deadline.
    fn is_late(&self, member: &ClassicMember, now_ms: u64) -> bool {
        let session_over = !member.join_pending && !member.sync_pending && now_ms > member.session_deadline_ms;
        let sync_deadline_ms = match self.phase {
            Phase::Completing { sync_deadline_ms } | Phase::Stable { sync_deadline_ms: Some(sync_deadline_ms) } => {
                Some(sync_deadline_ms)
            }
            _ => None,
        };
        let sync_over = !member.synced && sync_deadline_ms.is_some_and(|deadline_ms| now_ms > deadline_ms);
        session_over || sync_over
    }

    /// Removes a member, answering its parked requests `UnknownMemberId`. False if it is no member. The caller
    /// runs [`ClassicGroup::after_removal`] once it has removed everyone it meant to.
    fn remove_member(&mut self, member_id: &str, completions: &mut Vec<Completion>) -> bool {
        let Some(member) = self.members.remove(member_id) else { return false };
        if member.join_pending {
            completions.push(Completion::Join {
                member_id: member_id.to_string(),
                answer: Err(self.unknown_member(member_id)),
            });
        }
        if member.sync_pending {
            completions.push(Completion::Sync {
                member_id: member_id.to_string(),
                answer: Err(self.unknown_member(member_id)),
            });
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
        true
    }

    /// After members were removed: a formed generation rebalances; a join phase may now be complete.
    fn after_removal(&mut self, now_ms: u64, completions: &mut Vec<Completion>) {
        if matches!(self.phase, Phase::Completing { .. } | Phase::Stable { .. }) {
            self.start_rebalance(now_ms, completions);
        }
        self.try_complete_join(now_ms, completions);
    }

    /// The largest rebalance timeout among the members: a rebalance waits that long for every one of them.
    fn rebalance_timeout_ms(&self) -> u64 {
        self.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0)
    }

    fn join_answer(&self, member_id: &str) -> JoinAnswer {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members.values().map(|m| (m.member_id.clone(), m.metadata.clone())).collect()
        } else {
            Vec::new()
        };
        JoinAnswer {
            member_id: member_id.to_string(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: self.protocol_name.clone().unwrap_or_default(),
            leader,
            members,
        }
    }

    fn sync_answer(&self, member_id: &str) -> SyncAnswer {
        SyncAnswer {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: self.protocol_name.clone().unwrap_or_default(),
            assignment: self.members[member_id].assignment.clone(),
        }
    }

    /// `member_id` is a member and `generation` the current generation.
    fn check_member(&self, member_id: &str, generation: i32) -> Result<(), ClassicError> {
        if !self.members.contains_key(member_id) {
            return Err(self.unknown_member(member_id));
        }
        if generation != self.generation {
            return Err(ClassicError::IllegalGeneration {
                group: self.group_id.clone(),
                member: member_id.to_string(),
                given: generation,
                current: self.generation,
            });
        }
        Ok(())
    }

    fn unknown_member(&self, member_id: &str) -> ClassicError {
        ClassicError::UnknownMemberId { group: self.group_id.clone(), member: member_id.to_string() }
    }

    fn rebalance_in_progress(&self, member_id: &str) -> ClassicError {
        ClassicError::RebalanceInProgress { group: self.group_id.clone(), member: member_id.to_string() }
    }
}

/// The joiner's own answer, if the join phase completed with its join: taken out of the completions.
fn take_own_join(member_id: &str, completions: &mut Vec<Completion>) -> Reply<JoinAnswer> {
    let own = completions.iter().position(|c| matches!(c, Completion::Join { member_id: id, .. } if id == member_id));
    match own.map(|index| completions.remove(index)) {
        Some(Completion::Join { answer, .. }) => Reply::Now(answer),
        _ => Reply::Wait { member_id: member_id.to_string() },
    }
}

/// The leader's own sync answer, taken out of the completions.
fn take_own_sync(member_id: &str, completions: &mut Vec<Completion>) -> Reply<SyncAnswer> {
    let own = completions.iter().position(|c| matches!(c, Completion::Sync { member_id: id, .. } if id == member_id));
    match own.map(|index| completions.remove(index)) {
        Some(Completion::Sync { answer, .. }) => Reply::Now(answer),
        _ => Reply::Wait { member_id: member_id.to_string() },
    }
}

/// The longest prefix of `text` within `bytes_max` bytes that ends on a character boundary.
fn truncate(text: &str, bytes_max: usize) -> &str {
    let mut end = text.len().min(bytes_max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
