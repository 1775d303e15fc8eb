//! ListGroups, DescribeGroups and DeleteGroups, for groups of either protocol, from the request core.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, GroupId,
    ListGroupsRequest, ListGroupsResponse, RequestHeader, ResponseKind,
};

use super::super::errors;
use super::common::{AUTHORIZED_OPERATIONS_OMITTED, str_bytes};
use crate::requests::BrokerCore;
use crate::security::Principal;

/// The Kafka group type of classic-protocol groups (KIP-848 names "classic" and "consumer").
const GROUP_TYPE_CLASSIC: &str = "classic";

pub async fn handle_list_groups(
    core: &Arc<BrokerCore>,
    who: &Principal,
    _header: &RequestHeader,
    request: ListGroupsRequest,
) -> ResponseKind {
    let wanted =
        |state: &str| request.states_filter.is_empty() || request.states_filter.iter().any(|s| s.as_str() == state);
    let groups = core
        .list_groups(who)
        .await
        .into_iter()
        .filter(|g| wanted(&g.state))
        .map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(g.group_id)))
                .with_protocol_type(str_bytes(g.protocol_type))
                .with_group_state(str_bytes(g.state))
                .with_group_type(str_bytes(GROUP_TYPE_CLASSIC))
        })
        .collect();
    ResponseKind::ListGroups(ListGroupsResponse::default().with_groups(groups))
}

pub async fn handle_describe_groups(
    core: &Arc<BrokerCore>,
    who: &Principal,
    _header: &RequestHeader,
    request: DescribeGroupsRequest,
) -> ResponseKind {
    let mut groups = Vec::with_capacity(request.groups.len());
    for group_id in request.groups {
        let described = DescribedGroup::default()
            .with_group_id(group_id.clone())
            .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
        groups.push(match core.describe_group(who, group_id.as_str()).await {
            Ok(g) => described
                .with_group_state(str_bytes(g.state))
                .with_protocol_type(str_bytes(g.protocol_type))
                .with_protocol_data(str_bytes(g.protocol))
                .with_members(
                    g.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(str_bytes(m.member_id))
                                .with_client_id(str_bytes(m.client_id))
                                .with_client_host(str_bytes(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                ),
            // The error message field exists from v6 on, beyond the versions served.
            Err(e) => described.with_error_code(errors::code(e.kind)).with_group_state(str_bytes("Dead")),
        });
    }
    ResponseKind::DescribeGroups(DescribeGroupsResponse::default().with_groups(groups))
}

pub async fn handle_delete_groups(
    core: &Arc<BrokerCore>,
    who: &Principal,
    _header: &RequestHeader,
    request: DeleteGroupsRequest,
) -> ResponseKind {
    let names: Vec<String> = request.groups_names.iter().map(|g| g.to_string()).collect();
    let results = core.delete_groups(who, &names).await.into_iter().map(|(group_id, outcome)| {
        DeletableGroupResult::default()
            .with_group_id(GroupId(str_bytes(group_id)))
            .with_error_code(outcome.err().map_or(0, |e| errors::code(e.kind)))
    });
    ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(results.collect()))
}
