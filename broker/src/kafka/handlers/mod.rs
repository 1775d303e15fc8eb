//! One handler per Kafka API, each in its own file, each `async fn handle_x(core, who, header, request) ->
//! ResponseKind`: it gets the request decoded at a version `versions::SUPPORTED_APIS` lists, and answers it
//! at the same version. A handler never closes the connection; errors go in the response, as Kafka's do.
//! To add an API: its entry in `versions.rs`, its file here, and its arm in `handle`.

mod api_versions;
mod cluster;
mod common;
mod configs;
mod fetch;
mod find_coordinator;
mod group_admin;
mod groups;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod offset_for_leader_epoch;
mod offsets;
mod produce;
mod topics;

use std::sync::Arc;

use kafka_protocol::messages::{RequestHeader, RequestKind, ResponseKind};

use super::BrokerCore;
use crate::security::Principal;

pub use api_versions::unsupported_version_response;
pub use common::str_bytes;
pub use produce::start_produce;

/// Runs the handler of `request`'s API; `None` if the API has none, a bug the caller reports: an API listed
/// in the version table must have an arm here.
pub async fn handle(
    core: &Arc<BrokerCore>,
    who: &Principal,
    header: &RequestHeader,
    request: RequestKind,
) -> Option<ResponseKind> {
    Some(match request {
        RequestKind::ApiVersions(request) => api_versions::handle_api_versions(core, who, header, request).await,
        RequestKind::Fetch(request) => fetch::handle_fetch(core, who, header, request).await,
        RequestKind::ListOffsets(request) => list_offsets::handle_list_offsets(core, who, header, request).await,
        RequestKind::Metadata(request) => metadata::handle_metadata(core, who, header, request).await,
        RequestKind::OffsetForLeaderEpoch(request) => {
            offset_for_leader_epoch::handle_offset_for_leader_epoch(core, who, header, request).await
        }
        RequestKind::FindCoordinator(request) => {
            find_coordinator::handle_find_coordinator(core, who, header, request).await
        }
        RequestKind::InitProducerId(request) => {
            init_producer_id::handle_init_producer_id(core, who, header, request).await
        }
        RequestKind::CreateTopics(request) => topics::handle_create_topics(core, who, header, request).await,
        RequestKind::DeleteTopics(request) => topics::handle_delete_topics(core, who, header, request).await,
        RequestKind::CreatePartitions(request) => topics::handle_create_partitions(core, who, header, request).await,
        RequestKind::DescribeConfigs(request) => cluster::handle_describe_configs(core, who, header, request).await,
        RequestKind::AlterConfigs(request) => configs::handle_alter_configs(core, who, header, request).await,
        RequestKind::IncrementalAlterConfigs(request) => {
            configs::handle_incremental_alter_configs(core, who, header, request).await
        }
        RequestKind::DescribeCluster(request) => cluster::handle_describe_cluster(core, who, header, request).await,
        RequestKind::ElectLeaders(request) => cluster::handle_elect_leaders(core, who, header, request).await,
        RequestKind::JoinGroup(request) => groups::handle_join_group(core, who, header, request).await,
        RequestKind::SyncGroup(request) => groups::handle_sync_group(core, who, header, request).await,
        RequestKind::Heartbeat(request) => groups::handle_heartbeat(core, who, header, request).await,
        RequestKind::LeaveGroup(request) => groups::handle_leave_group(core, who, header, request).await,
        RequestKind::OffsetCommit(request) => offsets::handle_offset_commit(core, who, header, request).await,
        RequestKind::OffsetFetch(request) => offsets::handle_offset_fetch(core, who, header, request).await,
        RequestKind::ListGroups(request) => group_admin::handle_list_groups(core, who, header, request).await,
        RequestKind::DescribeGroups(request) => group_admin::handle_describe_groups(core, who, header, request).await,
        RequestKind::DeleteGroups(request) => group_admin::handle_delete_groups(core, who, header, request).await,
        _ => return None,
    })
}
