//! The partition's idempotent-producer state (`producer_state::ProducerStateTable`) kept in step with its log:
//! recovered from the latest snapshot plus the batches after it, snapshotted when a segment rolls and at a
//! clean close, rebuilt the same way after a truncation, and trimmed by retention and expiry.

use rill_proto::batch;
use rill_storage::{Log, StorageError};

use crate::producer_state::{
    AppendedBatch, ProducerStateTable, snapshot_file_name, snapshot_to_load, snapshots_to_delete_on_retention,
    snapshots_to_delete_on_truncation,
};

/// Applies the stored batches from the table's end offset (or the log start, if later) up to `upto`.
fn replay_log(log: &Log, table: &mut ProducerStateTable, upto: u64) -> Result<(), String> {
    let mut offset = table.end_offset().max(log.log_start_offset());
    while offset < upto {
        let read = log.read(offset, 8 << 20, upto).map_err(|e| e.to_string())?;
        let mut appended = Vec::new();
        for item in batch::split_batches(&read.records) {
            let (header, _) = item.map_err(|e| e.to_string())?;
            appended.push(AppendedBatch::from_header(&header));
        }
        table.replay(appended)?;
        if read.next_offset <= offset {
            return Err(format!("no progress replaying the log at offset {offset}"));
        }
        offset = read.next_offset;
    }
    Ok(())
}

/// The producer state of the log's first `upto` offsets: the latest snapshot at or below `upto` plus the log
/// after it; from the log start alone when no snapshot is usable.
pub(crate) fn load_producers(log: &Log, upto: u64, partition: &str) -> Result<ProducerStateTable, StorageError> {
    let offsets = log.producer_snapshot_offsets()?;
    if let Some(at) = snapshot_to_load(&offsets, upto) {
        let loaded = log.read_producer_snapshot(at)?.ok_or_else(|| "snapshot vanished".to_string()).and_then(|bytes| {
            let mut table = ProducerStateTable::decode_file(&snapshot_file_name(at), &bytes)?;
            replay_log(log, &mut table, upto)?;
            Ok(table)
        });
        match loaded {
            Ok(table) => return Ok(table),
            Err(e) => {
                tracing::warn!(partition, snapshot = at, error = %e, "producer snapshot unusable; replaying the whole log")
            }
        }
    }
    let mut table = ProducerStateTable::starting_at(log.log_start_offset());
    replay_log(log, &mut table, upto).map_err(|reason| StorageError::Corrupt {
        segment: log.dir().to_path_buf(),
        offset: table.end_offset(),
        reason: format!("cannot rebuild the producer state: {reason}"),
    })?;
    Ok(table)
}

/// Writes the table as the snapshot at its end offset.
pub(super) fn write_snapshot(log: &Log, table: &ProducerStateTable) -> Result<(), StorageError> {
    log.write_producer_snapshot(table.end_offset(), &table.encode(table.end_offset()))
}

/// After the log was cut to end at `log_end`: drops the snapshots beyond it and rebuilds the state if the cut
/// removed batches it knew.
pub(super) fn after_truncation(log: &Log, table: &mut ProducerStateTable, partition: &str) -> Result<(), StorageError> {
    let log_end = log.end_offset();
    for offset in snapshots_to_delete_on_truncation(&log.producer_snapshot_offsets()?, log_end) {
        log.delete_producer_snapshot(offset)?;
    }
    if table.end_offset() < log.log_start_offset() || log_end < log.log_start_offset() {
        *table = ProducerStateTable::starting_at(log.log_start_offset());
    } else if table.truncate_to(log_end) {
        *table = load_producers(log, log_end, partition)?;
    }
    Ok(())
}

/// After retention advanced the log start: drops snapshots no restart can use any more.
pub(super) fn after_retention(log: &Log) -> Result<(), StorageError> {
    for offset in snapshots_to_delete_on_retention(&log.producer_snapshot_offsets()?, log.log_start_offset()) {
        log.delete_producer_snapshot(offset)?;
    }
    Ok(())
}
