//! DescribeCluster (brokers with their Kafka endpoints and the active controller) and DescribeConfigs (a
//! topic's settings: those set on it, then the broker's dynamic and static defaults), from the request core.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    RequestHeader, ResponseKind,
};

use super::super::errors;
use super::common::{self, AUTHORIZED_OPERATIONS_OMITTED, CLUSTER_ID, str_bytes};
use crate::requests::BrokerCore;
use crate::security::Principal;

/// DescribeConfigs resource types (Kafka's `ConfigResource.Type`) and config sources.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC_CONFIG: i8 = 1;
const SOURCE_DYNAMIC_BROKER_CONFIG: i8 = 2;
const SOURCE_DEFAULT_CONFIG: i8 = 5;

pub async fn handle_describe_cluster(
    core: &Arc<BrokerCore>,
    who: &Principal,
    _header: &RequestHeader,
    request: DescribeClusterRequest,
) -> ResponseKind {
    let cluster = match core.describe_cluster(who) {
        Ok(cluster) => cluster,
        Err(refused) => {
            let response = DescribeClusterResponse::default()
                .with_error_code(errors::code(refused.kind))
                .with_error_message(Some(str_bytes(&refused.message)));
            return ResponseKind::DescribeCluster(response);
        }
    };
    let brokers = cluster
        .brokers
        .iter()
        .filter(|b| request.include_fenced_brokers || !b.fenced)
        .filter_map(|b| {
            let (host, port) = common::kafka_endpoint(b)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.broker_id as i32))
                    .with_host(str_bytes(host))
                    .with_port(port)
                    .with_is_fenced(b.fenced),
            )
        })
        .collect();
    let controller_id = if cluster.active_controller == 0 { -1 } else { cluster.active_controller as i32 };
    ResponseKind::DescribeCluster(
        DescribeClusterResponse::default()
            .with_endpoint_type(request.endpoint_type)
            .with_cluster_id(str_bytes(CLUSTER_ID))
            .with_controller_id(BrokerId(controller_id))
            .with_brokers(brokers)
            .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
    )
}

fn config_entry(name: &str, value: &str, source: i8) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(value)))
        .with_read_only(source == SOURCE_DEFAULT_CONFIG)
        .with_config_source(source)
}

pub async fn handle_describe_configs(
    core: &Arc<BrokerCore>,
    who: &Principal,
    _header: &RequestHeader,
    request: DescribeConfigsRequest,
) -> ResponseKind {
    let results = request.resources.iter().map(|resource| {
        let result = DescribeConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let wanted = |name: &str| {
            resource.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
        };
        // A broker's defaults: its dynamic ones (`rill broker alter-config`, AlterConfigs), then the static
        // ones it started with (only this broker's are known here).
        let broker_defaults = |broker_id: Option<u32>| {
            let state = core.metadata.borrow().clone();
            let dynamic = broker_id.and_then(|id| state.broker_configs.get(&id).cloned()).unwrap_or_default();
            let mut configs: Vec<_> = dynamic
                .iter()
                .filter(|(k, _)| wanted(k))
                .map(|(k, v)| (k.clone(), v.clone(), SOURCE_DYNAMIC_BROKER_CONFIG))
                .collect();
            let static_ones = core.config.topic_defaults.iter().filter(|(k, _)| wanted(k) && !dynamic.contains_key(*k));
            configs.extend(static_ones.map(|(k, v)| (k.clone(), v.clone(), SOURCE_DEFAULT_CONFIG)));
            configs
        };
        match resource.resource_type {
            RESOURCE_TOPIC => {
                let name = resource.resource_name.to_string();
                let answer = core.metadata(who, Some(std::slice::from_ref(&name)));
                match answer.topics.into_iter().next().map(|t| t.result) {
                    Some(Ok(topic)) => {
                        let set = topic.config.iter().filter(|(k, _)| wanted(k));
                        let mut configs: Vec<_> = set.map(|(k, v)| config_entry(k, v, SOURCE_TOPIC_CONFIG)).collect();
                        let inherited = broker_defaults(Some(core.config.node_id))
                            .into_iter()
                            .filter(|(k, _, _)| !topic.config.contains_key(k));
                        configs.extend(inherited.map(|(k, v, source)| config_entry(&k, &v, source)));
                        result.with_configs(configs)
                    }
                    Some(Err(e)) => {
                        result.with_error_code(errors::code(e.kind)).with_error_message(Some(str_bytes(e.message)))
                    }
                    None => result.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                }
            }
            RESOURCE_BROKER => {
                let broker_id = resource.resource_name.parse().ok();
                let configs =
                    broker_defaults(broker_id).iter().map(|(k, v, source)| config_entry(k, v, *source)).collect();
                result.with_configs(configs)
            }
            other => result
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(str_bytes(format!("resource type {other} is not served")))),
        }
    });
    ResponseKind::DescribeConfigs(DescribeConfigsResponse::default().with_results(results.collect()))
}
