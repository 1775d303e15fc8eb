//! The records of the metadata log. Every change to cluster metadata is one of these, appended to the log
//! before any node acts on it; `MetadataState::apply` replays them deterministically.

use std::collections::BTreeMap;

use rill_proto::scram::{Mechanism, ScramCredential};
use serde::{Deserialize, Serialize};

use crate::security::AclBinding;
use crate::security::quota::{QuotaEntity, QuotaKey};

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
        /// The `host:port` Kafka clients reach the broker at; `None` without a Kafka listener, and in records
        /// written before brokers had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kafka_address: Option<String>,
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
    /// The broker is being drained: the controller moves its leaderships to other in-sync replicas and elects
    /// it leader of nothing while others are eligible (the `PartitionChange` records follow in the same
    /// proposal). With `shutdown` it is about to stop (controlled shutdown): it also leaves every ISR it is not
    /// the last member of, so that acks=all writes stop waiting for it, and may not rejoin one in this
    /// incarnation. A new registration ends either.
    DrainBroker {
        broker_id: u32,
        broker_epoch: u64,
        #[serde(default)]
        shutdown: bool,
    },
    /// An on-demand drain is called off: the broker may lead again (preferred-leader election moves its
    /// leaderships back).
    UndrainBroker {
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
    /// Partitions added to an existing topic: `partitions` are numbered on from its current count.
    CreatePartitions {
        name: String,
        topic_id: u64,
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
    /// A topic's config overrides are replaced by `config` (whole); brokers apply it to the topic's
    /// partitions without a restart.
    AlterTopicConfig {
        name: String,
        topic_id: u64,
        config: BTreeMap<String, String>,
    },
    /// Broker `broker_id`'s dynamic topic defaults are replaced by `config` (whole): they override its
    /// startup defaults (flags, config file) for every topic without an override of its own.
    SetBrokerConfig {
        broker_id: u32,
        config: BTreeMap<String, String>,
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
    /// A user's SCRAM credential for one mechanism is created or replaced. Only the salted, hashed form is
    /// ever written (`rill_proto::scram`), never a password.
    UpsertScramCredential {
        user: String,
        mechanism: Mechanism,
        credential: ScramCredential,
    },
    /// A user and every credential it has are removed.
    DeleteUser {
        user: String,
    },
    CreateAcl {
        acl: AclBinding,
    },
    DeleteAcl {
        acl: AclBinding,
    },
    /// The key (base64) every broker signs and checks session tokens with, so a token from a login on one
    /// broker is good on all. Written once, with the first broker registration.
    SetSessionKey {
        key: String,
    },
    /// A client quota set (`Some`) or removed (`None`) for one entity and key.
    SetQuota {
        entity: QuotaEntity,
        key: QuotaKey,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<u64>,
    },
}
