//! One consumer group as a pure state machine: members and their sessions, the generation, the sticky
//! assignment with revocation before hand-off, and committed offsets. Every operation takes the time as
//! `now_ms` and returns the records the shell must write (acks=all) before it applies the new state and
//! answers; nothing here does IO or reads a clock.
//!
//! Hand-off rule: a member is granted a partition of its assignment only while no other member holds it. A
//! member holds what it was granted until a heartbeat no longer lists it (it released it) or the member is
//! removed, so no two members ever read the same partition. Each answer's assignment carries a sequence
//! number that grows whenever the assignment changes, and a heartbeat says which assignment its list reflects:
//! only a list that reflects the latest answer releases anything, because a member may still apply an answer
//! that was on its way when it sent an older list.

use std::collections::{BTreeMap, BTreeSet};

use super::TopicPartition;
use super::assignment::assign;
use super::records::{GroupRecord, GroupSnapshot, MemberSnapshot};

/// Why an operation was refused. Each maps to one wire error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("group '{group}' has no member '{member}'; join again")]
    UnknownMember { group: String, member: String },
    #[error("generation {given} of group '{group}' is stale: the group is in generation {current}")]
    StaleGeneration { group: String, given: u32, current: u32 },
    #[error("member '{member}' of group '{group}' does not own {partition} in generation {generation}")]
    NotOwner { group: String, member: String, partition: TopicPartition, generation: u32 },
    #[error("group '{group}' has {members} member(s); stop them before resetting its offsets")]
    NonEmpty { group: String, members: usize },
    #[error("{0}")]
    Invalid(String),
}

/// A committed offset with its metadata string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: u64,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// A member as the coordinator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    pub client_id: String,
    pub topics: BTreeSet<String>,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    /// Its assignment in the current generation.
    pub target: BTreeSet<TopicPartition>,
    /// What it may be reading: granted to it and not yet released.
    pub held: BTreeSet<TopicPartition>,
    /// The assignment last sent to it, and its sequence number.
    pub granted: BTreeSet<TopicPartition>,
    pub assignment_seq: u32,
    /// Removed when `now_ms` passes this without a heartbeat.
    pub session_deadline_ms: u64,
    /// Removed when it still holds a partition outside its assignment at this time.
    pub release_deadline_ms: Option<u64>,
}

impl Member {
    fn snapshot(&self) -> MemberSnapshot {
        MemberSnapshot {
            member_id: self.member_id.clone(),
            client_id: self.client_id.clone(),
            topics: self.topics.clone(),
            session_timeout_ms: self.session_timeout_ms,
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            target: self.target.clone(),
            held: self.held.clone(),
            granted: self.granted.clone(),
            assignment_seq: self.assignment_seq,
        }
    }

    /// Starts or clears the release deadline after `target` or `held` changed.
    fn update_release_deadline(&mut self, now_ms: u64) {
        if self.held.is_subset(&self.target) {
            self.release_deadline_ms = None;
        } else {
            self.release_deadline_ms.get_or_insert(now_ms + self.rebalance_timeout_ms);
        }
    }
}

/// What a join asks for.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// `None` for a new member.
    pub member_id: Option<String>,
    pub client_id: String,
    pub topics: BTreeSet<String>,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub generation: u32,
    /// The partitions the member may read now.
    pub assignment: BTreeSet<TopicPartition>,
    /// Grows whenever the member's assignment changes; the member reports it back with what it holds.
    pub assignment_seq: u32,
    /// Some partition of the generation still waits for its previous owner.
    pub rebalancing: bool,
}

/// The group's state for DescribeGroup and ListGroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupPhase {
    Empty,
    Stable,
    Rebalancing,
}

impl GroupPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupPhase::Empty => "Empty",
            GroupPhase::Stable => "Stable",
            GroupPhase::Rebalancing => "Rebalancing",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    pub group_id: String,
    pub generation: u32,
    pub members: BTreeMap<String, Member>,
    /// Numbers new member ids, so an id is never reused within the group.
    pub next_member_seq: u64,
    /// The partition counts the current assignment was computed with.
    pub partition_counts: BTreeMap<String, u32>,
    pub offsets: BTreeMap<TopicPartition, Committed>,
}

impl GroupState {
    pub fn new(group_id: &str) -> GroupState {
        GroupState {
            group_id: group_id.to_string(),
            generation: 0,
            members: BTreeMap::new(),
            next_member_seq: 0,
            partition_counts: BTreeMap::new(),
            offsets: BTreeMap::new(),
        }
    }

    /// The persisted part of the membership.
    pub fn snapshot(&self) -> GroupSnapshot {
        GroupSnapshot {
            generation: self.generation,
            next_member_seq: self.next_member_seq,
            partition_counts: self.partition_counts.clone(),
            members: self.members.values().map(Member::snapshot).collect(),
        }
    }

    /// Replaces the membership by a snapshot read back from the log. Every member gets a fresh session from
    /// `now_ms`: a new coordinator cannot know when each was last heard from.
    pub fn restore(&mut self, snapshot: GroupSnapshot, now_ms: u64) {
        self.generation = snapshot.generation;
        self.next_member_seq = snapshot.next_member_seq;
        self.partition_counts = snapshot.partition_counts;
        self.members = snapshot
            .members
            .into_iter()
            .map(|m| {
                let mut member = Member {
                    session_deadline_ms: now_ms + m.session_timeout_ms,
                    release_deadline_ms: None,
                    member_id: m.member_id,
                    client_id: m.client_id,
                    topics: m.topics,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    target: m.target,
                    held: m.held,
                    granted: m.granted,
                    assignment_seq: m.assignment_seq,
                };
                member.update_release_deadline(now_ms);
                (member.member_id.clone(), member)
            })
            .collect();
    }

    pub fn phase(&self) -> GroupPhase {
        if self.members.is_empty() {
            GroupPhase::Empty
        } else if self.members.values().all(|m| m.held == m.target) {
            GroupPhase::Stable
        } else {
            GroupPhase::Rebalancing
        }
    }

    /// A snapshot record if the persisted membership differs from `before`.
    fn snapshot_record_since(&self, before: &GroupSnapshot) -> Vec<GroupRecord> {
        let now = self.snapshot();
        if &now == before {
            Vec::new()
        } else {
            vec![GroupRecord::Snapshot { group_id: self.group_id.clone(), snapshot: now }]
        }
    }

    /// Joins a new member or updates an existing one's subscription and timeouts. Returns the member id and
    /// the generation, and the records to write.
    pub fn join(
        &mut self,
        request: JoinRequest,
        partition_counts: &BTreeMap<String, u32>,
        now_ms: u64,
    ) -> Result<((String, u32), Vec<GroupRecord>), GroupError> {
        let before = self.snapshot();
        let member_id = match request.member_id {
            Some(id) => {
                let member = self.member_mut(&id)?;
                member.session_deadline_ms = now_ms + request.session_timeout_ms;
                let changed = member.topics != request.topics
                    || member.session_timeout_ms != request.session_timeout_ms
                    || member.rebalance_timeout_ms != request.rebalance_timeout_ms;
                member.topics = request.topics;
                member.session_timeout_ms = request.session_timeout_ms;
                member.rebalance_timeout_ms = request.rebalance_timeout_ms;
                if changed {
                    self.rebalance(partition_counts, now_ms);
                }
                id
            }
            None => {
                let client_id = if request.client_id.is_empty() { "member" } else { request.client_id.as_str() };
                let id = format!("{client_id}-{}", self.next_member_seq);
                self.next_member_seq += 1;
                let member = Member {
                    member_id: id.clone(),
                    client_id: request.client_id,
                    topics: request.topics,
                    session_timeout_ms: request.session_timeout_ms,
                    rebalance_timeout_ms: request.rebalance_timeout_ms,
                    target: BTreeSet::new(),
                    held: BTreeSet::new(),
                    granted: BTreeSet::new(),
                    assignment_seq: 0,
                    session_deadline_ms: now_ms + request.session_timeout_ms,
                    release_deadline_ms: None,
                };
                self.members.insert(id.clone(), member);
                self.rebalance(partition_counts, now_ms);
                id
            }
        };
        Ok(((member_id, self.generation), self.snapshot_record_since(&before)))
    }

    /// A member's heartbeat, listing the partitions it holds as of the assignment numbered `owned_seq`.
    /// Renews its session, takes note of what it released, and grants it each partition of its assignment
    /// that no other member holds.
    #[allow(clippy::too_many_arguments)]
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        generation: u32,
        owned: &BTreeSet<TopicPartition>,
        owned_seq: u32,
        partition_counts: &BTreeMap<String, u32>,
        now_ms: u64,
    ) -> Result<(HeartbeatReply, Vec<GroupRecord>), GroupError> {
        let before = self.snapshot();
        self.check_generation(generation)?;
        let member = self.member_mut(member_id)?;
        member.session_deadline_ms = now_ms + member.session_timeout_ms;
        // A list that reflects the latest assignment sent is what the member holds (never more than it was
        // granted). An older list says nothing: an answer on its way may still give the member more.
        if owned_seq == member.assignment_seq {
            member.held = member.held.intersection(owned).cloned().collect();
        }
        let subscribed: BTreeSet<String> = self.members.values().flat_map(|m| m.topics.iter().cloned()).collect();
        let counts_now: BTreeMap<String, u32> =
            subscribed.iter().filter_map(|t| partition_counts.get(t).map(|n| (t.clone(), *n))).collect();
        if counts_now != self.partition_counts {
            self.rebalance(partition_counts, now_ms);
        }
        let held_by_others: BTreeSet<TopicPartition> =
            self.members.values().filter(|m| m.member_id != member_id).flat_map(|m| m.held.iter().cloned()).collect();
        let member = self.members.get_mut(member_id).expect("checked above");
        let assignment: BTreeSet<TopicPartition> =
            member.target.iter().filter(|tp| !held_by_others.contains(*tp)).cloned().collect();
        member.held.extend(assignment.iter().cloned());
        if member.granted != assignment {
            member.granted = assignment.clone();
            member.assignment_seq = member.assignment_seq.wrapping_add(1);
        }
        let assignment_seq = member.assignment_seq;
        member.update_release_deadline(now_ms);
        let rebalancing = self.phase() == GroupPhase::Rebalancing;
        let reply = HeartbeatReply { generation: self.generation, assignment, assignment_seq, rebalancing };
        Ok((reply, self.snapshot_record_since(&before)))
    }

    /// A member leaves: its partitions go to the others at once, since it no longer reads them.
    pub fn leave(
        &mut self,
        member_id: &str,
        partition_counts: &BTreeMap<String, u32>,
        now_ms: u64,
    ) -> Result<Vec<GroupRecord>, GroupError> {
        let before = self.snapshot();
        self.member_mut(member_id)?;
        self.members.remove(member_id);
        self.rebalance(partition_counts, now_ms);
        Ok(self.snapshot_record_since(&before))
    }

    /// A heartbeat of `member_id` arrived at `now_ms` (and waits to be served): its session runs from then.
    /// Nothing persisted changes.
    pub fn renew_session(&mut self, member_id: &str, now_ms: u64) {
        if let Some(member) = self.members.get_mut(member_id) {
            member.session_deadline_ms = member.session_deadline_ms.max(now_ms + member.session_timeout_ms);
        }
    }

    /// Whether [`GroupState::expire`] would remove anyone at `now_ms` (cheap: no copy of the group).
    pub fn expiry_due(&self, now_ms: u64) -> bool {
        self.members
            .values()
            .any(|m| now_ms > m.session_deadline_ms || m.release_deadline_ms.is_some_and(|d| now_ms > d))
    }

    /// Removes members whose session ran out, or who kept partitions taken from them past their rebalance
    /// timeout. Returns the removed member ids and the records to write.
    pub fn expire(&mut self, partition_counts: &BTreeMap<String, u32>, now_ms: u64) -> (Vec<String>, Vec<GroupRecord>) {
        let before = self.snapshot();
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| now_ms > m.session_deadline_ms || m.release_deadline_ms.is_some_and(|d| now_ms > d))
            .map(|m| m.member_id.clone())
            .collect();
        if expired.is_empty() {
            return (expired, Vec::new());
        }
        for id in &expired {
            self.members.remove(id);
        }
        self.rebalance(partition_counts, now_ms);
        (expired, self.snapshot_record_since(&before))
    }

    /// Checks that `member_id` is a member and `generation` the current generation (a member reading its
    /// committed offsets).
    pub fn check_member(&self, member_id: &str, generation: u32) -> Result<(), GroupError> {
        if !self.members.contains_key(member_id) {
            return Err(self.unknown_member(member_id));
        }
        if generation != self.generation {
            return Err(GroupError::StaleGeneration {
                group: self.group_id.clone(),
                given: generation,
                current: self.generation,
            });
        }
        Ok(())
    }

    /// Commits offsets for a member of the current generation, each for a partition the member holds.
    pub fn commit(
        &mut self,
        member_id: &str,
        generation: u32,
        offsets: Vec<(TopicPartition, u64, String)>,
        now_ms: i64,
    ) -> Result<Vec<GroupRecord>, GroupError> {
        let member = self.members.get(member_id).ok_or_else(|| self.unknown_member(member_id))?;
        if generation != self.generation {
            return Err(GroupError::StaleGeneration {
                group: self.group_id.clone(),
                given: generation,
                current: self.generation,
            });
        }
        if let Some((tp, _, _)) = offsets.iter().find(|(tp, _, _)| !member.held.contains(tp)) {
            return Err(GroupError::NotOwner {
                group: self.group_id.clone(),
                member: member_id.to_string(),
                partition: tp.clone(),
                generation,
            });
        }
        Ok(self.write_offsets(offsets, now_ms))
    }

    /// Deletes a group without members, its committed offsets with it.
    pub fn delete(&mut self) -> Result<Vec<GroupRecord>, GroupError> {
        if !self.members.is_empty() {
            return Err(GroupError::NonEmpty { group: self.group_id.clone(), members: self.members.len() });
        }
        *self = GroupState::new(&self.group_id);
        Ok(vec![GroupRecord::Deleted { group_id: self.group_id.clone() }])
    }

    /// Sets offsets of a group without members (an operator's reset).
    pub fn reset_offsets(
        &mut self,
        offsets: Vec<(TopicPartition, u64, String)>,
        now_ms: i64,
    ) -> Result<Vec<GroupRecord>, GroupError> {
        if !self.members.is_empty() {
            return Err(GroupError::NonEmpty { group: self.group_id.clone(), members: self.members.len() });
        }
        Ok(self.write_offsets(offsets, now_ms))
    }

    /// Commits offsets whose committer the caller has already checked (a Kafka classic-protocol member, whose
    /// membership `group::classic` keeps).
    pub fn commit_checked(&mut self, offsets: Vec<(TopicPartition, u64, String)>, now_ms: i64) -> Vec<GroupRecord> {
        self.write_offsets(offsets, now_ms)
    }

    fn write_offsets(&mut self, offsets: Vec<(TopicPartition, u64, String)>, now_ms: i64) -> Vec<GroupRecord> {
        offsets
            .into_iter()
            .map(|(partition, offset, metadata)| {
                let committed = Committed { offset, metadata, commit_timestamp_ms: now_ms };
                self.offsets.insert(partition.clone(), committed.clone());
                GroupRecord::OffsetCommit { group_id: self.group_id.clone(), partition, committed }
            })
            .collect()
    }

    /// Applies a record read back from the log (rebuild after a leadership change).
    pub fn apply(&mut self, record: GroupRecord, now_ms: u64) {
        match record {
            GroupRecord::Snapshot { snapshot, .. } => self.restore(snapshot, now_ms),
            GroupRecord::Deleted { .. } => *self = GroupState::new(&self.group_id),
            GroupRecord::OffsetCommit { partition, committed, .. } => {
                self.offsets.insert(partition, committed);
            }
        }
    }

    /// A new generation: recomputes the assignment (sticky, balanced) over the current members.
    fn rebalance(&mut self, partition_counts: &BTreeMap<String, u32>, now_ms: u64) {
        self.generation += 1;
        let subscriptions: BTreeMap<String, BTreeSet<String>> =
            self.members.values().map(|m| (m.member_id.clone(), m.topics.clone())).collect();
        let previous: BTreeMap<String, BTreeSet<TopicPartition>> =
            self.members.values().map(|m| (m.member_id.clone(), m.target.clone())).collect();
        let subscribed: BTreeSet<&String> = subscriptions.values().flatten().collect();
        self.partition_counts =
            subscribed.into_iter().filter_map(|t| partition_counts.get(t).map(|n| (t.clone(), *n))).collect();
        let mut assignment = assign(&subscriptions, &previous, &self.partition_counts);
        for member in self.members.values_mut() {
            member.target = assignment.remove(&member.member_id).unwrap_or_default();
            member.update_release_deadline(now_ms);
        }
    }

    fn check_generation(&self, generation: u32) -> Result<(), GroupError> {
        // A heartbeat from an older generation is how a member learns the new one; one from the future is not.
        if generation > self.generation {
            return Err(GroupError::StaleGeneration {
                group: self.group_id.clone(),
                given: generation,
                current: self.generation,
            });
        }
        Ok(())
    }

    fn unknown_member(&self, member_id: &str) -> GroupError {
        GroupError::UnknownMember { group: self.group_id.clone(), member: member_id.to_string() }
    }

    fn member_mut(&mut self, member_id: &str) -> Result<&mut Member, GroupError> {
        let error = self.unknown_member(member_id);
        self.members.get_mut(member_id).ok_or(error)
    }
}
