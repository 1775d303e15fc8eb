//! Reads a partition back through its leader with raw Fetch calls, so each record keeps the leader epoch
//! stamped into its batch (the client library's consumer does not expose it).

use std::time::Duration;

use anyhow::{Context, bail};
use rill_proto::v1::ErrorCode;

use super::{LogRecord, decode_log_records};
use crate::rpc;

/// Pause before asking again after a leader change or an unreachable node.
const RETRY_BACKOFF_MS: u64 = 100;

/// A partition's records from its log start to its high watermark, as its leader served them.
#[derive(Debug, Clone)]
pub struct PartitionLog {
    pub topic: String,
    pub partition: u32,
    pub log_start_offset: u64,
    /// The HW of the last fetch answer: the read covers everything below it.
    pub high_watermark: u64,
    /// Ascending by offset.
    pub records: Vec<LogRecord>,
}

impl PartitionLog {
    /// The record at `offset`, if read.
    pub fn record_at(&self, offset: u64) -> Option<&LogRecord> {
        self.records.binary_search_by_key(&offset, |r| r.offset).ok().map(|i| &self.records[i])
    }
}

/// Reads `topic`-`partition` from its log start up to its HW through its current leader, found by asking the
/// nodes at `addresses` and trusting the one reporting the highest leader epoch. Leader changes and
/// unreachable nodes are retried until `within` has passed. Call it once writes have stopped, or the HW it
/// stops at is already old.
///
/// # Errors
///
/// If no leader serves the whole range in time (the message gives the last failure), or a batch is corrupt.
pub async fn read_partition(
    addresses: &[String],
    topic: &str,
    partition: u32,
    within: Duration,
) -> anyhow::Result<PartitionLog> {
    let deadline = tokio::time::Instant::now() + within;
    let mut log = PartitionLog {
        topic: topic.to_owned(),
        partition,
        log_start_offset: 0,
        high_watermark: 0,
        records: Vec::new(),
    };
    let mut offset = 0u64;
    let mut last_failure = String::from("nothing tried");
    loop {
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "could not read {topic}-{partition} within {within:?} (at offset {offset}); last failure: {last_failure}"
            );
        }
        match read_step(addresses, &mut log, &mut offset).await {
            Ok(true) => return Ok(log),
            Ok(false) => continue,
            Err(e) => {
                last_failure = format!("{e:#}");
                tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
            }
        }
    }
}

/// One fetch from the current leader at `offset`. `Ok(true)` when the read has reached the HW.
async fn read_step(addresses: &[String], log: &mut PartitionLog, offset: &mut u64) -> anyhow::Result<bool> {
    let (topic, partition) = (log.topic.clone(), log.partition);
    let leader = find_leader(addresses, &topic, partition).await?;
    let result = rpc::fetch(&leader, &topic, partition, *offset).await?;
    match rpc::error_code(result.error.as_ref()) {
        ErrorCode::None => {}
        // A fresh read may start below the log start (retention); begin there instead.
        ErrorCode::OffsetOutOfRange if log.records.is_empty() && *offset < result.log_start_offset => {
            *offset = result.log_start_offset;
            return Ok(false);
        }
        code => bail!("fetch {topic}-{partition}@{offset} from {leader}: {code:?} {:?}", result.error),
    }
    if log.records.is_empty() {
        log.log_start_offset = result.log_start_offset.max(*offset);
    }
    log.high_watermark = result.high_watermark;
    let records = decode_log_records(&result.records).with_context(|| format!("{topic}-{partition} from {leader}"))?;
    let from = *offset;
    for record in records.into_iter().filter(|r| r.offset >= from && r.offset < result.high_watermark) {
        *offset = record.offset + 1;
        log.records.push(record);
    }
    if *offset >= log.high_watermark {
        return Ok(true);
    }
    // Nothing usable came back although the HW is ahead: skip to where the leader says to continue.
    if result.next_offset > *offset {
        *offset = result.next_offset.min(log.high_watermark);
        return Ok(*offset >= log.high_watermark);
    }
    bail!("{leader} returned nothing for {topic}-{partition}@{offset} below HW {}", log.high_watermark)
}

/// The client address of the partition's leader according to the node that reports the highest leader epoch
/// for it (a node that was cut off may still believe in an old leader).
///
/// # Errors
///
/// If no node answers or none knows a leader.
pub(crate) async fn find_leader(addresses: &[String], topic: &str, partition: u32) -> anyhow::Result<String> {
    let mut best: Option<(u32, String)> = None;
    let mut failures = Vec::new();
    for address in addresses {
        let metadata = match rpc::metadata(address, &[topic]).await {
            Ok(metadata) => metadata,
            Err(e) => {
                failures.push(format!("{e:#}"));
                continue;
            }
        };
        let Some(meta) = metadata
            .topics
            .iter()
            .find(|t| t.name == topic)
            .and_then(|t| t.partitions.iter().find(|p| p.partition == partition))
        else {
            continue;
        };
        let Some(broker) = metadata.brokers.iter().find(|b| b.id == meta.leader) else { continue };
        if best.as_ref().is_none_or(|(epoch, _)| meta.leader_epoch > *epoch) {
            best = Some((meta.leader_epoch, broker.address.clone()));
        }
    }
    best.map(|(_, address)| address)
        .with_context(|| format!("no node names a leader for {topic}-{partition}; failures: {}", failures.join("; ")))
}
