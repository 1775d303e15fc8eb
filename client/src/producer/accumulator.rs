//! The record accumulator: per-partition queues of batches being filled, decisions about which batches are
//! ready to send, sticky partitioning for keyless records, and the rules that keep each partition's records
//! in order: without idempotence one batch in flight per partition; with it up to
//! [`IDEMPOTENT_BATCHES_IN_FLIGHT_MAX`] batches, each stamped with the producer id, epoch and sequence once,
//! when it is sealed, so the broker puts them in order and drops retries of batches it already holds. It does
//! no IO and reads no clock: the caller passes `now`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rill_proto::Compression;
use rill_proto::batch::{BATCH_HEADER_BYTES, BatchBuilder, advance_sequence, set_producer_fields};
use tokio::sync::{Semaphore, watch};

use super::delivery::{BatchCompletion, DeliveryFuture};
use crate::error::Error;
use crate::types::{ProducerRecord, TopicPartition};

/// Maps looked up for every record: foldhash instead of SipHash (the keys are the caller's own topic names).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Batches of one partition an idempotent producer may have sent since the oldest one not yet settled. The
/// broker keeps the last 5 batches of each producer (DESIGN.md, Idempotent producer), so a retry of any
/// unsettled batch is still recognised as a duplicate.
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
    record_count: u32,
    /// The outcome the records' futures read.
    completion: BatchCompletion,
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
    buffer: BufferSpace,
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
                *next_sequence = advance_sequence(*next_sequence, self.record_count);
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
        *next_sequence = advance_sequence(*next_sequence, self.record_count);
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

    pub fn record_count(&self) -> u32 {
        self.record_count
    }

    /// Resolves every record's future: offsets follow from the batch's base offset.
    pub fn succeed(self, base_offset: u64) {
        self.completion.succeed(base_offset);
    }

    /// Fails every record's future with `error`.
    pub fn fail(self, error: Error) {
        self.completion.fail(error);
    }
}

/// Buffer space (`buffer_bytes_max` permits) held by the records of one batch, given back when the batch is
/// dropped. Counted rather than held as one permit object per record, so appending a record moves no
/// reference counts.
pub(crate) struct BufferSpace {
    semaphore: Option<Arc<Semaphore>>,
    permits: usize,
}

impl Drop for BufferSpace {
    fn drop(&mut self) {
        if let Some(semaphore) = &self.semaphore {
            semaphore.add_permits(self.permits);
        }
    }
}

/// What an append did, so the caller knows whether the sender must look again, and the record's future.
pub(crate) struct Appended {
    /// A new batch was started (the sender must arm its linger timer) or one was sealed because it is full.
    pub wake_sender: bool,
    pub delivery: DeliveryFuture,
}

#[derive(Debug, Clone, Copy)]
struct Sticky {
    partition: u32,
    partitions: u32,
}

/// Batches of one partition waiting to be sent (in creation order, which is sequence order), the ids of
/// those in flight, and the send window.
#[derive(Default)]
struct PartitionQueue {
    batches: VecDeque<ProducerBatch>,
    in_flight: BTreeSet<u64>,
    /// The batches sent since the oldest one not yet settled (acknowledged or failed for good), oldest first,
    /// each with whether it is settled. A batch acknowledged while an older one waits for its retry stays
    /// here: the broker remembers a producer's last [`IDEMPOTENT_BATCHES_IN_FLIGHT_MAX`] batches, not its
    /// unanswered ones, so the window, not the unanswered count, must stay within that number for the retry
    /// to be recognised.
    window: VecDeque<(u64, bool)>,
}

impl PartitionQueue {
    fn in_window(&self, batch_id: u64) -> bool {
        self.window.binary_search_by_key(&batch_id, |&(id, _)| id).is_ok()
    }

    /// Counts a batch being sent in the window, once.
    fn sent(&mut self, batch_id: u64) {
        if let Err(position) = self.window.binary_search_by_key(&batch_id, |&(id, _)| id) {
            self.window.insert(position, (batch_id, false));
        }
    }

    /// A batch is settled; the window then starts at the oldest batch still unsettled.
    fn settled(&mut self, batch_id: u64) {
        if let Ok(position) = self.window.binary_search_by_key(&batch_id, |&(id, _)| id) {
            self.window[position].1 = true;
        }
        while self.window.front().is_some_and(|&(_, settled)| settled) {
            self.window.pop_front();
        }
    }
}

/// The state of a partition's last batch, for a record about to be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBatch {
    /// No batch, or the last one is sealed.
    None,
    Room,
    /// Open, but the record does not fit.
    Full,
}

/// A record ready to be appended, already checked and given its timestamp.
pub(crate) struct NewRecord<'a> {
    pub record: &'a ProducerRecord,
    pub timestamp_ms: i64,
    /// Permits of the producer's buffer semaphore the caller took for it (and forgot); the batch gives them
    /// back when it is dropped.
    pub buffer_permits: usize,
}

pub(crate) struct Accumulator {
    /// Counted in uncompressed bytes: a sealed batch is never larger (see `BatchBuilder::size_bytes`).
    batch_bytes_max: usize,
    /// The codec batches are compressed with when sealed.
    compression: Compression,
    linger: Duration,
    delivery_timeout: Duration,
    /// The producer's buffer semaphore, which batches give their records' permits back to (`None` in tests).
    buffer: Option<Arc<Semaphore>>,
    queues: FastMap<TopicPartition, PartitionQueue>,
    /// The partition keyless records of each topic currently go to, and the topic's partition count.
    sticky: FastMap<String, Sticky>,
    /// Completion signal of every batch not yet acknowledged or failed, for `flush`.
    incomplete: BTreeMap<u64, watch::Receiver<()>>,
    next_batch_id: u64,
    /// Set for an idempotent producer.
    identity: Option<Identity>,
    /// The partition the last record went to (see [`Accumulator::partition_key`]).
    last_key: Option<TopicPartition>,
    /// The sequence the next sealed batch of each partition gets; kept while the partition's queue is empty.
    sequences: FastMap<TopicPartition, i32>,
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
        buffer: Option<Arc<Semaphore>>,
    ) -> Accumulator {
        Accumulator {
            identity,
            buffer,
            last_key: None,
            sequences: FastMap::default(),
            epoch_bump_wanted: false,
            fatal: None,
            batch_bytes_max,
            compression: Compression::None,
            linger,
            delivery_timeout,
            queues: FastMap::default(),
            sticky: FastMap::default(),
            incomplete: BTreeMap::new(),
            next_batch_id: 0,
            flushing: 0,
            closing: false,
        }
    }

    /// Compresses every batch started from now on with `compression`.
    pub fn with_compression(mut self, compression: Compression) -> Accumulator {
        self.compression = compression;
        self
    }

    /// Whether a record of `size_bound` bytes can ever fit in a batch of `batch_bytes_max`.
    pub fn fits_in_a_batch(size_bound: usize, batch_bytes_max: usize) -> bool {
        BATCH_HEADER_BYTES + size_bound <= batch_bytes_max
    }

    /// Appends a record to `partition`, or for `None` (keyless, no explicit partition) to the topic's sticky
    /// partition among `partitions`. The caller has checked that the record fits in a batch. `now` is read only
    /// when a batch is started.
    pub fn append(
        &mut self,
        partition: Option<u32>,
        partitions: u32,
        new: NewRecord<'_>,
        now: impl FnOnce() -> Instant,
    ) -> Appended {
        let record = new.record;
        let size_bound = record.size_bound();
        let mut wake_sender = false;
        let partition = match partition {
            Some(p) => p,
            None => {
                let sticky = self.sticky_partition(&record.topic, partitions);
                let tp = self.partition_key(&record.topic, sticky);
                let full = self.open_batch(&tp, size_bound) == OpenBatch::Full;
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
        match self.open_batch(&tp, size_bound) {
            OpenBatch::Room => {}
            state => {
                if state == OpenBatch::Full {
                    self.seal_last(&tp);
                }
                self.start_batch(&tp, now());
                wake_sender = true;
            }
        }
        let batch_bytes_max = self.batch_bytes_max;
        let queue = self.queues.get_mut(&tp).expect("queue exists after start_batch");
        let batch = queue.batches.back_mut().expect("open batch exists");
        let builder = batch.builder.as_mut().expect("last batch is open");
        if record.headers.is_empty() {
            builder.push(new.timestamp_ms, record.key.as_deref(), record.value.as_deref(), &[]);
        } else {
            let headers: Vec<(&str, Option<&[u8]>)> =
                record.headers.iter().map(|h| (h.key.as_str(), h.value.as_deref())).collect();
            builder.push(new.timestamp_ms, record.key.as_deref(), record.value.as_deref(), &headers);
        }
        let delivery = batch.completion.record(batch.record_count, new.timestamp_ms);
        batch.record_count += 1;
        batch.buffer.permits += new.buffer_permits;
        if builder.size_bytes() + BatchBuilder::record_size_bound(0, 0, 0) > batch_bytes_max {
            // Not even an empty record fits any more: the batch is as full as it gets.
            let next_sequence = self.sequences.entry(tp.clone()).or_insert(0);
            batch.seal(self.identity, next_sequence);
            wake_sender = true;
            self.advance_sticky_from(&tp);
        }
        self.last_key = Some(tp);
        Appended { wake_sender, delivery }
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
        let sticky = match self.sticky.get_mut(topic) {
            Some(sticky) => sticky,
            None => {
                // Topics start on different partitions so that several keyless topics do not all load
                // partition 0.
                let start = (self.next_batch_id % u64::from(partitions)) as u32;
                self.sticky.entry(topic.to_owned()).or_insert(Sticky { partition: start, partitions })
            }
        };
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

    /// Whether `tp`'s last batch is open, and if so whether a record of `size_bound` bytes still fits.
    fn open_batch(&self, tp: &TopicPartition, size_bound: usize) -> OpenBatch {
        let open = self.queues.get(tp).and_then(|q| q.batches.back()).and_then(|b| b.builder.as_ref());
        match open {
            None => OpenBatch::None,
            Some(builder) if builder.size_bytes() + size_bound <= self.batch_bytes_max => OpenBatch::Room,
            Some(_) => OpenBatch::Full,
        }
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
            builder: Some(
                BatchBuilder::with_capacity(self.batch_bytes_max.min(64 * 1024)).with_compression(self.compression),
            ),
            encoded: None,
            record_count: 0,
            completion: BatchCompletion::new(Arc::from(tp.topic.as_str()), tp.partition),
            created_at: now,
            deadline: now + self.delivery_timeout,
            retry_at: None,
            attempts: 0,
            last_error: None,
            sequence: None,
            maybe_written: false,
            buffer: BufferSpace { semaphore: self.buffer.clone(), permits: 0 },
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
            // A retry is already in the window.
            queue.in_window(front.id) || queue.window.len() < self.in_flight_max()
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
        queue.sent(batch.id);
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
            queue.settled(batch_id);
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
                    let batch = queue.batches.remove(index).expect("index is in range");
                    queue.settled(batch.id);
                    expired.push(batch);
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
            // No batch left is in any log: the new epoch's window starts empty.
            queue.window.clear();
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
