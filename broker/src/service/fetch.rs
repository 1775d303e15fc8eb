//! Fetch (unary long-poll and server-streaming) and ListOffsets. Records are the stored batches, served as
//! zero-copy slices of the segment's memory map; consumers see only offsets below the high watermark.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use rill_proto::v1::{
    ErrorCode, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, OffsetResult, OffsetSpec,
    PartitionFetch, PartitionFetchResult,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::errors::{self, error};
use super::{BrokerCore, FetchStream};
use crate::limits::{FETCH_STREAM_QUEUE_RESPONSES_MAX, FETCH_WAIT_MS_MAX};
use crate::partition::PartitionOffsets;

/// Reads one partition within `budget` bytes.
fn read_partition(core: &BrokerCore, p: &PartitionFetch, budget: usize) -> PartitionFetchResult {
    let mut result = PartitionFetchResult { topic: p.topic.clone(), partition: p.partition, ..Default::default() };
    let Some(partition) = core.partitions.get(&p.topic, p.partition) else {
        result.error = errors::missing_partition(core, &p.topic, p.partition);
        return result;
    };
    let offsets = partition.offsets();
    if !offsets.is_leader {
        result.error = errors::not_leader(core, &partition.name());
        return result;
    }
    result.high_watermark = offsets.high_watermark;
    result.log_start_offset = offsets.log_start;
    result.log_end_offset = offsets.log_end;
    result.next_offset = p.offset;
    if p.offset < offsets.log_start || p.offset > offsets.log_end {
        result.error = error(
            ErrorCode::OffsetOutOfRange,
            format!(
                "offset {} of {} is outside the log (log start {}, log end {})",
                p.offset,
                partition.name(),
                offsets.log_start,
                offsets.log_end
            ),
        );
        return result;
    }
    if p.offset >= offsets.high_watermark || budget == 0 {
        return result;
    }
    let partition_max = match p.max_bytes {
        0 => core.config.partition_fetch_bytes_max,
        m => u64::from(m).min(core.config.partition_fetch_bytes_max),
    };
    match partition.read(p.offset, budget.min(partition_max as usize)) {
        Ok(read) => {
            result.records = read.records;
            result.next_offset = read.next_offset;
        }
        Err(e) => {
            if matches!(e, rill_storage::StorageError::Corrupt { .. }) {
                tracing::error!(partition = %partition.name(), offset = p.offset, error = %e, "refused to serve corrupt data");
            }
            result.error = errors::from_storage(&partition.name(), &e);
        }
    }
    result
}

/// One pass over the requested partitions; returns the results and the record bytes gathered.
fn read_all(core: &BrokerCore, partitions: &[PartitionFetch], max_bytes: u32) -> (Vec<PartitionFetchResult>, usize) {
    let mut budget = match max_bytes {
        0 => core.config.fetch_bytes_max,
        m => u64::from(m).min(core.config.fetch_bytes_max),
    } as usize;
    let mut total = 0;
    let results = partitions
        .iter()
        .map(|p| {
            let r = read_partition(core, p, budget);
            budget = budget.saturating_sub(r.records.len());
            total += r.records.len();
            r
        })
        .collect();
    (results, total)
}

/// Long poll: answers as soon as `min_bytes` are readable, a partition reports an error, the wait is over,
/// or the broker shuts down.
async fn long_poll(
    core: &BrokerCore,
    partitions: &[PartitionFetch],
    max_wait_ms: u32,
    min_bytes: u32,
    max_bytes: u32,
) -> Vec<PartitionFetchResult> {
    let deadline = Instant::now() + Duration::from_millis(u64::from(max_wait_ms).min(FETCH_WAIT_MS_MAX));
    let mut shutdown = core.shutdown.clone();
    loop {
        // Subscribe before reading, so a change between the read and the wait is not missed.
        let mut watches: Vec<watch::Receiver<PartitionOffsets>> = partitions
            .iter()
            .filter_map(|p| core.partitions.get(&p.topic, p.partition))
            .map(|partition| partition.subscribe())
            .collect();
        let (results, bytes) = read_all(core, partitions, max_bytes);
        let has_error = results.iter().any(|r| r.error.is_some());
        if bytes >= min_bytes.max(1) as usize || has_error || Instant::now() >= deadline || *shutdown.borrow() {
            return results;
        }
        let changed = futures::future::select_all(
            watches.iter_mut().map(|w| w.changed().boxed()).chain(std::iter::once(futures::future::pending().boxed())),
        );
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    }
}

pub async fn fetch(core: &BrokerCore, request: FetchRequest) -> FetchResponse {
    let results = long_poll(core, &request.partitions, request.max_wait_ms, request.min_bytes, request.max_bytes).await;
    FetchResponse { results }
}

/// A server stream of fetch responses that follows the partitions from the requested offsets. A partition
/// that reports an error is dropped from the stream after that response; the stream ends when none is left,
/// when the client goes away, or when the broker shuts down.
pub fn fetch_stream(core: Arc<BrokerCore>, request: FetchRequest) -> FetchStream {
    let (tx, rx) = mpsc::channel(FETCH_STREAM_QUEUE_RESPONSES_MAX);
    tokio::spawn(async move {
        let mut positions = request.partitions.clone();
        let max_wait_ms = if request.max_wait_ms == 0 { 500 } else { request.max_wait_ms };
        while !positions.is_empty() && !*core.shutdown.borrow() {
            let results = tokio::select! {
                results = long_poll(&core, &positions, max_wait_ms, request.min_bytes, request.max_bytes) => results,
                _ = tx.closed() => return,
            };
            let mut to_send = Vec::new();
            let mut keep = Vec::new();
            for (position, result) in positions.iter().zip(results) {
                if result.error.is_some() {
                    to_send.push(result);
                    continue;
                }
                let mut next = position.clone();
                next.offset = result.next_offset;
                keep.push(next);
                if !result.records.is_empty() {
                    to_send.push(result);
                }
            }
            positions = keep;
            if !to_send.is_empty() && tx.send(Ok(FetchResponse { results: to_send })).await.is_err() {
                return;
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

pub fn list_offsets(core: &BrokerCore, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let results = request
        .queries
        .iter()
        .map(|q| {
            let mut result =
                OffsetResult { topic: q.topic.clone(), partition: q.partition, timestamp_ms: -1, ..Default::default() };
            let Some(partition) = core.partitions.get(&q.topic, q.partition) else {
                result.error = errors::missing_partition(core, &q.topic, q.partition);
                return result;
            };
            let offsets = partition.offsets();
            if !offsets.is_leader {
                result.error = errors::not_leader(core, &partition.name());
                return result;
            }
            match OffsetSpec::try_from(q.spec) {
                Ok(OffsetSpec::Latest) => result.offset = offsets.high_watermark,
                Ok(OffsetSpec::Earliest) => result.offset = offsets.log_start,
                Ok(OffsetSpec::Timestamp) => match partition.offset_for_timestamp(q.timestamp_ms) {
                    Ok(Some((offset, timestamp))) => {
                        result.offset = offset;
                        result.timestamp_ms = timestamp;
                    }
                    // No record at or after the timestamp: the consumer starts at the end.
                    Ok(None) => result.offset = offsets.high_watermark,
                    Err(e) => result.error = errors::from_storage(&partition.name(), &e),
                },
                Err(_) => result.error = error(ErrorCode::InvalidRequest, format!("unknown offset spec {}", q.spec)),
            }
            result
        })
        .collect();
    ListOffsetsResponse { results }
}
