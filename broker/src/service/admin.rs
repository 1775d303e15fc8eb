//! Metadata, DescribeTopic, CreateTopics, DeleteTopics and DescribeCluster.

use std::time::Duration;

use rill_proto::v1::{
    BrokerInfo, BrokerStatus, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeClusterResponse, DescribeTopicRequest, DescribeTopicResponse, ErrorCode, InitProducerIdRequest,
    InitProducerIdResponse, MetadataRequest, MetadataResponse, PartitionDescription, PartitionMetadata, TopicMetadata,
    TopicResult,
};

use super::BrokerCore;
use super::errors::{self, error};
use crate::metadata::{MetadataState, NO_LEADER, TopicState};

/// How long a topic change waits for this broker's partitions to reflect it before answering anyway.
const APPLY_WAIT_MS: u64 = 10_000;

fn topic_metadata(topic: &TopicState) -> TopicMetadata {
    TopicMetadata {
        name: topic.name.clone(),
        error: None,
        partitions: topic
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| PartitionMetadata {
                partition: i as u32,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                partition_epoch: p.partition_epoch,
            })
            .collect(),
        config: topic.config.clone().into_iter().collect(),
        replication_factor: topic.partitions.first().map_or(0, |p| p.replicas.len() as u32),
    }
}

pub fn metadata(core: &BrokerCore, request: MetadataRequest) -> MetadataResponse {
    let state = core.metadata.borrow().clone();
    let brokers = state
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| BrokerInfo { id: b.broker_id, address: b.address.clone() })
        .collect();
    let topics = if request.topics.is_empty() {
        state.topics.values().map(topic_metadata).collect()
    } else {
        request
            .topics
            .iter()
            .map(|name| match state.topic(name) {
                Some(topic) => topic_metadata(topic),
                None => TopicMetadata {
                    name: name.clone(),
                    error: errors::unknown_partition(name, 0, false),
                    ..Default::default()
                },
            })
            .collect()
    };
    MetadataResponse { brokers, controller_id: core.controller.active_controller().unwrap_or(0), topics }
}

pub async fn describe_topic(core: &BrokerCore, request: DescribeTopicRequest) -> DescribeTopicResponse {
    let state = core.metadata.borrow().clone();
    let Some(topic) = state.topic(&request.name) else {
        return DescribeTopicResponse {
            error: errors::unknown_partition(&request.name, 0, false),
            name: request.name,
            ..Default::default()
        };
    };
    let mut partitions: Vec<PartitionDescription> = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let offsets = core.partitions.get(&topic.name, i as u32).map(|partition| partition.offsets());
            PartitionDescription {
                partition: i as u32,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                log_start_offset: offsets.as_ref().map_or(0, |o| o.log_start),
                high_watermark: offsets.as_ref().map_or(0, |o| o.high_watermark),
                log_end_offset: offsets.as_ref().map_or(0, |o| o.log_end),
            }
        })
        .collect();
    if !request.local_only {
        // Only a partition's leader knows its current HW (a follower learns it a fetch later): take each
        // remote leader's own view of the partitions it leads.
        let mut leaders: Vec<u32> = partitions.iter().map(|p| p.leader).collect();
        leaders.sort_unstable();
        leaders.dedup();
        for leader in leaders.into_iter().filter(|l| *l != core.config.node_id && *l != NO_LEADER) {
            let Some(remote) = core.link.describe_topic_at(leader, &topic.name).await else { continue };
            for theirs in remote.partitions.into_iter().filter(|p| p.leader == leader) {
                if let Some(ours) = partitions.get_mut(theirs.partition as usize) {
                    ours.log_start_offset = theirs.log_start_offset;
                    ours.high_watermark = theirs.high_watermark;
                    ours.log_end_offset = theirs.log_end_offset;
                }
            }
        }
    }
    DescribeTopicResponse {
        error: None,
        name: topic.name.clone(),
        partitions,
        config: topic.config.clone().into_iter().collect(),
    }
}

/// Waits until this node's metadata satisfies `done` and its partitions reflect that metadata, so a client
/// that creates a topic can produce to it at once.
async fn wait_local(core: &BrokerCore, done: impl Fn(&MetadataState) -> bool) {
    let wait = async {
        let mut metadata = core.metadata.clone();
        let offset = match metadata.wait_for(|s| done(s)).await {
            Ok(state) => state.next_offset,
            Err(_) => return,
        };
        let mut applied = core.partitions.applied();
        let _ = applied.wait_for(|a| *a >= offset).await;
    };
    if tokio::time::timeout(Duration::from_millis(APPLY_WAIT_MS), wait).await.is_err() {
        tracing::warn!("this broker's partitions did not reflect a metadata change in time");
    }
}

/// Creates topics through this node's controller: `NOT_CONTROLLER` for each when it is not the active one.
pub async fn create_topics_here(core: &BrokerCore, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut results = Vec::new();
    for topic in request.topics {
        let config = topic.config.into_iter().collect();
        let outcome = core
            .controller
            .create_topic(&topic.name, topic.partitions, topic.replication_factor, config, request.validate_only)
            .await;
        let error = match outcome {
            Ok(_) => {
                tracing::info!(topic = %topic.name, validate_only = request.validate_only, "created topic");
                None
            }
            Err(e) => errors::from_controller(&e),
        };
        results.push(TopicResult { name: topic.name, error });
    }
    CreateTopicsResponse { results }
}

pub async fn delete_topics_here(core: &BrokerCore, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut results = Vec::new();
    for name in request.names {
        let error = match core.controller.delete_topic(&name).await {
            Ok(_) => {
                tracing::info!(topic = %name, "deleted topic");
                None
            }
            Err(e) => errors::from_controller(&e),
        };
        results.push(TopicResult { name, error });
    }
    DeleteTopicsResponse { results }
}

fn unavailable(message: &str) -> Option<rill_proto::v1::Error> {
    error(ErrorCode::Timeout, format!("the controller did not answer: {message}"))
}

/// Internal topics (`__` names) are made and removed by the broker itself, never by a client.
fn reserved_name(name: &str) -> Option<rill_proto::v1::Error> {
    let message = format!("'{name}': names starting with '__' are reserved for internal topics");
    name.starts_with("__").then(|| error(ErrorCode::InvalidTopicName, message)).flatten()
}

/// CreateTopics from a client: served by the active controller wherever it runs.
pub async fn create_topics(core: &BrokerCore, mut request: CreateTopicsRequest) -> CreateTopicsResponse {
    let (reserved, allowed) = request.topics.into_iter().partition(|t| t.name.starts_with("__"));
    request.topics = allowed;
    let reserved: Vec<rill_proto::v1::NewTopic> = reserved;
    let mut response = if request.topics.is_empty() {
        CreateTopicsResponse::default()
    } else {
        create_allowed_topics(core, request).await
    };
    response.results.extend(reserved.into_iter().map(|t| TopicResult { error: reserved_name(&t.name), name: t.name }));
    response
}

async fn create_allowed_topics(core: &BrokerCore, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let response = if core.controller.is_active() {
        create_topics_here(core, request.clone()).await
    } else {
        match core.link.forward_create_topics(request.clone()).await {
            Ok(response) => response,
            Err(e) => CreateTopicsResponse {
                results: request
                    .topics
                    .iter()
                    .map(|t| TopicResult { name: t.name.clone(), error: unavailable(&e) })
                    .collect(),
            },
        }
    };
    let created: Vec<String> = response
        .results
        .iter()
        .filter(|r| r.error.is_none() && !request.validate_only)
        .map(|r| r.name.clone())
        .collect();
    if !created.is_empty() {
        wait_local(core, |state| created.iter().all(|name| state.topic(name).is_some())).await;
    }
    response
}

/// DeleteTopics from a client: served by the active controller wherever it runs.
pub async fn delete_topics(core: &BrokerCore, mut request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let (reserved, allowed): (Vec<String>, Vec<String>) = request.names.into_iter().partition(|n| n.starts_with("__"));
    request.names = allowed;
    let mut response = if request.names.is_empty() {
        DeleteTopicsResponse::default()
    } else {
        delete_allowed_topics(core, request).await
    };
    response.results.extend(reserved.into_iter().map(|name| TopicResult { error: reserved_name(&name), name }));
    response
}

async fn delete_allowed_topics(core: &BrokerCore, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let response = if core.controller.is_active() {
        delete_topics_here(core, request.clone()).await
    } else {
        match core.link.forward_delete_topics(request.clone()).await {
            Ok(response) => response,
            Err(e) => DeleteTopicsResponse {
                results: request
                    .names
                    .iter()
                    .map(|n| TopicResult { name: n.clone(), error: unavailable(&e) })
                    .collect(),
            },
        }
    };
    let deleted: Vec<String> = response.results.iter().filter(|r| r.error.is_none()).map(|r| r.name.clone()).collect();
    if !deleted.is_empty() {
        wait_local(core, |state| deleted.iter().all(|name| state.topic(name).is_none())).await;
    }
    response
}

pub fn describe_cluster(core: &BrokerCore) -> DescribeClusterResponse {
    let state = core.metadata.borrow().clone();
    DescribeClusterResponse {
        brokers: state
            .brokers
            .values()
            .map(|b| BrokerStatus {
                id: b.broker_id,
                address: b.address.clone(),
                fenced: b.fenced,
                broker_epoch: b.broker_epoch,
            })
            .collect(),
        active_controller: core.controller.active_controller().unwrap_or(0),
        voters: core.controller.voters(),
    }
}

/// `InitProducerId` served by this node's controller (`NOT_CONTROLLER` when it is not the active one).
pub async fn init_producer_id_here(core: &BrokerCore, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let Ok(epoch) = i16::try_from(request.producer_epoch) else {
        let message = format!("producer epoch {} out of range", request.producer_epoch);
        return InitProducerIdResponse { error: error(ErrorCode::InvalidRequest, message), ..Default::default() };
    };
    match core.controller.init_producer_id(request.producer_id, epoch).await {
        Ok((producer_id, producer_epoch)) => {
            InitProducerIdResponse { error: None, producer_id, producer_epoch: i32::from(producer_epoch) }
        }
        Err(e) => InitProducerIdResponse { error: errors::from_controller(&e), ..Default::default() },
    }
}

/// `InitProducerId` from a client: served by the active controller wherever it runs.
pub async fn init_producer_id(core: &BrokerCore, request: InitProducerIdRequest) -> InitProducerIdResponse {
    if core.controller.is_active() {
        return init_producer_id_here(core, request).await;
    }
    match core.link.forward_init_producer_id(request).await {
        Ok(response) => response,
        Err(e) => InitProducerIdResponse { error: unavailable(&e), ..Default::default() },
    }
}
