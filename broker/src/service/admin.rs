//! Metadata, DescribeTopic, CreateTopics, DeleteTopics, DescribeCluster and InitProducerId over gRPC: proto
//! messages as the core's types and back.

use rill_proto::v1::{
    self as proto, BrokerInfo, BrokerStatus, CreateTopicsResponse, DeleteTopicsResponse, DescribeClusterResponse,
    DescribeTopicResponse, InitProducerIdResponse, MetadataResponse, PartitionMetadata, TopicResult,
};

use super::errors::{self, invalid};
use crate::metadata::TopicState;
use crate::requests::{BrokerCore, NewTopic, TopicOutcomes};
use crate::security::Principal;

fn topic_metadata(topic: TopicState) -> proto::TopicMetadata {
    proto::TopicMetadata {
        name: topic.name,
        error: None,
        replication_factor: topic.partitions.first().map_or(0, |p| p.replicas.len() as u32),
        partitions: topic
            .partitions
            .into_iter()
            .enumerate()
            .map(|(i, p)| PartitionMetadata {
                partition: i as u32,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas,
                isr: p.isr,
                partition_epoch: p.partition_epoch,
            })
            .collect(),
        config: topic.config.into_iter().collect(),
    }
}

pub fn metadata(core: &BrokerCore, who: &Principal, request: proto::MetadataRequest) -> MetadataResponse {
    // An empty list asks for every topic.
    let answer = core.metadata(who, (!request.topics.is_empty()).then_some(request.topics.as_slice()));
    let brokers = answer.brokers.into_iter().map(|b| BrokerInfo { id: b.broker_id, address: b.address }).collect();
    let topics = answer.topics.into_iter().map(|t| match t.result {
        Ok(topic) => topic_metadata(topic),
        Err(e) => proto::TopicMetadata { name: t.name, error: Some(errors::to_proto(&e)), ..Default::default() },
    });
    MetadataResponse { brokers, controller_id: answer.controller_id, topics: topics.collect() }
}

pub async fn describe_topic(
    core: &BrokerCore,
    who: &Principal,
    request: proto::DescribeTopicRequest,
) -> DescribeTopicResponse {
    match core.describe_topic(who, &request.name, request.local_only).await {
        Ok(topic) => DescribeTopicResponse {
            error: None,
            name: topic.name,
            partitions: topic
                .partitions
                .into_iter()
                .map(|p| proto::PartitionDescription {
                    partition: p.partition,
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas,
                    isr: p.isr,
                    log_start_offset: p.log_start_offset,
                    high_watermark: p.high_watermark,
                    log_end_offset: p.log_end_offset,
                })
                .collect(),
            config: topic.config.into_iter().collect(),
        },
        Err(e) => DescribeTopicResponse { error: Some(errors::to_proto(&e)), name: request.name, ..Default::default() },
    }
}

pub fn new_topics(request: &proto::CreateTopicsRequest) -> Vec<NewTopic> {
    request
        .topics
        .iter()
        .map(|t| NewTopic {
            name: t.name.clone(),
            partitions: t.partitions,
            replication_factor: t.replication_factor,
            config: t.config.clone().into_iter().collect(),
        })
        .collect()
}

pub fn topic_results(outcomes: TopicOutcomes) -> Vec<TopicResult> {
    outcomes.into_iter().map(|(name, result)| TopicResult { error: errors::field(&result), name }).collect()
}

pub async fn create_topics(
    core: &BrokerCore,
    who: &Principal,
    request: proto::CreateTopicsRequest,
) -> CreateTopicsResponse {
    let outcomes = core.create_topics(who, &new_topics(&request), request.validate_only).await;
    CreateTopicsResponse { results: topic_results(outcomes) }
}

pub async fn delete_topics(
    core: &BrokerCore,
    who: &Principal,
    request: proto::DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    DeleteTopicsResponse { results: topic_results(core.delete_topics(who, &request.names).await) }
}

pub fn broker_stats(core: &BrokerCore, who: &Principal) -> proto::BrokerStatsResponse {
    let stats = match core.broker_stats(who) {
        Ok(stats) => stats,
        Err(refused) => {
            return proto::BrokerStatsResponse { error: Some(errors::to_proto(&refused)), ..Default::default() };
        }
    };
    proto::BrokerStatsResponse {
        node_id: stats.node_id,
        now_ms: stats.now_ms,
        topics: stats
            .topics
            .into_iter()
            .map(|t| proto::TopicTraffic {
                topic: t.topic,
                produced_bytes: t.produced_bytes,
                produced_records: t.produced_records,
                fetched_bytes: t.fetched_bytes,
            })
            .collect(),
        apis: stats
            .latencies
            .into_iter()
            .map(|(api, count, sum_seconds)| proto::ApiLatency { api: api.to_string(), count, sum_seconds })
            .collect(),
        disk_bytes: stats.disk_bytes,
        leaderships: stats.leaderships,
        error: None,
    }
}

pub fn describe_cluster(core: &BrokerCore, who: &Principal) -> DescribeClusterResponse {
    let cluster = match core.describe_cluster(who) {
        Ok(cluster) => cluster,
        Err(refused) => {
            return DescribeClusterResponse { error: Some(errors::to_proto(&refused)), ..Default::default() };
        }
    };
    DescribeClusterResponse {
        error: None,
        brokers: cluster
            .brokers
            .into_iter()
            .map(|b| BrokerStatus {
                id: b.broker_id,
                address: b.address,
                fenced: b.fenced,
                broker_epoch: b.broker_epoch,
                kafka_address: b.kafka_address.unwrap_or_default(),
                draining: b.draining,
                shutting_down: b.shutting_down,
            })
            .collect(),
        active_controller: cluster.active_controller,
        voters: cluster.voters,
    }
}

pub async fn drain_broker(
    core: &BrokerCore,
    who: &Principal,
    request: proto::DrainBrokerRequest,
) -> proto::DrainBrokerResponse {
    match core.drain_broker(who, request.broker_id, request.cancel).await {
        Ok(outcome) => {
            let refs = |list: Vec<(String, u32)>| {
                list.into_iter().map(|(topic, partition)| proto::PartitionRef { topic, partition }).collect()
            };
            proto::DrainBrokerResponse { error: None, stuck: refs(outcome.stuck), unmovable: refs(outcome.unmovable) }
        }
        Err(e) => proto::DrainBrokerResponse { error: Some(errors::to_proto(&e)), ..Default::default() },
    }
}

pub async fn elect_leaders(
    core: &BrokerCore,
    who: &Principal,
    request: proto::ElectLeadersRequest,
) -> proto::ElectLeadersResponse {
    use crate::metadata::ElectionOutcome;
    let elections = match core.elect_leaders(who, &request.topics, &[]).await {
        Ok(elections) => elections,
        Err(e) => return proto::ElectLeadersResponse { error: Some(errors::to_proto(&e)), ..Default::default() },
    };
    let results = elections.into_iter().map(|e| {
        let (outcome, reason) = match e.outcome {
            ElectionOutcome::Elected => ("elected", String::new()),
            ElectionOutcome::AlreadyPreferred => ("already-preferred", String::new()),
            ElectionOutcome::NotEligible(reason) => ("not-eligible", reason),
        };
        proto::ElectionResult {
            topic: e.topic,
            partition: e.partition,
            preferred: e.preferred,
            outcome: outcome.to_owned(),
            reason,
        }
    });
    proto::ElectLeadersResponse { error: None, results: results.collect() }
}

pub async fn alter_configs(
    core: &BrokerCore,
    who: &Principal,
    request: proto::AlterConfigsRequest,
) -> proto::AlterConfigsResponse {
    use proto::alter_configs_request::Resource;
    let set = request.set.into_iter().collect();
    let altered = match request.resource {
        Some(Resource::Topic(topic)) => core.alter_topic_config(who, &topic, set, request.delete, false).await,
        Some(Resource::BrokerId(id)) => core.alter_broker_config(who, id, set, request.delete, false).await,
        None => {
            return proto::AlterConfigsResponse {
                error: invalid("name a topic or a broker whose config to alter".to_owned()),
                ..Default::default()
            };
        }
    };
    match altered {
        Ok(config) => proto::AlterConfigsResponse { error: None, config: config.into_iter().collect() },
        Err(e) => proto::AlterConfigsResponse { error: Some(errors::to_proto(&e)), ..Default::default() },
    }
}

pub async fn create_partitions(
    core: &BrokerCore,
    who: &Principal,
    request: proto::CreatePartitionsRequest,
) -> proto::CreatePartitionsResponse {
    let created = core.create_partitions(who, &request.topic, request.partitions, request.validate_only).await;
    let partitions = core.metadata.borrow().topic(&request.topic).map_or(0, |t| t.partitions.len() as u32);
    match created {
        Ok(()) => proto::CreatePartitionsResponse { error: None, partitions },
        Err(e) => proto::CreatePartitionsResponse { error: Some(errors::to_proto(&e)), partitions },
    }
}

pub fn init_producer_id_response(outcome: Result<(i64, i16), crate::requests::Error>) -> InitProducerIdResponse {
    match outcome {
        Ok((producer_id, producer_epoch)) => {
            InitProducerIdResponse { error: None, producer_id, producer_epoch: i32::from(producer_epoch) }
        }
        Err(e) => InitProducerIdResponse { error: Some(errors::to_proto(&e)), ..Default::default() },
    }
}

/// The request's epoch as the core's `i16`, or the answer refusing it.
pub fn producer_epoch(request: &proto::InitProducerIdRequest) -> Result<i16, InitProducerIdResponse> {
    i16::try_from(request.producer_epoch).map_err(|_| InitProducerIdResponse {
        error: invalid(format!("producer epoch {} out of range", request.producer_epoch)),
        ..Default::default()
    })
}

pub async fn init_producer_id(
    core: &BrokerCore,
    who: &Principal,
    request: proto::InitProducerIdRequest,
) -> InitProducerIdResponse {
    match producer_epoch(&request) {
        Ok(epoch) => init_producer_id_response(core.init_producer_id(who, request.producer_id, epoch).await),
        Err(refused) => refused,
    }
}
