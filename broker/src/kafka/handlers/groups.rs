//! The classic consumer-group protocol: JoinGroup, SyncGroup, Heartbeat and LeaveGroup, over the request
//! core's classic-group operations. The broker relays protocol metadata and assignments as bytes; the
//! clients' assignors (range, roundrobin, cooperative-sticky, ...) compute them.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    RequestHeader, ResponseKind, SyncGroupRequest, SyncGroupResponse,
};

use super::super::errors;
use super::common::str_bytes;
use crate::requests::{BrokerCore, ClassicJoinRequest};
use crate::security::Principal;

/// The first JoinGroup version with a rebalance timeout of its own (earlier ones use the session timeout).
const JOIN_REBALANCE_TIMEOUT_VERSION: i16 = 1;
/// The first LeaveGroup version that names several members (KIP-345).
const LEAVE_BATCHED_VERSION: i16 = 3;

pub async fn handle_join_group(
    core: &Arc<BrokerCore>,
    who: &Principal,
    header: &RequestHeader,
    request: JoinGroupRequest,
) -> ResponseKind {
    let rebalance_timeout_ms = if header.request_api_version >= JOIN_REBALANCE_TIMEOUT_VERSION {
        request.rebalance_timeout_ms
    } else {
        request.session_timeout_ms
    };
    let join = ClassicJoinRequest {
        group_id: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        client_id: header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default(),
        client_host: String::new(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms,
        protocol_type: request.protocol_type.to_string(),
        protocols: request.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
    };
    let response = match core.join_classic_group(who, join).await {
        Ok(answer) => JoinGroupResponse::default()
            .with_generation_id(answer.generation)
            .with_protocol_type(Some(str_bytes(answer.protocol_type)))
            .with_protocol_name(Some(str_bytes(answer.protocol_name)))
            .with_leader(str_bytes(answer.leader))
            .with_member_id(str_bytes(answer.member_id))
            .with_members(
                answer
                    .members
                    .into_iter()
                    .map(|(id, metadata)| {
                        JoinGroupResponseMember::default().with_member_id(str_bytes(id)).with_metadata(metadata)
                    })
                    .collect(),
            ),
        Err(e) => JoinGroupResponse::default()
            .with_error_code(errors::code(e.kind))
            .with_generation_id(-1)
            .with_protocol_name(Some(str_bytes("")))
            .with_member_id(request.member_id),
    };
    ResponseKind::JoinGroup(response)
}

pub async fn handle_sync_group(
    core: &Arc<BrokerCore>,
    who: &Principal,
    _header: &RequestHeader,
    request: SyncGroupRequest,
) -> ResponseKind {
    let assignments = request.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect();
    let outcome = core
        .sync_classic_group(
            who,
            request.group_id.as_str(),
            request.member_id.as_str(),
            request.generation_id,
            assignments,
        )
        .await;
    let response = match outcome {
        // v5 clients name the protocol they joined with; a different one is not theirs.
        Ok(answer)
            if request.protocol_type.as_ref().is_some_and(|t| t.as_str() != answer.protocol_type)
                || request.protocol_name.as_ref().is_some_and(|n| n.as_str() != answer.protocol_name) =>
        {
            SyncGroupResponse::default().with_error_code(ResponseError::InconsistentGroupProtocol.code())
        }
        Ok(answer) => SyncGroupResponse::default()
            .with_protocol_type(Some(str_bytes(answer.protocol_type)))
            .with_protocol_name(Some(str_bytes(answer.protocol_name)))
            .with_assignment(answer.assignment),
        Err(e) => SyncGroupResponse::default().with_error_code(errors::code(e.kind)),
    };
    ResponseKind::SyncGroup(response)
}

pub async fn handle_heartbeat(
    core: &Arc<BrokerCore>,
    who: &Principal,
    _header: &RequestHeader,
    request: HeartbeatRequest,
) -> ResponseKind {
    let outcome =
        core.heartbeat_classic(who, request.group_id.as_str(), request.member_id.as_str(), request.generation_id);
    let code = outcome.err().map_or(0, |e| errors::code(e.kind));
    ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code))
}

pub async fn handle_leave_group(
    core: &Arc<BrokerCore>,
    who: &Principal,
    header: &RequestHeader,
    request: LeaveGroupRequest,
) -> ResponseKind {
    let batched = header.request_api_version >= LEAVE_BATCHED_VERSION;
    let members: Vec<String> = if batched {
        request.members.iter().map(|m| m.member_id.to_string()).collect()
    } else {
        vec![request.member_id.to_string()]
    };
    let response = match core.leave_classic_group(who, request.group_id.as_str(), &members) {
        Ok(results) if batched => LeaveGroupResponse::default().with_members(
            request
                .members
                .iter()
                .zip(results)
                .map(|(m, r)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id.clone())
                        .with_group_instance_id(m.group_instance_id.clone())
                        .with_error_code(r.err().map_or(0, |e| errors::code(e.kind)))
                })
                .collect(),
        ),
        Ok(results) => {
            let code = results.into_iter().next().and_then(Result::err).map_or(0, |e| errors::code(e.kind));
            LeaveGroupResponse::default().with_error_code(code)
        }
        Err(e) => LeaveGroupResponse::default().with_error_code(errors::code(e.kind)),
    };
    ResponseKind::LeaveGroup(response)
}
