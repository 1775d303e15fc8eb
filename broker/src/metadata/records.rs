//! The records of the metadata log. Every change to cluster metadata is one of these, appended to the log
//! before any node acts on it; `MetadataState::apply` replays them deterministically.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One partition's assignment as the controller decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub replicas: Vec<u32>,
    pub leader: u32,
    pub leader_epoch: u32,
    pub isr: Vec<u32>,
    pub partition_epoch: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A broker (re)started. Its broker epoch is the metadata offset of this record, so it grows with every
    /// registration and tells an old incarnation from a new one.
    RegisterBroker { broker_id: u32, broker_epoch: u64, address: String },
    /// A topic and the initial state of each of its partitions.
    CreateTopic { name: String, topic_id: u64, config: BTreeMap<String, String>, partitions: Vec<PartitionRecord> },
    /// A partition's leader, ISR or epochs changed.
    PartitionChange { topic: String, partition: u32, change: PartitionRecord },
    DeleteTopic { name: String, topic_id: u64 },
}
