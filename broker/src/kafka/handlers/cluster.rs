//! DescribeCluster (brokers with their Kafka endpoints and the active controller), DescribeConfigs (a
//! topic's settings: those set on it, then the broker's dynamic and static defaults) and ElectLeaders
//! (preferred-leader election), from the request core.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    ElectLeadersRequest, ElectLeadersResponse, RequestHeader, ResponseKind,
};

use super::super::errors;
use super::common::{self, AUTHORIZED_OPERATIONS_OMITTED, CLUSTER_ID, str_bytes};
use crate::metadata::ElectionOutcome;
use crate::requests::BrokerCore;
use crate::security::Principal;

/// DescribeConfigs resource types (Kafka's `ConfigResource.Type`) and config sources.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC_CONFIG: i8 = 1;
const SOURCE_DYNAMIC_BROKER_CONFIG: i8 = 2;
const SOURCE_DEFAULT_CONFIG: i8 = 5;
/// ElectLeaders election types (Kafka's `ElectionType`).
const ELECTION_PREFERRED: i8 = 0;

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

/// ElectLeaders: preferred-leader election (`rill topic elect-leaders`) over the partitions named, or every
/// partition for a null list. Unclean election (type 1) is refused: an operator lets a topic elect out of
/// sync replicas with `unclean.leader.election.enable`.
pub async fn handle_elect_leaders(
    core: &Arc<BrokerCore>,
    who: &Principal,
    _header: &RequestHeader,
    request: ElectLeadersRequest,
) -> ResponseKind {
    let refuse_all_code = |code: i16, message: String| {
        ResponseKind::ElectLeaders(
            ElectLeadersResponse::default().with_error_code(code).with_replica_election_results(
                request
                    .topic_partitions
                    .iter()
                    .flatten()
                    .map(|t| {
                        ReplicaElectionResult::default().with_topic(t.topic.clone()).with_partition_result(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    PartitionResult::default()
                                        .with_partition_id(*p)
                                        .with_error_code(code)
                                        .with_error_message(Some(str_bytes(message.clone())))
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            ),
        )
    };
    if request.election_type != ELECTION_PREFERRED {
        let why = "unclean election on request is not supported; set unclean.leader.election.enable on the topic";
        return refuse_all_code(ResponseError::InvalidRequest.code(), why.to_owned());
    }
    // Partitions of topics or numbers the cluster does not have are answered here; the rest are elected.
    let state = core.metadata.borrow().clone();
    let mut unknown: Vec<(String, i32)> = Vec::new();
    let mut wanted: Vec<(String, u32)> = Vec::new();
    for t in request.topic_partitions.iter().flatten() {
        let count = state.topic(&t.topic).map_or(0, |topic| topic.partitions.len());
        for &p in &t.partitions {
            match u32::try_from(p) {
                Ok(index) if (index as usize) < count => wanted.push((t.topic.to_string(), index)),
                _ => unknown.push((t.topic.to_string(), p)),
            }
        }
    }
    let everything = request.topic_partitions.is_none();
    let elections = if everything || !wanted.is_empty() {
        match core.elect_leaders(who, &[], &wanted).await {
            Ok(elections) => elections,
            Err(e) => return refuse_all_code(errors::code(e.kind), e.message),
        }
    } else {
        Vec::new()
    };
    let mut by_topic: std::collections::BTreeMap<String, Vec<PartitionResult>> = std::collections::BTreeMap::new();
    for e in elections {
        let (code, message) = match e.outcome {
            ElectionOutcome::Elected => (0, None),
            ElectionOutcome::AlreadyPreferred => {
                (ResponseError::ElectionNotNeeded.code(), Some(format!("broker {} already leads", e.preferred)))
            }
            ElectionOutcome::NotEligible(reason) => (ResponseError::PreferredLeaderNotAvailable.code(), Some(reason)),
        };
        by_topic.entry(e.topic).or_default().push(
            PartitionResult::default()
                .with_partition_id(e.partition as i32)
                .with_error_code(code)
                .with_error_message(message.map(str_bytes)),
        );
    }
    for (topic, partition) in unknown {
        by_topic.entry(topic).or_default().push(
            PartitionResult::default()
                .with_partition_id(partition)
                .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
        );
    }
    let results = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            ReplicaElectionResult::default().with_topic(common::topic_name(topic)).with_partition_result(partitions)
        })
        .collect();
    ResponseKind::ElectLeaders(ElectLeadersResponse::default().with_replica_election_results(results))
}
