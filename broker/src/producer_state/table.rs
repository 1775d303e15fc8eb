//! `ProducerStateTable`: the producer state of one partition, and the rules that check, apply, truncate,
//! replay and expire it.

use std::collections::{BTreeMap, VecDeque};

use rill_proto::batch::BatchHeader;

use super::batch::{ProducerBatch, Verdict, next_sequence};
use super::{PRODUCER_BATCHES_KEPT, PRODUCER_IDS_PER_PARTITION_MAX};

/// One batch a producer wrote to this partition: its sequence range and where it landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRecord {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: u64,
    pub last_offset: u64,
}

/// What the partition remembers of one producer id.
///
/// Invariants: 1 to [`PRODUCER_BATCHES_KEPT`] batches, all written in `epoch`, in increasing offset order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub(super) epoch: i16,
    pub(super) batches: VecDeque<BatchRecord>,
    /// The largest batch timestamp seen from this producer; expiry measures idleness from it.
    pub(super) last_timestamp_ms: i64,
}

impl ProducerEntry {
    pub fn epoch(&self) -> i16 {
        self.epoch
    }

    /// The producer's last batches in this partition, oldest first.
    pub fn batches(&self) -> &VecDeque<BatchRecord> {
        &self.batches
    }

    pub fn last_timestamp_ms(&self) -> i64 {
        self.last_timestamp_ms
    }

    fn last_batch(&self) -> &BatchRecord {
        self.batches.back().expect("a producer entry holds at least one batch")
    }

    /// The rules for a producer this partition knows; see [`ProducerStateTable::check`].
    fn check(&self, epoch: i16, first_sequence: i32, last_sequence: i32) -> Verdict {
        if epoch < self.epoch {
            return Verdict::ProducerFenced { current_epoch: self.epoch };
        }
        if epoch > self.epoch {
            // A producer that bumped its epoch starts its sequence again.
            return if first_sequence == 0 { Verdict::Append } else { Verdict::OutOfOrderSequence { expected: 0 } };
        }
        let retried =
            self.batches.iter().find(|b| b.first_sequence == first_sequence && b.last_sequence == last_sequence);
        if let Some(original) = retried {
            return Verdict::Duplicate { base_offset: original.base_offset, last_offset: original.last_offset };
        }
        let expected = next_sequence(self.last_batch().last_sequence);
        if first_sequence == expected { Verdict::Append } else { Verdict::OutOfOrderSequence { expected } }
    }

    fn push(&mut self, epoch: i16, record: BatchRecord, timestamp_ms: i64) {
        if epoch != self.epoch {
            // Sequences restart with each epoch, so batches of another epoch can never be retried against this
            // one. The epoch is taken even when it is older, so that every replica applying the same log holds the
            // same state (a leader never appends a fenced batch, so this happens only on a diverged table).
            self.epoch = epoch;
            self.batches.clear();
        }
        self.batches.push_back(record);
        if self.batches.len() > PRODUCER_BATCHES_KEPT {
            self.batches.pop_front();
        }
        self.last_timestamp_ms = self.last_timestamp_ms.max(timestamp_ms);
    }
}

/// A batch as it lies in the log: its producer fields, its offsets, and the timestamp the producer state keeps
/// for expiry. Leaders, followers and replay all build it with [`AppendedBatch::from_header`], so that every
/// replica records the same timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedBatch {
    pub batch: ProducerBatch,
    pub base_offset: u64,
    pub last_offset: u64,
    pub timestamp_ms: i64,
}

impl AppendedBatch {
    /// From the header of a stored batch (with its base offset stamped). The timestamp is the batch's max
    /// timestamp: it travels with the batch, unlike a replica's clock.
    pub fn from_header(header: &BatchHeader) -> Self {
        AppendedBatch {
            batch: ProducerBatch::from_header(header),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            timestamp_ms: header.max_timestamp,
        }
    }
}

/// The idempotent-producer state of one partition: per producer id, its epoch and its last
/// [`PRODUCER_BATCHES_KEPT`] batches. Pure: no IO, no clock reads; time comes in as arguments.
///
/// The leader calls [`check`](Self::check) before appending a batch and [`apply`](Self::apply) after; check,
/// append and apply happen under one lock, so no other batch of the partition slips between them. Followers
/// call `apply` for every batch they replicate, so a new leader deduplicates exactly as the old one did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerStateTable {
    pub(super) producers: BTreeMap<i64, ProducerEntry>,
    /// Every batch below this offset has been applied (or is covered by the snapshot the table came from);
    /// batches are applied in strictly increasing offset order from here.
    pub(super) end_offset: u64,
}

impl ProducerStateTable {
    /// An empty table for a log that starts (or is replayed from) `offset`.
    pub fn starting_at(offset: u64) -> Self {
        ProducerStateTable { producers: BTreeMap::new(), end_offset: offset }
    }

    /// The offset after the last batch applied: the next batch applied must start at or after it.
    pub fn end_offset(&self) -> u64 {
        self.end_offset
    }

    pub fn producer(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub fn producers(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(&id, entry)| (id, entry))
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Decides what the leader does with `batch` before appending it. The rules, in order:
    ///
    /// 1. No idempotence (`producer_id == -1`): [`Verdict::Append`]; such batches leave no state.
    /// 2. Producer fields that no valid batch has: [`Verdict::InvalidProducerFields`].
    /// 3. Unknown producer id: it must start at sequence 0, else [`Verdict::UnknownProducerId`]; a new id beyond
    ///    [`PRODUCER_IDS_PER_PARTITION_MAX`] gets [`Verdict::TooManyProducers`].
    /// 4. An epoch older than the stored one: [`Verdict::ProducerFenced`].
    /// 5. A newer epoch: the producer restarted its sequence, so the batch must start at 0, else
    ///    [`Verdict::OutOfOrderSequence`] expecting 0. The older epoch's batches are forgotten on `apply`.
    /// 6. The same epoch and exactly the first and last sequence of one of the kept batches:
    ///    [`Verdict::Duplicate`] with that batch's offsets.
    /// 7. The same epoch and the base sequence follows the last batch's last sequence (`i32::MAX` is followed
    ///    by 0): [`Verdict::Append`]; anything else, including a retry of a batch older than the kept ones or
    ///    one that overlaps a kept batch without matching it, is [`Verdict::OutOfOrderSequence`].
    pub fn check(&self, batch: &ProducerBatch) -> Verdict {
        if !batch.is_idempotent() {
            return Verdict::Append;
        }
        let (first_sequence, last_sequence) = match batch.sequence_range() {
            Ok(range) => range,
            Err(reason) => return Verdict::InvalidProducerFields { reason },
        };
        match self.producers.get(&batch.producer_id) {
            Some(entry) => entry.check(batch.producer_epoch, first_sequence, last_sequence),
            None if first_sequence != 0 => Verdict::UnknownProducerId,
            None if self.producers.len() >= PRODUCER_IDS_PER_PARTITION_MAX => Verdict::TooManyProducers,
            None => Verdict::Append,
        }
    }

    /// Records a batch that was appended at `base_offset..=last_offset`, on the leader after
    /// [`check`](Self::check) answered `Append`, and on followers for every replicated batch. Call it for
    /// every batch, with or without idempotence, in log order; `timestamp_ms` is the batch's max timestamp
    /// (see [`AppendedBatch::from_header`]).
    ///
    /// It never refuses: it records what the log holds. A batch with invalid producer fields leaves no state
    /// (a leader never appends one). A new producer beyond [`PRODUCER_IDS_PER_PARTITION_MAX`] evicts the one
    /// idle longest; a leader refuses such producers in `check`, so only a follower whose expiries lag its
    /// leader's can get here.
    ///
    /// # Panics
    ///
    /// If the offsets go backwards (`base_offset` below [`end_offset`](Self::end_offset), or after
    /// `last_offset`): the shell applied batches out of log order, a broken invariant.
    pub fn apply(&mut self, batch: &ProducerBatch, base_offset: u64, last_offset: u64, timestamp_ms: i64) {
        assert!(base_offset <= last_offset, "batch offsets {base_offset}..={last_offset} go backwards");
        assert!(
            base_offset >= self.end_offset,
            "batch at offset {base_offset} applied after offset {}: producer state applied out of log order",
            self.end_offset
        );
        assert!(last_offset < u64::MAX, "offset {last_offset} out of range");
        self.end_offset = last_offset + 1;
        if !batch.is_idempotent() {
            return;
        }
        let Ok((first_sequence, last_sequence)) = batch.sequence_range() else {
            return;
        };
        let record = BatchRecord { first_sequence, last_sequence, base_offset, last_offset };
        if let Some(entry) = self.producers.get_mut(&batch.producer_id) {
            entry.push(batch.producer_epoch, record, timestamp_ms);
            return;
        }
        if self.producers.len() >= PRODUCER_IDS_PER_PARTITION_MAX {
            self.evict_idle_longest();
        }
        let entry = ProducerEntry {
            epoch: batch.producer_epoch,
            batches: VecDeque::from([record]),
            last_timestamp_ms: timestamp_ms,
        };
        self.producers.insert(batch.producer_id, entry);
    }

    /// Applies batches read back from the log after a snapshot (or from the log start), in order. Batches
    /// wholly below [`end_offset`](Self::end_offset) are already covered and skipped.
    ///
    /// # Errors
    ///
    /// A batch that straddles `end_offset` or goes backwards: the snapshot and the log disagree, and the shell
    /// should rebuild from an older snapshot or from the log start.
    pub fn replay(&mut self, batches: impl IntoIterator<Item = AppendedBatch>) -> Result<(), String> {
        for appended in batches {
            if appended.last_offset < appended.base_offset {
                return Err(format!(
                    "replayed batch offsets {}..={} go backwards",
                    appended.base_offset, appended.last_offset
                ));
            }
            if appended.last_offset < self.end_offset {
                continue;
            }
            if appended.base_offset < self.end_offset || appended.last_offset == u64::MAX {
                return Err(format!(
                    "replayed batch {}..={} straddles the producer state's end offset {}",
                    appended.base_offset, appended.last_offset, self.end_offset
                ));
            }
            self.apply(&appended.batch, appended.base_offset, appended.last_offset, appended.timestamp_ms);
        }
        Ok(())
    }

    /// Forgets every batch that reaches `offset` or beyond, because the log was truncated to end there, and
    /// the producers left with no batch. Returns whether anything was forgotten.
    ///
    /// The result is what the table knows, not necessarily what it would hold had the cut batches never been
    /// appended: they may have pushed older batches out of a producer's window, or replaced an older epoch. So
    /// when this returns `true` the shell rebuilds the exact state: [`decode`](Self::decode) the latest
    /// snapshot at or below `offset` and [`replay`](Self::replay) the log from there.
    pub fn truncate_to(&mut self, offset: u64) -> bool {
        let mut forgotten = false;
        self.producers.retain(|_, entry| {
            while entry.batches.back().is_some_and(|batch| batch.last_offset >= offset) {
                entry.batches.pop_back();
                forgotten = true;
            }
            !entry.batches.is_empty()
        });
        self.end_offset = self.end_offset.min(offset);
        forgotten
    }

    /// Removes the producers whose last batch timestamp is more than `idle_ms_max` before `now_ms` (wall-clock
    /// milliseconds since the Unix epoch, the clock of batch timestamps). Returns how many were removed.
    ///
    /// A producer back after expiring starts again at sequence 0 or gets `UNKNOWN_PRODUCER_ID`.
    pub fn expire(&mut self, now_ms: i64, idle_ms_max: u64) -> usize {
        let idle_ms_max = i64::try_from(idle_ms_max).unwrap_or(i64::MAX);
        let before = self.producers.len();
        self.producers.retain(|_, entry| now_ms.saturating_sub(entry.last_timestamp_ms) <= idle_ms_max);
        before - self.producers.len()
    }

    fn evict_idle_longest(&mut self) {
        let idle_longest = self.producers.iter().min_by_key(|(id, entry)| (entry.last_timestamp_ms, **id));
        if let Some((&id, _)) = idle_longest {
            self.producers.remove(&id);
        }
    }
}
