//! `Consumer`: reads assigned partitions from their leaders by offset, with long-poll fetches, seeking by
//! offset, to either end, or by timestamp; or, subscribed to topics as a member of a consumer group, the
//! partitions the group's coordinator assigns it, starting at the group's committed offsets.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;
use rill_proto::batch::decode_records;
use rill_proto::v1::{self, OffsetSpec};

use crate::cluster::Cluster;
use crate::config::{ClientConfig, ConsumerConfig, OffsetReset};
use crate::error::{BrokerError, Error, ErrorCode, Result};
use crate::group::{Assignment, GroupClient, Held, MemberSettings, Membership};
use crate::types::{ConsumerRecord, TopicPartition};

/// How often a group member whose lease ran out looks again whether a heartbeat was answered.
const LEASE_RETRY_MS: u64 = 50;

/// A consumer's group membership, as applied by the foreground.
struct GroupMember {
    membership: Membership,
    /// The assignment the consumer's positions reflect.
    applied: Assignment,
    /// Per partition, the offset after the last record handed to the caller: what a commit records.
    consumed: BTreeMap<TopicPartition, u64>,
    /// Offsets last committed by this consumer, so unchanged ones are not written again.
    committed: BTreeMap<TopicPartition, u64>,
    last_auto_commit: Instant,
}

/// A consumer of explicitly assigned partitions ([`Consumer::assign`]), or a member of a consumer group that
/// reads the partitions its coordinator assigns ([`Consumer::subscribe`]).
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
    group: Option<GroupMember>,
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
        Ok(Consumer {
            cluster,
            config,
            positions: BTreeMap::new(),
            pending: VecDeque::new(),
            failing_since: None,
            group: None,
        })
    }

    /// Joins the consumer group of [`ConsumerConfig::group_id`], subscribed to `topics`. The group's
    /// coordinator assigns each partition of these topics to one member; [`poll`](Consumer::poll) and
    /// [`stream`](Consumer::stream) then read this consumer's partitions from the group's committed offsets
    /// (or per `offset_reset` where none is committed), and follow every later change of assignment.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> rill_client::Result<()> {
    /// use std::time::Duration;
    /// use rill_client::{ClientConfig, Consumer, ConsumerConfig};
    ///
    /// let config = ConsumerConfig { group_id: Some("billing".into()), ..ConsumerConfig::default() };
    /// let mut consumer = Consumer::connect(ClientConfig::new("127.0.0.1:9400")?, config).await?;
    /// consumer.subscribe(&["orders"]).await?;
    /// loop {
    ///     for record in consumer.poll(Duration::from_secs(1)).await? {
    ///         println!("{}@{}", record.partition, record.offset);
    ///     }
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`] without a `group_id`, with no topic, or after [`assign`](Consumer::assign);
    /// [`Error::UnknownTopic`] if a topic does not exist.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the membership starts only when the future completes.
    pub async fn subscribe(&mut self, topics: &[&str]) -> Result<()> {
        let Some(group_id) = self.config.group_id.clone() else {
            return Err(Error::Config("subscribe needs a group_id in the consumer config".into()));
        };
        if topics.is_empty() {
            return Err(Error::Config("subscribe needs at least one topic".into()));
        }
        check_group_settings(&group_id, &self.config)?;
        if self.group.is_none() && !self.positions.is_empty() {
            return Err(Error::Config("a consumer with assigned partitions cannot also subscribe".into()));
        }
        for topic in topics {
            self.cluster.partition_count(topic).await?;
        }
        if let Some(previous) = self.group.take() {
            self.positions.clear();
            self.pending.clear();
            previous.membership.leave().await?;
        }
        let settings = MemberSettings {
            client_id: self.config.client_id.clone(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            session_timeout_ms: self.config.session_timeout_ms,
            rebalance_timeout_ms: self.config.rebalance_timeout_ms,
            heartbeat_interval_ms: self.config.heartbeat_interval_ms,
        };
        let client = Arc::new(GroupClient::new(self.cluster.clone(), &group_id));
        self.group = Some(GroupMember {
            membership: Membership::start(client, settings),
            applied: Assignment::default(),
            consumed: BTreeMap::new(),
            committed: BTreeMap::new(),
            last_auto_commit: Instant::now(),
        });
        Ok(())
    }

    /// This member's id and generation in its group, once it has joined.
    pub fn group_membership(&self) -> Option<(String, u32)> {
        let group = self.group.as_ref()?;
        let assignment = group.membership.assignment.borrow();
        (!assignment.member_id.is_empty()).then(|| (assignment.member_id.clone(), assignment.generation))
    }

    /// Commits, for each partition this member reads, the offset after the last record handed out by `poll`
    /// or `stream`, so the group resumes there.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when not subscribed; a `STALE_GENERATION` or `UNKNOWN_MEMBER_ID` broker error when
    /// the partitions were meanwhile taken from this member; transport errors after the request timeout.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the offsets may or may not have been committed when the future is dropped.
    pub async fn commit(&mut self) -> Result<()> {
        self.commit_with_metadata("").await
    }

    /// [`commit`](Consumer::commit), recording `metadata` (at most 4096 bytes) with each offset; the
    /// coordinator keeps it beside the offset.
    ///
    /// # Errors
    ///
    /// As [`commit`](Consumer::commit); an `INVALID_REQUEST` broker error for metadata that is too long.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the offsets may or may not have been committed when the future is dropped.
    pub async fn commit_with_metadata(&mut self, metadata: &str) -> Result<()> {
        let group = self.group.as_mut().ok_or_else(|| Error::Config("commit needs a subscribed consumer".into()))?;
        let partitions: BTreeSet<TopicPartition> = self.positions.keys().cloned().collect();
        commit_consumed(group, &partitions, metadata).await
    }

    /// The group's committed offsets of `partitions` (absent where none is committed).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when not subscribed; transport errors after the request timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn committed(&self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, u64>> {
        let group = self.group.as_ref().ok_or_else(|| Error::Config("committed needs a subscribed consumer".into()))?;
        group.membership.client.fetch_offsets(partitions, None).await
    }

    /// Leaves the group, committing first when auto-commit is on, so the partitions move to the other
    /// members at once. Dropping a consumer without `close` leaves them to move after the session timeout.
    ///
    /// # Errors
    ///
    /// The commit's or the leave's failure.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe.
    pub async fn close(mut self) -> Result<()> {
        let Some(mut group) = self.group.take() else { return Ok(()) };
        let partitions: BTreeSet<TopicPartition> = self.positions.keys().cloned().collect();
        let committed = if self.config.enable_auto_commit && group.applied.incarnation == current_incarnation(&group) {
            commit_consumed(&mut group, &partitions, "").await
        } else {
            Ok(())
        };
        let left = group.membership.leave().await;
        committed.and(left)
    }

    /// Applies the latest assignment of the group: partitions taken from this member are committed (with
    /// auto-commit) and dropped, then reported released by an early heartbeat; new ones start at their
    /// committed offset. Also commits on the auto-commit interval.
    async fn sync_group(&mut self) -> Result<()> {
        let Some(group) = self.group.as_mut() else { return Ok(()) };
        let latest = group.membership.assignment.borrow().clone();
        if latest != group.applied {
            let current: BTreeSet<TopicPartition> = self.positions.keys().cloned().collect();
            let revoked: BTreeSet<TopicPartition> = current.difference(&latest.partitions).cloned().collect();
            let added: Vec<TopicPartition> = latest.partitions.difference(&current).cloned().collect();
            // A member removed from the group may already have lost its partitions to others: its offsets are
            // not committed over theirs.
            let lost = latest.incarnation != group.applied.incarnation;
            if !revoked.is_empty() && self.config.enable_auto_commit && !lost {
                group.applied.generation = latest.generation;
                if let Err(e) = commit_consumed(group, &revoked, "").await {
                    tracing::warn!(error = %e, "commit of released partitions failed; they may be read again");
                }
            }
            for tp in &revoked {
                self.positions.remove(tp);
                group.consumed.remove(tp);
                group.committed.remove(tp);
            }
            self.pending.retain(|r| !revoked.iter().any(|tp| *tp.topic == *r.topic && tp.partition == r.partition));
            if !added.is_empty() {
                let member = Some((latest.member_id.as_str(), latest.generation));
                let committed = match group.membership.client.fetch_offsets(&added, member).await {
                    Ok(committed) => committed,
                    // The group moved on (or removed this member) since the answer that granted these: report
                    // only what is held, learn the news from an early heartbeat, and try again next time.
                    Err(Error::Broker(e))
                        if matches!(e.code, ErrorCode::StaleGeneration | ErrorCode::UnknownMemberId) =>
                    {
                        tracing::debug!(error = %e, "committed offsets refused; waiting for the next assignment");
                        let held = self.positions.keys().cloned().collect();
                        *group.membership.owned.lock().expect("owned set poisoned") =
                            Held { partitions: held, seq: latest.seq };
                        group.membership.wake.notify_one();
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                };
                for tp in added {
                    let start = committed.get(&tp).copied();
                    if let Some(offset) = start {
                        group.committed.insert(tp.clone(), offset);
                    }
                    self.positions.insert(tp, start);
                }
            }
            *group.membership.owned.lock().expect("owned set poisoned") =
                Held { partitions: latest.partitions.clone(), seq: latest.seq };
            group.applied = latest;
            group.membership.wake.notify_one();
            tracing::debug!(generation = group.applied.generation, partitions = ?group.applied.partitions, "assignment applied");
        }
        if self.config.enable_auto_commit
            && group.last_auto_commit.elapsed() >= Duration::from_millis(self.config.auto_commit_interval_ms)
        {
            group.last_auto_commit = Instant::now();
            let partitions: BTreeSet<TopicPartition> = self.positions.keys().cloned().collect();
            if let Err(e) = commit_consumed(group, &partitions, "").await {
                tracing::warn!(error = %e, "auto-commit failed");
            }
        }
        Ok(())
    }

    /// Records that `records` were handed to the caller.
    fn note_consumed(&mut self, records: &[ConsumerRecord]) {
        if let Some(group) = self.group.as_mut() {
            // Records come in runs of one partition: note each run's last offset once.
            for (i, r) in records.iter().enumerate() {
                let run_continues =
                    records.get(i + 1).is_some_and(|next| next.partition == r.partition && next.topic == r.topic);
                if !run_continues {
                    group.consumed.insert(TopicPartition::new(r.topic.to_string(), r.partition), r.offset + 1);
                }
            }
        }
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
        if self.group.is_some() {
            return Err(Error::Config("a subscribed consumer's partitions are assigned by its group".into()));
        }
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
        let assigned: std::collections::HashSet<(&str, u32)> =
            self.positions.keys().map(|tp| (tp.topic.as_str(), tp.partition)).collect();
        self.pending.retain(|r| assigned.contains(&(&*r.topic, r.partition)));
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

    /// Sets the next offset to read from `tp`. In a group, the next commit records this offset for `tp`.
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
        self.pending.retain(|r| *r.topic != *tp.topic || r.partition != tp.partition);
        // In a group, the next commit records the new position, as if everything before it was handed out.
        if let Some(group) = self.group.as_mut() {
            group.consumed.insert(tp.clone(), offset);
        }
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
        let records = self.poll_records(timeout).await?;
        self.note_consumed(&records);
        Ok(records)
    }

    /// `poll` without noting the records as handed out (the stream notes them one at a time).
    async fn poll_records(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        if !self.pending.is_empty() {
            return Ok(self.pending.drain(..).collect());
        }
        let deadline = Instant::now() + timeout;
        loop {
            self.sync_group().await?;
            if let Some(group) = &self.group
                && !self.positions.is_empty()
                && !group.membership.lease_valid(group.applied.incarnation)
            {
                // Possibly removed from the group (a pause, a partition from the coordinator): read nothing
                // until a heartbeat is answered and says what this member still owns.
                group.membership.wake.notify_one();
                let nap = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(LEASE_RETRY_MS));
                tokio::time::sleep(nap).await;
                if Instant::now() >= deadline {
                    return Ok(Vec::new());
                }
                continue;
            }
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
                    consumer.note_consumed(std::slice::from_ref(&record));
                    return Some((Ok(record), Some(consumer)));
                }
                let wait = Duration::from_millis(u64::from(consumer.config.fetch_max_wait_ms));
                match consumer.poll_records(wait).await {
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
        let topic: Arc<str> = Arc::from(tp.topic.as_str());
        out.extend(decoded.into_iter().filter(|r| r.offset >= position).map(|r| ConsumerRecord {
            topic: topic.clone(),
            partition: tp.partition,
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r.key,
            value: r.value,
            headers: r.headers,
        }));
        Ok(next.map(|n| n.max(position)))
    }

    /// Asks each partition's leader for an offset (see [`Consumer::list_offsets_of`]).
    async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
        timestamp_ms: i64,
    ) -> Result<BTreeMap<TopicPartition, u64>> {
        Self::list_offsets_of(&self.cluster, partitions, spec, timestamp_ms).await
    }

    /// Asks each partition's leader for an offset, retrying retriable failures until the request timeout.
    pub(crate) async fn list_offsets_of(
        cluster: &Cluster,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
        timestamp_ms: i64,
    ) -> Result<BTreeMap<TopicPartition, u64>> {
        let deadline = Instant::now() + cluster.config().request_timeout();
        let mut found = BTreeMap::new();
        let mut missing: Vec<TopicPartition> = partitions.to_vec();
        loop {
            let (results, error) = Self::list_offsets_once(cluster, &missing, spec, timestamp_ms).await?;
            found.extend(results);
            missing.retain(|tp| !found.contains_key(tp));
            match error {
                None if missing.is_empty() => return Ok(found),
                None => {}
                Some(e) if !e.is_retriable() || Instant::now() >= deadline => return Err(e),
                Some(e) => tracing::debug!(error = %e, "retrying ListOffsets"),
            }
            cluster.refresh(&topics_of(&missing)).await?;
            cluster.backoff().await;
        }
    }

    /// One round of ListOffsets: the offsets that came back, and the first retriable error if any. A
    /// non-retriable error fails the whole call.
    async fn list_offsets_once(
        cluster: &Cluster,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
        timestamp_ms: i64,
    ) -> Result<(Vec<(TopicPartition, u64)>, Option<Error>)> {
        let metadata = cluster.refresh_if_old(&topics_of(partitions)).await?;
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
            let request = cluster.request(v1::ListOffsetsRequest { queries }, Duration::ZERO);
            let answer = match cluster.client(&address) {
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
}

/// Refuses settings every coordinator would refuse, so a misconfigured member fails at `subscribe` instead of
/// retrying to join forever.
fn check_group_settings(group_id: &str, config: &ConsumerConfig) -> Result<()> {
    if group_id.is_empty() || group_id.len() > 255 || group_id.chars().any(char::is_control) {
        return Err(Error::Config("the group id must be 1 to 255 printable bytes".into()));
    }
    if !(1_000..=300_000).contains(&config.session_timeout_ms) {
        return Err(Error::Config("session_timeout_ms must be between 1000 and 300000".into()));
    }
    if config.rebalance_timeout_ms > 600_000 {
        return Err(Error::Config("rebalance_timeout_ms must be at most 600000".into()));
    }
    if config.heartbeat_interval_ms == 0 || config.heartbeat_interval_ms >= config.session_timeout_ms {
        return Err(Error::Config("heartbeat_interval_ms must be positive and below session_timeout_ms".into()));
    }
    if config.client_id.len() > 255 {
        return Err(Error::Config("client_id must be at most 255 bytes".into()));
    }
    Ok(())
}

fn current_incarnation(group: &GroupMember) -> u64 {
    group.membership.assignment.borrow().incarnation
}

/// Commits the consumed offsets of `partitions` that changed since the last commit, in the generation of the
/// latest assignment; one retry in a newer generation if the group moved on meanwhile.
async fn commit_consumed(group: &mut GroupMember, partitions: &BTreeSet<TopicPartition>, metadata: &str) -> Result<()> {
    // Unchanged offsets are not written again, unless the commit carries metadata to record.
    let offsets: BTreeMap<TopicPartition, u64> = group
        .consumed
        .iter()
        .filter(|(tp, offset)| {
            partitions.contains(*tp) && (!metadata.is_empty() || group.committed.get(*tp) != Some(*offset))
        })
        .map(|(tp, offset)| (tp.clone(), *offset))
        .collect();
    if offsets.is_empty() {
        return Ok(());
    }
    let member_id = group.applied.member_id.clone();
    let mut generation = group.applied.generation.max(group.membership.assignment.borrow().generation);
    let mut outcome = group.membership.client.commit(&member_id, generation, &offsets, metadata).await;
    if let Err(Error::Broker(e)) = &outcome
        && e.code == ErrorCode::StaleGeneration
    {
        let latest = group.membership.assignment.borrow().generation;
        if latest > generation {
            generation = latest;
            outcome = group.membership.client.commit(&member_id, generation, &offsets, metadata).await;
        }
    }
    outcome?;
    group.committed.extend(offsets);
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_settings_every_coordinator_refuses_are_refused_at_subscribe() {
        let good = ConsumerConfig::default();
        assert!(check_group_settings("g", &good).is_ok());
        assert!(check_group_settings("", &good).is_err());
        assert!(check_group_settings(&"g".repeat(256), &good).is_err());
        for bad in [
            ConsumerConfig { session_timeout_ms: 500, ..good.clone() },
            ConsumerConfig { rebalance_timeout_ms: 700_000, ..good.clone() },
            ConsumerConfig { heartbeat_interval_ms: 20_000, ..good.clone() },
            ConsumerConfig { heartbeat_interval_ms: 0, ..good.clone() },
        ] {
            assert!(check_group_settings("g", &bad).is_err(), "{bad:?}");
        }
    }
}
