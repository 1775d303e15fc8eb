//! Produce: each topic's partitions' record batches, as stored (Kafka v2 batches, verbatim), into
//! `BrokerCore::produce_pipelined`, with Kafka's acks (-1 all, 1 leader, 0 none) and its timeout.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, RequestHeader, ResponseKind};

use super::super::errors;
use super::common::{offset_to_wire, partition_index, str_bytes, topic_name};
use futures::future::BoxFuture;

use crate::requests::{Acks, BrokerCore, PartitionProduced, PartitionRecords, ProduceRequest as CoreProduce, Usage};
use crate::security::Principal;

fn acks(value: i16) -> Option<Acks> {
    match value {
        -1 => Some(Acks::All),
        1 => Some(Acks::Leader),
        0 => Some(Acks::None),
        _ => None,
    }
}

/// Every partition of the request refused with one code and message.
fn refuse_all(request: &ProduceRequest, code: i16, message: &str) -> ProduceResponse {
    let responses = request.topic_data.iter().map(|topic| {
        let partitions = topic.partition_data.iter().map(|p| {
            PartitionProduceResponse::default()
                .with_index(p.index)
                .with_error_code(code)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1)
                .with_error_message(Some(str_bytes(message)))
        });
        TopicProduceResponse::default().with_name(topic.name.clone()).with_partition_responses(partitions.collect())
    });
    ProduceResponse::default().with_responses(responses.collect())
}

/// Appends the request's batches now and returns the wait for their acknowledgement and the response built
/// after it, so that a connection can read its next Produce meanwhile (`connection.rs`), and how long the
/// caller's quotas hold the connection for it. Appends happen in the order of the calls.
pub fn start_produce(
    core: &Arc<BrokerCore>,
    who: &Principal,
    header: &RequestHeader,
    request: ProduceRequest,
) -> (BoxFuture<'static, ResponseKind>, u64) {
    let client_id = crate::kafka::quota::client_id(header);
    let Some(acks) = acks(request.acks) else {
        let message = format!("acks must be -1, 0 or 1, not {}", request.acks);
        let refused = refuse_all(&request, ResponseError::InvalidRequiredAcks.code(), &message);
        let throttle_ms = core.throttle_ms(who, client_id, Usage::Request);
        return (Box::pin(std::future::ready(ResponseKind::Produce(refused))), throttle_ms);
    };
    if request.transactional_id.is_some() {
        let message = "transactions are not supported by this broker yet";
        let refused = refuse_all(&request, ResponseError::InvalidRequest.code(), message);
        let throttle_ms = core.throttle_ms(who, client_id, Usage::Request);
        return (Box::pin(std::future::ready(ResponseKind::Produce(refused))), throttle_ms);
    }
    let partitions = request
        .topic_data
        .iter()
        .flat_map(|topic| {
            topic.partition_data.iter().map(|p| PartitionRecords {
                topic: topic.name.to_string(),
                partition: partition_index(p.index),
                records: p.records.clone().unwrap_or_default(),
            })
        })
        .collect();
    let timeout_ms = u64::try_from(request.timeout_ms).ok().filter(|t| *t > 0);
    let produce = CoreProduce { acks, timeout_ms, partitions };
    let throttle_ms = core.throttle_ms(who, client_id, Usage::Produce(&produce));
    let produced = core.produce_pipelined(who, produce);
    (Box::pin(async move { ResponseKind::Produce(response(&request, produced.await)) }), throttle_ms)
}

fn response(request: &ProduceRequest, outcomes: Vec<PartitionProduced>) -> ProduceResponse {
    let mut outcomes = outcomes.into_iter();
    let responses = request.topic_data.iter().map(|topic| {
        let partitions = topic.partition_data.iter().map(|p| {
            let outcome = outcomes.next().expect("one outcome per partition");
            let response = PartitionProduceResponse::default().with_index(p.index).with_log_append_time_ms(-1);
            match outcome.result {
                Ok(produced) => response
                    .with_base_offset(offset_to_wire(produced.base_offset))
                    .with_log_start_offset(offset_to_wire(produced.log_start_offset)),
                Err(e) => response
                    .with_error_code(errors::code(e.kind))
                    .with_base_offset(-1)
                    .with_log_start_offset(-1)
                    .with_error_message(Some(str_bytes(e.message))),
            }
        });
        TopicProduceResponse::default()
            .with_name(topic_name(topic.name.to_string()))
            .with_partition_responses(partitions.collect())
    });
    ProduceResponse::default().with_responses(responses.collect())
}
