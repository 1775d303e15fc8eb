//! The record accumulator: per-partition queues of batches being filled, decisions about which batches are
//! ready to send, sticky partitioning for keyless records, and the rules that keep each partition's records
//! in order: without idempotence one batch in flight per partition; with it up to
//! [`IDEMPOTENT_BATCHES_IN_FLIGHT_MAX`] batches, each stamped with the producer id, epoch and sequence once,
//! when it is sealed, so the broker puts them in order and drops retries of batches it already holds. It does
//! no IO and reads no clock: the caller passes `now`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rill_proto::batch::{BATCH_HEADER_BYTES, BatchBuilder, advance_sequence, set_producer_fields};
use tokio::sync::{OwnedSemaphorePermit, oneshot, watch};

use crate::error::{Error, Result};
use crate::types::{ProducerRecord, RecordMetadata, TopicPartition};

/// Where a record's outcome goes.
pub(crate) type Delivery = oneshot::Sender<Result<RecordMetadata>>;

/// Batches of one partition an idempotent producer may have sent and not yet seen answered. The broker keeps
/// the last 5 batches of each producer (DESIGN.md, Idempotent producer), so a retry of any of them is still
/// recognised as a duplicate.
pub(crate) const IDEMPOTENT_BATCHES_IN_FLIGHT_MAX: usize = 5;

/// The producer id and epoch an idempotent producer stamps on its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub producer_id: i64,
    pub epoch: i16,
}

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
    /// Epoch and base sequence stamped at sealing, for an idempotent producer.
    pub sequence: Option<(i16, i32)>,
    /// An attempt ended without a definite answer (transport failure, timeout, lost leadership after the
    /// append): the broker may hold the batch, so it keeps its sequence until an answer settles it.
    pub maybe_written: bool,
    /// Buffer space held until the batch is dropped; releasing it wakes senders waiting for room.
    _buffer: Vec<OwnedSemaphorePermit>,
    /// Dropped with the batch; `flush` waits for that.
    _done: watch::Sender<()>,
}

impl ProducerBatch {
    fn is_sealed(&self) -> bool {
        self.encoded.is_some()
    }

    /// Encodes the batch; an idempotent producer stamps it with the partition's next sequence.
    fn seal(&mut self, identity: Option<Identity>, next_sequence: &mut i32) {
        if let Some(mut builder) = self.builder.take() {
            if let Some(identity) = identity {
                builder.set_producer(identity.producer_id, identity.epoch, *next_sequence);
                self.sequence = Some((identity.epoch, *next_sequence));
                *next_sequence = advance_sequence(*next_sequence, self.records.len() as u32);
            }
            self.encoded = Some(builder.finish());
        }
    }

    /// Gives a sealed batch, known not to be in any log, a sequence of a new epoch.
    fn renumber(&mut self, identity: Identity, next_sequence: &mut i32) {
        let Some(encoded) = self.encoded.as_mut() else { return };
        let mut bytes = BytesMut::from(&encoded[..]);
        set_producer_fields(&mut bytes, identity.producer_id, identity.epoch, *next_sequence);
        *encoded = bytes.freeze();
        self.sequence = Some((identity.epoch, *next_sequence));
        *next_sequence = advance_sequence(*next_sequence, self.records.len() as u32);
    }

    /// The encoded batch. Only sealed batches are taken for sending.
    pub fn bytes(&self) -> Bytes {
        self.encoded.clone().expect("a batch is sealed before it is sent")
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

/// Batches of one partition waiting to be sent (in creation order, which is sequence order), and the ids of
/// those in flight.
#[derive(Default)]
struct PartitionQueue {
    batches: VecDeque<ProducerBatch>,
    in_flight: BTreeSet<u64>,
}

impl PartitionQueue {
    /// Batches sent at least once and not yet answered for good: in flight, or back in the queue for a retry.
    fn unsettled(&self) -> usize {
        self.in_flight.len() + self.batches.iter().filter(|b| b.attempts > 0).count()
    }
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
    /// Set for an idempotent producer.
    identity: Option<Identity>,
    /// The partition the last record went to (see [`Accumulator::partition_key`]).
    last_key: Option<TopicPartition>,
    /// The sequence the next sealed batch of each partition gets; kept while the partition's queue is empty.
    sequences: HashMap<TopicPartition, i32>,
    /// A sequenced batch failed for good, so its partition's sequence has a hole: the producer must take a new
    /// epoch (which restarts every sequence) once every batch that may be in a log is settled.
    pub epoch_bump_wanted: bool,
    /// The producer was fenced or hit another fatal error: every batch fails with it.
    pub fatal: Option<Error>,
    /// While a flush or close is under way every batch is ready at once, regardless of linger.
    pub flushing: usize,
    pub closing: bool,
}

impl Accumulator {
    pub fn new(
        batch_bytes_max: usize,
        linger: Duration,
        delivery_timeout: Duration,
        identity: Option<Identity>,
    ) -> Accumulator {
        Accumulator {
            identity,
            last_key: None,
            sequences: HashMap::new(),
            epoch_bump_wanted: false,
            fatal: None,
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
                let tp = self.partition_key(&record.topic, sticky);
                let full = !self.open_batch_has_room(&tp, size_bound) && self.has_open_batch(&tp);
                if full {
                    // The sticky batch is full: move on, so keyless load spreads one batch at a time.
                    self.seal_last(&tp);
                    wake_sender = true;
                }
                self.last_key = Some(tp);
                if full { self.advance_sticky(&record.topic) } else { sticky }
            }
        };
        let tp = self.partition_key(&record.topic, partition);
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
            let next_sequence = self.sequences.entry(tp.clone()).or_insert(0);
            batch.seal(self.identity, next_sequence);
            wake_sender = true;
            self.advance_sticky_from(&tp);
        }
        self.last_key = Some(tp);
        Appended { partition, wake_sender }
    }

    /// The key of `topic`'s `partition`, reusing the last one built when it matches: records mostly go to the
    /// partition the previous one went to, and building a key copies the topic name.
    fn partition_key(&mut self, topic: &str, partition: u32) -> TopicPartition {
        match self.last_key.take() {
            Some(key) if key.partition == partition && key.topic == topic => key,
            _ => TopicPartition::new(topic.to_owned(), partition),
        }
    }

    fn sticky_partition(&mut self, topic: &str, partitions: u32) -> u32 {
        // Topics start on different partitions so that several keyless topics do not all load partition 0.
        let start = (self.next_batch_id % u64::from(partitions)) as u32;
        if !self.sticky.contains_key(topic) {
            self.sticky.insert(topic.to_owned(), Sticky { partition: start, partitions });
        }
        let sticky = self.sticky.get_mut(topic).expect("inserted above");
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
            batch.seal(self.identity, self.sequences.entry(tp.clone()).or_insert(0));
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
            sequence: None,
            maybe_written: false,
            _buffer: Vec::new(),
            _done: done,
        };
        self.queues.entry(tp.clone()).or_default().batches.push_back(batch);
    }

    /// How many batches of one partition may be unsettled at once.
    fn in_flight_max(&self) -> usize {
        if self.identity.is_some() { IDEMPOTENT_BATCHES_IN_FLIGHT_MAX } else { 1 }
    }

    /// The position of the batch `queue` may send next, if the in-flight rules allow one. While an epoch bump
    /// waits, only batches that may already be in a log go out (with their old sequence), to settle them.
    fn sendable(&self, queue: &PartitionQueue) -> Option<usize> {
        if self.fatal.is_some() {
            return None;
        }
        if self.epoch_bump_wanted {
            return queue.batches.iter().position(|b| b.maybe_written);
        }
        let front = queue.batches.front()?;
        let allowed = if self.identity.is_some() {
            // A retry is already counted among the unsettled batches.
            front.attempts > 0 || queue.unsettled() < self.in_flight_max()
        } else {
            queue.in_flight.is_empty()
        };
        allowed.then_some(0)
    }

    /// Partitions with a batch that may be sent now, and the earliest instant another one becomes ready.
    pub fn ready(&self, now: Instant) -> (Vec<TopicPartition>, Option<Instant>) {
        let immediate = self.flushing > 0 || self.closing;
        let mut ready = Vec::new();
        let mut next: Option<Instant> = None;
        for (tp, queue) in &self.queues {
            let Some(index) = self.sendable(queue) else { continue };
            let batch = &queue.batches[index];
            let ready_at = match batch.retry_at {
                Some(at) => at,
                // More batches behind it, or no room left: waiting longer cannot make it bigger.
                None if immediate || batch.is_sealed() || queue.batches.len() > index + 1 => now,
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

    /// Takes the next batch of `tp` for sending and counts it in flight until [`Accumulator::requeue`] or
    /// [`Accumulator::finished`].
    pub fn take(&mut self, tp: &TopicPartition) -> Option<ProducerBatch> {
        let index = self.sendable(self.queues.get(tp)?)?;
        let queue = self.queues.get_mut(tp)?;
        let mut batch = queue.batches.remove(index)?;
        queue.in_flight.insert(batch.id);
        if !batch.is_sealed() {
            // The sticky partition's open batch is leaving: the next keyless records start a batch elsewhere.
            batch.seal(self.identity, self.sequences.entry(tp.clone()).or_insert(0));
            self.advance_sticky_from(tp);
        }
        Some(batch)
    }

    /// Size of the batch `take` would return for `tp`.
    pub fn front_size_bytes(&self, tp: &TopicPartition) -> usize {
        let Some(queue) = self.queues.get(tp) else { return 0 };
        self.sendable(queue).and_then(|i| queue.batches.get(i)).map_or(0, ProducerBatch::size_bytes)
    }

    /// Puts a batch that failed with a retriable error back into its queue, in sequence order.
    pub fn requeue(&mut self, mut batch: ProducerBatch, retry_at: Instant) {
        batch.retry_at = Some(retry_at);
        let queue = self.queues.entry(batch.tp.clone()).or_default();
        queue.in_flight.remove(&batch.id);
        let position = queue.batches.iter().position(|b| b.id > batch.id).unwrap_or(queue.batches.len());
        queue.batches.insert(position, batch);
    }

    /// Whether a batch of `tp` older than `batch_id` is still unsettled (in flight or queued for a retry): a
    /// later batch refused as out of sequence then only overtook it.
    pub fn has_unsettled_before(&self, tp: &TopicPartition, batch_id: u64) -> bool {
        self.queues.get(tp).is_some_and(|q| {
            q.in_flight.first().is_some_and(|&id| id < batch_id) || q.batches.front().is_some_and(|b| b.id < batch_id)
        })
    }

    /// `batch_id` of `tp` is done (acknowledged or failed for good).
    pub fn finished(&mut self, tp: &TopicPartition, batch_id: u64) {
        self.incomplete.remove(&batch_id);
        if let Some(queue) = self.queues.get_mut(tp) {
            queue.in_flight.remove(&batch_id);
            if queue.batches.is_empty() && queue.in_flight.is_empty() {
                self.queues.remove(tp);
            }
        }
    }

    /// Removes queued batches whose delivery deadline has passed. A sequenced one leaves a hole in its
    /// partition's sequence, so the producer will take a new epoch.
    pub fn expired(&mut self, now: Instant) -> Vec<ProducerBatch> {
        let mut expired = Vec::new();
        for queue in self.queues.values_mut() {
            let mut index = 0;
            while index < queue.batches.len() {
                if queue.batches[index].deadline <= now {
                    expired.extend(queue.batches.remove(index));
                } else {
                    index += 1;
                }
            }
        }
        for batch in &expired {
            self.incomplete.remove(&batch.id);
            self.epoch_bump_wanted |= batch.sequence.is_some();
        }
        self.queues.retain(|_, q| !q.in_flight.is_empty() || !q.batches.is_empty());
        expired
    }

    /// Whether the epoch bump can happen now: it is wanted, nothing is in flight, and no queued batch may
    /// already be in a log under the old epoch.
    pub fn epoch_bump_ready(&self) -> bool {
        self.epoch_bump_wanted
            && self.fatal.is_none()
            && self.queues.values().all(|q| q.in_flight.is_empty() && q.batches.iter().all(|b| !b.maybe_written))
    }

    /// The identity the producer stamps now, if idempotent.
    pub fn identity(&self) -> Option<Identity> {
        self.identity
    }

    /// Switches to a new epoch (or id): every partition's sequence starts again at 0 and the sealed batches
    /// still queued, none of which is in any log, are renumbered in order.
    pub fn start_epoch(&mut self, identity: Identity) {
        self.identity = Some(identity);
        self.sequences.clear();
        for (tp, queue) in &mut self.queues {
            debug_assert!(queue.in_flight.is_empty(), "epoch changes only with nothing in flight");
            let next_sequence = self.sequences.entry(tp.clone()).or_insert(0);
            for batch in queue.batches.iter_mut().filter(|b| b.is_sealed()) {
                batch.renumber(identity, next_sequence);
            }
        }
        self.epoch_bump_wanted = false;
    }

    /// Records a fatal error and removes every queued batch, for the caller to fail.
    pub fn fail_all(&mut self, error: Error) -> Vec<ProducerBatch> {
        self.fatal.get_or_insert(error);
        let mut failed = Vec::new();
        for queue in self.queues.values_mut() {
            failed.extend(queue.batches.drain(..));
        }
        for batch in &failed {
            self.incomplete.remove(&batch.id);
        }
        self.queues.retain(|_, q| !q.in_flight.is_empty());
        failed
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
