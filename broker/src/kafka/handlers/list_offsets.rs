//! ListOffsets: earliest (-2), latest (-1) and by timestamp, over `BrokerCore::list_offsets`. Latest is the
//! HW, which is also the last stable offset while there are no transactions.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, RequestHeader, ResponseKind};

use super::super::errors;
use super::common::{epoch_from_wire, epoch_to_wire, offset_to_wire, partition_index};
use crate::requests::{BrokerCore, OffsetQuery, OffsetSpec};
use crate::security::Principal;

const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;

fn spec(timestamp: i64) -> Option<OffsetSpec> {
    match timestamp {
        LATEST_TIMESTAMP => Some(OffsetSpec::Latest),
        EARLIEST_TIMESTAMP => Some(OffsetSpec::Earliest),
        t if t >= 0 => Some(OffsetSpec::Timestamp(t)),
        _ => None,
    }
}

/// The first version whose answers carry the offset's leader epoch.
const LEADER_EPOCH_VERSION: i16 = 4;

pub async fn handle_list_offsets(
    core: &Arc<BrokerCore>,
    who: &Principal,
    header: &RequestHeader,
    request: ListOffsetsRequest,
) -> ResponseKind {
    // Older versions have no leader epoch field; the codec refuses one set to anything but "none".
    let with_epoch = header.request_api_version >= LEADER_EPOCH_VERSION;
    let mut queries = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            if let Some(spec) = spec(p.timestamp) {
                queries.push(OffsetQuery {
                    topic: topic.name.to_string(),
                    partition: partition_index(p.partition_index),
                    spec,
                    current_leader_epoch: epoch_from_wire(p.current_leader_epoch),
                });
            }
        }
    }
    let mut found = core.list_offsets(who, &queries).into_iter();
    let topics = request.topics.iter().map(|topic| {
        let partitions = topic.partitions.iter().map(|p| {
            let response = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            if spec(p.timestamp).is_none() {
                // Max timestamp (-3) and the tiered-storage specs are not served at the versions announced.
                return response
                    .with_error_code(ResponseError::UnsupportedVersion.code())
                    .with_timestamp(-1)
                    .with_offset(-1)
                    .with_leader_epoch(-1);
            }
            let answer = found.next().expect("one answer per query");
            match answer.result {
                Ok(f) => response
                    .with_timestamp(f.timestamp_ms)
                    .with_offset(offset_to_wire(f.offset))
                    .with_leader_epoch(if with_epoch { epoch_to_wire(f.leader_epoch) } else { -1 }),
                Err(e) => response
                    .with_error_code(errors::code(e.kind))
                    .with_timestamp(-1)
                    .with_offset(-1)
                    .with_leader_epoch(-1),
            }
        });
        ListOffsetsTopicResponse::default().with_name(topic.name.clone()).with_partitions(partitions.collect())
    });
    ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics.collect()))
}
