//! Checks a history of produce attempts against what the cluster finally holds, in the manner of Jepsen's
//! Kafka workload, and checks that replicas hold byte-identical committed data.
//!
//! - [`ContinuousProducer`] writes `p<producer>-<seq>` values with `acks=all` and records every attempt: when
//!   it was sent, and the offset it was acknowledged at or why it failed ([`History`]).
//! - [`read_partition`] reads a partition from its log start to its high watermark (HW) through the leader,
//!   keeping each record's stamped leader epoch.
//! - [`check`] compares the two and reports anomalies by Jepsen's names: `lost-write` (an acknowledged
//!   record absent below the final HW), `inconsistent-offsets` (an acknowledged record found, but not at the
//!   offset it was acknowledged at), `nonmonotonic-send` (one producer's acknowledged offsets in a partition
//!   going backwards against its send order) and `nonmonotonic-log` (one producer's records stored out of send
//!   order). Duplicates (a retried batch written twice) are counted here but are anomalies only for idempotent
//!   producers, which [`jepsen`] checks (`duplicate`); writes that failed may or may not be present.
//! - [`compare_replicas`] reads each replica's segment files and reports any difference below the HW.
//! - [`jepsen`] checks a fuller history (consumer polls, leader writes, HWs, ISR durability at each ack) for
//!   every anomaly of Jepsen's Kafka workload; the simulator (`rill-sim`) records such histories.

pub mod jepsen;
mod reader;
mod replicas;
mod workload;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Instant;

use bytes::Bytes;

pub use reader::{PartitionLog, read_partition};
pub use replicas::{StoredBatch, assert_replicas_identical, compare_replicas, partition_dir, read_stored_batches};
pub use workload::{ContinuousProducer, WorkloadOptions};

/// The value a workload writes for `producer`'s `seq`-th record.
pub fn encode_value(producer: u32, seq: u64) -> String {
    format!("p{producer}-{seq}")
}

/// `(producer, seq)` of a value written by a workload, `None` for any other value.
pub fn decode_value(value: &[u8]) -> Option<(u32, u64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (producer, seq) = text.strip_prefix('p')?.split_once('-')?;
    Some((producer.parse().ok()?, seq.parse().ok()?))
}

/// How a produce attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged: the record is at `offset`.
    Acked { offset: u64 },
    /// Failed or timed out: the record may or may not have been written.
    Failed { error: String },
}

/// One record a workload tried to write.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub producer: u32,
    pub seq: u64,
    pub topic: String,
    pub partition: u32,
    /// Sent by an idempotent producer: the record must then be in the log at most once.
    pub idempotent: bool,
    pub sent_at: Instant,
    pub completed_at: Instant,
    pub outcome: Outcome,
}

impl Attempt {
    pub fn acked_offset(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Acked { offset } => Some(offset),
            Outcome::Failed { .. } => None,
        }
    }
}

/// Every attempt of one or more workloads, in completion order per workload.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub attempts: Vec<Attempt>,
}

impl History {
    /// One history holding the attempts of all of `histories`.
    pub fn merge(histories: impl IntoIterator<Item = History>) -> History {
        History { attempts: histories.into_iter().flat_map(|h| h.attempts).collect() }
    }

    pub fn acked_count(&self) -> usize {
        self.attempts.iter().filter(|a| a.acked_offset().is_some()).count()
    }

    pub fn failed_count(&self) -> usize {
        self.attempts.len() - self.acked_count()
    }

    /// Acknowledged attempts sent at or after `instant`.
    pub fn acked_sent_since(&self, instant: Instant) -> usize {
        self.attempts.iter().filter(|a| a.sent_at >= instant && a.acked_offset().is_some()).count()
    }

    /// The first acknowledgement (by completion time) of a record sent at or after `instant`: after a crash at
    /// `instant`, the first write the surviving cluster accepted.
    pub fn first_ack_sent_since(&self, instant: Instant) -> Option<&Attempt> {
        self.attempts
            .iter()
            .filter(|a| a.sent_at >= instant && a.acked_offset().is_some())
            .min_by_key(|a| a.completed_at)
    }

    /// The highest acknowledged offset in `topic`-`partition`.
    pub fn max_acked_offset(&self, topic: &str, partition: u32) -> Option<u64> {
        self.attempts
            .iter()
            .filter(|a| a.topic == topic && a.partition == partition)
            .filter_map(Attempt::acked_offset)
            .max()
    }
}

/// A record as read back from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub offset: u64,
    /// The partition leader epoch stamped into the record's batch by the leader that appended it.
    pub leader_epoch: i32,
    pub value: Option<Bytes>,
}

/// Decodes every record of the whole batches in `buf`, checking each batch's CRC. A partial batch at the end
/// (a fetch cut at its byte limit) is ignored.
///
/// # Errors
///
/// A corrupt or malformed batch.
pub fn decode_log_records(buf: &Bytes) -> anyhow::Result<Vec<LogRecord>> {
    let mut out = Vec::new();
    for item in rill_proto::batch::split_batches(buf) {
        let (header, range) = match item {
            Ok(batch) => batch,
            Err(rill_proto::batch::BatchError::Truncated { .. }) => break,
            Err(e) => anyhow::bail!("malformed batch: {e}"),
        };
        let batch = buf.slice(range);
        let records = rill_proto::batch::decode_records(&batch)
            .map_err(|e| anyhow::anyhow!("batch at offset {}: {e}", header.base_offset))?;
        out.extend(records.into_iter().map(|r| LogRecord {
            offset: r.offset,
            leader_epoch: header.partition_leader_epoch,
            value: r.value,
        }));
    }
    Ok(out)
}

/// Something the history and the final logs show that must not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// An acknowledged record is nowhere in the partition below its final HW.
    LostWrite { producer: u32, seq: u64, topic: String, partition: u32, acked_offset: u64, high_watermark: u64 },
    /// An acknowledged record is in the partition, but not at the offset it was acknowledged at.
    InconsistentOffsets {
        producer: u32,
        seq: u64,
        topic: String,
        partition: u32,
        acked_offset: u64,
        found_at: Vec<u64>,
        /// What the acknowledged offset holds instead, if anything.
        value_at_acked_offset: Option<String>,
    },
    /// A producer's later record (by send order) was acknowledged at a lower offset than an earlier one.
    NonmonotonicSend { producer: u32, topic: String, partition: u32, earlier: (u64, u64), later: (u64, u64) },
    /// A producer's record is stored before a record it sent earlier (first occurrences compared).
    NonmonotonicLog { producer: u32, topic: String, partition: u32, offset: u64, seq: u64, after_seq: u64 },
}

impl Anomaly {
    /// The Jepsen name of the anomaly.
    pub fn name(&self) -> &'static str {
        match self {
            Anomaly::LostWrite { .. } => "lost-write",
            Anomaly::InconsistentOffsets { .. } => "inconsistent-offsets",
            Anomaly::NonmonotonicSend { .. } => "nonmonotonic-send",
            Anomaly::NonmonotonicLog { .. } => "nonmonotonic-log",
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.name())?;
        match self {
            Anomaly::LostWrite { producer, seq, topic, partition, acked_offset, high_watermark } => write!(
                f,
                "{} acknowledged at {topic}-{partition}@{acked_offset} is missing (final HW {high_watermark})",
                encode_value(*producer, *seq)
            ),
            Anomaly::InconsistentOffsets {
                producer,
                seq,
                topic,
                partition,
                acked_offset,
                found_at,
                value_at_acked_offset,
            } => {
                write!(
                    f,
                    "{} acknowledged at {topic}-{partition}@{acked_offset} is at {found_at:?}; {acked_offset} holds {}",
                    encode_value(*producer, *seq),
                    value_at_acked_offset.as_deref().unwrap_or("nothing")
                )
            }
            Anomaly::NonmonotonicSend { producer, topic, partition, earlier, later } => write!(
                f,
                "producer {producer} in {topic}-{partition}: seq {} acknowledged at {} after seq {} at {}",
                later.0, later.1, earlier.0, earlier.1
            ),
            Anomaly::NonmonotonicLog { producer, topic, partition, offset, seq, after_seq } => write!(
                f,
                "producer {producer} in {topic}-{partition}: seq {seq} stored at {offset} after seq {after_seq}"
            ),
        }
    }
}

/// What [`check`] found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub anomalies: Vec<Anomaly>,
    pub acked: usize,
    pub failed: usize,
    /// Failed attempts whose record is in the log anyway (indeterminate, allowed).
    pub failed_but_present: usize,
    /// Extra copies of workload records (a retry wrote a batch twice; allowed without idempotence).
    pub duplicates: usize,
    /// Records read that no workload wrote.
    pub foreign_records: usize,
    pub records_read: usize,
}

impl CheckReport {
    /// Whether no anomaly was found.
    pub fn is_valid(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// The number of anomalies named `name`.
    pub fn count(&self, name: &str) -> usize {
        self.anomalies.iter().filter(|a| a.name() == name).count()
    }

    /// Panics with the report if it holds any anomaly.
    #[track_caller]
    pub fn assert_valid(&self) {
        assert!(self.is_valid(), "the history check failed:\n{self}");
    }
}

impl fmt::Display for CheckReport {
    /// A summary line, then the anomalies (at most 20 of each kind).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN_PER_KIND_MAX: usize = 20;
        writeln!(
            f,
            "{} acknowledged, {} failed ({} of them present), {} records read, {} duplicates, {} foreign, {} anomalies",
            self.acked,
            self.failed,
            self.failed_but_present,
            self.records_read,
            self.duplicates,
            self.foreign_records,
            self.anomalies.len()
        )?;
        let mut shown: HashMap<&str, usize> = HashMap::new();
        for anomaly in &self.anomalies {
            let count = shown.entry(anomaly.name()).or_default();
            *count += 1;
            if *count <= SHOWN_PER_KIND_MAX {
                writeln!(f, "  {anomaly}")?;
            }
        }
        for (name, count) in shown.into_iter().filter(|(_, c)| *c > SHOWN_PER_KIND_MAX) {
            writeln!(f, "  ... {} more {name}", count - SHOWN_PER_KIND_MAX)?;
        }
        Ok(())
    }
}

type PartitionKey = (String, u32);

/// Checks `history` against the final contents of its partitions, `logs`.
///
/// # Panics
///
/// If an acknowledged record's partition is missing from `logs` (the caller forgot to read it).
pub fn check(history: &History, logs: &[PartitionLog]) -> CheckReport {
    let mut report = CheckReport {
        acked: history.acked_count(),
        failed: history.failed_count(),
        records_read: logs.iter().map(|l| l.records.len()).sum(),
        ..CheckReport::default()
    };
    let logs: BTreeMap<PartitionKey, &PartitionLog> =
        logs.iter().map(|log| ((log.topic.clone(), log.partition), log)).collect();
    let mut positions: BTreeMap<PartitionKey, HashMap<(u32, u64), Vec<u64>>> = BTreeMap::new();
    for (key, log) in &logs {
        let (found, foreign) = record_positions(log);
        report.duplicates += found.values().map(|offsets| offsets.len() - 1).sum::<usize>();
        report.foreign_records += foreign;
        check_log_order(log, &mut report.anomalies);
        positions.insert(key.clone(), found);
    }
    for attempt in &history.attempts {
        let key = (attempt.topic.clone(), attempt.partition);
        let Some(log) = logs.get(&key) else {
            assert!(attempt.acked_offset().is_none(), "check: {}-{} was not read", attempt.topic, attempt.partition);
            continue;
        };
        let found = positions[&key].get(&(attempt.producer, attempt.seq));
        match (attempt.acked_offset(), found) {
            (None, Some(_)) => report.failed_but_present += 1,
            (None, None) => {}
            (Some(acked_offset), None) => report.anomalies.push(Anomaly::LostWrite {
                producer: attempt.producer,
                seq: attempt.seq,
                topic: attempt.topic.clone(),
                partition: attempt.partition,
                acked_offset,
                high_watermark: log.high_watermark,
            }),
            (Some(acked_offset), Some(offsets)) if !offsets.contains(&acked_offset) => {
                report.anomalies.push(Anomaly::InconsistentOffsets {
                    producer: attempt.producer,
                    seq: attempt.seq,
                    topic: attempt.topic.clone(),
                    partition: attempt.partition,
                    acked_offset,
                    found_at: offsets.clone(),
                    value_at_acked_offset: log.record_at(acked_offset).map(|r| {
                        r.value.as_deref().map_or("<null>".into(), |v| String::from_utf8_lossy(v).into_owned())
                    }),
                })
            }
            (Some(_), Some(_)) => {}
        }
    }
    check_send_order(history, &mut report.anomalies);
    report
}

/// Where each workload record occurs in `log` (ascending), and how many records are not workload records.
fn record_positions(log: &PartitionLog) -> (HashMap<(u32, u64), Vec<u64>>, usize) {
    let mut found: HashMap<(u32, u64), Vec<u64>> = HashMap::new();
    let mut foreign = 0;
    for record in &log.records {
        match record.value.as_deref().and_then(decode_value) {
            Some(id) => found.entry(id).or_default().push(record.offset),
            None => foreign += 1,
        }
    }
    (found, foreign)
}

/// Each producer's records must first appear in the log in the order it sent them.
fn check_log_order(log: &PartitionLog, anomalies: &mut Vec<Anomaly>) {
    let mut seen: HashSet<(u32, u64)> = HashSet::new();
    let mut last_seq: HashMap<u32, u64> = HashMap::new();
    for record in &log.records {
        let Some((producer, seq)) = record.value.as_deref().and_then(decode_value) else { continue };
        // A repeat of an earlier record is a duplicate, counted elsewhere, not a reordering.
        if !seen.insert((producer, seq)) {
            continue;
        }
        match last_seq.get(&producer) {
            Some(&after_seq) if seq < after_seq => anomalies.push(Anomaly::NonmonotonicLog {
                producer,
                topic: log.topic.clone(),
                partition: log.partition,
                offset: record.offset,
                seq,
                after_seq,
            }),
            _ => {
                last_seq.insert(producer, seq);
            }
        }
    }
}

/// Each producer's acknowledged offsets in a partition must increase with its send order.
fn check_send_order(history: &History, anomalies: &mut Vec<Anomaly>) {
    let mut acked: BTreeMap<(u32, String, u32), Vec<(u64, u64)>> = BTreeMap::new();
    for attempt in &history.attempts {
        if let Some(offset) = attempt.acked_offset() {
            acked
                .entry((attempt.producer, attempt.topic.clone(), attempt.partition))
                .or_default()
                .push((attempt.seq, offset));
        }
    }
    for ((producer, topic, partition), mut sends) in acked {
        sends.sort_unstable();
        let mut highest: Option<(u64, u64)> = None;
        for (seq, offset) in sends {
            match highest {
                Some(earlier) if offset <= earlier.1 => anomalies.push(Anomaly::NonmonotonicSend {
                    producer,
                    topic: topic.clone(),
                    partition,
                    earlier,
                    later: (seq, offset),
                }),
                _ => highest = Some((seq, offset)),
            }
        }
    }
}

#[cfg(test)]
mod tests;
