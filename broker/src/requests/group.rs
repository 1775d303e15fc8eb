//! The consumer-group operations: FindCoordinator (any broker; creates `__consumer_offsets` on the first
//! call) and the coordinator's join, heartbeat, leave, offset commit and fetch, list, describe and reset.
//! Each checks its input, runs one operation of `group::GroupCoordinator` and maps refusals to `Error`s.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;

use super::classic::{CONSUMER_PROTOCOL_TYPE, consumer_assignment, consumer_topics};
use super::{BrokerCore, Error, ErrorKind, NewTopic};
use crate::clock::now_ms;
use crate::group::classic::ClassicGroup;
use crate::group::coordinator::CoordinatorError;
use crate::group::state::{Committed, GroupError, GroupState, HeartbeatReply, JoinRequest};
use crate::group::{OFFSETS_TOPIC, TopicPartition, check_group_id, offsets_partition_for};
use crate::limits::{
    CLIENT_ID_BYTES_MAX, COMMIT_OFFSETS_MAX, GROUP_REBALANCE_TIMEOUT_MS_DEFAULT, GROUP_REBALANCE_TIMEOUT_MS_MAX,
    GROUP_SESSION_TIMEOUT_MS_DEFAULT, GROUP_SESSION_TIMEOUT_MS_MAX, GROUP_SESSION_TIMEOUT_MS_MIN, GROUP_TOPICS_MAX,
    OFFSET_METADATA_BYTES_MAX, OFFSETS_TOPIC_CREATE_WAIT_MS, OFFSETS_TOPIC_SEGMENT_BYTES, TOPIC_NAME_BYTES_MAX,
};
use crate::metadata::{BrokerRegistration, NO_LEADER};
use crate::security::{Operation, Principal, Resource};

/// The broker coordinating a group, and the `__consumer_offsets` partition holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinator {
    /// The coordinating broker, with the addresses it serves each transport at.
    pub broker: BrokerRegistration,
    pub offsets_partition: u32,
}

#[derive(Debug, Clone)]
pub struct JoinGroupRequest {
    pub group_id: String,
    /// Empty for a new member.
    pub member_id: String,
    pub client_id: String,
    pub topics: Vec<String>,
    /// 0 is the broker's default.
    pub session_timeout_ms: u32,
    /// How long a member may keep partitions taken from it; 0 is the broker's default.
    pub rebalance_timeout_ms: u32,
}

#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub member_id: String,
    pub generation: u32,
    /// The partitions the member still holds.
    pub owned: Vec<TopicPartition>,
    /// The assignment (from an earlier answer) that `owned` reflects.
    pub assignment_seq: u32,
}

#[derive(Debug, Clone)]
pub struct OffsetCommit {
    pub partition: TopicPartition,
    /// The next offset to read.
    pub offset: u64,
    pub metadata: String,
}

#[derive(Debug, Clone)]
pub struct OffsetFetchRequest {
    pub group_id: String,
    /// Empty: every committed offset of the group.
    pub partitions: Vec<TopicPartition>,
    /// A member names itself and its generation and is checked like a commit; tools leave it empty.
    pub member_id: String,
    pub generation: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: String,
    pub generation: u32,
    pub members: u32,
    /// `RILL_PROTOCOL_TYPE` for Rill's own protocol, the members' type (Kafka consumers: "consumer") for the
    /// classic one.
    pub protocol_type: String,
}

/// The protocol type a group of Rill's own protocol reports.
pub const RILL_PROTOCOL_TYPE: &str = "rill";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberDescription {
    pub member_id: String,
    pub client_id: String,
    /// Where a classic member connects from; empty for Rill's own members.
    pub client_host: String,
    pub topics: Vec<String>,
    /// The member's assignment in the current generation.
    pub partitions: Vec<TopicPartition>,
    /// A classic member's protocol metadata and assignment as its client sent them; empty otherwise.
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// Empty, Stable, Rebalancing, or Dead for an unknown group; a classic group's states are Kafka's
    /// (PreparingRebalance, CompletingRebalance).
    pub state: String,
    pub generation: u32,
    pub protocol_type: String,
    /// The protocol (assignor) a classic group chose; empty otherwise.
    pub protocol: String,
    pub members: Vec<GroupMemberDescription>,
    pub offsets: Vec<(TopicPartition, Committed)>,
}

fn checked_group(group_id: &str) -> Result<(), Error> {
    check_group_id(group_id).map_err(Error::invalid)
}

/// Checks a join's fields and fills in defaults.
fn join_request(request: &JoinGroupRequest) -> Result<JoinRequest, String> {
    check_group_id(&request.group_id)?;
    if request.client_id.len() > CLIENT_ID_BYTES_MAX || request.client_id.chars().any(char::is_control) {
        return Err(format!("the client id must be printable and at most {CLIENT_ID_BYTES_MAX} bytes"));
    }
    if request.topics.is_empty() || request.topics.len() > GROUP_TOPICS_MAX {
        return Err(format!("a member subscribes to between 1 and {GROUP_TOPICS_MAX} topics"));
    }
    if let Some(bad) = request.topics.iter().find(|t| t.is_empty() || t.len() > TOPIC_NAME_BYTES_MAX) {
        return Err(format!("'{bad}' is not a topic name"));
    }
    let session_timeout_ms = match u64::from(request.session_timeout_ms) {
        0 => GROUP_SESSION_TIMEOUT_MS_DEFAULT,
        t if (GROUP_SESSION_TIMEOUT_MS_MIN..=GROUP_SESSION_TIMEOUT_MS_MAX).contains(&t) => t,
        t => {
            return Err(format!(
                "session timeout {t} ms is outside {GROUP_SESSION_TIMEOUT_MS_MIN}..={GROUP_SESSION_TIMEOUT_MS_MAX} ms"
            ));
        }
    };
    let rebalance_timeout_ms = match u64::from(request.rebalance_timeout_ms) {
        0 => GROUP_REBALANCE_TIMEOUT_MS_DEFAULT,
        t if t <= GROUP_REBALANCE_TIMEOUT_MS_MAX => t,
        t => return Err(format!("rebalance timeout {t} ms exceeds {GROUP_REBALANCE_TIMEOUT_MS_MAX} ms")),
    };
    Ok(JoinRequest {
        member_id: (!request.member_id.is_empty()).then(|| request.member_id.clone()),
        client_id: request.client_id.clone(),
        topics: request.topics.iter().cloned().collect(),
        session_timeout_ms,
        rebalance_timeout_ms,
    })
}

/// Checks offsets to commit and turns them into the state machine's form.
pub(super) fn offsets_to_write(offsets: &[OffsetCommit]) -> Result<Vec<(TopicPartition, u64, String)>, Error> {
    if offsets.len() > COMMIT_OFFSETS_MAX {
        return Err(Error::invalid(format!("at most {COMMIT_OFFSETS_MAX} offsets per request")));
    }
    offsets
        .iter()
        .map(|o| {
            let topic = &o.partition.topic;
            if topic.is_empty() || topic.len() > TOPIC_NAME_BYTES_MAX {
                return Err(Error::invalid(format!("'{topic}' is not a topic name")));
            }
            if o.metadata.len() > OFFSET_METADATA_BYTES_MAX {
                return Err(Error::invalid(format!(
                    "commit metadata is longer than {OFFSET_METADATA_BYTES_MAX} bytes"
                )));
            }
            Ok((o.partition.clone(), o.offset, o.metadata.clone()))
        })
        .collect()
}

fn committed_offsets(group: &GroupState, only: &[TopicPartition]) -> Vec<(TopicPartition, Committed)> {
    let wanted: BTreeSet<&TopicPartition> = only.iter().collect();
    group
        .offsets
        .iter()
        .filter(|(tp, _)| wanted.is_empty() || wanted.contains(tp))
        .map(|(tp, c)| (tp.clone(), c.clone()))
        .collect()
}

/// A classic group as a description (without its offsets, which the group state holds). Consumer-protocol
/// members' subscriptions and assignments are read out of their metadata for Rill's tools.
fn describe_classic(group: &ClassicGroup) -> GroupDescription {
    let consumer = group.protocol_type() == Some(CONSUMER_PROTOCOL_TYPE);
    let members = group.members().map(|m| GroupMemberDescription {
        member_id: m.member_id.clone(),
        client_id: m.client_id.clone(),
        client_host: m.client_host.clone(),
        topics: if consumer { consumer_topics(&m.metadata) } else { Vec::new() },
        partitions: if consumer { consumer_assignment(&m.assignment) } else { Vec::new() },
        metadata: m.metadata.clone(),
        assignment: m.assignment.clone(),
    });
    GroupDescription {
        group_id: group.group_id().to_string(),
        state: group.state().as_str().to_string(),
        generation: u32::try_from(group.generation()).unwrap_or(0),
        protocol_type: group.protocol_type().unwrap_or_default().to_string(),
        protocol: group.protocol_name().unwrap_or_default().to_string(),
        members: members.collect(),
        offsets: Vec::new(),
    }
}

fn coordinator_error(e: CoordinatorError) -> Error {
    Error::from_coordinator(&e)
}

impl BrokerCore {
    /// Creates `__consumer_offsets` through the controller unless it exists; returns its partition count.
    async fn ensure_offsets_topic(&self) -> Result<u32, Error> {
        if let Some(topic) = self.metadata.borrow().topic(OFFSETS_TOPIC) {
            return Ok(topic.partitions.len() as u32);
        }
        let unavailable = |why: String| Error::new(ErrorKind::CoordinatorNotAvailable, why);
        let live = self.metadata.borrow().live_brokers().len() as u32;
        let replication_factor = self.config.offsets_topic_replication_factor.min(live.max(1));
        let topic = NewTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions: self.config.offsets_topic_partitions,
            replication_factor,
            config: BTreeMap::from([
                // No compaction yet: every commit is kept, so a coordinator can always rebuild its groups.
                ("retention.ms".to_string(), "-1".to_string()),
                ("segment.bytes".to_string(), OFFSETS_TOPIC_SEGMENT_BYTES.to_string()),
            ]),
        };
        let topics = [topic];
        let outcomes = if self.controller.is_active() {
            self.create_topics_here(&topics, false).await
        } else {
            super::forward::create_topics(self, &topics, false).await
        };
        if let Some((_, Err(e))) = outcomes.into_iter().next()
            && e.kind != ErrorKind::TopicAlreadyExists
        {
            return Err(unavailable(format!("cannot create {OFFSETS_TOPIC}: {}", e.message)));
        }
        tracing::info!(replication_factor, "created {OFFSETS_TOPIC}");
        let mut metadata = self.metadata.clone();
        let wait = metadata.wait_for(|s| s.topic(OFFSETS_TOPIC).is_some());
        match tokio::time::timeout(Duration::from_millis(OFFSETS_TOPIC_CREATE_WAIT_MS), wait).await {
            Ok(Ok(state)) => Ok(state.topic(OFFSETS_TOPIC).map_or(0, |t| t.partitions.len() as u32)),
            _ => Err(unavailable(format!("{OFFSETS_TOPIC} is being created"))),
        }
    }

    /// The coordinator of `group_id`: the leader of its `__consumer_offsets` partition.
    pub async fn find_coordinator(&self, who: &Principal, group_id: &str) -> Result<Coordinator, Error> {
        checked_group(group_id)?;
        self.authorize(who, Operation::Describe, Resource::group(group_id))?;
        let count = self.ensure_offsets_topic().await?;
        let index = offsets_partition_for(group_id, count);
        let state = self.metadata.borrow().clone();
        let leader = state.topic(OFFSETS_TOPIC).and_then(|t| t.partitions.get(index as usize)).map(|p| p.leader);
        let broker = leader.filter(|l| *l != NO_LEADER).and_then(|l| state.brokers.get(&l)).filter(|b| !b.fenced);
        match broker {
            Some(b) => Ok(Coordinator { broker: b.clone(), offsets_partition: index }),
            None => Err(Error::new(
                ErrorKind::CoordinatorNotAvailable,
                format!("{OFFSETS_TOPIC}/{index}, which holds group '{group_id}', has no leader yet"),
            )),
        }
    }

    /// Joins a group, or updates a member's subscription; returns the member id and the new generation.
    pub async fn join_group(&self, who: &Principal, request: &JoinGroupRequest) -> Result<(String, u32), Error> {
        let join = join_request(request).map_err(Error::invalid)?;
        self.authorize(who, Operation::Read, Resource::group(&request.group_id))?;
        let classic = self.groups.read_classic(&request.group_id, |c| c.is_some_and(|c| !c.is_empty()));
        if classic.map_err(coordinator_error)? {
            let why = format!("group '{}' has members using Kafka's classic group protocol", request.group_id);
            return Err(Error::new(ErrorKind::InconsistentGroupProtocol, why));
        }
        let outcome = self.groups.update(&request.group_id, |group, counts, now| group.join(join, counts, now)).await;
        let (member_id, generation) = outcome.map_err(coordinator_error)?;
        tracing::info!(group = %request.group_id, %member_id, generation, "member joined");
        Ok((member_id, generation))
    }

    pub async fn heartbeat(&self, who: &Principal, request: &HeartbeatRequest) -> Result<HeartbeatReply, Error> {
        checked_group(&request.group_id)?;
        self.authorize(who, Operation::Read, Resource::group(&request.group_id))?;
        self.groups.note_heartbeat(&request.group_id, &request.member_id);
        let owned: BTreeSet<TopicPartition> = request.owned.iter().cloned().collect();
        self.groups
            .update(&request.group_id, |group, counts, now| {
                group.heartbeat(&request.member_id, request.generation, &owned, request.assignment_seq, counts, now)
            })
            .await
            .map_err(coordinator_error)
    }

    pub async fn leave_group(&self, who: &Principal, group_id: &str, member_id: &str) -> Result<(), Error> {
        checked_group(group_id)?;
        self.authorize(who, Operation::Read, Resource::group(group_id))?;
        let outcome =
            self.groups.update(group_id, |group, counts, now| Ok(((), group.leave(member_id, counts, now)?))).await;
        outcome.map_err(coordinator_error)?;
        tracing::info!(group = %group_id, %member_id, "member left");
        Ok(())
    }

    /// Commits a member's offsets: refused from an older generation, for a partition it does not own, or
    /// from a non-member.
    pub async fn commit_offsets(
        &self,
        who: &Principal,
        group_id: &str,
        member_id: &str,
        generation: u32,
        offsets: &[OffsetCommit],
    ) -> Result<(), Error> {
        checked_group(group_id)?;
        self.authorize_offsets(who, group_id, offsets)?;
        let offsets = offsets_to_write(offsets)?;
        let now = now_ms();
        self.groups
            .update(group_id, |group, _, _| Ok(((), group.commit(member_id, generation, offsets, now)?)))
            .await
            .map_err(coordinator_error)
    }

    /// The group's committed offsets (partitions without one are absent).
    /// Needs `describe` on the group; offsets of topics `who` may not describe are left out.
    pub async fn fetch_offsets(
        &self,
        who: &Principal,
        request: &OffsetFetchRequest,
    ) -> Result<Vec<(TopicPartition, Committed)>, Error> {
        checked_group(&request.group_id)?;
        self.authorize(who, Operation::Describe, Resource::group(&request.group_id))?;
        let outcome = self
            .groups
            .read(&request.group_id, |group| {
                if !request.member_id.is_empty() {
                    let member = match group {
                        Some(g) => g.check_member(&request.member_id, request.generation),
                        None => Err(GroupError::UnknownMember {
                            group: request.group_id.clone(),
                            member: request.member_id.clone(),
                        }),
                    };
                    member.map_err(CoordinatorError::Group)?;
                }
                Ok(group.map(|g| committed_offsets(g, &request.partitions)).unwrap_or_default())
            })
            .await
            .and_then(|inner| inner);
        let mut offsets = outcome.map_err(coordinator_error)?;
        offsets.retain(|(tp, _)| self.authorized(who, Operation::Describe, Resource::topic(&tp.topic)));
        Ok(offsets)
    }

    /// Committing offsets needs `read` on the group and on every topic committed to.
    pub(super) fn authorize_offsets(
        &self,
        who: &Principal,
        group_id: &str,
        offsets: &[OffsetCommit],
    ) -> Result<(), Error> {
        self.authorize(who, Operation::Read, Resource::group(group_id))?;
        offsets.iter().try_for_each(|o| self.authorize(who, Operation::Read, Resource::topic(&o.partition.topic)))
    }

    /// The groups this broker coordinates, of either protocol.
    /// Groups `who` may not describe are left out.
    pub async fn list_groups(&self, who: &Principal) -> Vec<GroupSummary> {
        let groups = self.list_groups_unchecked().await;
        groups.into_iter().filter(|g| self.authorized(who, Operation::Describe, Resource::group(&g.group_id))).collect()
    }

    /// Every group coordinated here, for callers that have been authorized (or the monitoring view).
    pub(super) async fn list_groups_unchecked(&self) -> Vec<GroupSummary> {
        let mut groups: BTreeMap<String, GroupSummary> = self
            .groups
            .list()
            .await
            .into_iter()
            .map(|g| {
                let summary = GroupSummary {
                    state: g.phase().as_str().to_string(),
                    generation: g.generation,
                    members: g.members.len() as u32,
                    group_id: g.group_id.clone(),
                    protocol_type: RILL_PROTOCOL_TYPE.to_string(),
                };
                (g.group_id, summary)
            })
            .collect();
        for classic in self.groups.list_classic() {
            // A classic group's membership is what matters once it has any; until then its committed
            // offsets may be all there is.
            if classic.is_empty() && groups.contains_key(classic.group_id()) {
                continue;
            }
            let summary = GroupSummary {
                group_id: classic.group_id().to_string(),
                state: classic.state().as_str().to_string(),
                generation: u32::try_from(classic.generation()).unwrap_or(0),
                members: classic.members().count() as u32,
                protocol_type: classic.protocol_type().unwrap_or_default().to_string(),
            };
            groups.insert(summary.group_id.clone(), summary);
        }
        groups.into_values().collect()
    }

    pub async fn describe_group(&self, who: &Principal, group_id: &str) -> Result<GroupDescription, Error> {
        checked_group(group_id)?;
        self.authorize(who, Operation::Describe, Resource::group(group_id))?;
        self.group_description(group_id).await
    }

    /// A group coordinated here, for callers that have been authorized (or the monitoring view).
    pub(super) async fn group_description(&self, group_id: &str) -> Result<GroupDescription, Error> {
        let classic = self.groups.read_classic(group_id, |c| c.filter(|c| !c.is_empty()).map(describe_classic));
        if let Some(mut description) = classic.map_err(coordinator_error)? {
            let offsets = self.groups.read(group_id, |g| g.map(|g| committed_offsets(g, &[])).unwrap_or_default());
            description.offsets = offsets.await.map_err(coordinator_error)?;
            return Ok(description);
        }
        let outcome = self
            .groups
            .read(group_id, |group| match group {
                None => GroupDescription {
                    group_id: group_id.to_string(),
                    state: "Dead".to_string(),
                    generation: 0,
                    protocol_type: String::new(),
                    protocol: String::new(),
                    members: Vec::new(),
                    offsets: Vec::new(),
                },
                Some(g) => GroupDescription {
                    group_id: g.group_id.clone(),
                    state: g.phase().as_str().to_string(),
                    generation: g.generation,
                    protocol_type: if g.members.is_empty() { String::new() } else { RILL_PROTOCOL_TYPE.to_string() },
                    protocol: String::new(),
                    members: g
                        .members
                        .values()
                        .map(|m| GroupMemberDescription {
                            member_id: m.member_id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: String::new(),
                            topics: m.topics.iter().cloned().collect(),
                            partitions: m.target.iter().cloned().collect(),
                            metadata: Bytes::new(),
                            assignment: Bytes::new(),
                        })
                        .collect(),
                    offsets: committed_offsets(g, &[]),
                },
            })
            .await;
        outcome.map_err(coordinator_error)
    }

    /// Deletes groups without members, with their committed offsets; one outcome per group, in order.
    pub async fn delete_groups(&self, who: &Principal, group_ids: &[String]) -> Vec<(String, Result<(), Error>)> {
        let mut outcomes = Vec::with_capacity(group_ids.len());
        for group_id in group_ids {
            let checked = checked_group(group_id)
                .and_then(|()| self.authorize(who, Operation::Delete, Resource::group(group_id)));
            let outcome = match checked {
                Err(e) => Err(e),
                Ok(()) => match self.groups.delete_group(group_id).await {
                    Ok(true) => {
                        tracing::info!(group = %group_id, "group deleted");
                        Ok(())
                    }
                    Ok(false) => {
                        Err(Error::new(ErrorKind::GroupIdNotFound, format!("group '{group_id}' does not exist")))
                    }
                    Err(e) => Err(coordinator_error(e)),
                },
            };
            outcomes.push((group_id.clone(), outcome));
        }
        outcomes
    }

    /// Sets committed offsets of a group without members (`NonEmptyGroup` otherwise).
    pub async fn reset_offsets(&self, who: &Principal, group_id: &str, offsets: &[OffsetCommit]) -> Result<(), Error> {
        checked_group(group_id)?;
        self.authorize_offsets(who, group_id, offsets)?;
        let offsets = offsets_to_write(offsets)?;
        let now = now_ms();
        self.groups
            .update(group_id, |group, _, _| Ok(((), group.reset_offsets(offsets, now)?)))
            .await
            .map_err(coordinator_error)?;
        tracing::info!(group = %group_id, "offsets reset");
        Ok(())
    }
}
