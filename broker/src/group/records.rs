//! The records a coordinator writes to its `__consumer_offsets` partition: membership snapshots and offset
//! commits, each one record (key and value) of a Kafka v2 batch. Byte layout in docs/FORMAT.md ("Consumer
//! group records"). The decoder checks every length against its buffer and never panics: the partition is
//! read back after every leadership change, and a record it cannot read is skipped with a warning.

use std::collections::{BTreeMap, BTreeSet};

use super::TopicPartition;
use super::state::Committed;

/// The key and value layouts written today; a reader refuses others.
pub const RECORD_VERSION: u16 = 0;
const TYPE_SNAPSHOT: u8 = 0;
const TYPE_OFFSET_COMMIT: u8 = 1;
const TYPE_DELETED: u8 = 2;

/// The persisted membership of a group: everything but session deadlines, which restart on a new coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupSnapshot {
    pub generation: u32,
    pub next_member_seq: u64,
    pub partition_counts: BTreeMap<String, u32>,
    pub members: Vec<MemberSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSnapshot {
    pub member_id: String,
    pub client_id: String,
    pub topics: BTreeSet<String>,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub target: BTreeSet<TopicPartition>,
    pub held: BTreeSet<TopicPartition>,
    pub granted: BTreeSet<TopicPartition>,
    pub assignment_seq: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRecord {
    Snapshot {
        group_id: String,
        snapshot: GroupSnapshot,
    },
    OffsetCommit {
        group_id: String,
        partition: TopicPartition,
        committed: Committed,
    },
    /// The group was deleted (DeleteGroups): everything written for it before is void.
    Deleted {
        group_id: String,
    },
}

impl GroupRecord {
    pub fn group_id(&self) -> &str {
        match self {
            GroupRecord::Snapshot { group_id, .. }
            | GroupRecord::OffsetCommit { group_id, .. }
            | GroupRecord::Deleted { group_id } => group_id,
        }
    }

    /// The record's key and value bytes.
    pub fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        let mut key = Vec::new();
        let mut value = Vec::new();
        put_u16(&mut key, RECORD_VERSION);
        put_u16(&mut value, RECORD_VERSION);
        match self {
            GroupRecord::Snapshot { group_id, snapshot } => {
                key.push(TYPE_SNAPSHOT);
                put_str(&mut key, group_id);
                put_u32(&mut value, snapshot.generation);
                put_u64(&mut value, snapshot.next_member_seq);
                put_u32(&mut value, snapshot.partition_counts.len() as u32);
                for (topic, count) in &snapshot.partition_counts {
                    put_str(&mut value, topic);
                    put_u32(&mut value, *count);
                }
                put_u32(&mut value, snapshot.members.len() as u32);
                for m in &snapshot.members {
                    put_str(&mut value, &m.member_id);
                    put_str(&mut value, &m.client_id);
                    put_u32(&mut value, m.session_timeout_ms.min(u64::from(u32::MAX)) as u32);
                    put_u32(&mut value, m.rebalance_timeout_ms.min(u64::from(u32::MAX)) as u32);
                    put_u32(&mut value, m.topics.len() as u32);
                    for topic in &m.topics {
                        put_str(&mut value, topic);
                    }
                    put_partitions(&mut value, &m.target);
                    put_partitions(&mut value, &m.held);
                    put_partitions(&mut value, &m.granted);
                    put_u32(&mut value, m.assignment_seq);
                }
            }
            GroupRecord::OffsetCommit { group_id, partition, committed } => {
                key.push(TYPE_OFFSET_COMMIT);
                put_str(&mut key, group_id);
                put_str(&mut key, &partition.topic);
                put_u32(&mut key, partition.partition);
                put_u64(&mut value, committed.offset);
                put_u64(&mut value, committed.commit_timestamp_ms as u64);
                put_str(&mut value, &committed.metadata);
            }
            GroupRecord::Deleted { group_id } => {
                key.push(TYPE_DELETED);
                put_str(&mut key, group_id);
            }
        }
        (key, value)
    }

    /// Reads a record back; an error names what is wrong with it.
    pub fn decode(key: &[u8], value: &[u8]) -> Result<GroupRecord, String> {
        let mut k = Reader { buf: key, what: "key" };
        let mut v = Reader { buf: value, what: "value" };
        let key_version = k.u16()?;
        let value_version = v.u16()?;
        if key_version != RECORD_VERSION || value_version != RECORD_VERSION {
            return Err(format!("unsupported group record version {key_version}/{value_version}"));
        }
        let record = match k.u8()? {
            TYPE_SNAPSHOT => {
                let group_id = k.str()?;
                let generation = v.u32()?;
                let next_member_seq = v.u64()?;
                let mut partition_counts = BTreeMap::new();
                for _ in 0..v.count()? {
                    let topic = v.str()?;
                    partition_counts.insert(topic, v.u32()?);
                }
                let mut members = Vec::new();
                for _ in 0..v.count()? {
                    let member_id = v.str()?;
                    let client_id = v.str()?;
                    let session_timeout_ms = u64::from(v.u32()?);
                    let rebalance_timeout_ms = u64::from(v.u32()?);
                    let mut topics = BTreeSet::new();
                    for _ in 0..v.count()? {
                        topics.insert(v.str()?);
                    }
                    let target = v.partitions()?;
                    let held = v.partitions()?;
                    let granted = v.partitions()?;
                    let assignment_seq = v.u32()?;
                    members.push(MemberSnapshot {
                        member_id,
                        client_id,
                        topics,
                        session_timeout_ms,
                        rebalance_timeout_ms,
                        target,
                        held,
                        granted,
                        assignment_seq,
                    });
                }
                GroupRecord::Snapshot {
                    group_id,
                    snapshot: GroupSnapshot { generation, next_member_seq, partition_counts, members },
                }
            }
            TYPE_OFFSET_COMMIT => {
                let group_id = k.str()?;
                let topic = k.str()?;
                let partition = k.u32()?;
                let offset = v.u64()?;
                let commit_timestamp_ms = v.u64()? as i64;
                let metadata = v.str()?;
                GroupRecord::OffsetCommit {
                    group_id,
                    partition: TopicPartition::new(topic, partition),
                    committed: Committed { offset, metadata, commit_timestamp_ms },
                }
            }
            TYPE_DELETED => GroupRecord::Deleted { group_id: k.str()? },
            other => return Err(format!("unknown group record type {other}")),
        };
        k.end()?;
        v.end()?;
        Ok(record)
    }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// A string as a u16 byte length and UTF-8 bytes. Every string written is bounded well below 64 KiB by the
/// limits on topic names, group ids, client ids and commit metadata.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(usize::from(u16::MAX))];
    put_u16(out, bytes.len() as u16);
    out.extend_from_slice(bytes);
}

fn put_partitions(out: &mut Vec<u8>, partitions: &BTreeSet<TopicPartition>) {
    put_u32(out, partitions.len() as u32);
    for tp in partitions {
        put_str(out, &tp.topic);
        put_u32(out, tp.partition);
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err(format!("group record {} truncated: {n} bytes wanted, {} left", self.what, self.buf.len()));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("two bytes")))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("four bytes")))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("eight bytes")))
    }

    /// A count of items that each take at least two bytes: a count the buffer cannot hold is refused before
    /// anything is allocated for it.
    fn count(&mut self) -> Result<usize, String> {
        let n = self.u32()? as usize;
        if n > self.buf.len() / 2 {
            return Err(format!("group record {} claims {n} items in {} bytes", self.what, self.buf.len()));
        }
        Ok(n)
    }

    fn str(&mut self) -> Result<String, String> {
        let n = usize::from(self.u16()?);
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| format!("group record {} holds a string that is not UTF-8", self.what))
    }

    fn partitions(&mut self) -> Result<BTreeSet<TopicPartition>, String> {
        let mut set = BTreeSet::new();
        for _ in 0..self.count()? {
            let topic = self.str()?;
            set.insert(TopicPartition::new(topic, self.u32()?));
        }
        Ok(set)
    }

    fn end(&self) -> Result<(), String> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(format!("group record {} has {} trailing bytes", self.what, self.buf.len()))
        }
    }
}
