//! Model-based test: random sequences of appends, reads, truncations, rolls, retention, flushes, checkpoints
//! and reopens against an in-memory reference log, comparing offsets and the bytes every read returns.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use rill_storage::batch::BatchHeader;
use rill_storage::{Backend, FaultyBackend, FsBackend, Log, LogConfig, StorageError};

/// Reads kept alive across later operations, with a copy of what they returned: truncations must never
/// change or invalidate them (on the real backend they are slices of memory maps).
const HELD_READS_MAX: usize = 8;

#[derive(Clone, Debug)]
enum Op {
    Append { records: usize, value_bytes: usize, epoch: i32 },
    AppendReplicated { records: usize },
    Read { at: usize, max_bytes: usize, bound: usize },
    Truncate { at: usize },
    RollByAge,
    Retention { retention_ms: bool },
    Flush,
    Checkpoint,
    Reopen { clean: bool },
    Timestamp { at: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..5, 0usize..150, 0i32..4).prop_map(|(records, value_bytes, epoch)| Op::Append { records, value_bytes, epoch }),
        2 => (1usize..4).prop_map(|records| Op::AppendReplicated { records }),
        6 => (any::<usize>(), 1usize..2_000, any::<usize>()).prop_map(|(at, max_bytes, bound)| Op::Read { at, max_bytes, bound }),
        1 => any::<usize>().prop_map(|at| Op::Truncate { at }),
        1 => Just(Op::RollByAge),
        1 => any::<bool>().prop_map(|retention_ms| Op::Retention { retention_ms }),
        2 => Just(Op::Flush),
        1 => Just(Op::Checkpoint),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        2 => (-5i64..400).prop_map(|at| Op::Timestamp { at }),
    ]
}

struct Model {
    batches: Vec<(u64, Bytes)>,
    log_start: u64,
}

impl Model {
    fn end(&self) -> u64 {
        self.batches.last().map_or(self.log_start, |(_, b)| BatchHeader::parse(b).unwrap().next_offset())
    }

    /// Index of the batch containing `offset`.
    fn containing(&self, offset: u64) -> Option<usize> {
        self.batches.iter().position(|(_, b)| BatchHeader::parse(b).unwrap().last_offset() >= offset)
    }
}

struct Harness {
    backend: Arc<dyn Backend>,
    dir: PathBuf,
    config: LogConfig,
    held: Vec<(Bytes, Vec<u8>)>,
    log: Option<Log>,
    model: Model,
    now_ms: i64,
    clock_ms: i64,
}

impl Harness {
    fn log(&mut self) -> &mut Log {
        self.log.as_mut().unwrap()
    }

    fn apply(&mut self, op: &Op) {
        self.now_ms += 1;
        let now_ms = self.now_ms;
        match *op {
            Op::Append { records, value_bytes, epoch } => {
                let input = batch_with(records, self.clock_ms, now_ms as u64, value_bytes);
                self.clock_ms += records as i64;
                let info = self.log().append(&input, epoch, now_ms).unwrap();
                assert_eq!(info.base_offset, self.model.end());
                assert_eq!(info.last_offset, info.base_offset + records as u64 - 1);
                self.model.batches.push((info.base_offset, Bytes::from(stamped(&input, info.base_offset, epoch))));
            }
            Op::AppendReplicated { records } => {
                let base = self.model.end();
                let input = batch_with(records, self.clock_ms, now_ms as u64, 10);
                self.clock_ms += records as i64;
                let copy = stamped(&input, base, 9);
                self.log().append_replicated(&copy, now_ms).unwrap();
                self.model.batches.push((base, Bytes::from(copy)));
            }
            Op::Read { at, max_bytes, bound } => self.check_read(at, max_bytes, bound),
            Op::Truncate { at } if !self.model.batches.is_empty() => {
                let keep = at % (self.model.batches.len() + 1);
                let offset = self.model.batches.get(keep).map_or(self.model.end(), |b| b.0);
                self.log().truncate_to(offset).unwrap();
                self.model.batches.truncate(keep);
            }
            Op::Truncate { .. } => {}
            Op::RollByAge => {
                let segments_before = self.log().segment_bases();
                let rolled = self.log().roll_if_due(now_ms + 1_000_000).unwrap();
                let segments = self.log().segment_bases();
                if rolled {
                    assert_eq!(*segments.last().unwrap(), self.model.end(), "a roll starts a segment at the end");
                    assert_eq!(segments.len(), segments_before.len() + 1);
                } else {
                    assert_eq!(segments, segments_before);
                }
            }
            Op::Retention { retention_ms } => {
                let mut config = self.config.clone();
                config.retention_ms = retention_ms.then_some(5);
                config.retention_bytes = Some(1_500);
                self.log().set_config(config);
                let old_start = self.model.log_start;
                let flushed = self.log().flushed_offset();
                let now_ms = self.clock_ms + 1_000;
                self.log().enforce_retention(now_ms).unwrap();
                let config = self.config.clone();
                self.log().set_config(config);
                let start = self.log().log_start_offset();
                assert!(start >= old_start && start <= flushed.max(old_start));
                self.model.batches.retain(|(base, _)| *base >= start);
                self.model.log_start = start;
                if let Some((first, _)) = self.model.batches.first() {
                    assert_eq!(*first, start, "retention cuts at a batch boundary");
                }
            }
            Op::Flush => {
                self.log().flush().unwrap();
                let end = self.model.end();
                assert_eq!(self.log().flushed_offset(), end);
            }
            Op::Checkpoint => self.log().write_checkpoint().unwrap(),
            Op::Reopen { clean } => {
                let log = self.log.take().unwrap();
                if clean {
                    log.close().unwrap();
                } else {
                    drop(log);
                }
                let (log, report) = Log::open(Arc::clone(&self.backend), &self.dir, self.config.clone(), 0).unwrap();
                assert_eq!(report.clean_shutdown, clean);
                assert_eq!(report.truncated_bytes, 0, "without a crash nothing is torn");
                self.log = Some(log);
            }
            Op::Timestamp { at } => {
                let expected = expected_offset_for_timestamp(&self.model.batches, at);
                assert_eq!(self.log().offset_for_timestamp(at).unwrap(), expected, "timestamp {at}");
            }
        }
        let end = self.model.end();
        let log_start = self.model.log_start;
        let log = self.log();
        assert_eq!(log.end_offset(), end);
        assert_eq!(log.log_start_offset(), log_start);
        assert!(log.flushed_offset() <= end);
    }

    fn check_read(&mut self, at: usize, max_bytes: usize, bound: usize) {
        let (start, end) = (self.model.log_start, self.model.end());
        let span = (end - start + 3) as usize;
        let offset = (start + (at % span) as u64).saturating_sub(1);
        let upper_bound = start + (bound % span) as u64;
        let result = self.log.as_ref().unwrap().read(offset, max_bytes, upper_bound);
        if offset < start || offset > end {
            assert!(matches!(result, Err(StorageError::OffsetOutOfRange { .. })), "read at {offset}: {result:?}");
            return;
        }
        let result = result.unwrap();
        if self.held.len() == HELD_READS_MAX {
            self.held.remove(0);
        }
        self.held.push((result.records.clone(), result.records.to_vec()));
        let Some(first) = self.model.containing(offset).filter(|_| offset < upper_bound) else {
            assert!(result.records.is_empty());
            assert_eq!(result.next_offset, offset);
            return;
        };
        let returned = split(&result.records);
        let first_last = BatchHeader::parse(&self.model.batches[first].1).unwrap().last_offset();
        if first_last >= upper_bound {
            assert!(returned.is_empty(), "a batch reaching the upper bound is withheld");
            assert_eq!(result.next_offset, offset);
            return;
        }
        assert!(!returned.is_empty(), "at least one whole batch is returned");
        let mut bytes = 0;
        for (i, (header, range)) in returned.iter().enumerate() {
            let (base, stored) = &self.model.batches[first + i];
            assert_eq!(header.base_offset, *base);
            assert_eq!(&result.records[range.clone()], &stored[..]);
            assert!(header.last_offset() < upper_bound);
            bytes += range.len();
            assert!(i == 0 || bytes <= max_bytes, "max_bytes exceeded past the first batch");
        }
        assert_eq!(result.next_offset, returned.last().unwrap().0.next_offset());
    }
}

fn run(ops: &[Op], config: LogConfig, backend: Arc<dyn Backend>, dir: PathBuf) -> Result<(), TestCaseError> {
    let (log, _) = Log::open(Arc::clone(&backend), &dir, config.clone(), 0).unwrap();
    let mut harness = Harness {
        backend,
        dir,
        config,
        held: Vec::new(),
        log: Some(log),
        model: Model { batches: Vec::new(), log_start: 0 },
        now_ms: 0,
        clock_ms: 0,
    };
    for op in ops {
        harness.apply(op);
    }
    let log = harness.log.as_ref().unwrap();
    let stored = read_all(log, log.log_start_offset());
    prop_assert_eq!(stored, harness.model.batches);
    for (held, copy) in &harness.held {
        prop_assert_eq!(&held[..], &copy[..], "a held read changed under later operations");
    }
    Ok(())
}

fn config(segment_bytes_max: u64, index_interval_bytes: u32) -> LogConfig {
    LogConfig { segment_bytes_max, index_interval_bytes, segment_ms_max: Some(1_000_000), ..LogConfig::default() }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn the_log_behaves_like_the_reference(
        ops in prop::collection::vec(op(), 1..80),
        segment_bytes_max in 300u64..3_000,
        index_interval_bytes in 64u32..600,
    ) {
        let backend: Arc<dyn Backend> = Arc::new(FaultyBackend::new());
        run(&ops, config(segment_bytes_max, index_interval_bytes), backend, dir())?;
    }
}

proptest! {
    // Fewer cases: each one creates, maps and fsyncs real files.
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn the_log_on_real_files_behaves_like_the_reference(
        ops in prop::collection::vec(op(), 1..60),
        segment_bytes_max in 300u64..3_000,
        index_interval_bytes in 64u32..600,
    ) {
        let temp = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(FsBackend::new());
        run(&ops, config(segment_bytes_max, index_interval_bytes), backend, temp.path().join("p"))?;
    }
}
