//! Fetch: Kafka's long poll over `BrokerCore::fetch`. The stored batches go out as they are. No fetch
//! sessions (KIP-227): a request that opens one is answered with session id 0, which tells the client to keep
//! sending full fetches; one that names a session gets FETCH_SESSION_ID_NOT_FOUND. Either isolation level is
//! served up to the HW, which is the last stable offset while there are no transactions.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, RequestHeader, ResponseKind};

use super::super::errors;
use super::common::{epoch_from_wire, offset_to_wire, partition_index, topic_name};
use crate::requests::{BrokerCore, FetchPartition, FetchRequest as CoreFetch, PartitionFetched, Usage};
use crate::security::Principal;

fn positive(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

fn partition_data(index: i32, fetched: PartitionFetched) -> PartitionData {
    let data = PartitionData::default()
        .with_partition_index(index)
        .with_preferred_read_replica(BrokerId(-1))
        .with_aborted_transactions(Some(Vec::new()));
    if let Some(e) = fetched.error {
        return data
            .with_error_code(errors::code(e.kind))
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1)
            .with_records(Some(Default::default()));
    }
    let high_watermark = offset_to_wire(fetched.high_watermark);
    data.with_high_watermark(high_watermark)
        .with_last_stable_offset(high_watermark)
        .with_log_start_offset(offset_to_wire(fetched.log_start_offset))
        .with_records(Some(fetched.records))
}

/// A fetch, measured against the caller's quotas: the response says how long they hold the connection.
pub async fn handle_fetch(
    core: &Arc<BrokerCore>,
    who: &Principal,
    header: &RequestHeader,
    request: FetchRequest,
) -> ResponseKind {
    if request.session_id != 0 {
        let refused = FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
        return ResponseKind::Fetch(refused);
    }
    let partitions = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|p| FetchPartition {
                topic: topic.topic.to_string(),
                partition: partition_index(p.partition),
                // A negative offset is outside every log: the core answers OFFSET_OUT_OF_RANGE for it.
                offset: u64::try_from(p.fetch_offset).unwrap_or(u64::MAX),
                // At least one byte: the core's 0 means "the broker's limit", Kafka's means nothing.
                max_bytes: positive(p.partition_max_bytes).max(1),
                current_leader_epoch: epoch_from_wire(p.current_leader_epoch),
            })
        })
        .collect();
    let fetch = CoreFetch {
        partitions,
        max_wait_ms: positive(request.max_wait_ms),
        min_bytes: positive(request.min_bytes),
        max_bytes: positive(request.max_bytes).max(1),
    };
    let fetched = core.fetch(who, &fetch).await;
    let throttle_ms = core.throttle_ms(who, crate::kafka::quota::client_id(header), Usage::Fetched(&fetched));
    let mut fetched = fetched.into_iter();
    let responses = request.topics.iter().map(|topic| {
        let partitions = topic
            .partitions
            .iter()
            .map(|p| partition_data(p.partition, fetched.next().expect("one answer per partition")));
        FetchableTopicResponse::default()
            .with_topic(topic_name(topic.topic.to_string()))
            .with_topic_id(topic.topic_id)
            .with_partitions(partitions.collect())
    });
    let response = FetchResponse::default().with_session_id(0).with_responses(responses.collect());
    ResponseKind::Fetch(response.with_throttle_time_ms(i32::try_from(throttle_ms).unwrap_or(i32::MAX)))
}
