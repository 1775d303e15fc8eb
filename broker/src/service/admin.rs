//! Metadata, DescribeTopic, CreateTopics, DeleteTopics and DescribeCluster.

use std::sync::Arc;
use std::time::Duration;

use rill_proto::v1::{
    BrokerInfo, BrokerStatus, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeClusterResponse, DescribeTopicRequest, DescribeTopicResponse, ErrorCode, MetadataRequest,
    MetadataResponse, PartitionDescription, PartitionMetadata, TopicMetadata, TopicResult,
};

use super::BrokerCore;
use super::errors::{self, error};
use crate::metadata::{Controller, ControllerError, TopicState};

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
    MetadataResponse { brokers, controller_id: core.config.node_id, topics }
}

pub fn describe_topic(core: &BrokerCore, request: DescribeTopicRequest) -> DescribeTopicResponse {
    let state = core.metadata.borrow().clone();
    let Some(topic) = state.topic(&request.name) else {
        return DescribeTopicResponse {
            error: errors::unknown_partition(&request.name, 0, false),
            name: request.name,
            ..Default::default()
        };
    };
    let partitions = topic
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
    DescribeTopicResponse {
        error: None,
        name: topic.name.clone(),
        partitions,
        config: topic.config.clone().into_iter().collect(),
    }
}

/// Runs a controller operation off the async workers: it writes and fsyncs the metadata log.
async fn with_controller<T: Send + 'static>(
    core: &BrokerCore,
    op: impl FnOnce(&mut Controller) -> Result<T, ControllerError> + Send + 'static,
) -> Result<T, Option<rill_proto::v1::Error>> {
    let controller = Arc::clone(&core.controller);
    let outcome = tokio::task::spawn_blocking(move || {
        let mut controller = controller.lock().unwrap_or_else(|p| p.into_inner());
        op(&mut controller)
    })
    .await;
    match outcome {
        Ok(result) => result.map_err(|e| errors::from_controller(&e)),
        Err(e) => Err(error(ErrorCode::Unknown, format!("controller task failed: {e}"))),
    }
}

/// Waits until this broker's partitions reflect metadata up to `offset`.
async fn wait_applied(core: &BrokerCore, offset: u64) {
    let mut applied = core.partitions.applied();
    let wait = applied.wait_for(|a| *a >= offset);
    if tokio::time::timeout(Duration::from_millis(APPLY_WAIT_MS), wait).await.is_err() {
        tracing::warn!(offset, "partitions did not reflect a metadata change in time");
    }
}

pub async fn create_topics(core: &BrokerCore, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut results = Vec::new();
    let mut last_offset = 0;
    for topic in request.topics {
        let name = topic.name.clone();
        let validate_only = request.validate_only;
        let outcome = with_controller(core, move |c| {
            let config = topic.config.into_iter().collect();
            c.create_topic(&topic.name, topic.partitions, topic.replication_factor, config, validate_only)
        })
        .await;
        let error = match outcome {
            Ok(offset) => {
                last_offset = last_offset.max(offset);
                tracing::info!(topic = %name, validate_only, "created topic");
                None
            }
            Err(e) => e,
        };
        results.push(TopicResult { name, error });
    }
    wait_applied(core, last_offset).await;
    CreateTopicsResponse { results }
}

pub async fn delete_topics(core: &BrokerCore, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut results = Vec::new();
    let mut last_offset = 0;
    for name in request.names {
        let topic = name.clone();
        let error = match with_controller(core, move |c| c.delete_topic(&topic)).await {
            Ok(offset) => {
                last_offset = last_offset.max(offset);
                tracing::info!(topic = %name, "deleted topic");
                None
            }
            Err(e) => e,
        };
        results.push(TopicResult { name, error });
    }
    wait_applied(core, last_offset).await;
    DeleteTopicsResponse { results }
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
        // One node runs a one-voter controller quorum inside the broker process.
        active_controller: core.config.node_id,
        voters: vec![core.config.node_id],
    }
}
