//! Specifications of the producer state, one file per area, over a shared harness: a partition that runs the
//! leader's check-append-apply protocol over an in-memory log of batch metadata.

mod expiry;
mod properties;
mod replication;
mod sequence;
mod snapshot;

use super::*;

/// The producer id most tests write with.
pub(super) const PRODUCER: i64 = 7;
/// A batch timestamp far from the edges of the clock.
pub(super) const T0_MS: i64 = 1_700_000_000_000;

pub(super) fn batch(producer_id: i64, producer_epoch: i16, base_sequence: i32, record_count: u32) -> ProducerBatch {
    ProducerBatch { producer_id, producer_epoch, base_sequence, record_count }
}

/// A batch without idempotence.
pub(super) fn plain_batch(record_count: u32) -> ProducerBatch {
    batch(-1, -1, -1, record_count)
}

/// One partition as its leader sees it: the producer state and the batches appended, in log order.
#[derive(Debug, Clone)]
pub(super) struct Partition {
    pub(super) table: ProducerStateTable,
    pub(super) log: Vec<AppendedBatch>,
    pub(super) log_end_offset: u64,
}

impl Partition {
    pub(super) fn new() -> Self {
        Partition { table: ProducerStateTable::starting_at(0), log: Vec::new(), log_end_offset: 0 }
    }

    /// The leader's produce path: check, and on `Append` append the batch at the log end and apply it.
    pub(super) fn produce(&mut self, batch: ProducerBatch, timestamp_ms: i64) -> Verdict {
        let verdict = self.table.check(&batch);
        if verdict == Verdict::Append {
            let base_offset = self.log_end_offset;
            let last_offset = base_offset + u64::from(batch.record_count) - 1;
            self.table.apply(&batch, base_offset, last_offset, timestamp_ms);
            self.log.push(AppendedBatch { batch, base_offset, last_offset, timestamp_ms });
            self.log_end_offset = last_offset + 1;
        }
        verdict
    }

    /// Produces a batch that must be appended, and returns its offsets.
    pub(super) fn append(&mut self, batch: ProducerBatch, timestamp_ms: i64) -> (u64, u64) {
        assert_eq!(self.produce(batch, timestamp_ms), Verdict::Append, "{batch:?} should be appended");
        let appended = self.log.last().expect("just appended");
        (appended.base_offset, appended.last_offset)
    }

    /// Appends `count` in-order batches of `records` records each for `producer_id` in `epoch`, starting at
    /// `first_sequence`; returns each one's batch and offsets.
    pub(super) fn append_run(
        &mut self,
        producer_id: i64,
        epoch: i16,
        first_sequence: i32,
        count: usize,
        records: u32,
    ) -> Vec<(ProducerBatch, (u64, u64))> {
        let mut sequence = first_sequence;
        (0..count)
            .map(|_| {
                let b = batch(producer_id, epoch, sequence, records);
                sequence = advance_sequence(sequence, records);
                (b, self.append(b, T0_MS))
            })
            .collect()
    }
}

/// A follower's table: every batch of `log` applied in order, as replication delivers them.
pub(super) fn follower_of(log: &[AppendedBatch]) -> ProducerStateTable {
    let mut table = ProducerStateTable::starting_at(0);
    for appended in log {
        table.apply(&appended.batch, appended.base_offset, appended.last_offset, appended.timestamp_ms);
    }
    table
}
