//! Fetch (a long poll, and a stream of long polls that follows partitions) and ListOffsets. Records are the
//! stored batches, served as zero-copy slices of the segment's memory map; consumers see only offsets below
//! the high watermark.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{BrokerCore, Error, ErrorKind};
use crate::limits::{FETCH_STREAM_QUEUE_RESPONSES_MAX, FETCH_WAIT_MS_MAX};
use crate::partition::PartitionOffsets;
use crate::security::{Operation, Principal, Resource};

/// Where to read one partition from.
#[derive(Debug, Clone)]
pub struct FetchPartition {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    /// This partition's share of the answer; 0 is the broker's limit.
    pub max_bytes: u32,
    /// The leader epoch the client believes current, checked against this leader's when given.
    pub current_leader_epoch: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub partitions: Vec<FetchPartition>,
    /// Long poll: wait up to this long for `min_bytes`.
    pub max_wait_ms: u32,
    pub min_bytes: u32,
    /// The whole answer; 0 is the broker's limit.
    pub max_bytes: u32,
}

/// One partition of a fetch answer. The offsets are set whenever the partition was found led here, also
/// alongside an `OffsetOutOfRange` error, so a consumer can tell where the log is.
#[derive(Debug, Clone, Default)]
pub struct PartitionFetched {
    pub topic: String,
    pub partition: u32,
    pub error: Option<Error>,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    pub log_end_offset: u64,
    /// The leader epoch this broker leads the partition in.
    pub leader_epoch: Option<u32>,
    /// Whole stored batches starting at or before the fetch offset.
    pub records: Bytes,
    /// The offset to fetch next (after the last record returned).
    pub next_offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The high watermark.
    Latest,
    /// The log start offset.
    Earliest,
    /// The first offset whose timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

#[derive(Debug, Clone)]
pub struct OffsetQuery {
    pub topic: String,
    pub partition: u32,
    pub spec: OffsetSpec,
    /// The leader epoch the client believes current, checked against this leader's when given.
    pub current_leader_epoch: Option<u32>,
}

/// A leader epoch whose end a client asks for.
#[derive(Debug, Clone)]
pub struct EpochQuery {
    pub topic: String,
    pub partition: u32,
    pub leader_epoch: u32,
    pub current_leader_epoch: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetFound {
    pub offset: u64,
    /// The record's timestamp for a `Timestamp` query that found one, -1 otherwise.
    pub timestamp_ms: i64,
    /// The current leader epoch for `Latest`; `None` where the offset's own epoch is not looked up.
    pub leader_epoch: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: u32,
    pub result: Result<OffsetFound, Error>,
}

impl BrokerCore {
    /// Reads one partition within `budget` bytes.
    fn read_partition(&self, who: &Principal, p: &FetchPartition, budget: usize) -> PartitionFetched {
        let mut result = PartitionFetched { topic: p.topic.clone(), partition: p.partition, ..Default::default() };
        if let Err(refused) = self.authorize(who, Operation::Read, Resource::topic(&p.topic)) {
            result.error = Some(refused);
            return result;
        }
        let Some(partition) = self.partitions.get(&p.topic, p.partition) else {
            result.error = Some(self.missing_partition(&p.topic, p.partition));
            return result;
        };
        let offsets = partition.offsets();
        if !offsets.is_leader {
            result.error = Some(self.not_leader(&partition.name()));
            return result;
        }
        result.leader_epoch = offsets.leader_epoch;
        if let Err(e) = Error::check_leader_epoch(&partition.name(), offsets.leader_epoch, p.current_leader_epoch) {
            result.error = Some(e);
            return result;
        }
        result.high_watermark = offsets.high_watermark;
        result.log_start_offset = offsets.log_start;
        result.log_end_offset = offsets.log_end;
        result.next_offset = p.offset;
        if p.offset < offsets.log_start || p.offset > offsets.log_end {
            let message = format!(
                "offset {} of {} is outside the log (log start {}, log end {})",
                p.offset,
                partition.name(),
                offsets.log_start,
                offsets.log_end
            );
            result.error = Some(Error::new(ErrorKind::OffsetOutOfRange, message));
            return result;
        }
        if p.offset >= offsets.high_watermark || budget == 0 {
            return result;
        }
        let partition_max = match p.max_bytes {
            0 => self.config.partition_fetch_bytes_max,
            m => u64::from(m).min(self.config.partition_fetch_bytes_max),
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
                result.error = Some(Error::from_storage(&partition.name(), &e));
            }
        }
        result
    }

    /// One pass over the requested partitions; returns the results and the record bytes gathered.
    fn read_all(
        &self,
        who: &Principal,
        partitions: &[FetchPartition],
        max_bytes: u32,
    ) -> (Vec<PartitionFetched>, usize) {
        let mut budget = match max_bytes {
            0 => self.config.fetch_bytes_max,
            m => u64::from(m).min(self.config.fetch_bytes_max),
        } as usize;
        let mut total = 0;
        let results = partitions
            .iter()
            .map(|p| {
                let r = self.read_partition(who, p, budget);
                budget = budget.saturating_sub(r.records.len());
                total += r.records.len();
                r
            })
            .collect();
        (results, total)
    }

    /// Long poll: answers as soon as `min_bytes` are readable, a partition reports an error, the wait is
    /// over, or the broker shuts down. Results are in the request's order.
    /// Partitions of topics `who` may not read answer `TopicAuthorizationFailed` at once.
    pub async fn fetch(&self, who: &Principal, request: &FetchRequest) -> Vec<PartitionFetched> {
        let started = Instant::now();
        let results = self.long_poll(who, request).await;
        let error = results.iter().find_map(|r| r.error.as_ref()).map(|e| e.kind);
        self.metrics.request("fetch", error, started.elapsed());
        for r in &results {
            self.metrics.fetched(&r.topic, r.records.len() as u64);
        }
        results
    }

    async fn long_poll(&self, who: &Principal, request: &FetchRequest) -> Vec<PartitionFetched> {
        let deadline = Instant::now() + Duration::from_millis(u64::from(request.max_wait_ms).min(FETCH_WAIT_MS_MAX));
        let mut shutdown = self.shutdown.clone();
        loop {
            // Subscribe before reading, so a change between the read and the wait is not missed.
            let mut watches: Vec<watch::Receiver<PartitionOffsets>> = request
                .partitions
                .iter()
                .filter_map(|p| self.partitions.get(&p.topic, p.partition))
                .map(|partition| partition.subscribe())
                .collect();
            let (results, bytes) = self.read_all(who, &request.partitions, request.max_bytes);
            let has_error = results.iter().any(|r| r.error.is_some());
            let min_bytes = request.min_bytes.max(1) as usize;
            if bytes >= min_bytes || has_error || Instant::now() >= deadline || *shutdown.borrow() {
                return results;
            }
            let changed = futures::future::select_all(
                watches
                    .iter_mut()
                    .map(|w| w.changed().boxed())
                    .chain(std::iter::once(futures::future::pending().boxed())),
            );
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Follows the partitions from the requested offsets, one long poll after another, sending each answer
    /// that has records or errors. A partition that reports an error is dropped after that answer; the
    /// stream ends when none is left, when the receiver goes away, or when the broker shuts down.
    /// Each answer is measured against the quotas of `who` with `client_id` and sent with the time the
    /// next long poll is held back for them.
    pub fn fetch_stream(
        self: Arc<Self>,
        who: Principal,
        client_id: String,
        mut request: FetchRequest,
    ) -> mpsc::Receiver<(Vec<PartitionFetched>, u64)> {
        let (tx, rx) = mpsc::channel(FETCH_STREAM_QUEUE_RESPONSES_MAX);
        if request.max_wait_ms == 0 {
            request.max_wait_ms = 500;
        }
        tokio::spawn(async move {
            while !request.partitions.is_empty() && !*self.shutdown.borrow() {
                let results = tokio::select! {
                    results = self.fetch(&who, &request) => results,
                    _ = tx.closed() => return,
                };
                let mut to_send = Vec::new();
                let mut keep = Vec::new();
                for (position, result) in request.partitions.iter().zip(results) {
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
                request.partitions = keep;
                if to_send.is_empty() {
                    continue;
                }
                let throttle_ms = self.throttle_ms(&who, &client_id, super::Usage::Fetched(&to_send));
                if tx.send((to_send, throttle_ms)).await.is_err() {
                    return;
                }
                if throttle_ms > 0 {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(throttle_ms)) => {}
                        _ = tx.closed() => return,
                    }
                }
            }
        });
        rx
    }

    /// Resolves each query on the partition's leader: latest is the HW, earliest the log start.
    pub fn list_offsets(&self, who: &Principal, queries: &[OffsetQuery]) -> Vec<PartitionOffset> {
        let find = |q: &OffsetQuery| {
            self.authorize(who, Operation::Describe, Resource::topic(&q.topic)).and_then(|()| self.find_offset(q))
        };
        let started = Instant::now();
        let found: Vec<PartitionOffset> = queries
            .iter()
            .map(|q| PartitionOffset { topic: q.topic.clone(), partition: q.partition, result: find(q) })
            .collect();
        let error = found.iter().find_map(|f| f.result.as_ref().err()).map(|e| e.kind);
        self.metrics.request("list_offsets", error, started.elapsed());
        found
    }

    fn find_offset(&self, q: &OffsetQuery) -> Result<OffsetFound, Error> {
        let Some(partition) = self.partitions.get(&q.topic, q.partition) else {
            return Err(self.missing_partition(&q.topic, q.partition));
        };
        let offsets = partition.offsets();
        if !offsets.is_leader {
            return Err(self.not_leader(&partition.name()));
        }
        Error::check_leader_epoch(&partition.name(), offsets.leader_epoch, q.current_leader_epoch)?;
        let offset = |offset| Ok(OffsetFound { offset, timestamp_ms: -1, leader_epoch: None });
        let latest =
            Ok(OffsetFound { offset: offsets.high_watermark, timestamp_ms: -1, leader_epoch: offsets.leader_epoch });
        match q.spec {
            OffsetSpec::Latest => latest,
            OffsetSpec::Earliest => offset(offsets.log_start),
            OffsetSpec::Timestamp(timestamp_ms) => match partition.offset_for_timestamp(timestamp_ms) {
                Ok(Some((offset, timestamp_ms))) => Ok(OffsetFound { offset, timestamp_ms, leader_epoch: None }),
                // No record at or after the timestamp: the consumer starts at the end.
                Ok(None) => latest,
                Err(e) => Err(Error::from_storage(&partition.name(), &e)),
            },
        }
    }

    /// Where `leader_epoch` ends on this leader (a consumer checking whether its position survived a leader
    /// change): the largest epoch at most the one asked about, and the start of the next later one, or the log
    /// end. `None` for the epoch when the log knows no epoch that old.
    pub fn offset_for_leader_epoch(&self, who: &Principal, query: &EpochQuery) -> Result<(Option<u32>, u64), Error> {
        self.authorize(who, Operation::Describe, Resource::topic(&query.topic))?;
        let Some(partition) = self.partitions.get(&query.topic, query.partition) else {
            return Err(self.missing_partition(&query.topic, query.partition));
        };
        let offsets = partition.offsets();
        if !offsets.is_leader {
            return Err(self.not_leader(&partition.name()));
        }
        Error::check_leader_epoch(&partition.name(), offsets.leader_epoch, query.current_leader_epoch)?;
        let end = partition.epoch_end(query.leader_epoch);
        Ok((end.epoch, end.end_offset))
    }
}
