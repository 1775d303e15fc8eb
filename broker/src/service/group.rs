//! The consumer-group calls: FindCoordinator (any broker; creates `__consumer_offsets` on the first call) and
//! the coordinator's JoinGroup, Heartbeat, LeaveGroup, CommitOffsets, FetchOffsets, ListGroups,
//! DescribeGroup and ResetOffsets. Each checks its input, runs one operation of `group::GroupCoordinator`
//! and maps refusals to typed error codes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rill_proto::v1::{
    CommitOffsetsRequest, CommitOffsetsResponse, CommittedOffset, CreateTopicsRequest, DescribeGroupRequest,
    DescribeGroupResponse, Error, ErrorCode, FetchOffsetsRequest, FetchOffsetsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupMember, GroupPartition, GroupSummary, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsResponse, NewTopic,
    OffsetCommit, ResetOffsetsRequest, ResetOffsetsResponse,
};

use super::errors::error;
use super::{BrokerCore, admin, now_ms};
use crate::group::coordinator::CoordinatorError;
use crate::group::state::{GroupError, GroupState, JoinRequest};
use crate::group::{OFFSETS_TOPIC, TopicPartition, check_group_id, offsets_partition_for};
use crate::limits::{
    CLIENT_ID_BYTES_MAX, COMMIT_OFFSETS_MAX, GROUP_REBALANCE_TIMEOUT_MS_DEFAULT, GROUP_REBALANCE_TIMEOUT_MS_MAX,
    GROUP_SESSION_TIMEOUT_MS_DEFAULT, GROUP_SESSION_TIMEOUT_MS_MAX, GROUP_SESSION_TIMEOUT_MS_MIN, GROUP_TOPICS_MAX,
    OFFSET_METADATA_BYTES_MAX, OFFSETS_TOPIC_SEGMENT_BYTES,
};
use crate::metadata::NO_LEADER;
use crate::partition::PartitionError;

/// How long FindCoordinator waits for a new `__consumer_offsets` topic to appear in this node's metadata.
const OFFSETS_TOPIC_WAIT_MS: u64 = 10_000;

fn invalid(message: impl Into<String>) -> Option<Error> {
    error(ErrorCode::InvalidRequest, message)
}

fn from_coordinator(e: &CoordinatorError) -> Option<Error> {
    let code = match e {
        CoordinatorError::NotCoordinator { .. } => ErrorCode::NotCoordinator,
        CoordinatorError::Loading(_) => ErrorCode::CoordinatorNotAvailable,
        CoordinatorError::Group(GroupError::UnknownMember { .. }) => ErrorCode::UnknownMemberId,
        CoordinatorError::Group(GroupError::StaleGeneration { .. } | GroupError::NotOwner { .. }) => {
            ErrorCode::StaleGeneration
        }
        CoordinatorError::Group(GroupError::NonEmpty { .. }) => ErrorCode::NonEmptyGroup,
        CoordinatorError::Group(GroupError::Invalid(_)) => ErrorCode::InvalidRequest,
        // The partition's leadership moved: the client finds the new coordinator.
        CoordinatorError::Write { error: PartitionError::NotLeader(_), .. } => ErrorCode::NotCoordinator,
        CoordinatorError::Write { .. } => ErrorCode::CoordinatorNotAvailable,
    };
    error(code, e.to_string())
}

fn to_proto(tp: &TopicPartition) -> GroupPartition {
    GroupPartition { topic: tp.topic.clone(), partition: tp.partition }
}

fn from_proto(p: &GroupPartition) -> TopicPartition {
    TopicPartition::new(p.topic.clone(), p.partition)
}

/// Creates `__consumer_offsets` through the controller unless it exists; returns its partition count.
async fn ensure_offsets_topic(core: &BrokerCore) -> Result<u32, Option<Error>> {
    if let Some(topic) = core.metadata.borrow().topic(OFFSETS_TOPIC) {
        return Ok(topic.partitions.len() as u32);
    }
    let live = core.metadata.borrow().live_brokers().len() as u32;
    let replication_factor = core.config.offsets_topic_replication_factor.min(live.max(1));
    let config = BTreeMap::from([
        // No compaction yet: every commit is kept, so a coordinator can always rebuild its groups.
        ("retention.ms".to_string(), "-1".to_string()),
        ("segment.bytes".to_string(), OFFSETS_TOPIC_SEGMENT_BYTES.to_string()),
    ]);
    let request = CreateTopicsRequest {
        topics: vec![NewTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions: core.config.offsets_topic_partitions,
            replication_factor,
            config: config.into_iter().collect(),
        }],
        validate_only: false,
    };
    let response = if core.controller.is_active() {
        admin::create_topics_here(core, request).await
    } else {
        core.link
            .forward_create_topics(request)
            .await
            .map_err(|e| error(ErrorCode::CoordinatorNotAvailable, format!("cannot create {OFFSETS_TOPIC}: {e}")))?
    };
    if let Some(e) = response.results.into_iter().next().and_then(|r| r.error)
        && e.code != ErrorCode::TopicAlreadyExists as i32
    {
        return Err(error(ErrorCode::CoordinatorNotAvailable, format!("cannot create {OFFSETS_TOPIC}: {}", e.message)));
    }
    tracing::info!(replication_factor, "created {OFFSETS_TOPIC}");
    let mut metadata = core.metadata.clone();
    let wait = metadata.wait_for(|s| s.topic(OFFSETS_TOPIC).is_some());
    match tokio::time::timeout(Duration::from_millis(OFFSETS_TOPIC_WAIT_MS), wait).await {
        Ok(Ok(state)) => Ok(state.topic(OFFSETS_TOPIC).map_or(0, |t| t.partitions.len() as u32)),
        _ => Err(error(ErrorCode::CoordinatorNotAvailable, format!("{OFFSETS_TOPIC} is being created"))),
    }
}

pub async fn find_coordinator(core: &BrokerCore, request: FindCoordinatorRequest) -> FindCoordinatorResponse {
    if let Err(e) = check_group_id(&request.group_id) {
        return FindCoordinatorResponse { error: invalid(e), ..Default::default() };
    }
    let count = match ensure_offsets_topic(core).await {
        Ok(count) => count,
        Err(error) => return FindCoordinatorResponse { error, ..Default::default() },
    };
    let index = offsets_partition_for(&request.group_id, count);
    let state = core.metadata.borrow().clone();
    let leader = state.topic(OFFSETS_TOPIC).and_then(|t| t.partitions.get(index as usize)).map(|p| p.leader);
    let broker = leader.filter(|l| *l != NO_LEADER).and_then(|l| state.brokers.get(&l)).filter(|b| !b.fenced);
    match broker {
        Some(b) => FindCoordinatorResponse {
            error: None,
            coordinator_id: b.broker_id,
            address: b.address.clone(),
            offsets_partition: index,
        },
        None => FindCoordinatorResponse {
            error: error(
                ErrorCode::CoordinatorNotAvailable,
                format!("{OFFSETS_TOPIC}/{index}, which holds group '{}', has no leader yet", request.group_id),
            ),
            offsets_partition: index,
            ..Default::default()
        },
    }
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
    if let Some(bad) = request.topics.iter().find(|t| t.is_empty() || t.len() > crate::limits::TOPIC_NAME_BYTES_MAX) {
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

pub async fn join_group(core: &BrokerCore, request: JoinGroupRequest) -> JoinGroupResponse {
    let join = match join_request(&request) {
        Ok(join) => join,
        Err(e) => return JoinGroupResponse { error: invalid(e), ..Default::default() },
    };
    let outcome = core.groups.update(&request.group_id, |group, counts, now| group.join(join, counts, now)).await;
    match outcome {
        Ok((member_id, generation)) => {
            tracing::info!(group = %request.group_id, %member_id, generation, "member joined");
            JoinGroupResponse { error: None, member_id, generation }
        }
        Err(e) => JoinGroupResponse { error: from_coordinator(&e), ..Default::default() },
    }
}

pub async fn heartbeat(core: &BrokerCore, request: HeartbeatRequest) -> HeartbeatResponse {
    if let Err(e) = check_group_id(&request.group_id) {
        return HeartbeatResponse { error: invalid(e), ..Default::default() };
    }
    core.groups.note_heartbeat(&request.group_id, &request.member_id);
    let owned: BTreeSet<TopicPartition> = request.owned.iter().map(from_proto).collect();
    let outcome = core
        .groups
        .update(&request.group_id, |group, counts, now| {
            group.heartbeat(&request.member_id, request.generation, &owned, request.assignment_seq, counts, now)
        })
        .await;
    match outcome {
        Ok(reply) => HeartbeatResponse {
            error: None,
            generation: reply.generation,
            assignment: reply.assignment.iter().map(to_proto).collect(),
            rebalancing: reply.rebalancing,
            assignment_seq: reply.assignment_seq,
        },
        Err(e) => HeartbeatResponse { error: from_coordinator(&e), ..Default::default() },
    }
}

pub async fn leave_group(core: &BrokerCore, request: LeaveGroupRequest) -> LeaveGroupResponse {
    if let Err(e) = check_group_id(&request.group_id) {
        return LeaveGroupResponse { error: invalid(e) };
    }
    let outcome = core
        .groups
        .update(&request.group_id, |group, counts, now| Ok(((), group.leave(&request.member_id, counts, now)?)))
        .await;
    match outcome {
        Ok(()) => {
            tracing::info!(group = %request.group_id, member_id = %request.member_id, "member left");
            LeaveGroupResponse { error: None }
        }
        Err(e) => LeaveGroupResponse { error: from_coordinator(&e) },
    }
}

/// Checks offsets to commit and turns them into the state machine's form.
fn offsets_to_write(offsets: &[OffsetCommit]) -> Result<Vec<(TopicPartition, u64, String)>, String> {
    if offsets.len() > COMMIT_OFFSETS_MAX {
        return Err(format!("at most {COMMIT_OFFSETS_MAX} offsets per request"));
    }
    offsets
        .iter()
        .map(|o| {
            if o.topic.is_empty() || o.topic.len() > crate::limits::TOPIC_NAME_BYTES_MAX {
                return Err(format!("'{}' is not a topic name", o.topic));
            }
            if o.metadata.len() > OFFSET_METADATA_BYTES_MAX {
                return Err(format!("commit metadata is longer than {OFFSET_METADATA_BYTES_MAX} bytes"));
            }
            Ok((TopicPartition::new(o.topic.clone(), o.partition), o.offset, o.metadata.clone()))
        })
        .collect()
}

pub async fn commit_offsets(core: &BrokerCore, request: CommitOffsetsRequest) -> CommitOffsetsResponse {
    if let Err(e) = check_group_id(&request.group_id) {
        return CommitOffsetsResponse { error: invalid(e) };
    }
    let offsets = match offsets_to_write(&request.offsets) {
        Ok(offsets) => offsets,
        Err(e) => return CommitOffsetsResponse { error: invalid(e) },
    };
    let now = now_ms();
    let outcome = core
        .groups
        .update(&request.group_id, |group, _, _| {
            Ok(((), group.commit(&request.member_id, request.generation, offsets, now)?))
        })
        .await;
    CommitOffsetsResponse { error: outcome.err().and_then(|e| from_coordinator(&e)) }
}

fn committed_offsets(group: &GroupState, only: &[GroupPartition]) -> Vec<CommittedOffset> {
    let wanted: BTreeSet<TopicPartition> = only.iter().map(from_proto).collect();
    group
        .offsets
        .iter()
        .filter(|(tp, _)| wanted.is_empty() || wanted.contains(*tp))
        .map(|(tp, c)| CommittedOffset {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset: c.offset,
            metadata: c.metadata.clone(),
            commit_timestamp_ms: c.commit_timestamp_ms,
        })
        .collect()
}

pub async fn fetch_offsets(core: &BrokerCore, request: FetchOffsetsRequest) -> FetchOffsetsResponse {
    if let Err(e) = check_group_id(&request.group_id) {
        return FetchOffsetsResponse { error: invalid(e), offsets: Vec::new() };
    }
    let outcome = core
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
    match outcome {
        Ok(offsets) => FetchOffsetsResponse { error: None, offsets },
        Err(e) => FetchOffsetsResponse { error: from_coordinator(&e), offsets: Vec::new() },
    }
}

pub async fn list_groups(core: &BrokerCore) -> ListGroupsResponse {
    let groups = core
        .groups
        .list()
        .await
        .into_iter()
        .map(|g| GroupSummary {
            state: g.phase().as_str().to_string(),
            generation: g.generation,
            members: g.members.len() as u32,
            group_id: g.group_id,
        })
        .collect();
    ListGroupsResponse { groups }
}

pub async fn describe_group(core: &BrokerCore, request: DescribeGroupRequest) -> DescribeGroupResponse {
    if let Err(e) = check_group_id(&request.group_id) {
        return DescribeGroupResponse { error: invalid(e), ..Default::default() };
    }
    let outcome = core
        .groups
        .read(&request.group_id, |group| match group {
            None => DescribeGroupResponse {
                group_id: request.group_id.clone(),
                state: "Dead".to_string(),
                ..Default::default()
            },
            Some(g) => DescribeGroupResponse {
                error: None,
                group_id: g.group_id.clone(),
                state: g.phase().as_str().to_string(),
                generation: g.generation,
                members: g
                    .members
                    .values()
                    .map(|m| GroupMember {
                        member_id: m.member_id.clone(),
                        client_id: m.client_id.clone(),
                        topics: m.topics.iter().cloned().collect(),
                        partitions: m.target.iter().map(to_proto).collect(),
                    })
                    .collect(),
                offsets: committed_offsets(g, &[]),
            },
        })
        .await;
    outcome.unwrap_or_else(|e| DescribeGroupResponse {
        error: from_coordinator(&e),
        group_id: request.group_id.clone(),
        ..Default::default()
    })
}

pub async fn reset_offsets(core: &BrokerCore, request: ResetOffsetsRequest) -> ResetOffsetsResponse {
    if let Err(e) = check_group_id(&request.group_id) {
        return ResetOffsetsResponse { error: invalid(e) };
    }
    let offsets = match offsets_to_write(&request.offsets) {
        Ok(offsets) => offsets,
        Err(e) => return ResetOffsetsResponse { error: invalid(e) },
    };
    let now = now_ms();
    let outcome =
        core.groups.update(&request.group_id, |group, _, _| Ok(((), group.reset_offsets(offsets, now)?))).await;
    if outcome.is_ok() {
        tracing::info!(group = %request.group_id, "offsets reset");
    }
    ResetOffsetsResponse { error: outcome.err().and_then(|e| from_coordinator(&e)) }
}
