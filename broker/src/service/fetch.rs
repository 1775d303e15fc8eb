//! Fetch (unary long poll and server stream) and ListOffsets over gRPC: proto messages as the core's types
//! and back.

use std::sync::Arc;

use futures::StreamExt;
use rill_proto::v1::{self as proto, FetchResponse, ListOffsetsResponse, OffsetResult, PartitionFetchResult};

use super::FetchStream;
use super::errors::{self, invalid};
use crate::requests::{BrokerCore, FetchPartition, FetchRequest, OffsetQuery, OffsetSpec, PartitionFetched, Usage};
use crate::security::Principal;

fn fetch_request(request: proto::FetchRequest) -> FetchRequest {
    FetchRequest {
        partitions: request
            .partitions
            .into_iter()
            .map(|p| FetchPartition {
                topic: p.topic,
                partition: p.partition,
                offset: p.offset,
                max_bytes: p.max_bytes,
                current_leader_epoch: None,
            })
            .collect(),
        max_wait_ms: request.max_wait_ms,
        min_bytes: request.min_bytes,
        max_bytes: request.max_bytes,
    }
}

fn fetch_response(results: Vec<PartitionFetched>, throttle_ms: u64) -> FetchResponse {
    let results = results.into_iter().map(|r| PartitionFetchResult {
        topic: r.topic,
        partition: r.partition,
        error: r.error.as_ref().map(errors::to_proto),
        high_watermark: r.high_watermark,
        log_start_offset: r.log_start_offset,
        log_end_offset: r.log_end_offset,
        records: r.records,
        next_offset: r.next_offset,
    });
    FetchResponse { results: results.collect(), throttle_time_ms: throttle_ms as u32 }
}

/// A long poll, measured against the caller's quotas once answered and held back as they ask.
pub async fn fetch(core: &BrokerCore, who: &Principal, client_id: &str, request: proto::FetchRequest) -> FetchResponse {
    let fetched = core.fetch(who, &fetch_request(request)).await;
    let throttle_ms = core.throttle_ms(who, client_id, Usage::Fetched(&fetched));
    super::hold(throttle_ms).await;
    fetch_response(fetched, throttle_ms)
}

/// Each answer of the stream says how long the quota held back the next.
pub fn fetch_stream(
    core: Arc<BrokerCore>,
    who: Principal,
    client_id: String,
    request: proto::FetchRequest,
) -> FetchStream {
    let answers = core.fetch_stream(who, client_id, fetch_request(request));
    let answers = tokio_stream::wrappers::ReceiverStream::new(answers);
    Box::pin(answers.map(|(results, throttle_ms)| Ok(fetch_response(results, throttle_ms))))
}

pub fn list_offsets(core: &BrokerCore, who: &Principal, request: proto::ListOffsetsRequest) -> ListOffsetsResponse {
    // Queries with an unknown spec are answered in place; the others go to the core together.
    let mut queries = Vec::new();
    let mut results: Vec<Option<OffsetResult>> = Vec::with_capacity(request.queries.len());
    for q in request.queries {
        let spec = match proto::OffsetSpec::try_from(q.spec) {
            Ok(proto::OffsetSpec::Latest) => OffsetSpec::Latest,
            Ok(proto::OffsetSpec::Earliest) => OffsetSpec::Earliest,
            Ok(proto::OffsetSpec::Timestamp) => OffsetSpec::Timestamp(q.timestamp_ms),
            Err(_) => {
                let error = invalid(format!("unknown offset spec {}", q.spec));
                results.push(Some(OffsetResult {
                    topic: q.topic,
                    partition: q.partition,
                    error,
                    offset: 0,
                    timestamp_ms: -1,
                }));
                continue;
            }
        };
        results.push(None);
        queries.push(OffsetQuery { topic: q.topic, partition: q.partition, spec, current_leader_epoch: None });
    }
    let mut found = core.list_offsets(who, &queries).into_iter().map(|p| {
        let (offset, timestamp_ms) = p.result.as_ref().map_or((0, -1), |f| (f.offset, f.timestamp_ms));
        OffsetResult { topic: p.topic, partition: p.partition, error: errors::field(&p.result), offset, timestamp_ms }
    });
    let results = results.into_iter().map(|r| r.unwrap_or_else(|| found.next().expect("one answer per query")));
    ListOffsetsResponse { results: results.collect() }
}
