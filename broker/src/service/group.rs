//! The consumer-group calls over gRPC: proto messages as the core's types and back.

use rill_proto::v1::{
    self as proto, CommitOffsetsResponse, CommittedOffset, DescribeGroupResponse, FetchOffsetsResponse,
    FindCoordinatorResponse, GroupMember, GroupPartition, HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse,
    ListGroupsResponse, ResetOffsetsResponse,
};

use super::errors::{self, field};
use crate::group::TopicPartition;
use crate::group::state::Committed;
use crate::requests::{BrokerCore, HeartbeatRequest, JoinGroupRequest, OffsetCommit, OffsetFetchRequest};
use crate::security::Principal;

fn to_proto(tp: &TopicPartition) -> GroupPartition {
    GroupPartition { topic: tp.topic.clone(), partition: tp.partition }
}

fn from_proto(p: &GroupPartition) -> TopicPartition {
    TopicPartition::new(p.topic.clone(), p.partition)
}

fn offset_commits(offsets: Vec<proto::OffsetCommit>) -> Vec<OffsetCommit> {
    let commit = |o: proto::OffsetCommit| OffsetCommit {
        partition: TopicPartition::new(o.topic, o.partition),
        offset: o.offset,
        metadata: o.metadata,
    };
    offsets.into_iter().map(commit).collect()
}

fn committed_offsets(offsets: Vec<(TopicPartition, Committed)>) -> Vec<CommittedOffset> {
    let offset = |(tp, c): (TopicPartition, Committed)| CommittedOffset {
        topic: tp.topic,
        partition: tp.partition,
        offset: c.offset,
        metadata: c.metadata,
        commit_timestamp_ms: c.commit_timestamp_ms,
    };
    offsets.into_iter().map(offset).collect()
}

pub async fn find_coordinator(
    core: &BrokerCore,
    who: &Principal,
    request: proto::FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    match core.find_coordinator(who, &request.group_id).await {
        Ok(c) => FindCoordinatorResponse {
            error: None,
            coordinator_id: c.broker.broker_id,
            address: c.broker.address,
            offsets_partition: c.offsets_partition,
        },
        Err(e) => FindCoordinatorResponse { error: Some(errors::to_proto(&e)), ..Default::default() },
    }
}

pub async fn join_group(core: &BrokerCore, who: &Principal, r: proto::JoinGroupRequest) -> JoinGroupResponse {
    let request = JoinGroupRequest {
        group_id: r.group_id,
        member_id: r.member_id,
        client_id: r.client_id,
        topics: r.topics,
        session_timeout_ms: r.session_timeout_ms,
        rebalance_timeout_ms: r.rebalance_timeout_ms,
    };
    match core.join_group(who, &request).await {
        Ok((member_id, generation)) => JoinGroupResponse { error: None, member_id, generation },
        Err(e) => JoinGroupResponse { error: Some(errors::to_proto(&e)), ..Default::default() },
    }
}

pub async fn heartbeat(core: &BrokerCore, who: &Principal, r: proto::HeartbeatRequest) -> HeartbeatResponse {
    let request = HeartbeatRequest {
        owned: r.owned.iter().map(from_proto).collect(),
        group_id: r.group_id,
        member_id: r.member_id,
        generation: r.generation,
        assignment_seq: r.assignment_seq,
    };
    match core.heartbeat(who, &request).await {
        Ok(reply) => HeartbeatResponse {
            error: None,
            generation: reply.generation,
            assignment: reply.assignment.iter().map(to_proto).collect(),
            rebalancing: reply.rebalancing,
            assignment_seq: reply.assignment_seq,
        },
        Err(e) => HeartbeatResponse { error: Some(errors::to_proto(&e)), ..Default::default() },
    }
}

pub async fn leave_group(core: &BrokerCore, who: &Principal, r: proto::LeaveGroupRequest) -> LeaveGroupResponse {
    LeaveGroupResponse { error: field(&core.leave_group(who, &r.group_id, &r.member_id).await) }
}

pub async fn commit_offsets(
    core: &BrokerCore,
    who: &Principal,
    r: proto::CommitOffsetsRequest,
) -> CommitOffsetsResponse {
    let offsets = offset_commits(r.offsets);
    CommitOffsetsResponse {
        error: field(&core.commit_offsets(who, &r.group_id, &r.member_id, r.generation, &offsets).await),
    }
}

pub async fn fetch_offsets(core: &BrokerCore, who: &Principal, r: proto::FetchOffsetsRequest) -> FetchOffsetsResponse {
    let request = OffsetFetchRequest {
        partitions: r.partitions.iter().map(from_proto).collect(),
        group_id: r.group_id,
        member_id: r.member_id,
        generation: r.generation,
    };
    match core.fetch_offsets(who, &request).await {
        Ok(offsets) => FetchOffsetsResponse { error: None, offsets: committed_offsets(offsets) },
        Err(e) => FetchOffsetsResponse { error: Some(errors::to_proto(&e)), offsets: Vec::new() },
    }
}

pub async fn list_groups(core: &BrokerCore, who: &Principal) -> ListGroupsResponse {
    let groups = core.list_groups(who).await.into_iter().map(|g| proto::GroupSummary {
        group_id: g.group_id,
        state: g.state,
        generation: g.generation,
        members: g.members,
    });
    ListGroupsResponse { groups: groups.collect() }
}

pub async fn describe_group(
    core: &BrokerCore,
    who: &Principal,
    r: proto::DescribeGroupRequest,
) -> DescribeGroupResponse {
    match core.describe_group(who, &r.group_id).await {
        Ok(g) => DescribeGroupResponse {
            error: None,
            group_id: g.group_id,
            state: g.state,
            generation: g.generation,
            members: g
                .members
                .into_iter()
                .map(|m| GroupMember {
                    member_id: m.member_id,
                    client_id: m.client_id,
                    topics: m.topics,
                    partitions: m.partitions.iter().map(to_proto).collect(),
                })
                .collect(),
            offsets: committed_offsets(g.offsets),
        },
        Err(e) => {
            DescribeGroupResponse { error: Some(errors::to_proto(&e)), group_id: r.group_id, ..Default::default() }
        }
    }
}

pub async fn reset_offsets(core: &BrokerCore, who: &Principal, r: proto::ResetOffsetsRequest) -> ResetOffsetsResponse {
    let offsets = offset_commits(r.offsets);
    ResetOffsetsResponse { error: field(&core.reset_offsets(who, &r.group_id, &offsets).await) }
}
