//! What the producer state reads from a record batch, the sequence arithmetic (sequences wrap from `i32::MAX`
//! to 0), and the verdict a leader acts on before appending.

pub use rill_proto::batch::advance_sequence;
use rill_proto::batch::{BatchHeader, NO_PRODUCER_ID};

/// The producer fields of one record batch header: who wrote it and which sequence numbers its records carry.
/// A batch with `producer_id == NO_PRODUCER_ID` (-1) comes from a producer without idempotence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The sequence of the batch's first record; the others follow one by one.
    pub base_sequence: i32,
    pub record_count: u32,
}

impl ProducerBatch {
    pub fn from_header(header: &BatchHeader) -> Self {
        ProducerBatch {
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
            record_count: header.record_count,
        }
    }

    /// Whether the batch comes from an idempotent producer, whose batches the state deduplicates and orders.
    pub fn is_idempotent(&self) -> bool {
        self.producer_id != NO_PRODUCER_ID
    }

    /// The first and last sequence of an idempotent batch, or why its producer fields make no sense: a producer
    /// id below -1, a negative epoch or base sequence, or no records. Such a batch never enters the state.
    pub fn sequence_range(&self) -> Result<(i32, i32), &'static str> {
        if self.producer_id < 0 {
            return Err("negative producer id");
        }
        if self.producer_epoch < 0 {
            return Err("negative producer epoch");
        }
        if self.base_sequence < 0 {
            return Err("negative base sequence");
        }
        if self.record_count == 0 || self.record_count > i32::MAX as u32 {
            return Err("record count out of range");
        }
        Ok((self.base_sequence, advance_sequence(self.base_sequence, self.record_count - 1)))
    }
}

/// The sequence that must follow `sequence`.
pub fn next_sequence(sequence: i32) -> i32 {
    advance_sequence(sequence, 1)
}

/// What the leader must do with a batch, decided by [`ProducerStateTable::check`] before appending it.
///
/// [`ProducerStateTable::check`]: super::ProducerStateTable::check
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A new batch in order (or one without idempotence): append it, then `apply` it.
    Append,
    /// A retry of one of the producer's last [`PRODUCER_BATCHES_KEPT`] batches: append nothing and answer with
    /// the offsets the original got.
    ///
    /// [`PRODUCER_BATCHES_KEPT`]: super::PRODUCER_BATCHES_KEPT
    Duplicate { base_offset: u64, last_offset: u64 },
    /// The batch does not continue the producer's sequence: `OUT_OF_ORDER_SEQUENCE`. `expected` is the base
    /// sequence that would have been accepted.
    OutOfOrderSequence { expected: i32 },
    /// The batch's epoch is older than the producer's current one: a newer incarnation of the producer exists,
    /// so this one is a zombie (`PRODUCER_FENCED`).
    ProducerFenced { current_epoch: i16 },
    /// The partition knows nothing of this producer id (it never wrote here, or it expired) and the batch does
    /// not start at sequence 0: `UNKNOWN_PRODUCER_ID`. The producer must re-initialise.
    UnknownProducerId,
    /// The partition already tracks [`PRODUCER_IDS_PER_PARTITION_MAX`] producers; a new one is refused until
    /// idle ones expire.
    ///
    /// [`PRODUCER_IDS_PER_PARTITION_MAX`]: super::PRODUCER_IDS_PER_PARTITION_MAX
    TooManyProducers,
    /// The producer fields are not those of any valid batch (see [`ProducerBatch::sequence_range`]).
    InvalidProducerFields { reason: &'static str },
}
