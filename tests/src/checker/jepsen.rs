//! A history checker over operations and observations, naming anomalies as Jepsen's Kafka workload does, so
//! that the deterministic simulator (`rill-sim`) and the real-process tests report alike.
//!
//! The history is plain data with simulated or measured times in ms: sends and acknowledgements of records,
//! consumer polls, writes accepted by leaders, high watermarks (HW) seen on each replica, and what the ISR held
//! durably when an acks=all write was acknowledged. [`check_history`] compares it with the final contents of
//! each partition ([`FinalPartition`]) and reports:
//!
//! - `lost-write`: an acknowledged record missing below the final HW.
//! - `duplicate`: a record of an idempotent producer present twice.
//! - `inconsistent-offsets`: an acknowledged record not at its acknowledged offset, two replicas or two reads
//!   disagreeing on the record at an offset below the HW, or a read that disagrees with the final log there.
//! - `nonmonotonic`: a consumer's successive reads go backwards in the final log's order.
//! - `poll-skip`: a consumer's successive reads skip records the final log holds between them.
//! - `hw-regression`: a replica's HW went down within one incarnation.
//! - `split-brain`: two brokers accepted writes in the same leader epoch, or one accepted a write in an epoch
//!   older than one another broker had already written in.
//! - `acked-unreplicated`: an acks=all write acknowledged before every ISR member held it durably.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A record's identity: the workload writing it and its number there (`p<producer>-<seq>`).
pub type Value = (u32, u64);

/// One thing that happened, as the history records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A producer sent a record for the first time.
    Send { time_ms: u64, producer: u32, seq: u64, partition: u32, idempotent: bool },
    /// The producer got an acks=all acknowledgement that the record is at `offset`.
    Ack { time_ms: u64, producer: u32, seq: u64, partition: u32, offset: u64 },
    /// A consumer's poll returned these records, in order.
    Poll { time_ms: u64, consumer: u32, partition: u32, records: Vec<(u64, Value)> },
    /// A leader appended a produce request's batch in `leader_epoch`, starting at `offset`.
    LeaderWrite { time_ms: u64, broker: u32, partition: u32, leader_epoch: u32, offset: u64 },
    /// A replica's HW as its broker published it; `incarnation` counts the broker's restarts.
    HighWatermark { time_ms: u64, broker: u32, incarnation: u32, partition: u32, high_watermark: u64 },
    /// When an acks=all write ending at `offset` was acknowledged: the ISR the controller had committed, and
    /// which brokers held the record durably (fsynced).
    AckReplication { time_ms: u64, partition: u32, offset: u64, isr: Vec<u32>, durable_on: Vec<u32> },
}

/// A partition as it ended: every replica's records, the HW, and the log every replica must agree with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinalPartition {
    pub partition: u32,
    pub high_watermark: u64,
    /// The leader's records, the reference log.
    pub log: Vec<(u64, Value)>,
    /// Each replica's records, by broker.
    pub replicas: BTreeMap<u32, Vec<(u64, Value)>>,
}

/// An anomaly: its Jepsen name and what exactly was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub name: &'static str,
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.detail)
    }
}

pub const LOST_WRITE: &str = "lost-write";
pub const DUPLICATE: &str = "duplicate";
pub const INCONSISTENT_OFFSETS: &str = "inconsistent-offsets";
pub const NONMONOTONIC: &str = "nonmonotonic";
pub const POLL_SKIP: &str = "poll-skip";
pub const HW_REGRESSION: &str = "hw-regression";
pub const SPLIT_BRAIN: &str = "split-brain";
pub const ACKED_UNREPLICATED: &str = "acked-unreplicated";

/// Every anomaly name the checker reports.
pub const ANOMALY_NAMES: [&str; 8] = [
    LOST_WRITE,
    DUPLICATE,
    INCONSISTENT_OFFSETS,
    NONMONOTONIC,
    POLL_SKIP,
    HW_REGRESSION,
    SPLIT_BRAIN,
    ACKED_UNREPLICATED,
];

/// Findings per name beyond this are counted, not kept: one is enough to fail, a few help to debug.
const FINDINGS_PER_NAME_MAX: usize = 5;

/// What [`check_history`] found.
#[derive(Debug, Clone, Default)]
pub struct HistoryReport {
    pub findings: Vec<Finding>,
    /// How many anomalies of each name were found (more than are kept in `findings`).
    pub counts: BTreeMap<&'static str, usize>,
    pub acked: usize,
    pub polled: usize,
}

impl HistoryReport {
    pub fn is_valid(&self) -> bool {
        self.counts.is_empty()
    }

    pub fn count(&self, name: &str) -> usize {
        self.counts.get(name).copied().unwrap_or(0)
    }

    fn push(&mut self, name: &'static str, detail: String) {
        let count = self.counts.entry(name).or_default();
        *count += 1;
        if *count <= FINDINGS_PER_NAME_MAX {
            self.findings.push(Finding { name, detail });
        }
    }
}

impl fmt::Display for HistoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} acknowledged, {} records polled, anomalies {:?}", self.acked, self.polled, self.counts)?;
        for finding in &self.findings {
            writeln!(f, "  {finding}")?;
        }
        Ok(())
    }
}

fn show(value: Value) -> String {
    format!("p{}-{}", value.0, value.1)
}

/// Checks `ops` against the partitions' final state. See the module documentation for the anomalies.
pub fn check_history(ops: &[Op], finals: &[FinalPartition]) -> HistoryReport {
    let mut report = HistoryReport::default();
    let finals: BTreeMap<u32, &FinalPartition> = finals.iter().map(|f| (f.partition, f)).collect();
    let committed: BTreeMap<u32, BTreeMap<u64, Value>> = finals
        .iter()
        .map(|(&p, f)| (p, f.log.iter().filter(|(o, _)| *o < f.high_watermark).copied().collect()))
        .collect();
    check_acks(ops, &finals, &committed, &mut report);
    check_duplicates(ops, &committed, &mut report);
    check_replicas(&finals, &mut report);
    check_polls(ops, &committed, &mut report);
    check_high_watermarks(ops, &mut report);
    check_leader_writes(ops, &mut report);
    check_ack_replication(ops, &mut report);
    report
}

fn check_acks(
    ops: &[Op],
    finals: &BTreeMap<u32, &FinalPartition>,
    committed: &BTreeMap<u32, BTreeMap<u64, Value>>,
    report: &mut HistoryReport,
) {
    let empty = BTreeMap::new();
    for op in ops {
        let Op::Ack { producer, seq, partition, offset, .. } = *op else { continue };
        report.acked += 1;
        let log = committed.get(&partition).unwrap_or(&empty);
        let value = (producer, seq);
        let high_watermark = finals.get(&partition).map_or(0, |f| f.high_watermark);
        match log.get(&offset) {
            Some(found) if *found == value => {}
            found => {
                let elsewhere: Vec<u64> = log.iter().filter(|(_, v)| **v == value).map(|(o, _)| *o).collect();
                if elsewhere.is_empty() {
                    report.push(
                        LOST_WRITE,
                        format!(
                            "{} acknowledged at {partition}@{offset} is missing (final HW {high_watermark})",
                            show(value)
                        ),
                    );
                } else {
                    report.push(
                        INCONSISTENT_OFFSETS,
                        format!(
                            "{} acknowledged at {partition}@{offset} is at {elsewhere:?}; {offset} holds {}",
                            show(value),
                            found.map_or("nothing".to_string(), |v| show(*v))
                        ),
                    );
                }
            }
        }
    }
}

fn check_duplicates(ops: &[Op], committed: &BTreeMap<u32, BTreeMap<u64, Value>>, report: &mut HistoryReport) {
    let idempotent: BTreeSet<u32> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Send { producer, idempotent: true, .. } => Some(*producer),
            _ => None,
        })
        .collect();
    for (partition, log) in committed {
        let mut seen: BTreeMap<Value, u64> = BTreeMap::new();
        for (&offset, &value) in log {
            if !idempotent.contains(&value.0) {
                continue;
            }
            if let Some(first) = seen.insert(value, offset) {
                report.push(
                    DUPLICATE,
                    format!("{} of an idempotent producer is at {partition}@{first} and @{offset}", show(value)),
                );
            }
        }
    }
}

/// Every replica must hold the reference log's record at every offset below the HW that it holds at all.
fn check_replicas(finals: &BTreeMap<u32, &FinalPartition>, report: &mut HistoryReport) {
    for (partition, last) in finals {
        let reference: BTreeMap<u64, Value> = last.log.iter().copied().collect();
        for (broker, records) in &last.replicas {
            let differing = records
                .iter()
                .filter(|(offset, _)| *offset < last.high_watermark)
                .find(|(offset, value)| reference.get(offset) != Some(value));
            if let Some((offset, value)) = differing {
                report.push(
                    INCONSISTENT_OFFSETS,
                    format!(
                        "replica {broker} holds {} at {partition}@{offset} below HW {}; the leader holds {}",
                        show(*value),
                        last.high_watermark,
                        reference.get(offset).map_or("nothing".to_string(), |v| show(*v))
                    ),
                );
            }
        }
    }
}

fn check_polls(ops: &[Op], committed: &BTreeMap<u32, BTreeMap<u64, Value>>, report: &mut HistoryReport) {
    let empty = BTreeMap::new();
    // Where each value sits in the final log, for the order of a consumer's reads.
    let positions: BTreeMap<u32, BTreeMap<Value, u64>> = committed
        .iter()
        .map(|(&p, log)| {
            let mut first = BTreeMap::new();
            for (&offset, &value) in log {
                first.entry(value).or_insert(offset);
            }
            (p, first)
        })
        .collect();
    let mut read_at: BTreeMap<(u32, u64), Value> = BTreeMap::new();
    // The final-log offset of each consumer's last read, per partition; consumers start at offset 0.
    let mut last_read: BTreeMap<(u32, u32), Option<u64>> = BTreeMap::new();
    for op in ops {
        let Op::Poll { consumer, partition, records, .. } = op else { continue };
        let log = committed.get(partition).unwrap_or(&empty);
        for &(offset, value) in records {
            report.polled += 1;
            if let Some(earlier) = read_at.insert((*partition, offset), value)
                && earlier != value
            {
                report.push(
                    INCONSISTENT_OFFSETS,
                    format!("{partition}@{offset} was read as {} and as {}", show(earlier), show(value)),
                );
            }
            if let Some(final_value) = log.get(&offset)
                && *final_value != value
            {
                report.push(
                    INCONSISTENT_OFFSETS,
                    format!(
                        "consumer {consumer} read {} at {partition}@{offset}, which finally holds {}",
                        show(value),
                        show(*final_value)
                    ),
                );
            }
            // The read's place in the final log: its own offset when that holds it, else where the value is.
            let position = if log.get(&offset) == Some(&value) {
                Some(offset)
            } else {
                positions.get(partition).and_then(|p| p.get(&value)).copied()
            };
            let Some(position) = position else { continue };
            let last = last_read.entry((*consumer, *partition)).or_insert(None);
            let expected = last.map_or(0, |l| l + 1);
            if last.is_some_and(|l| position <= l) {
                report.push(
                    NONMONOTONIC,
                    format!(
                        "consumer {consumer} read {partition}@{position} after {partition}@{}",
                        last.unwrap_or_default()
                    ),
                );
            } else if position > expected {
                report.push(
                    POLL_SKIP,
                    format!(
                        "consumer {consumer} read {partition}@{position} next, skipping {partition}@{expected}..{position}"
                    ),
                );
            }
            *last = Some(position);
        }
    }
}

fn check_high_watermarks(ops: &[Op], report: &mut HistoryReport) {
    let mut last: BTreeMap<(u32, u32, u32), u64> = BTreeMap::new();
    for op in ops {
        let Op::HighWatermark { time_ms, broker, incarnation, partition, high_watermark } = *op else { continue };
        if let Some(previous) = last.insert((broker, incarnation, partition), high_watermark)
            && high_watermark < previous
        {
            report.push(
                HW_REGRESSION,
                format!("broker {broker} moved the HW of partition {partition} from {previous} to {high_watermark} at {time_ms} ms"),
            );
        }
    }
}

fn check_leader_writes(ops: &[Op], report: &mut HistoryReport) {
    // Per partition: the broker that wrote in each epoch, and the newest epoch written so far.
    let mut writers: BTreeMap<(u32, u32), u32> = BTreeMap::new();
    let mut newest: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
    for op in ops {
        let Op::LeaderWrite { time_ms, broker, partition, leader_epoch, offset } = *op else { continue };
        if let Some(other) = writers.insert((partition, leader_epoch), broker)
            && other != broker
        {
            report.push(
                SPLIT_BRAIN,
                format!(
                    "brokers {other} and {broker} both accepted writes to partition {partition} in epoch {leader_epoch}"
                ),
            );
        }
        match newest.get(&partition) {
            Some(&(epoch, writer)) if epoch > leader_epoch && writer != broker => report.push(
                SPLIT_BRAIN,
                format!(
                    "broker {broker} accepted a write to {partition}@{offset} in epoch {leader_epoch} at {time_ms} ms, \
                     after broker {writer} wrote in epoch {epoch}"
                ),
            ),
            Some(&(epoch, _)) if epoch >= leader_epoch => {}
            _ => {
                newest.insert(partition, (leader_epoch, broker));
            }
        }
    }
}

fn check_ack_replication(ops: &[Op], report: &mut HistoryReport) {
    for op in ops {
        let Op::AckReplication { time_ms, partition, offset, isr, durable_on } = op else { continue };
        let missing: Vec<u32> = isr.iter().copied().filter(|id| !durable_on.contains(id)).collect();
        if !missing.is_empty() {
            report.push(
                ACKED_UNREPLICATED,
                format!(
                    "{partition}@{offset} acknowledged at {time_ms} ms while ISR members {missing:?} of {isr:?} lacked it durably"
                ),
            );
        }
    }
}

/// The real-process workload's history of `topic` in this checker's terms: each attempt's send and, if
/// acknowledged, its ack, with times in ms since the first send. The final state comes from
/// [`super::read_partition`] through [`final_from_log`].
pub fn ops_from_attempts(history: &super::History, topic: &str) -> Vec<Op> {
    let Some(start) = history.attempts.iter().map(|a| a.sent_at).min() else { return Vec::new() };
    let ms = |instant: std::time::Instant| instant.duration_since(start).as_millis() as u64;
    let mut timed: Vec<(u64, Op)> = Vec::new();
    for a in history.attempts.iter().filter(|a| a.topic == topic) {
        timed.push((
            ms(a.sent_at),
            Op::Send {
                time_ms: ms(a.sent_at),
                producer: a.producer,
                seq: a.seq,
                partition: a.partition,
                idempotent: a.idempotent,
            },
        ));
        if let Some(offset) = a.acked_offset() {
            let time_ms = ms(a.completed_at);
            timed
                .push((time_ms, Op::Ack { time_ms, producer: a.producer, seq: a.seq, partition: a.partition, offset }));
        }
    }
    timed.sort_by_key(|(time_ms, _)| *time_ms);
    timed.into_iter().map(|(_, op)| op).collect()
}

/// A partition read back from the real cluster ([`super::PartitionLog`]) as this checker's final state.
pub fn final_from_log(log: &super::PartitionLog) -> FinalPartition {
    let records: Vec<(u64, Value)> = log
        .records
        .iter()
        .filter_map(|r| r.value.as_deref().and_then(super::decode_value).map(|value| (r.offset, value)))
        .collect();
    FinalPartition {
        partition: log.partition,
        high_watermark: log.high_watermark,
        log: records.clone(),
        replicas: BTreeMap::from([(0, records)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn final_partition(values: &[Value]) -> FinalPartition {
        let log: Vec<(u64, Value)> = values.iter().enumerate().map(|(i, v)| (i as u64, *v)).collect();
        FinalPartition {
            partition: 0,
            high_watermark: log.len() as u64,
            replicas: BTreeMap::from([(1, log.clone()), (2, log.clone())]),
            log,
        }
    }

    fn ack(seq: u64, offset: u64) -> Op {
        Op::Ack { time_ms: 0, producer: 1, seq, partition: 0, offset }
    }

    fn poll(consumer: u32, records: &[(u64, u64)]) -> Op {
        Op::Poll { time_ms: 0, consumer, partition: 0, records: records.iter().map(|&(o, s)| (o, (1, s))).collect() }
    }

    #[test]
    fn a_clean_history_has_no_anomaly() {
        let finals = [final_partition(&[(1, 0), (1, 1), (1, 2)])];
        let ops = [ack(0, 0), ack(1, 1), poll(7, &[(0, 0), (1, 1)]), poll(7, &[(2, 2)])];
        let report = check_history(&ops, &finals);
        assert!(report.is_valid(), "{report}");
        assert_eq!((report.acked, report.polled), (2, 3));
    }

    #[test]
    fn an_acknowledged_record_missing_is_a_lost_write_and_one_elsewhere_inconsistent() {
        let finals = [final_partition(&[(1, 0), (1, 2)])];
        let report = check_history(&[ack(0, 0), ack(1, 1), ack(2, 2)], &finals);
        assert_eq!(report.count(LOST_WRITE), 1, "{report}");
        assert_eq!(report.count(INCONSISTENT_OFFSETS), 1, "{report}");
    }

    #[test]
    fn an_idempotent_record_twice_is_a_duplicate_but_not_for_other_producers() {
        let finals = [final_partition(&[(1, 0), (1, 0), (2, 0), (2, 0)])];
        let send = |producer, idempotent| Op::Send { time_ms: 0, producer, seq: 0, partition: 0, idempotent };
        let report = check_history(&[send(1, true), send(2, false)], &finals);
        assert_eq!(report.count(DUPLICATE), 1, "{report}");
    }

    #[test]
    fn replicas_that_differ_below_the_hw_are_inconsistent() {
        let mut last = final_partition(&[(1, 0), (1, 1)]);
        last.replicas.insert(3, vec![(0, (1, 0)), (1, (9, 9))]);
        let report = check_history(&[], &[last]);
        assert_eq!(report.count(INCONSISTENT_OFFSETS), 1, "{report}");
    }

    #[test]
    fn reads_going_backwards_or_skipping_are_found() {
        let finals = [final_partition(&[(1, 0), (1, 1), (1, 2), (1, 3)])];
        let report = check_history(&[poll(7, &[(0, 0), (1, 1)]), poll(7, &[(0, 0)])], &finals);
        assert_eq!(report.count(NONMONOTONIC), 1, "{report}");
        let report = check_history(&[poll(7, &[(0, 0)]), poll(7, &[(3, 3)])], &finals);
        assert_eq!(report.count(POLL_SKIP), 1, "{report}");
    }

    #[test]
    fn a_hw_going_down_within_an_incarnation_is_a_regression_but_not_across_restarts() {
        let hw = |incarnation, high_watermark| Op::HighWatermark {
            time_ms: 0,
            broker: 1,
            incarnation,
            partition: 0,
            high_watermark,
        };
        let report = check_history(&[hw(0, 5), hw(1, 3), hw(1, 4), hw(1, 2)], &[]);
        assert_eq!(report.count(HW_REGRESSION), 1, "{report}");
    }

    #[test]
    fn writes_in_one_epoch_by_two_brokers_or_in_an_older_epoch_are_split_brain() {
        let write =
            |broker, leader_epoch| Op::LeaderWrite { time_ms: 0, broker, partition: 0, leader_epoch, offset: 0 };
        assert!(check_history(&[write(1, 1), write(1, 1), write(2, 2), write(2, 2)], &[]).is_valid());
        assert_eq!(check_history(&[write(1, 1), write(2, 1)], &[]).count(SPLIT_BRAIN), 1);
        assert_eq!(check_history(&[write(1, 1), write(2, 2), write(1, 1)], &[]).count(SPLIT_BRAIN), 1);
    }

    #[test]
    fn an_ack_before_every_isr_member_is_durable_is_acked_unreplicated() {
        let ack = |durable_on: Vec<u32>| Op::AckReplication {
            time_ms: 0,
            partition: 0,
            offset: 3,
            isr: vec![1, 2],
            durable_on,
        };
        assert!(check_history(&[ack(vec![1, 2, 3])], &[]).is_valid());
        assert_eq!(check_history(&[ack(vec![1])], &[]).count(ACKED_UNREPLICATED), 1);
    }
}
