//! Metadata: brokers with their Kafka endpoints, the active controller, and per topic its id and partitions
//! (leader, leader epoch, replicas, ISR, replicas on fenced brokers as offline), from `BrokerCore::metadata`.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, RequestHeader, ResponseKind};
use uuid::Uuid;

use super::super::errors;
use super::common::{self, AUTHORIZED_OPERATIONS_OMITTED, CLUSTER_ID, str_bytes, topic_name};
use crate::group::OFFSETS_TOPIC;
use crate::metadata::{NO_LEADER, TopicState};
use crate::requests::BrokerCore;
use crate::security::Principal;

/// A topic a request names: by name, or (v10+) by id only.
enum Wanted {
    Name(String),
    Id(Uuid),
}

/// The topics asked for; `None` for every topic (a null list, or at v0 an empty one).
fn wanted(request: &MetadataRequest, version: i16) -> Option<Vec<Wanted>> {
    let topics = request.topics.as_ref().filter(|t| version > 0 || !t.is_empty())?;
    Some(
        topics
            .iter()
            .map(|t| match &t.name {
                Some(name) => Wanted::Name(name.to_string()),
                None => Wanted::Id(t.topic_id),
            })
            .collect(),
    )
}

fn partitions(topic: &TopicState, live: &BTreeSet<u32>) -> Vec<MetadataResponsePartition> {
    let brokers = |ids: &[u32]| ids.iter().map(|id| BrokerId(*id as i32)).collect::<Vec<_>>();
    topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let offline: Vec<u32> = p.replicas.iter().filter(|r| !live.contains(r)).copied().collect();
            let led = p.leader != NO_LEADER && live.contains(&p.leader);
            MetadataResponsePartition::default()
                .with_error_code(if led { 0 } else { ResponseError::LeaderNotAvailable.code() })
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(if led { p.leader as i32 } else { -1 }))
                .with_leader_epoch(p.leader_epoch as i32)
                .with_replica_nodes(brokers(&p.replicas))
                .with_isr_nodes(brokers(&p.isr))
                .with_offline_replicas(brokers(&offline))
        })
        .collect()
}

fn found(topic: &TopicState, live: &BTreeSet<u32>) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(topic.name.clone())))
        .with_topic_id(common::topic_id(topic))
        .with_is_internal(topic.name == OFFSETS_TOPIC)
        .with_partitions(partitions(topic, live))
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

pub async fn handle_metadata(
    core: &Arc<BrokerCore>,
    who: &Principal,
    header: &RequestHeader,
    request: MetadataRequest,
) -> ResponseKind {
    // Topics asked for by id are looked up by name; an id that names nothing is answered as unknown.
    let state = core.metadata.borrow().clone();
    let wanted = wanted(&request, header.request_api_version);
    let names: Option<Vec<String>> = wanted.as_ref().map(|w| {
        w.iter()
            .filter_map(|t| match t {
                Wanted::Name(name) => Some(name.clone()),
                Wanted::Id(id) => common::topic_by_id(&state, *id).map(|t| t.name.clone()),
            })
            .collect()
    });
    let answer = core.metadata(who, names.as_deref());
    let live: BTreeSet<u32> = answer.brokers.iter().map(|b| b.broker_id).collect();
    let brokers = answer
        .brokers
        .iter()
        .filter_map(|b| {
            let (host, port) = common::kafka_endpoint(b)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.broker_id as i32))
                    .with_host(str_bytes(host))
                    .with_port(port),
            )
        })
        .collect();
    let mut topics: Vec<MetadataResponseTopic> = answer
        .topics
        .iter()
        .map(|t| match &t.result {
            Ok(topic) => found(topic, &live),
            Err(e) => MetadataResponseTopic::default()
                .with_name(Some(topic_name(t.name.clone())))
                .with_error_code(errors::code(e.kind))
                .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
        })
        .collect();
    for id in wanted.iter().flatten().filter_map(|w| match w {
        Wanted::Id(id) if common::topic_by_id(&state, *id).is_none() => Some(*id),
        _ => None,
    }) {
        topics.push(
            MetadataResponseTopic::default()
                .with_topic_id(id)
                .with_error_code(ResponseError::UnknownTopicId.code())
                .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
        );
    }
    let controller_id = if answer.controller_id == 0 { -1 } else { answer.controller_id as i32 };
    ResponseKind::Metadata(
        MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(str_bytes(CLUSTER_ID)))
            .with_controller_id(BrokerId(controller_id))
            .with_topics(topics)
            .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
    )
}
