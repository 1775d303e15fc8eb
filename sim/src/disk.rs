//! A partition replica's simulated disk: the log as batches with a durable (fsynced) prefix and a volatile
//! tail, the leader-epoch checkpoint and the HW checkpoint. A crash keeps only the durable prefix; the write
//! in progress may be torn, and recovery discards a torn batch as the real recovery does (CRC mismatch).

use rill_broker::producer_state::{AppendedBatch, ProducerBatch, ProducerStateTable};
use rill_broker::replication::{BatchMeta, EpochEntry, EpochHistory, RecoveredLog};
use rill_tests::checker::jepsen::Value;

/// A stored record batch: what replication and the producer table read from its header, and its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SimBatch {
    pub(crate) base_offset: u64,
    pub(crate) leader_epoch: u32,
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) base_sequence: i32,
    pub(crate) timestamp_ms: i64,
    pub(crate) values: Vec<Value>,
}

impl SimBatch {
    pub(crate) fn last_offset(&self) -> u64 {
        self.base_offset + self.values.len() as u64 - 1
    }

    pub(crate) fn meta(&self) -> BatchMeta {
        BatchMeta {
            base_offset: self.base_offset,
            last_offset: self.last_offset(),
            partition_leader_epoch: self.leader_epoch,
        }
    }

    pub(crate) fn producer_batch(&self) -> ProducerBatch {
        ProducerBatch {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            record_count: self.values.len() as u32,
        }
    }

    pub(crate) fn appended(&self) -> AppendedBatch {
        AppendedBatch {
            batch: self.producer_batch(),
            base_offset: self.base_offset,
            last_offset: self.last_offset(),
            timestamp_ms: self.timestamp_ms,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Disk {
    pub(crate) log: Vec<SimBatch>,
    /// Everything below this offset is fsynced.
    pub(crate) durable_offset: u64,
    /// The offset an fsync in progress will make durable (cut back by truncations during it).
    pub(crate) flush_upto: Option<u64>,
    /// Written atomically (write, fsync, rename), so always whole and durable.
    pub(crate) epochs: Vec<EpochEntry>,
    pub(crate) high_watermark_checkpoint: u64,
}

impl Disk {
    pub(crate) fn log_end_offset(&self) -> u64 {
        self.log.last().map_or(0, |b| b.last_offset() + 1)
    }

    pub(crate) fn append(&mut self, batch: SimBatch) {
        assert_eq!(batch.base_offset, self.log_end_offset(), "appends continue the log");
        self.log.push(batch);
    }

    /// Cuts the log to end at `offset`, which must fall on a batch boundary (the protocol truncates only at
    /// epoch starts, and every replica holds the same batches of an epoch).
    pub(crate) fn truncate(&mut self, offset: u64) {
        self.log.retain(|b| b.base_offset < offset);
        assert!(self.log_end_offset() == offset, "truncation to {offset} falls inside a batch");
        self.durable_offset = self.durable_offset.min(offset);
        self.flush_upto = self.flush_upto.map(|upto| upto.min(offset));
    }

    /// The process died: unsynced batches are gone. Returns whether the write in progress was torn (a partial
    /// batch on disk, which recovery finds by its CRC and discards).
    pub(crate) fn crash(&mut self, torn: bool) -> bool {
        let durable = self.durable_offset;
        let had_tail = self.log_end_offset() > durable;
        self.log.retain(|b| b.last_offset() < durable);
        assert_eq!(self.log_end_offset(), durable, "fsyncs cover whole batches");
        self.flush_upto = None;
        had_tail && torn
    }

    /// What the shell recovers from this disk after a restart, as `Partition::new` builds it.
    pub(crate) fn recover(&self) -> RecoveredLog {
        RecoveredLog {
            log_start_offset: 0,
            log_end_offset: self.log_end_offset(),
            flushed_offset: self.durable_offset,
            high_watermark: self.high_watermark_checkpoint,
            epochs: EpochHistory::from_entries(self.epochs.clone()).expect("the epoch checkpoint is well formed"),
        }
    }

    /// The producer state of the whole log, rebuilt by replay (the real shell starts from a snapshot, which
    /// gives the same table).
    pub(crate) fn producer_table(&self) -> ProducerStateTable {
        let mut table = ProducerStateTable::starting_at(0);
        table.replay(self.log.iter().map(SimBatch::appended)).expect("the log replays");
        table
    }

    /// Each record's offset and value.
    pub(crate) fn records(&self) -> Vec<(u64, Value)> {
        self.log.iter().flat_map(|b| b.values.iter().enumerate().map(|(i, v)| (b.base_offset + i as u64, *v))).collect()
    }

    /// Whether the record at `offset` is durable and is `value`.
    pub(crate) fn holds_durably(&self, offset: u64, value: Value) -> bool {
        offset < self.durable_offset
            && self
                .log
                .iter()
                .find(|b| b.base_offset <= offset && offset <= b.last_offset())
                .is_some_and(|b| b.values[(offset - b.base_offset) as usize] == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base_offset: u64, records: u64) -> SimBatch {
        SimBatch {
            base_offset,
            leader_epoch: 1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            timestamp_ms: 0,
            values: (0..records).map(|i| (1, base_offset + i)).collect(),
        }
    }

    #[test]
    fn a_crash_keeps_only_what_was_fsynced() {
        let mut disk = Disk::default();
        disk.append(batch(0, 2));
        disk.durable_offset = 2;
        disk.append(batch(2, 3));
        assert!(disk.crash(true), "the unsynced batch was being written");
        assert_eq!(disk.log_end_offset(), 2);
        assert_eq!(disk.recover().log_end_offset, 2);
        assert!(!disk.crash(true), "nothing unsynced is left to tear");
    }

    #[test]
    fn a_truncation_during_an_fsync_limits_what_it_makes_durable() {
        let mut disk = Disk::default();
        disk.append(batch(0, 2));
        disk.append(batch(2, 2));
        disk.flush_upto = Some(4);
        disk.truncate(2);
        assert_eq!(disk.flush_upto, Some(2), "the fsync cannot vouch for records written after the cut");
        assert!(!disk.holds_durably(0, (1, 0)), "not fsynced yet");
    }

    #[test]
    #[should_panic(expected = "falls inside a batch")]
    fn a_truncation_inside_a_batch_is_refused() {
        let mut disk = Disk::default();
        disk.append(batch(0, 3));
        disk.truncate(1);
    }

    #[test]
    fn the_producer_table_replays_the_log() {
        let mut disk = Disk::default();
        let mut idempotent = batch(0, 2);
        (idempotent.producer_id, idempotent.producer_epoch, idempotent.base_sequence) = (7, 0, 0);
        disk.append(idempotent);
        let table = disk.producer_table();
        assert_eq!(table.end_offset(), 2);
        assert!(table.producer(7).is_some());
    }
}
