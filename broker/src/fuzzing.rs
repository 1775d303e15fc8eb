//! Fuzz target bodies for the broker's decoders, and the list of every target of the workspace
//! ([`targets`]: rill-proto's and rill-storage's too), shared by the cargo-fuzz crate (`fuzz/`) and the
//! stable property test (`broker/tests/fuzz_targets.rs`). Each body feeds its bytes to the real parser the
//! way the broker does (files in a temporary directory for the metadata quorum, the in-memory storage
//! backend for partition files, the Kafka connection's own framing and decoding) and then uses what decoded.
//! Errors are acceptable outcomes; a panic is a finding. Not part of the API.
//!
//! This module sits in the wiring layer (ARCHITECTURE.md, "Layers of the broker crate"): it reaches into
//! the transports and the cores alike, and nothing but the fuzz crate and the test uses it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as KafkaTopicPartition;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, LogId};
use prost::Message as _;
use rill_proto::Compression;
use rill_proto::batch::{self, BatchBuilder};
pub use rill_proto::fuzzing::Target;
use rill_proto::fuzzing::sample_batch;
use rill_storage::fuzzing::{Files, fuzz_config};
use rill_storage::{Backend as _, FaultyBackend, Log};
use tokio::sync::watch;

use crate::group::TopicPartition;
use crate::group::coordinator::apply_stored;
use crate::group::records::{GroupRecord, GroupSnapshot, MemberSnapshot};
use crate::group::state::{GroupState, JoinRequest};
use crate::kafka::{self, Decoded, FrameReader};
use crate::limits::{BATCH_BYTES_MAX_DEFAULT, REQUEST_BYTES_MAX_DEFAULT, TOPIC_PARTITIONS_MAX};
use crate::metadata::raft::segments::LogFiles;
use crate::metadata::raft::state_machine::StateMachine;
use crate::metadata::raft::types::Entry;
use crate::metadata::{MetadataRecord, MetadataState, PartitionRecord};
use crate::partition::{load_producers, to_answer};
use crate::producer_state::{AppendedBatch, ProducerBatch, ProducerStateTable};
use crate::requests::{consumer_assignment, consumer_topics, validate_batches};

/// The targets of this crate.
pub const TARGETS: &[Target] = &[
    Target { name: "producer_snapshot", run: producer_snapshot, seeds: producer_snapshot_seeds },
    Target { name: "metadata_log", run: metadata_log, seeds: metadata_log_seeds },
    Target { name: "metadata_snapshot", run: metadata_snapshot, seeds: metadata_snapshot_seeds },
    Target { name: "group_records", run: group_records, seeds: group_records_seeds },
    Target { name: "kafka_request", run: kafka_request, seeds: kafka_request_seeds },
    Target { name: "grpc_request", run: grpc_request, seeds: grpc_request_seeds },
];

/// Every fuzz target of the workspace: rill-proto's, rill-storage's and this crate's.
pub fn targets() -> Vec<Target> {
    [rill_proto::fuzzing::TARGETS, rill_storage::fuzzing::TARGETS, TARGETS].concat()
}

/// The target named `name`.
pub fn target(name: &str) -> Option<Target> {
    targets().into_iter().find(|t| t.name == name)
}

/// How many groups, members or requests a body exercises at most, so that no input becomes a long run of
/// legitimate work.
const ITEMS_MAX: usize = 64;
/// The partition directory of the producer-snapshot target.
const PARTITION_DIR: &str = "/fuzz/producers";
const TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// A tokio runtime for the bodies that go through async code (openraft's state machine, Kafka framing).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime for fuzzing")
    })
}

/// A directory of its own under the system's temporary directory, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> ScratchDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("rill-fuzz-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a scratch directory");
        ScratchDir(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Splits `[length: u16 BE][bytes]` off the front of `data`; a cut-off length takes what is there.
fn take_u16_prefixed(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (length, rest) = data.split_first_chunk::<2>()?;
    let length = usize::from(u16::from_be_bytes(*length)).min(rest.len());
    Some(rest.split_at(length))
}

fn u16_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u16::try_from(bytes.len()).expect("seed parts are small").to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Sets the last four bytes to the CRC-32C of the bytes before them (the trailer of producer snapshots).
fn repair_trailing_crc(bytes: &mut [u8]) {
    if let Some(covered) = bytes.len().checked_sub(4) {
        let crc = crc32c::crc32c(&bytes[..covered]);
        bytes[covered..].copy_from_slice(&crc.to_be_bytes());
    }
}

// ---- Producer-state snapshots ----

/// The partition log the producer-snapshot target replays: batches of two idempotent producers and one
/// without idempotence, over several segments.
fn producer_log_files() -> &'static Files {
    static FILES: OnceLock<Files> = OnceLock::new();
    FILES.get_or_init(|| {
        let backend = Arc::new(FaultyBackend::new());
        let dir = Path::new(PARTITION_DIR);
        let (mut log, _) = Log::open(backend.clone(), dir, fuzz_config(), 0).expect("open an empty log");
        let mut sequences = BTreeMap::new();
        for i in 0..12i64 {
            let producer_id = [3, 9, -1][i as usize % 3];
            let mut builder = BatchBuilder::new();
            if producer_id >= 0 {
                let sequence = sequences.entry(producer_id).or_insert(0);
                builder.set_producer(producer_id, 0, *sequence);
                *sequence += 2;
            }
            builder.push(TIMESTAMP_MS + i, None, Some(b"a"), &[]);
            builder.push(TIMESTAMP_MS + i, None, Some(b"b"), &[]);
            log.append(&builder.finish(), 1, TIMESTAMP_MS).expect("append to the producer log");
        }
        log.close().expect("close the producer log");
        let mut files: Files = backend
            .list_dir(dir)
            .expect("list the producer log")
            .into_iter()
            .map(|name| (name.clone(), backend.file_contents(&dir.join(&name)).expect("a listed file")))
            .collect();
        files.sort();
        files
    })
}

fn open_producer_log() -> Log {
    let backend = Arc::new(FaultyBackend::new());
    let dir = Path::new(PARTITION_DIR);
    for (name, contents) in producer_log_files() {
        backend.put_file(&dir.join(name), contents);
    }
    Log::open(backend, dir, fuzz_config(), 0).expect("open the producer log").0
}

/// Offsets a snapshot of the producer log can be named at: the start, a batch boundary, the end, past it.
fn producer_snapshot_offsets(log: &Log) -> [u64; 4] {
    let end = log.end_offset();
    [0, 6, end, end + 1]
}

/// A producer-state snapshot: `ProducerStateTable::decode` on the input after its first byte (whatever
/// decodes encodes back to the same bytes), then the broker's recovery path (`load_producers`: the latest
/// snapshot at or below the log end, decoded under its file name, plus replay of the log after it) with the
/// input stored as the snapshot named by selector bits 0-1; then the recovered table answers producer
/// checks and takes a new batch. Selector bit 4 recomputes the trailing CRC.
pub fn producer_snapshot(data: &[u8]) -> bool {
    let Some((&selector, contents)) = data.split_first() else { return false };
    let mut contents = contents.to_vec();
    if selector & 0x10 != 0 {
        repair_trailing_crc(&mut contents);
    }
    let decoded = ProducerStateTable::decode(&contents).map(|(table, end_offset)| {
        assert_eq!(table.encode(end_offset), contents, "producer snapshot round trip");
        exercise_producer_table(table);
    });
    let log = open_producer_log();
    let at = producer_snapshot_offsets(&log)[usize::from(selector & 3)];
    if log.write_producer_snapshot(at, &contents).is_err() {
        return false;
    }
    let table = load_producers(&log, log.end_offset(), "fuzz").expect("the log alone always rebuilds the state");
    assert_eq!(table.end_offset(), log.end_offset(), "recovered producer state covers the log");
    exercise_producer_table(table);
    decoded.is_ok()
}

/// Producer checks against a decoded table, and an append after it, as a leader would make them.
fn exercise_producer_table(mut table: ProducerStateTable) {
    let entries: Vec<(i64, i16, i32)> = table
        .producers()
        .take(ITEMS_MAX)
        .filter_map(|(id, entry)| Some((id, entry.epoch(), entry.batches().back()?.last_sequence)))
        .collect();
    let end = table.end_offset();
    for (producer_id, epoch, last_sequence) in entries {
        for (producer_epoch, base_sequence) in [
            (epoch, last_sequence.wrapping_add(1).max(0)),
            (epoch, last_sequence),
            (epoch, 0),
            (epoch.saturating_add(1), 0),
            (epoch.saturating_sub(1).max(0), 0),
        ] {
            let batch = ProducerBatch { producer_id, producer_epoch, base_sequence, record_count: 3 };
            let _ = table.check(&batch);
        }
    }
    // A batch at the end of a log (offsets below i64::MAX, as stored batches have).
    if end < i64::MAX as u64 - 10 {
        let batch = ProducerBatch { producer_id: 3, producer_epoch: 0, base_sequence: 0, record_count: 3 };
        table.apply(&batch, end, end + 2, TIMESTAMP_MS);
        assert_eq!(table.end_offset(), end + 3, "an applied batch moves the end offset");
        let _ = table.replay([AppendedBatch { batch, base_offset: end + 3, last_offset: end + 5, timestamp_ms: 0 }]);
    }
    let _ = table.expire(TIMESTAMP_MS, 1_000);
    table.truncate_to(end / 2);
}

pub fn producer_snapshot_seeds() -> Vec<Vec<u8>> {
    let log = open_producer_log();
    let mut seeds = Vec::new();
    for (selector, at) in producer_snapshot_offsets(&log).into_iter().enumerate().take(3) {
        let table = load_producers(&log, at, "seed").expect("rebuild the producer state");
        let mut seed = vec![selector as u8];
        seed.extend_from_slice(&table.encode(at));
        seeds.push(seed);
    }
    seeds
}

// ---- Metadata quorum: raft log segments and durable state ----

/// The metadata log: a raft log segment whose first index is the u64 after the flags, the durable state
/// (`raft-state`) if flag bit 0 is set, opened with `LogFiles::open` as the controller does at start, then
/// reopened (recovery must be idempotent), then every recovered entry applied to a state machine in order.
/// Input: `[flags: u8][first index: u64 BE][state length: u16 BE][state][segment]`. Flag bit 1 frames the
/// payloads (length and CRC made right): the state is one payload and the segment is payloads separated by
/// newlines, so mutations reach the JSON decoding; without it both are the files' bytes as given.
pub fn metadata_log(data: &[u8]) -> bool {
    let Some((&flags, rest)) = data.split_first() else { return false };
    let Some((first_index, rest)) = rest.split_first_chunk::<8>() else { return false };
    let first_index = u64::from_be_bytes(*first_index);
    let Some((state, segment)) = take_u16_prefixed(rest) else { return false };
    let framed = flags & 2 != 0;
    let dir = ScratchDir::new();
    let log_dir = dir.0.join("raft");
    std::fs::create_dir_all(&log_dir).expect("create the raft directory");
    let segment_bytes = if framed { frames(segment.split(|&b| b == b'\n')) } else { segment.to_vec() };
    std::fs::write(log_dir.join(format!("log-{first_index:020}.raft")), segment_bytes).expect("write the segment");
    if flags & 1 != 0 {
        let state_bytes = if framed { frames([state]) } else { state.to_vec() };
        std::fs::write(log_dir.join("raft-state"), state_bytes).expect("write the raft state");
    }
    let Ok((files, entries)) = LogFiles::open(&log_dir, 1 << 20) else { return false };
    for pair in entries.windows(2) {
        assert_eq!(pair[0].log_id.index.checked_add(1), Some(pair[1].log_id.index), "recovered entries follow");
    }
    if let Some(last) = entries.last() {
        assert_eq!(files.next_index(), last.log_id.index.checked_add(1), "the log continues after its last entry");
    }
    drop(files);
    let (_, again) = LogFiles::open(&log_dir, 1 << 20).expect("a recovered log reopens");
    assert_eq!(again.len(), entries.len(), "recovery is idempotent");
    let (published, watched) = watch::channel(Arc::new(MetadataState::default()));
    let mut machine = StateMachine::open(&dir.0.join("state"), published).expect("an empty state machine opens");
    let count = entries.len();
    let applied = runtime().block_on(machine.apply(entries)).is_ok_and(|outcomes| outcomes.len() == count);
    let _ = watched.borrow().live_brokers();
    applied && count > 0
}

/// Frames each payload as the raft files do: length, CRC-32C, payload.
fn frames<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for payload in payloads {
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
        out.extend_from_slice(payload);
    }
    out
}

/// Raft entries as the metadata log holds them (docs/FORMAT.md, "Log segments"), from index 1.
fn sample_entries() -> Vec<Vec<u8>> {
    let leader = r#"{"leader_id":{"term":1,"node_id":1}"#;
    let records = [
        r#"{"type":"RegisterBroker","broker_id":1,"address":"127.0.0.1:9092","kafka_address":"127.0.0.1:9093"}"#,
        r#"{"type":"CreateTopic","name":"t","topic_id":1,"config":{"retention.ms":"1000"},"partitions":[{"replicas":[1],"leader":1,"leader_epoch":0,"isr":[1],"partition_epoch":0}]}"#,
        r#"{"type":"PartitionChange","topic":"t","partition":0,"change":{"replicas":[1],"leader":1,"leader_epoch":1,"isr":[1],"partition_epoch":1}}"#,
        r#"{"type":"AllocateProducerIds","first_id":0,"count":1000}"#,
        r#"{"type":"BumpProducerEpoch","producer_id":5,"producer_epoch":1}"#,
        r#"{"type":"FenceBroker","broker_id":1,"broker_epoch":3}"#,
        r#"{"type":"DeleteTopic","name":"t","topic_id":1}"#,
    ];
    let mut entries = vec![
        format!(r#"{{"log_id":{leader},"index":1}},"payload":"Blank"}}"#),
        format!(
            r#"{{"log_id":{leader},"index":2}},"payload":{{"Membership":{{"configs":[[1]],"nodes":{{"1":{{"addr":"127.0.0.1:9092"}}}}}}}}}}"#
        ),
    ];
    for (i, record) in records.iter().enumerate() {
        entries.push(format!(
            r#"{{"log_id":{leader},"index":{}}},"payload":{{"Normal":{{"records":[{record}]}}}}}}"#,
            i + 3
        ));
    }
    // Canonical bytes, and a check that the samples are what the decoder takes.
    entries
        .iter()
        .map(|json| {
            let entry: Entry = serde_json::from_str(json).unwrap_or_else(|e| panic!("sample entry {json}: {e}"));
            serde_json::to_vec(&entry).expect("an entry serialises")
        })
        .collect()
}

const SAMPLE_RAFT_STATE: &str = r#"{"vote":{"leader_id":{"term":1,"node_id":1},"committed":true},"committed":{"leader_id":{"term":1,"node_id":1},"index":5},"last_purged":null}"#;

pub fn metadata_log_seeds() -> Vec<Vec<u8>> {
    let entries = sample_entries();
    let mut seeds = Vec::new();
    for flags in [0u8, 1, 2, 3] {
        let mut seed = vec![flags];
        seed.extend_from_slice(&1u64.to_be_bytes());
        let framed = flags & 2 != 0;
        let state = if framed { SAMPLE_RAFT_STATE.as_bytes().to_vec() } else { frames([SAMPLE_RAFT_STATE.as_bytes()]) };
        u16_prefixed(&mut seed, if flags & 1 != 0 { &state } else { &[] });
        if framed {
            seed.extend_from_slice(&entries.join(&b'\n'));
        } else {
            seed.extend_from_slice(&frames(entries.iter().map(Vec::as_slice)));
        }
        seeds.push(seed);
    }
    seeds
}

// ---- Metadata quorum: snapshots ----

/// The metadata snapshot: the `snapshot` file (meta frame, state frame) loaded by `StateMachine::open` as at
/// start, then the records a controller would propose next applied to it, a snapshot built from it, and the
/// same bytes installed as a snapshot received from a leader (`install_snapshot`). Input: `[flags: u8]`
/// then, with flag bit 0, `[meta length: u16 BE][meta JSON][state JSON]` framed right; without it, the file's
/// bytes as given.
pub fn metadata_snapshot(data: &[u8]) -> bool {
    let Some((&flags, rest)) = data.split_first() else { return false };
    let (file, meta_and_state) = if flags & 1 != 0 {
        let Some((meta, state)) = take_u16_prefixed(rest) else { return false };
        (frames([meta, state]), Some((meta, state)))
    } else {
        (rest.to_vec(), None)
    };
    let dir = ScratchDir::new();
    std::fs::write(dir.0.join("snapshot"), file).expect("write the snapshot");
    let (published, watched) = watch::channel(Arc::new(MetadataState::default()));
    let Ok(mut machine) = StateMachine::open(&dir.0, published) else { return false };
    runtime().block_on(async {
        let Ok((applied, _)) = machine.applied_state().await else { return false };
        let state = watched.borrow().clone();
        let index = applied.map_or(1, |id| id.index.saturating_add(1));
        let mut accepted = applied.is_some();
        accepted &= machine.apply(next_entries(&state, index)).await.is_ok();
        accepted &= machine.get_snapshot_builder().await.build_snapshot().await.is_ok();
        if let Some((meta, state)) = meta_and_state {
            let installed = match serde_json::from_slice(meta) {
                Ok(meta) => machine.install_snapshot(&meta, Box::new(Cursor::new(state.to_vec()))).await.is_ok(),
                Err(_) => false,
            };
            accepted &= installed;
        }
        accepted
    })
}

/// Entries from raft index `index` on carrying what a controller proposes given `state`: a registration, a
/// new topic under the next topic id, a leader change of an existing partition, a block of producer ids.
fn next_entries(state: &MetadataState, index: u64) -> Vec<Entry> {
    let mut records = vec![
        MetadataRecord::RegisterBroker { broker_id: 1, address: "127.0.0.1:9092".into(), kafka_address: None },
        MetadataRecord::CreateTopic {
            name: format!("new-{}", state.next_topic_id),
            topic_id: state.next_topic_id,
            config: BTreeMap::new(),
            partitions: vec![PartitionRecord {
                replicas: vec![1],
                leader: 1,
                leader_epoch: 0,
                isr: vec![1],
                partition_epoch: 0,
            }],
        },
        MetadataRecord::AllocateProducerIds { first_id: state.next_producer_id, count: 1000 },
    ];
    for (name, topic) in state.topics.iter().take(ITEMS_MAX) {
        if let Some(partition) = topic.partitions.first() {
            let change = PartitionRecord {
                leader_epoch: partition.leader_epoch.saturating_add(1),
                partition_epoch: partition.partition_epoch.saturating_add(1),
                ..partition.clone()
            };
            records.push(MetadataRecord::PartitionChange { topic: name.clone(), partition: 0, change });
        }
    }
    let leader = openraft::CommittedLeaderId::new(1, 1);
    records
        .into_iter()
        .enumerate()
        .map_while(|(i, record)| {
            let index = index.checked_add(i as u64)?;
            let proposal = crate::metadata::raft::types::Proposal { records: vec![record] };
            Some(Entry { log_id: LogId::new(leader, index), payload: EntryPayload::Normal(proposal) })
        })
        .collect()
}

pub fn metadata_snapshot_seeds() -> Vec<Vec<u8>> {
    let mut state = MetadataState::default();
    for (i, json) in sample_entries().iter().enumerate().take(6) {
        let entry: Entry = serde_json::from_slice(json).expect("sample entry");
        if let EntryPayload::Normal(proposal) = entry.payload {
            for record in &proposal.records {
                let _ = state.apply(i as u64 + 1, record);
            }
        }
    }
    let meta = r#"{"last_log_id":{"leader_id":{"term":1,"node_id":1},"index":6},"last_membership":{"log_id":{"leader_id":{"term":1,"node_id":1},"index":2},"membership":{"configs":[[1]],"nodes":{"1":{"addr":"127.0.0.1:9092"}}}},"snapshot_id":"1-1-6"}"#;
    let state = serde_json::to_vec(&state).expect("a state serialises");
    let mut framed = vec![1u8];
    u16_prefixed(&mut framed, meta.as_bytes());
    framed.extend_from_slice(&state);
    let mut raw = vec![0u8];
    raw.extend_from_slice(&frames([meta.as_bytes(), &state]));
    vec![framed, raw]
}

// ---- Consumer group records ----

/// Group records as a coordinator loads them from `__consumer_offsets`: the input is records
/// `[key length: u16 BE][key][value length: u16 BE][value]`, each decoded (whatever decodes encodes to bytes
/// that decode the same) and applied with `apply_stored`; then every loaded group serves a join, heartbeats,
/// an expiry, a commit and a leave, as a new coordinator would after its load.
pub fn group_records(mut data: &[u8]) -> bool {
    let mut groups = BTreeMap::new();
    let mut decoded = 0;
    let mut refused = 0;
    for offset in 0..ITEMS_MAX as u64 {
        let Some((key, rest)) = take_u16_prefixed(data) else { break };
        let Some((value, rest)) = take_u16_prefixed(rest) else { break };
        data = rest;
        match GroupRecord::decode(key, value) {
            Ok(record) => {
                let (key, value) = record.encode();
                assert_eq!(GroupRecord::decode(&key, &value).as_ref(), Ok(&record), "group record round trip");
                decoded += 1;
            }
            Err(_) => refused += 1,
        }
        apply_stored(
            &mut groups,
            "fuzz",
            offset,
            Some(Bytes::copy_from_slice(key)),
            Some(Bytes::copy_from_slice(value)),
        );
    }
    for group in groups.values_mut().take(ITEMS_MAX) {
        exercise_group(group);
    }
    decoded > 0 && refused == 0
}

/// A join, heartbeats of every member, an expiry, a commit and a leave on a loaded group.
fn exercise_group(group: &mut GroupState) {
    let snapshot = group.snapshot();
    // The partition counts a coordinator passes come from the cluster metadata, where no topic has more than
    // `TOPIC_PARTITIONS_MAX` partitions; the stored counts only say what the assignment was computed with.
    let mut counts: BTreeMap<String, u32> =
        snapshot.partition_counts.iter().map(|(topic, &n)| (topic.clone(), n.min(TOPIC_PARTITIONS_MAX))).collect();
    for member in &snapshot.members {
        for topic in &member.topics {
            counts.entry(topic.clone()).or_insert(3);
        }
    }
    let now_ms = 1_000_000;
    let join = JoinRequest {
        member_id: None,
        client_id: "fuzz".into(),
        topics: counts.keys().take(ITEMS_MAX).cloned().collect(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
    };
    let _ = group.join(join, &counts, now_ms);
    let generation = group.snapshot().generation;
    for member in snapshot.members.iter().take(ITEMS_MAX) {
        let _ = group.heartbeat(&member.member_id, generation, &member.held, member.assignment_seq, &counts, now_ms);
    }
    let _ = group.expire(&counts, now_ms + 5_000);
    let offsets = vec![(TopicPartition::new("t".to_string(), 0), 5, String::new())];
    let _ = group.commit_checked(offsets, TIMESTAMP_MS);
    if let Some(member) = snapshot.members.first() {
        let _ = group.leave(&member.member_id, &counts, now_ms);
    }
    let _ = group.expire(&counts, u64::MAX);
}

pub fn group_records_seeds() -> Vec<Vec<u8>> {
    let partitions = |items: &[(&str, u32)]| -> BTreeSet<TopicPartition> {
        items.iter().map(|&(topic, partition)| TopicPartition::new(topic.to_string(), partition)).collect()
    };
    let member = MemberSnapshot {
        member_id: "c-0".into(),
        client_id: "c".into(),
        topics: ["t".to_string()].into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        target: partitions(&[("t", 0), ("t", 1)]),
        held: partitions(&[("t", 0)]),
        granted: partitions(&[("t", 0), ("t", 1)]),
        assignment_seq: 2,
    };
    let snapshot = GroupSnapshot {
        generation: 3,
        next_member_seq: 1,
        partition_counts: [("t".to_string(), 2)].into(),
        members: vec![member],
    };
    let records = [
        GroupRecord::Snapshot { group_id: "g".into(), snapshot },
        GroupRecord::OffsetCommit {
            group_id: "g".into(),
            partition: TopicPartition::new("t".to_string(), 1),
            committed: crate::group::state::Committed {
                offset: 42,
                metadata: "m".into(),
                commit_timestamp_ms: TIMESTAMP_MS,
            },
        },
        GroupRecord::Deleted { group_id: "h".into() },
    ];
    let mut all = Vec::new();
    let mut seeds = Vec::new();
    for record in &records {
        let (key, value) = record.encode();
        let mut seed = Vec::new();
        u16_prefixed(&mut seed, &key);
        u16_prefixed(&mut seed, &value);
        all.extend_from_slice(&seed);
        seeds.push(seed);
    }
    seeds.push(all);
    seeds
}

// ---- Kafka requests ----

/// Kafka request frames: the input is one frame without its size prefix, decoded as a connection decodes
/// it (`kafka::decode_request`: header, version gate, body); then what a handler reads out of bytes is read
/// too: a Produce's record batches (validated as `BrokerCore::produce` does), JoinGroup's consumer-protocol
/// subscriptions and SyncGroup's assignments. The same input is also read as a byte stream of size-prefixed
/// frames by the connection's `FrameReader`, each frame decoded the same way.
pub fn kafka_request(data: &[u8]) -> bool {
    let as_frame = handle_frame(Bytes::copy_from_slice(data));
    let as_stream = runtime().block_on(async {
        let mut reader = FrameReader::new(REQUEST_BYTES_MAX_DEFAULT as usize);
        let mut stream = data;
        let mut all_accepted = true;
        for _ in 0..ITEMS_MAX {
            match reader.next(&mut stream).await {
                Ok(Some(frame)) => all_accepted &= handle_frame(frame),
                Ok(None) => return all_accepted,
                Err(_) => return false,
            }
        }
        all_accepted
    });
    as_frame || as_stream
}

/// Decodes one frame and reads the bytes inside it a handler would read; true when all of it decoded.
fn handle_frame(frame: Bytes) -> bool {
    let Ok(Decoded { request, .. }) = kafka::decode_request(frame) else { return false };
    match request {
        RequestKind::Produce(produce) => produce
            .topic_data
            .iter()
            .take(ITEMS_MAX)
            .flat_map(|topic| topic.partition_data.iter().take(ITEMS_MAX))
            .all(|partition| partition.records.as_ref().is_some_and(|records| check_produced_batches(records))),
        RequestKind::JoinGroup(join) => {
            join.protocols.iter().take(ITEMS_MAX).all(|protocol| !consumer_topics(&protocol.metadata).is_empty())
        }
        RequestKind::SyncGroup(sync) => sync
            .assignments
            .iter()
            .take(ITEMS_MAX)
            .all(|assignment| !consumer_assignment(&assignment.assignment).is_empty()),
        _ => true,
    }
}

/// One partition's records as the produce path sees them: `validate_batches`, then each valid batch's
/// producer fields through the producer-state check of a partition that knows producer 7.
fn check_produced_batches(records: &[u8]) -> bool {
    let Ok(batches) = validate_batches(records, BATCH_BYTES_MAX_DEFAULT) else { return false };
    let mut table = ProducerStateTable::starting_at(0);
    let known = ProducerBatch { producer_id: 7, producer_epoch: 1, base_sequence: 0, record_count: 2 };
    table.apply(&known, 0, 1, TIMESTAMP_MS);
    for (header, bytes) in batches {
        assert_eq!(bytes.len(), header.size(), "a validated batch is whole");
        let _ = table.check(&ProducerBatch::from_header(&header));
    }
    true
}

/// A request frame of `request` at `version`: header (with a client id) and body.
fn kafka_frame(api_key: ApiKey, version: i16, request: &RequestKind) -> Option<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let mut out = BytesMut::new();
    header.encode(&mut out, api_key.request_header_version(version)).ok()?;
    request.encode(&mut out, version).ok()?;
    Some(out.to_vec())
}

/// A request of each served API with the fields a handler reads filled in.
fn sample_requests() -> Vec<(ApiKey, RequestKind)> {
    let topic = || StrBytes::from_static_str("t");
    let batch = sample_batch(Compression::None, 2);
    let produce = ProduceRequest::default().with_acks(-1).with_timeout_ms(1000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(TopicName(topic()))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch))]),
    ]);
    let mut subscription = BytesMut::new();
    subscription.extend_from_slice(&1i16.to_be_bytes());
    ConsumerProtocolSubscription::default()
        .with_topics(vec![topic()])
        .encode(&mut subscription, 1)
        .expect("encode a subscription");
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_session_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(subscription.freeze()),
        ]);
    let mut assignment = BytesMut::new();
    assignment.extend_from_slice(&1i16.to_be_bytes());
    ConsumerProtocolAssignment::default()
        .with_assigned_partitions(vec![
            KafkaTopicPartition::default().with_topic(TopicName(topic())).with_partitions(vec![0, 1]),
        ])
        .encode(&mut assignment, 1)
        .expect("encode an assignment");
    let sync =
        SyncGroupRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g"))).with_assignments(vec![
            SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_static_str("m"))
                .with_assignment(assignment.freeze()),
        ]);
    vec![
        (ApiKey::ApiVersions, RequestKind::ApiVersions(ApiVersionsRequest::default())),
        (ApiKey::Produce, RequestKind::Produce(produce)),
        (ApiKey::Fetch, RequestKind::Fetch(FetchRequest::default())),
        (ApiKey::ListOffsets, RequestKind::ListOffsets(ListOffsetsRequest::default())),
        (ApiKey::Metadata, RequestKind::Metadata(MetadataRequest::default())),
        (ApiKey::OffsetForLeaderEpoch, RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default())),
        (ApiKey::FindCoordinator, RequestKind::FindCoordinator(FindCoordinatorRequest::default())),
        (ApiKey::InitProducerId, RequestKind::InitProducerId(InitProducerIdRequest::default())),
        (ApiKey::CreateTopics, RequestKind::CreateTopics(CreateTopicsRequest::default())),
        (ApiKey::DeleteTopics, RequestKind::DeleteTopics(DeleteTopicsRequest::default())),
        (ApiKey::DescribeConfigs, RequestKind::DescribeConfigs(DescribeConfigsRequest::default())),
        (ApiKey::DescribeCluster, RequestKind::DescribeCluster(DescribeClusterRequest::default())),
        (ApiKey::JoinGroup, RequestKind::JoinGroup(join)),
        (ApiKey::SyncGroup, RequestKind::SyncGroup(sync)),
        (ApiKey::Heartbeat, RequestKind::Heartbeat(HeartbeatRequest::default())),
        (ApiKey::LeaveGroup, RequestKind::LeaveGroup(LeaveGroupRequest::default())),
        (ApiKey::OffsetCommit, RequestKind::OffsetCommit(OffsetCommitRequest::default())),
        (ApiKey::OffsetFetch, RequestKind::OffsetFetch(OffsetFetchRequest::default())),
        (ApiKey::ListGroups, RequestKind::ListGroups(ListGroupsRequest::default())),
        (ApiKey::DescribeGroups, RequestKind::DescribeGroups(DescribeGroupsRequest::default())),
        (ApiKey::DeleteGroups, RequestKind::DeleteGroups(DeleteGroupsRequest::default())),
    ]
}

pub fn kafka_request_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (api_key, request) in sample_requests() {
        let Some(api) = kafka::supported_versions(api_key) else { continue };
        for version in [api.versions.min, api.versions.max] {
            if let Some(frame) = kafka_frame(api_key, version, &request) {
                seeds.push(frame);
            }
        }
    }
    // Two frames back to back, size-prefixed, as a connection carries them.
    let stream: Vec<u8> =
        seeds.iter().take(4).flat_map(|frame| [&(frame.len() as u32).to_be_bytes()[..], frame].concat()).collect();
    seeds.push(stream);
    seeds
}

// ---- gRPC messages with byte-level contents ----

/// gRPC messages whose fields carry bytes the broker parses itself. Selector bit 0 clear: a Produce request
/// (prost-decoded as tonic does), each partition's records validated as `BrokerCore::produce` does and their
/// producer fields checked. Set: a replica fetch answer from a leader, turned into the follower state
/// machine's input by `to_answer` (batch framing and CRCs of the records).
pub fn grpc_request(data: &[u8]) -> bool {
    let Some((&selector, message)) = data.split_first() else { return false };
    if selector & 1 == 0 {
        let Ok(request) = rill_proto::v1::ProduceRequest::decode(message) else { return false };
        let checked = request.partitions.iter().take(ITEMS_MAX).map(|p| check_produced_batches(&p.records));
        checked.fold(!request.partitions.is_empty(), |all, ok| all && ok)
    } else {
        let Ok(response) = rill_proto::v1::ReplicaFetchResponse::decode(message) else { return false };
        let records = response.records.clone();
        match to_answer(response) {
            Ok((crate::replication::FetchAnswer::Records { batches, .. }, bytes)) => {
                assert_eq!(bytes, records, "the records go on verbatim");
                for meta in &batches {
                    assert!(meta.base_offset <= meta.last_offset, "a batch's offsets do not go backwards");
                }
                true
            }
            Ok(_) => true,
            Err(_) => false,
        }
    }
}

pub fn grpc_request_seeds() -> Vec<Vec<u8>> {
    let mut records = sample_batch(Compression::None, 2).to_vec();
    records.extend_from_slice(&sample_batch(Compression::Zstd, 3));
    let produce = rill_proto::v1::ProduceRequest {
        acks: rill_proto::v1::Acks::All as i32,
        timeout_ms: 1000,
        partitions: vec![rill_proto::v1::PartitionRecords {
            topic: "t".into(),
            partition: 0,
            records: Bytes::from(records.clone()),
        }],
    };
    let mut stamped = sample_batch(Compression::None, 2).to_vec();
    batch::set_partition_leader_epoch(&mut stamped, 3);
    let fetched = rill_proto::v1::ReplicaFetchResponse {
        high_watermark: 2,
        log_end_offset: 2,
        records: Bytes::from(stamped),
        ..Default::default()
    };
    vec![[&[0u8][..], &produce.encode_to_vec()].concat(), [&[1u8][..], &fetched.encode_to_vec()].concat()]
}
