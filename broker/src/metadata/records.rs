//! The records of the metadata log. Every change to cluster metadata is one of these, appended to the log
//! before any node acts on it; `MetadataState::apply` replays them deterministically.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `PartitionRecord::leader` of a partition that has no leader: every ISR member is fenced and unclean
/// election is off. Node ids start at 1, so 0 names no broker.
pub const NO_LEADER: u32 = 0;

/// One partition's assignment as the controller decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub replicas: Vec<u32>,
    /// The leading broker, or `NO_LEADER`.
    pub leader: u32,
    pub leader_epoch: u32,
    pub isr: Vec<u32>,
    pub partition_epoch: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A broker (re)started. Its broker epoch is the metadata offset of this record, so it grows with every
    /// registration and tells an old incarnation from a new one. A registered broker starts unfenced.
    RegisterBroker {
        broker_id: u32,
        address: String,
    },
    /// The broker missed its session timeout: it leaves every ISR and loses its leaderships (the
    /// `PartitionChange` records that do so follow in the same proposal).
    FenceBroker {
        broker_id: u32,
        broker_epoch: u64,
    },
    /// A fenced broker heartbeats again in the same incarnation.
    UnfenceBroker {
        broker_id: u32,
        broker_epoch: u64,
    },
    /// A topic and the initial state of each of its partitions.
    CreateTopic {
        name: String,
        topic_id: u64,
        config: BTreeMap<String, String>,
        partitions: Vec<PartitionRecord>,
    },
    /// A partition's leader, ISR or epochs changed.
    PartitionChange {
        topic: String,
        partition: u32,
        change: PartitionRecord,
    },
    DeleteTopic {
        name: String,
        topic_id: u64,
    },
    /// Producer ids `first_id .. first_id + count` are handed out; ids are never handed out twice, across
    /// controller failovers too, because the allocation is itself a committed record.
    AllocateProducerIds {
        first_id: i64,
        count: u32,
    },
    /// An idempotent producer id starts epoch `producer_epoch`, fencing every producer on an older one.
    BumpProducerEpoch {
        producer_id: i64,
        producer_epoch: i16,
    },
}
