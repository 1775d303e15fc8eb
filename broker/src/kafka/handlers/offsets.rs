//! OffsetCommit and OffsetFetch: committed offsets of a group in `__consumer_offsets`, for classic members of
//! the current generation and for standalone consumers (no member id, generation -1) of a group without
//! members. The committed leader epoch is not kept: fetched offsets carry -1, so clients skip the check.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, RequestHeader, ResponseKind,
};

use super::super::errors;
use super::common::{offset_to_wire, partition_index, str_bytes, topic_name};
use crate::group::TopicPartition;
use crate::requests::{BrokerCore, Error, OffsetCommit, OffsetFetchRequest as CoreOffsetFetch};
use crate::security::Principal;

pub async fn handle_offset_commit(
    core: &Arc<BrokerCore>,
    who: &Principal,
    _header: &RequestHeader,
    request: OffsetCommitRequest,
) -> ResponseKind {
    let mut offsets = Vec::new();
    let mut negative = false;
    for topic in &request.topics {
        for p in &topic.partitions {
            negative |= p.committed_offset < 0;
            offsets.push(OffsetCommit {
                partition: TopicPartition::new(topic.name.to_string(), partition_index(p.partition_index)),
                offset: u64::try_from(p.committed_offset).unwrap_or(0),
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
            });
        }
    }
    let outcome = if negative {
        Err(Error::invalid("a committed offset is negative"))
    } else {
        let (group_id, member_id) = (request.group_id.as_str(), request.member_id.as_str());
        core.commit_classic_offsets(who, group_id, member_id, request.generation_id_or_member_epoch, &offsets).await
    };
    let code = outcome.err().map_or(0, |e| errors::code(e.kind));
    let topics = request.topics.iter().map(|topic| {
        let partitions = topic.partitions.iter().map(|p| {
            OffsetCommitResponsePartition::default().with_partition_index(p.partition_index).with_error_code(code)
        });
        OffsetCommitResponseTopic::default().with_name(topic.name.clone()).with_partitions(partitions.collect())
    });
    ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(topics.collect()))
}

fn fetched(index: i32, committed: Option<&crate::group::state::Committed>, code: i16) -> OffsetFetchResponsePartition {
    let partition = OffsetFetchResponsePartition::default()
        .with_partition_index(index)
        .with_committed_leader_epoch(-1)
        .with_error_code(code);
    match committed {
        Some(c) => {
            partition.with_committed_offset(offset_to_wire(c.offset)).with_metadata(Some(str_bytes(c.metadata.clone())))
        }
        None => partition.with_committed_offset(-1).with_metadata(Some(str_bytes(""))),
    }
}

pub async fn handle_offset_fetch(
    core: &Arc<BrokerCore>,
    who: &Principal,
    _header: &RequestHeader,
    request: OffsetFetchRequest,
) -> ResponseKind {
    let partitions: Vec<TopicPartition> = request
        .topics
        .iter()
        .flatten()
        .flat_map(|t| t.partition_indexes.iter().map(|p| TopicPartition::new(t.name.to_string(), partition_index(*p))))
        .collect();
    let query = CoreOffsetFetch {
        group_id: request.group_id.to_string(),
        partitions: partitions.clone(),
        member_id: String::new(),
        generation: 0,
    };
    let outcome = core.fetch_offsets(who, &query).await;
    let code = outcome.as_ref().err().map_or(0, |e| errors::code(e.kind));
    let committed: BTreeMap<TopicPartition, crate::group::state::Committed> =
        outcome.unwrap_or_default().into_iter().collect();
    let topics: Vec<OffsetFetchResponseTopic> = match &request.topics {
        // Asked for partitions: each, committed or not.
        Some(topics) => topics
            .iter()
            .map(|t| {
                let partitions = t.partition_indexes.iter().map(|p| {
                    fetched(*p, committed.get(&TopicPartition::new(t.name.to_string(), partition_index(*p))), code)
                });
                OffsetFetchResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions.collect())
            })
            .collect(),
        // Asked for every committed offset.
        None => {
            let mut by_topic: BTreeMap<&str, Vec<OffsetFetchResponsePartition>> = BTreeMap::new();
            for (tp, c) in &committed {
                by_topic.entry(tp.topic.as_str()).or_default().push(fetched(tp.partition as i32, Some(c), 0));
            }
            by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetFetchResponseTopic::default().with_name(topic_name(topic)).with_partitions(partitions)
                })
                .collect()
        }
    };
    ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_topics(topics).with_error_code(code))
}
