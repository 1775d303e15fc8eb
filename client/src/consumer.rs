//! `Consumer`: reads assigned partitions from their leaders by offset, with long-poll fetches, seeking by
//! offset, to either end, or by timestamp.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;
use rill_proto::batch::decode_records;
use rill_proto::v1::{self, OffsetSpec};

use crate::cluster::Cluster;
use crate::config::{ClientConfig, ConsumerConfig, OffsetReset};
use crate::error::{BrokerError, Error, ErrorCode, Result};
use crate::types::{ConsumerRecord, TopicPartition};

/// A consumer of explicitly assigned partitions. Group membership comes later.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> rill_client::Result<()> {
/// use std::time::Duration;
/// use rill_client::{ClientConfig, Consumer, ConsumerConfig, TopicPartition};
///
/// let mut consumer = Consumer::connect(ClientConfig::new("127.0.0.1:9400")?, ConsumerConfig::default()).await?;
/// let partition = TopicPartition::new("demo", 0);
/// consumer.assign(vec![partition.clone()]).await?;
/// consumer.seek(&partition, 42)?;
/// let records = consumer.poll(Duration::from_millis(500)).await?;
/// # Ok(())
/// # }
/// ```
pub struct Consumer {
    cluster: Arc<Cluster>,
    config: ConsumerConfig,
    /// Assigned partitions and the offset to fetch next; `None` until reset by [`ConsumerConfig::offset_reset`].
    positions: BTreeMap<TopicPartition, Option<u64>>,
    /// Records fetched but not yet handed out (the stream hands out one at a time).
    pending: VecDeque<ConsumerRecord>,
    /// Since when every fetch failed with a retriable error; after the request timeout the error is returned.
    failing_since: Option<Instant>,
}

impl Consumer {
    /// Connects to the cluster.
    ///
    /// # Errors
    ///
    /// [`Error::NoBrokerReachable`] if no bootstrap address answers.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn connect(client: ClientConfig, config: ConsumerConfig) -> Result<Consumer> {
        let cluster = Cluster::connect(client).await?;
        Ok(Consumer { cluster, config, positions: BTreeMap::new(), pending: VecDeque::new(), failing_since: None })
    }

    /// Replaces the assignment. Partitions that stay assigned keep their position; new ones start per
    /// `offset_reset` unless sought.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTopic`] or [`Error::UnknownPartition`] if a partition does not exist.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the assignment changes only when the future completes.
    pub async fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<()> {
        let mut topics: Vec<String> = partitions.iter().map(|tp| tp.topic.clone()).collect();
        topics.sort();
        topics.dedup();
        let metadata = self.cluster.refresh(&topics).await?;
        for tp in &partitions {
            metadata.check_partition(tp)?;
        }
        let mut positions = BTreeMap::new();
        for tp in partitions {
            let position = self.positions.get(&tp).copied().flatten();
            positions.insert(tp, position);
        }
        self.positions = positions;
        self.pending.retain(|r| self.positions.contains_key(&TopicPartition::new(r.topic.clone(), r.partition)));
        Ok(())
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    /// Every partition of `topic`, for assigning a whole topic.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTopic`] if the topic does not exist.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn partitions_of(&self, topic: &str) -> Result<Vec<TopicPartition>> {
        let count = self.cluster.partition_count(topic).await?;
        Ok((0..count).map(|p| TopicPartition::new(topic, p)).collect())
    }

    /// The offset of the next record `poll` returns for `tp`, if known yet.
    pub fn position(&self, tp: &TopicPartition) -> Option<u64> {
        self.positions.get(tp).copied().flatten()
    }

    /// Sets the next offset to read from `tp`.
    ///
    /// # Errors
    ///
    /// [`Error::NotAssigned`] if `tp` is not assigned.
    pub fn seek(&mut self, tp: &TopicPartition, offset: u64) -> Result<()> {
        let position = self
            .positions
            .get_mut(tp)
            .ok_or_else(|| Error::NotAssigned { topic: tp.topic.clone(), partition: tp.partition })?;
        *position = Some(offset);
        self.pending.retain(|r| r.topic != tp.topic || r.partition != tp.partition);
        Ok(())
    }

    /// Moves each of `partitions` to its log start offset, the oldest record still retained.
    ///
    /// # Errors
    ///
    /// [`Error::NotAssigned`], or the ListOffsets failure.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: positions change only when the future completes.
    pub async fn seek_to_beginning(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        let offsets = self.beginning_offsets(partitions).await?;
        for (tp, offset) in offsets {
            self.seek(&tp, offset)?;
        }
        Ok(())
    }

    /// Moves each of `partitions` to its high watermark: only records written later are read.
    ///
    /// # Errors
    ///
    /// [`Error::NotAssigned`], or the ListOffsets failure.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: positions change only when the future completes.
    pub async fn seek_to_end(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        let offsets = self.end_offsets(partitions).await?;
        for (tp, offset) in offsets {
            self.seek(&tp, offset)?;
        }
        Ok(())
    }

    /// Moves `tp` to the first record whose timestamp is at or after `timestamp_ms` (the end if none is) and
    /// returns that offset.
    ///
    /// # Errors
    ///
    /// [`Error::NotAssigned`], or the ListOffsets failure.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the position changes only when the future completes.
    pub async fn seek_to_timestamp(&mut self, tp: &TopicPartition, timestamp_ms: i64) -> Result<u64> {
        let offsets = self.list_offsets(std::slice::from_ref(tp), OffsetSpec::Timestamp, timestamp_ms).await?;
        let offset = offsets[tp];
        self.seek(tp, offset)?;
        Ok(offset)
    }

    /// The log start offset of each partition.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTopic`], [`Error::UnknownPartition`], or a broker or transport failure.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn beginning_offsets(&self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, u64>> {
        self.list_offsets(partitions, OffsetSpec::Earliest, -1).await
    }

    /// The high watermark of each partition: the offset after the last committed record.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTopic`], [`Error::UnknownPartition`], or a broker or transport failure.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn end_offsets(&self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, u64>> {
        self.list_offsets(partitions, OffsetSpec::Latest, -1).await
    }

    /// Asks each partition's leader for an offset, retrying retriable failures until the request timeout.
    async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
        timestamp_ms: i64,
    ) -> Result<BTreeMap<TopicPartition, u64>> {
        let deadline = Instant::now() + self.cluster.config().request_timeout();
        let mut found = BTreeMap::new();
        let mut missing: Vec<TopicPartition> = partitions.to_vec();
        loop {
            let (results, error) = self.list_offsets_once(&missing, spec, timestamp_ms).await?;
            found.extend(results);
            missing.retain(|tp| !found.contains_key(tp));
            match error {
                None if missing.is_empty() => return Ok(found),
                None => {}
                Some(e) if !e.is_retriable() || Instant::now() >= deadline => return Err(e),
                Some(e) => tracing::debug!(error = %e, "retrying ListOffsets"),
            }
            self.cluster.refresh(&topics_of(&missing)).await?;
            self.cluster.backoff().await;
        }
    }

    /// One round of ListOffsets: the offsets that came back, and the first retriable error if any. A
    /// non-retriable error fails the whole call.
    async fn list_offsets_once(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
        timestamp_ms: i64,
    ) -> Result<(Vec<(TopicPartition, u64)>, Option<Error>)> {
        let metadata = self.cluster.refresh_if_old(&topics_of(partitions)).await?;
        let mut per_leader: HashMap<String, Vec<v1::OffsetQuery>> = HashMap::new();
        let mut retry_error = None;
        for tp in partitions {
            metadata.check_partition(tp)?;
            let Some((_, address)) = metadata.leader(tp) else {
                retry_error = Some(no_leader(tp));
                continue;
            };
            per_leader.entry(address).or_default().push(v1::OffsetQuery {
                topic: tp.topic.clone(),
                partition: tp.partition,
                spec: spec as i32,
                timestamp_ms,
            });
        }
        let calls = per_leader.into_iter().map(|(address, queries)| async move {
            let request = self.cluster.request(v1::ListOffsetsRequest { queries }, Duration::ZERO);
            let answer = match self.cluster.client(&address) {
                Ok(mut client) => client.list_offsets(request).await.map_err(|s| Error::from_status(&address, &s)),
                Err(e) => Err(e),
            };
            answer.map(tonic::Response::into_inner)
        });
        let mut found = Vec::new();
        for answer in futures::future::join_all(calls).await {
            let response = match answer {
                Ok(response) => response,
                Err(e) if e.is_retriable() => {
                    retry_error = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            for result in response.results {
                let tp = TopicPartition::new(result.topic, result.partition);
                match BrokerError::from_proto(result.error.as_ref()) {
                    None => found.push((tp, result.offset)),
                    Some(e) if e.retriable || e.code == ErrorCode::NotLeader => retry_error = Some(Error::Broker(e)),
                    Some(e) => return Err(Error::from_broker(e, &tp.topic)),
                }
            }
        }
        Ok((found, retry_error))
    }

    /// Returns the next records of the assigned partitions, waiting up to `timeout` for some to arrive; an
    /// empty vector means none came in time. Each partition's records are in offset order, and the position
    /// advances past what is returned.
    ///
    /// # Errors
    ///
    /// [`Error::OffsetOutOfRange`] if a position is outside the partition's log (the position is left as is,
    /// so the caller can seek); [`Error::CorruptBatch`] for undecodable records; non-retriable broker errors;
    /// and a transport error if no fetch has succeeded for the request timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: positions advance only together with returning the records, so dropping the future
    /// loses nothing.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        if !self.pending.is_empty() {
            return Ok(self.pending.drain(..).collect());
        }
        let deadline = Instant::now() + timeout;
        loop {
            self.reset_unknown_positions().await?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let max_wait = remaining.min(Duration::from_millis(u64::from(self.config.fetch_max_wait_ms)));
            let records = if self.positions.is_empty() {
                tokio::time::sleep(max_wait).await;
                Vec::new()
            } else {
                self.fetch_once(max_wait).await?
            };
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    /// The records of the assigned partitions as a stream, polling as needed. It ends after yielding a
    /// non-retriable error.
    ///
    /// # Cancel safety
    ///
    /// Dropping the stream (or a pending `next()`) loses no records: fetched records not yet yielded stay
    /// with the consumer and come out of the next `poll` or stream.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut consumer: rill_client::Consumer) -> rill_client::Result<()> {
    /// use futures::StreamExt;
    ///
    /// let mut records = std::pin::pin!(consumer.stream());
    /// while let Some(record) = records.next().await {
    ///     let record = record?;
    ///     println!("{}@{}", record.partition, record.offset);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream(&mut self) -> impl Stream<Item = Result<ConsumerRecord>> + '_ {
        futures::stream::unfold(Some(self), |consumer| async move {
            let consumer = consumer?;
            loop {
                if let Some(record) = consumer.pending.pop_front() {
                    return Some((Ok(record), Some(consumer)));
                }
                let wait = Duration::from_millis(u64::from(consumer.config.fetch_max_wait_ms));
                match consumer.poll(wait).await {
                    Ok(records) => consumer.pending.extend(records),
                    Err(e) => return Some((Err(e), None)),
                }
            }
        })
    }

    /// Gives partitions without a position their start per `offset_reset`.
    async fn reset_unknown_positions(&mut self) -> Result<()> {
        let unknown: Vec<TopicPartition> =
            self.positions.iter().filter(|(_, p)| p.is_none()).map(|(tp, _)| tp.clone()).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        match self.config.offset_reset {
            OffsetReset::Earliest => self.seek_to_beginning(&unknown).await,
            OffsetReset::Latest => self.seek_to_end(&unknown).await,
        }
    }

    /// One fetch round: a request per leader broker, all at once, each long-polling up to `max_wait`.
    async fn fetch_once(&mut self, max_wait: Duration) -> Result<Vec<ConsumerRecord>> {
        let metadata = self.cluster.metadata();
        let mut per_leader: BTreeMap<String, Vec<v1::PartitionFetch>> = BTreeMap::new();
        let mut stale = false;
        for (tp, position) in &self.positions {
            let Some(offset) = *position else { continue };
            let Some((_, address)) = metadata.leader(tp) else {
                stale = true;
                continue;
            };
            per_leader.entry(address).or_default().push(v1::PartitionFetch {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset,
                max_bytes: self.config.partition_fetch_bytes_max,
            });
        }
        let max_wait_ms = u32::try_from(max_wait.as_millis()).unwrap_or(u32::MAX);
        let calls = per_leader.into_iter().map(|(address, partitions)| {
            let request = v1::FetchRequest {
                partitions,
                max_wait_ms,
                min_bytes: self.config.fetch_min_bytes,
                max_bytes: self.config.fetch_bytes_max,
            };
            let request = self.cluster.request(request, max_wait);
            let cluster = &self.cluster;
            async move {
                let answer = match cluster.client(&address) {
                    Ok(mut client) => client.fetch(request).await.map_err(|s| Error::from_status(&address, &s)),
                    Err(e) => Err(e),
                };
                answer.map(tonic::Response::into_inner)
            }
        });
        let answers = futures::future::join_all(calls).await;
        let mut records = Vec::new();
        let mut retry_error: Option<Error> = None;
        let mut succeeded = false;
        for answer in answers {
            match answer {
                Ok(response) => {
                    succeeded = true;
                    for result in response.results {
                        if let Err(e) = self.apply_fetch_result(result, &mut records) {
                            if !e.is_retriable() {
                                return Err(e);
                            }
                            stale |= e.needs_metadata_refresh();
                            retry_error = Some(e);
                        }
                    }
                }
                Err(e) if e.is_retriable() => {
                    stale = true;
                    retry_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        self.note_failures(succeeded, retry_error, stale).await?;
        Ok(records)
    }

    /// Tracks how long fetches have been failing: refreshes metadata and backs off while they do, and gives
    /// up with the last error after the request timeout.
    async fn note_failures(&mut self, succeeded: bool, retry_error: Option<Error>, stale: bool) -> Result<()> {
        if succeeded && retry_error.is_none() {
            self.failing_since = None;
        }
        if stale {
            let topics = topics_of(&self.assignment());
            if let Err(e) = self.cluster.refresh(&topics).await {
                tracing::debug!(error = %e, "metadata refresh failed");
            }
        }
        if let Some(error) = retry_error
            && !succeeded
        {
            let since = *self.failing_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= self.cluster.config().request_timeout() {
                return Err(error);
            }
            self.cluster.backoff().await;
        }
        Ok(())
    }

    /// Decodes one partition's result, appends its records at or after the position, and advances it.
    fn apply_fetch_result(&mut self, result: v1::PartitionFetchResult, out: &mut Vec<ConsumerRecord>) -> Result<()> {
        let tp = TopicPartition::new(result.topic, result.partition);
        let Some(Some(position)) = self.positions.get(&tp).copied() else {
            return Err(Error::Protocol(format!("fetch result for partition {tp}, which was not asked for")));
        };
        if let Some(e) = BrokerError::from_proto(result.error.as_ref()) {
            return Err(match e.code {
                ErrorCode::OffsetOutOfRange => Error::OffsetOutOfRange {
                    topic: tp.topic,
                    partition: tp.partition,
                    offset: position,
                    log_start_offset: result.log_start_offset,
                    high_watermark: result.high_watermark,
                },
                _ if e.retriable || e.code == ErrorCode::NotLeader => Error::Broker(e),
                _ => Error::from_broker(e, &tp.topic),
            });
        }
        let next = self.decode_into(&tp, position, &result.records, out)?;
        // Trust the broker's next offset only when it is ahead of what was decoded: a trailing partial batch
        // must be fetched again rather than skipped.
        let next = match next {
            Some(next) => next,
            None => position.max(if result.records.is_empty() { result.next_offset } else { position }),
        };
        self.positions.insert(tp, Some(next));
        Ok(())
    }

    /// Decodes `records`, keeps those at or after `position` (a fetch starts at the batch holding the
    /// position, so its first batch may begin earlier), and returns the offset after the last one decoded.
    fn decode_into(
        &self,
        tp: &TopicPartition,
        position: u64,
        records: &Bytes,
        out: &mut Vec<ConsumerRecord>,
    ) -> Result<Option<u64>> {
        if records.is_empty() {
            return Ok(None);
        }
        let decoded = decode_records(records).map_err(|source| Error::CorruptBatch {
            topic: tp.topic.clone(),
            partition: tp.partition,
            source,
        })?;
        let next = decoded.last().map(|r| r.offset + 1);
        out.extend(decoded.into_iter().filter(|r| r.offset >= position).map(|r| ConsumerRecord {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r.key,
            value: r.value,
            headers: r.headers,
        }));
        Ok(next.map(|n| n.max(position)))
    }
}

fn topics_of(partitions: &[TopicPartition]) -> Vec<String> {
    let mut topics: Vec<String> = partitions.iter().map(|tp| tp.topic.clone()).collect();
    topics.sort();
    topics.dedup();
    topics
}

fn no_leader(tp: &TopicPartition) -> Error {
    Error::Broker(BrokerError {
        code: ErrorCode::NotLeader,
        message: format!("partition {tp} has no reachable leader"),
        retriable: true,
    })
}
