//! OffsetForLeaderEpoch: where a leader epoch ends on the partition's leader, so a consumer can tell whether
//! its position survived a leader change (`BrokerCore::offset_for_leader_epoch`).

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, RequestHeader, ResponseKind,
};

use super::super::errors;
use super::common::{epoch_from_wire, epoch_to_wire, offset_to_wire, partition_index};
use crate::requests::{BrokerCore, EpochQuery};
use crate::security::Principal;

pub async fn handle_offset_for_leader_epoch(
    core: &Arc<BrokerCore>,
    who: &Principal,
    _header: &RequestHeader,
    request: OffsetForLeaderEpochRequest,
) -> ResponseKind {
    let topics = request.topics.iter().map(|topic| {
        let partitions = topic.partitions.iter().map(|p| {
            let response = EpochEndOffset::default().with_partition(p.partition);
            let Some(leader_epoch) = epoch_from_wire(p.leader_epoch) else {
                return response.with_leader_epoch(-1).with_end_offset(-1);
            };
            let query = EpochQuery {
                topic: topic.topic.to_string(),
                partition: partition_index(p.partition),
                leader_epoch,
                current_leader_epoch: epoch_from_wire(p.current_leader_epoch),
            };
            match core.offset_for_leader_epoch(who, &query) {
                // An epoch older than the whole history has no known end.
                Ok((None, _)) => response.with_leader_epoch(-1).with_end_offset(-1),
                Ok((epoch, end_offset)) => {
                    response.with_leader_epoch(epoch_to_wire(epoch)).with_end_offset(offset_to_wire(end_offset))
                }
                Err(e) => response.with_error_code(errors::code(e.kind)).with_leader_epoch(-1).with_end_offset(-1),
            }
        });
        OffsetForLeaderTopicResult::default().with_topic(topic.topic.clone()).with_partitions(partitions.collect())
    });
    ResponseKind::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse::default().with_topics(topics.collect()))
}
