//! CreateTopics, DeleteTopics and CreatePartitions through `BrokerCore::create_topics`/`delete_topics`/
//! `create_partitions` (served by the active controller wherever it runs). Kafka's -1 partitions or
//! replication factor mean the broker's default; manual replica assignments are refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, RequestHeader, ResponseKind,
};

use super::super::errors;
use super::common::{self, str_bytes, topic_name};
use crate::requests::{BrokerCore, NewTopic};
use crate::security::Principal;

/// Partitions of a topic created with -1, as Kafka's `num.partitions` default.
const DEFAULT_PARTITIONS: u32 = 1;

pub async fn handle_create_topics(
    core: &Arc<BrokerCore>,
    who: &Principal,
    _header: &RequestHeader,
    request: CreateTopicsRequest,
) -> ResponseKind {
    let mut refused = Vec::new();
    let mut topics = Vec::new();
    for t in &request.topics {
        if !t.assignments.is_empty() {
            refused.push((t.name.to_string(), "manual replica assignments are not supported"));
            continue;
        }
        let config: BTreeMap<String, String> =
            t.configs.iter().filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string()))).collect();
        topics.push(NewTopic {
            name: t.name.to_string(),
            partitions: u32::try_from(t.num_partitions).unwrap_or(DEFAULT_PARTITIONS),
            replication_factor: u32::try_from(t.replication_factor).unwrap_or(0),
            config,
        });
    }
    let outcomes = core.create_topics(who, &topics, request.validate_only).await;
    let state = core.metadata.borrow().clone();
    let mut results: Vec<CreatableTopicResult> = outcomes
        .into_iter()
        .map(|(name, outcome)| {
            let result = CreatableTopicResult::default().with_name(topic_name(name.clone()));
            match (outcome, state.topic(&name)) {
                (Ok(()), Some(topic)) => result
                    .with_topic_id(common::topic_id(topic))
                    .with_num_partitions(topic.partitions.len() as i32)
                    .with_replication_factor(topic.partitions.first().map_or(-1, |p| p.replicas.len() as i16)),
                (Ok(()), None) => result.with_num_partitions(-1).with_replication_factor(-1),
                (Err(e), _) => result
                    .with_error_code(errors::code(e.kind))
                    .with_error_message(Some(str_bytes(e.message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            }
        })
        .collect();
    results.extend(refused.into_iter().map(|(name, why)| {
        CreatableTopicResult::default()
            .with_name(topic_name(name))
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(str_bytes(why)))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
    }));
    ResponseKind::CreateTopics(CreateTopicsResponse::default().with_topics(results))
}

pub async fn handle_delete_topics(
    core: &Arc<BrokerCore>,
    who: &Principal,
    _header: &RequestHeader,
    request: DeleteTopicsRequest,
) -> ResponseKind {
    let state = core.metadata.borrow().clone();
    // v6 names topics by name or id, earlier versions by name.
    let mut names: Vec<String> = request.topic_names.iter().map(|n| n.to_string()).collect();
    let mut unknown_ids = Vec::new();
    for t in &request.topics {
        match (&t.name, common::topic_by_id(&state, t.topic_id)) {
            (Some(name), _) => names.push(name.to_string()),
            (None, Some(topic)) => names.push(topic.name.clone()),
            (None, None) => unknown_ids.push(t.topic_id),
        }
    }
    let outcomes = core.delete_topics(who, &names).await;
    let mut responses: Vec<DeletableTopicResult> = outcomes
        .into_iter()
        .map(|(name, outcome)| {
            let id = state.topic(&name).map(common::topic_id).unwrap_or_default();
            let result = DeletableTopicResult::default().with_name(Some(topic_name(name))).with_topic_id(id);
            match outcome {
                Ok(()) => result,
                Err(e) => result.with_error_code(errors::code(e.kind)).with_error_message(Some(str_bytes(e.message))),
            }
        })
        .collect();
    responses.extend(unknown_ids.into_iter().map(|id| {
        DeletableTopicResult::default().with_topic_id(id).with_error_code(ResponseError::UnknownTopicId.code())
    }));
    ResponseKind::DeleteTopics(DeleteTopicsResponse::default().with_responses(responses))
}

pub async fn handle_create_partitions(
    core: &Arc<BrokerCore>,
    who: &Principal,
    _header: &RequestHeader,
    request: CreatePartitionsRequest,
) -> ResponseKind {
    let mut results = Vec::new();
    for t in &request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let refused = |code: ResponseError, why: String| {
            result.clone().with_error_code(code.code()).with_error_message(Some(str_bytes(why)))
        };
        if t.assignments.is_some() {
            results.push(refused(
                ResponseError::InvalidReplicaAssignment,
                "manual replica assignments are not supported".into(),
            ));
            continue;
        }
        let Ok(count) = u32::try_from(t.count) else {
            results.push(refused(ResponseError::InvalidPartitions, format!("partition count {} is negative", t.count)));
            continue;
        };
        results.push(match core.create_partitions(who, &t.name, count, request.validate_only).await {
            Ok(()) => result,
            Err(e) => result.with_error_code(errors::code(e.kind)).with_error_message(Some(str_bytes(e.message))),
        });
    }
    ResponseKind::CreatePartitions(CreatePartitionsResponse::default().with_results(results))
}
