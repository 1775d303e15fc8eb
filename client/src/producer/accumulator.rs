//! The record accumulator: per-partition queues of batches being filled, decisions about which batches are
//! ready to send, sticky partitioning for keyless records, and the per-partition "one request in flight" rule
//! that keeps records in order. It does no IO and reads no clock: the caller passes `now`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_proto::batch::{BATCH_HEADER_BYTES, BatchBuilder};
use tokio::sync::{OwnedSemaphorePermit, oneshot, watch};

use crate::error::{Error, Result};
use crate::types::{ProducerRecord, RecordMetadata, TopicPartition};

/// Where a record's outcome goes.
pub(crate) type Delivery = oneshot::Sender<Result<RecordMetadata>>;

/// One batch: open while records are appended, sealed (encoded) once it is full or taken for sending. The
/// encoded bytes are kept so that a retry sends exactly the same batch.
pub(crate) struct ProducerBatch {
    pub id: u64,
    pub tp: TopicPartition,
    builder: Option<BatchBuilder>,
    encoded: Option<Bytes>,
    /// Delivery channel and timestamp of each record, in batch order.
    records: Vec<(Delivery, i64)>,
    pub created_at: Instant,
    /// When the batch fails if still not acknowledged (`delivery_timeout_ms` after its first record).
    pub deadline: Instant,
    /// Not before this instant: the backoff after a failed attempt.
    pub retry_at: Option<Instant>,
    pub attempts: u32,
    /// The failure of the last attempt, reported if the batch then times out.
    pub last_error: Option<Error>,
    /// Buffer space held until the batch is dropped; releasing it wakes senders waiting for room.
    _buffer: Vec<OwnedSemaphorePermit>,
    /// Dropped with the batch; `flush` waits for that.
    _done: watch::Sender<()>,
}

impl ProducerBatch {
    fn is_sealed(&self) -> bool {
        self.encoded.is_some()
    }

    fn seal(&mut self) {
        if let Some(builder) = self.builder.take() {
            self.encoded = Some(builder.finish());
        }
    }

    /// The encoded batch; seals it if still open.
    pub fn bytes(&mut self) -> Bytes {
        self.seal();
        self.encoded.clone().expect("sealed batch has bytes")
    }

    pub fn size_bytes(&self) -> usize {
        match (&self.builder, &self.encoded) {
            (Some(builder), _) => builder.size_bytes(),
            (None, Some(bytes)) => bytes.len(),
            (None, None) => 0,
        }
    }

    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    /// Resolves every record's future: offsets follow from the batch's base offset.
    pub fn succeed(self, base_offset: u64) {
        for (index, (delivery, timestamp_ms)) in self.records.into_iter().enumerate() {
            let metadata = RecordMetadata {
                topic: self.tp.topic.clone(),
                partition: self.tp.partition,
                offset: base_offset + index as u64,
                timestamp_ms,
            };
            // The caller may have dropped its future; the record is still written, so nothing to do.
            let _ = delivery.send(Ok(metadata));
        }
    }

    /// Fails every record's future with `error`.
    pub fn fail(self, error: Error) {
        for (delivery, _) in self.records {
            let _ = delivery.send(Err(error.clone()));
        }
    }
}

/// What an append did, so the caller knows whether the sender must look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    pub partition: u32,
    /// A new batch was started (the sender must arm its linger timer) or one was sealed because it is full.
    pub wake_sender: bool,
}

#[derive(Debug, Clone, Copy)]
struct Sticky {
    partition: u32,
    partitions: u32,
}

#[derive(Default)]
struct PartitionQueue {
    batches: VecDeque<ProducerBatch>,
    in_flight: bool,
}

/// A record ready to be appended, already checked and given its timestamp.
pub(crate) struct NewRecord<'a> {
    pub record: &'a ProducerRecord,
    pub timestamp_ms: i64,
    pub delivery: Delivery,
    pub buffer: Option<OwnedSemaphorePermit>,
}

pub(crate) struct Accumulator {
    batch_bytes_max: usize,
    linger: Duration,
    delivery_timeout: Duration,
    queues: HashMap<TopicPartition, PartitionQueue>,
    /// The partition keyless records of each topic currently go to, and the topic's partition count.
    sticky: HashMap<String, Sticky>,
    /// Completion signal of every batch not yet acknowledged or failed, for `flush`.
    incomplete: BTreeMap<u64, watch::Receiver<()>>,
    next_batch_id: u64,
    /// While a flush or close is under way every batch is ready at once, regardless of linger.
    pub flushing: usize,
    pub closing: bool,
}

impl Accumulator {
    pub fn new(batch_bytes_max: usize, linger: Duration, delivery_timeout: Duration) -> Accumulator {
        Accumulator {
            batch_bytes_max,
            linger,
            delivery_timeout,
            queues: HashMap::new(),
            sticky: HashMap::new(),
            incomplete: BTreeMap::new(),
            next_batch_id: 0,
            flushing: 0,
            closing: false,
        }
    }

    /// Whether a record of `size_bound` bytes can ever fit in a batch.
    pub fn fits_in_a_batch(&self, size_bound: usize) -> bool {
        BATCH_HEADER_BYTES + size_bound <= self.batch_bytes_max
    }

    /// Appends a record to `partition`, or for `None` (keyless, no explicit partition) to the topic's sticky
    /// partition among `partitions`. The caller has checked that the record fits in a batch.
    pub fn append(&mut self, partition: Option<u32>, partitions: u32, new: NewRecord<'_>, now: Instant) -> Appended {
        let record = new.record;
        let size_bound = record.size_bound();
        let mut wake_sender = false;
        let partition = match partition {
            Some(p) => p,
            None => {
                let sticky = self.sticky_partition(&record.topic, partitions);
                let tp = TopicPartition::new(record.topic.clone(), sticky);
                if !self.open_batch_has_room(&tp, size_bound) && self.has_open_batch(&tp) {
                    // The sticky batch is full: move on, so keyless load spreads one batch at a time.
                    self.seal_last(&tp);
                    wake_sender = true;
                    self.advance_sticky(&record.topic)
                } else {
                    sticky
                }
            }
        };
        let tp = TopicPartition::new(record.topic.clone(), partition);
        if !self.open_batch_has_room(&tp, size_bound) {
            if self.has_open_batch(&tp) {
                self.seal_last(&tp);
            }
            self.start_batch(&tp, now);
            wake_sender = true;
        }
        let queue = self.queues.get_mut(&tp).expect("queue exists after start_batch");
        let batch = queue.batches.back_mut().expect("open batch exists");
        let builder = batch.builder.as_mut().expect("last batch is open");
        let headers: Vec<(&str, Option<&[u8]>)> =
            record.headers.iter().map(|h| (h.key.as_str(), h.value.as_deref())).collect();
        builder.push(new.timestamp_ms, record.key.as_deref(), record.value.as_deref(), &headers);
        batch.records.push((new.delivery, new.timestamp_ms));
        batch._buffer.extend(new.buffer);
        if builder.size_bytes() + BatchBuilder::record_size_bound(0, 0, 0) > self.batch_bytes_max {
            // Not even an empty record fits any more: the batch is as full as it gets.
            batch.seal();
            wake_sender = true;
            self.advance_sticky_from(&tp);
        }
        Appended { partition, wake_sender }
    }

    fn sticky_partition(&mut self, topic: &str, partitions: u32) -> u32 {
        // Topics start on different partitions so that several keyless topics do not all load partition 0.
        let start = (self.next_batch_id % u64::from(partitions)) as u32;
        let sticky = self.sticky.entry(topic.to_owned()).or_insert(Sticky { partition: start, partitions });
        if sticky.partitions != partitions {
            // The topic grew (or the metadata changed): keep the choice valid.
            *sticky = Sticky { partition: sticky.partition % partitions, partitions };
        }
        sticky.partition
    }

    fn advance_sticky(&mut self, topic: &str) -> u32 {
        let sticky = self.sticky.get_mut(topic).expect("sticky partition chosen before it advances");
        sticky.partition = (sticky.partition + 1) % sticky.partitions;
        sticky.partition
    }

    /// Moves the topic's sticky partition on if it is `tp`: its batch is leaving or full.
    fn advance_sticky_from(&mut self, tp: &TopicPartition) {
        if self.sticky.get(&tp.topic).is_some_and(|s| s.partition == tp.partition) {
            self.advance_sticky(&tp.topic);
        }
    }

    fn has_open_batch(&self, tp: &TopicPartition) -> bool {
        self.queues.get(tp).and_then(|q| q.batches.back()).is_some_and(|b| !b.is_sealed())
    }

    fn open_batch_has_room(&self, tp: &TopicPartition, size_bound: usize) -> bool {
        self.queues
            .get(tp)
            .and_then(|q| q.batches.back())
            .and_then(|b| b.builder.as_ref())
            .is_some_and(|builder| builder.size_bytes() + size_bound <= self.batch_bytes_max)
    }

    fn seal_last(&mut self, tp: &TopicPartition) {
        if let Some(batch) = self.queues.get_mut(tp).and_then(|q| q.batches.back_mut()) {
            batch.seal();
        }
    }

    fn start_batch(&mut self, tp: &TopicPartition, now: Instant) {
        let id = self.next_batch_id;
        self.next_batch_id += 1;
        let (done, done_rx) = watch::channel(());
        self.incomplete.insert(id, done_rx);
        let batch = ProducerBatch {
            id,
            tp: tp.clone(),
            builder: Some(BatchBuilder::with_capacity(self.batch_bytes_max.min(64 * 1024))),
            encoded: None,
            records: Vec::new(),
            created_at: now,
            deadline: now + self.delivery_timeout,
            retry_at: None,
            attempts: 0,
            last_error: None,
            _buffer: Vec::new(),
            _done: done,
        };
        self.queues.entry(tp.clone()).or_default().batches.push_back(batch);
    }

    /// Partitions whose first batch may be sent now, and the earliest instant another one becomes ready.
    pub fn ready(&self, now: Instant) -> (Vec<TopicPartition>, Option<Instant>) {
        let immediate = self.flushing > 0 || self.closing;
        let mut ready = Vec::new();
        let mut next: Option<Instant> = None;
        for (tp, queue) in &self.queues {
            let Some(batch) = queue.batches.front() else { continue };
            if queue.in_flight {
                continue;
            }
            let ready_at = match batch.retry_at {
                Some(at) => at,
                // More batches behind it, or no room left: waiting longer cannot make it bigger.
                None if immediate || batch.is_sealed() || queue.batches.len() > 1 => now,
                None => batch.created_at + self.linger,
            };
            if ready_at <= now {
                ready.push(tp.clone());
            } else {
                next = Some(next.map_or(ready_at, |n| n.min(ready_at)));
            }
        }
        ready.sort();
        (ready, next)
    }

    /// Takes the first batch of `tp` for sending and marks the partition in flight until
    /// [`Accumulator::requeue`] or [`Accumulator::finished`].
    pub fn take(&mut self, tp: &TopicPartition) -> Option<ProducerBatch> {
        let queue = self.queues.get_mut(tp)?;
        if queue.in_flight {
            return None;
        }
        let mut batch = queue.batches.pop_front()?;
        queue.in_flight = true;
        if !batch.is_sealed() {
            // The sticky partition's open batch is leaving: the next keyless records start a batch elsewhere.
            batch.seal();
            self.advance_sticky_from(tp);
        }
        Some(batch)
    }

    /// Size of the batch `take` would return for `tp`.
    pub fn front_size_bytes(&self, tp: &TopicPartition) -> usize {
        self.queues.get(tp).and_then(|q| q.batches.front()).map_or(0, ProducerBatch::size_bytes)
    }

    /// Puts a batch that failed with a retriable error back at the front of its queue, so order is kept.
    pub fn requeue(&mut self, mut batch: ProducerBatch, retry_at: Instant) {
        batch.retry_at = Some(retry_at);
        let queue = self.queues.entry(batch.tp.clone()).or_default();
        queue.in_flight = false;
        queue.batches.push_front(batch);
    }

    /// The in-flight batch of `batch_id`'s partition is done (acknowledged or failed for good).
    pub fn finished(&mut self, tp: &TopicPartition, batch_id: u64) {
        self.incomplete.remove(&batch_id);
        if let Some(queue) = self.queues.get_mut(tp) {
            queue.in_flight = false;
            if queue.batches.is_empty() {
                self.queues.remove(tp);
            }
        }
    }

    /// Removes batches, not in flight, whose delivery deadline has passed.
    pub fn expired(&mut self, now: Instant) -> Vec<ProducerBatch> {
        let mut expired = Vec::new();
        for queue in self.queues.values_mut() {
            if queue.in_flight {
                continue;
            }
            while queue.batches.front().is_some_and(|b| b.deadline <= now) {
                expired.extend(queue.batches.pop_front());
            }
        }
        for batch in &expired {
            self.incomplete.remove(&batch.id);
        }
        self.queues.retain(|_, q| q.in_flight || !q.batches.is_empty());
        expired
    }

    /// Completion signals of every batch not finished yet.
    pub fn incomplete(&self) -> Vec<watch::Receiver<()>> {
        self.incomplete.values().cloned().collect()
    }

    /// True when nothing is queued or in flight.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Topics with queued batches, for a targeted metadata refresh.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.queues.keys().map(|tp| tp.topic.clone()).collect();
        topics.sort();
        topics.dedup();
        topics
    }
}

#[cfg(test)]
#[path = "accumulator_tests.rs"]
mod tests;
