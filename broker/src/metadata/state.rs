//! The metadata state machine: pure and deterministic. `apply` is the only way state changes, so every node
//! that applies the same records in the same order holds the same state.

use std::collections::{BTreeMap, BTreeSet};

use rill_proto::scram::{Mechanism, ScramCredential};
use serde::{Deserialize, Serialize};

use super::records::{MetadataRecord, PartitionRecord};
use crate::security::AclBinding;
use crate::security::quota::QuotaTable;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: u32,
    pub broker_epoch: u64,
    pub address: String,
    /// The Kafka listener's advertised `host:port`, if the broker runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_address: Option<String>,
    pub fenced: bool,
    /// `DrainBroker`: elected leader only where no other in-sync replica is eligible.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
    /// `DrainBroker` with `shutdown`: the broker is stopping, so it may not join an ISR again in this
    /// incarnation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shutting_down: bool,
}

impl BrokerRegistration {
    /// Whether the controller may make this broker a leader when another choice exists.
    pub fn may_lead(&self) -> bool {
        !self.fenced && !self.draining
    }
}

pub type PartitionState = PartitionRecord;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicState {
    pub name: String,
    pub topic_id: u64,
    pub config: BTreeMap<String, String>,
    pub partitions: Vec<PartitionState>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataState {
    /// Lowest offset the next record may have; records below it are reflected here.
    pub next_offset: u64,
    pub brokers: BTreeMap<u32, BrokerRegistration>,
    pub topics: BTreeMap<String, TopicState>,
    /// Topic ids are never reused, so a partition directory left by a deleted topic is never mistaken for
    /// one of a new topic with the same name.
    pub next_topic_id: u64,
    /// The next idempotent producer id to hand out.
    #[serde(default)]
    pub next_producer_id: i64,
    /// The current epoch of producer ids that were initialized again (absent: epoch 0).
    #[serde(default)]
    pub producer_epochs: BTreeMap<i64, i16>,
    /// SCRAM users: each user's salted credential per mechanism.
    #[serde(default)]
    pub users: BTreeMap<String, BTreeMap<Mechanism, ScramCredential>>,
    #[serde(default)]
    pub acls: BTreeSet<AclBinding>,
    /// `SetSessionKey`: the session-token signing key, base64.
    #[serde(default)]
    pub session_key: Option<String>,
    /// Client quotas: per entity, its rates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quotas: QuotaTable,
    /// `SetBrokerConfig`: each broker's dynamic topic defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker_configs: BTreeMap<u32, BTreeMap<String, String>>,
}

impl MetadataState {
    /// Applies the record at `offset`. Offsets strictly increase but may skip: in the replicated log a
    /// record's offset derives from its raft index, and raft indexes also number entries that carry no
    /// record. A record that does not fit the state (which the controller never writes) is skipped
    /// identically on every node, and reported.
    pub fn apply(&mut self, offset: u64, record: &MetadataRecord) -> Result<(), String> {
        let next = self.next_offset;
        assert!(offset >= next, "metadata offsets must strictly increase: {offset} applied after {next}");
        // Offsets, topic ids and producer ids come from the log and snapshot files too: one that leaves no
        // successor is refused rather than overflowing (found by the `metadata_log` and `metadata_snapshot`
        // fuzz targets; the controller never gets near these values).
        let Some(after) = offset.checked_add(1) else {
            return Err(format!("record at offset {offset}: no offset can follow it"));
        };
        self.next_offset = after;
        match record {
            MetadataRecord::RegisterBroker { broker_id, address, kafka_address } => {
                self.brokers.insert(
                    *broker_id,
                    BrokerRegistration {
                        broker_id: *broker_id,
                        broker_epoch: offset,
                        address: address.clone(),
                        kafka_address: kafka_address.clone(),
                        fenced: false,
                        draining: false,
                        shutting_down: false,
                    },
                );
            }
            MetadataRecord::FenceBroker { broker_id, broker_epoch }
            | MetadataRecord::UnfenceBroker { broker_id, broker_epoch } => {
                let fence = matches!(record, MetadataRecord::FenceBroker { .. });
                match self.brokers.get_mut(broker_id) {
                    Some(b) if b.broker_epoch == *broker_epoch => b.fenced = fence,
                    _ => return Err(format!("{record:?} at {offset}: no broker {broker_id} in epoch {broker_epoch}")),
                }
            }
            MetadataRecord::DrainBroker { broker_id, broker_epoch, shutdown } => {
                match self.brokers.get_mut(broker_id) {
                    Some(b) if b.broker_epoch == *broker_epoch => {
                        b.draining = true;
                        b.shutting_down |= *shutdown;
                    }
                    _ => return Err(format!("{record:?} at {offset}: no broker {broker_id} in epoch {broker_epoch}")),
                }
            }
            MetadataRecord::UndrainBroker { broker_id, broker_epoch } => match self.brokers.get_mut(broker_id) {
                Some(b) if b.broker_epoch == *broker_epoch && !b.shutting_down => b.draining = false,
                _ => {
                    return Err(format!(
                        "{record:?} at {offset}: no running broker {broker_id} in epoch {broker_epoch}"
                    ));
                }
            },
            MetadataRecord::CreateTopic { name, topic_id, config, partitions } => {
                if self.topics.contains_key(name) {
                    return Err(format!("CreateTopic at {offset}: topic '{name}' exists"));
                }
                let Some(next_topic_id) = topic_id.checked_add(1) else {
                    return Err(format!("CreateTopic at {offset}: topic id {topic_id} leaves no id after it"));
                };
                self.next_topic_id = self.next_topic_id.max(next_topic_id);
                self.topics.insert(
                    name.clone(),
                    TopicState {
                        name: name.clone(),
                        topic_id: *topic_id,
                        config: config.clone(),
                        partitions: partitions.clone(),
                    },
                );
            }
            MetadataRecord::CreatePartitions { name, topic_id, partitions } => match self.topics.get_mut(name) {
                Some(t) if t.topic_id == *topic_id => t.partitions.extend(partitions.iter().cloned()),
                _ => return Err(format!("CreatePartitions at {offset}: no topic '{name}' with id {topic_id}")),
            },
            MetadataRecord::PartitionChange { topic, partition, change } => {
                let Some(state) = self.topics.get_mut(topic).and_then(|t| t.partitions.get_mut(*partition as usize))
                else {
                    return Err(format!("PartitionChange at {offset}: no partition {topic}/{partition}"));
                };
                if change.leader_epoch < state.leader_epoch || change.partition_epoch <= state.partition_epoch {
                    return Err(format!("PartitionChange at {offset}: epochs of {topic}/{partition} go backwards"));
                }
                *state = change.clone();
            }
            MetadataRecord::AllocateProducerIds { first_id, count } => {
                if *first_id != self.next_producer_id || *count == 0 {
                    return Err(format!("AllocateProducerIds at {offset}: {first_id}+{count} is not the next block"));
                }
                let Some(next_producer_id) = first_id.checked_add(i64::from(*count)) else {
                    return Err(format!("AllocateProducerIds at {offset}: {first_id}+{count} passes i64::MAX"));
                };
                self.next_producer_id = next_producer_id;
            }
            MetadataRecord::BumpProducerEpoch { producer_id, producer_epoch } => {
                let current = self.producer_epochs.get(producer_id).copied().unwrap_or(0);
                if *producer_id < 0 || *producer_id >= self.next_producer_id || *producer_epoch <= current {
                    return Err(format!(
                        "BumpProducerEpoch at {offset}: {producer_id} to {producer_epoch} after {current}"
                    ));
                }
                self.producer_epochs.insert(*producer_id, *producer_epoch);
            }
            MetadataRecord::DeleteTopic { name, topic_id } => match self.topics.get(name) {
                Some(t) if t.topic_id == *topic_id => {
                    self.topics.remove(name);
                }
                _ => return Err(format!("DeleteTopic at {offset}: no topic '{name}' with id {topic_id}")),
            },
            MetadataRecord::AlterTopicConfig { name, topic_id, config } => match self.topics.get_mut(name) {
                Some(t) if t.topic_id == *topic_id => t.config = config.clone(),
                _ => return Err(format!("AlterTopicConfig at {offset}: no topic '{name}' with id {topic_id}")),
            },
            MetadataRecord::SetBrokerConfig { broker_id, config } => {
                if config.is_empty() {
                    self.broker_configs.remove(broker_id);
                } else {
                    self.broker_configs.insert(*broker_id, config.clone());
                }
            }
            MetadataRecord::UpsertScramCredential { user, mechanism, credential } => {
                self.users.entry(user.clone()).or_default().insert(*mechanism, credential.clone());
            }
            MetadataRecord::DeleteUser { user } => {
                if self.users.remove(user).is_none() {
                    return Err(format!("DeleteUser at {offset}: no user '{user}'"));
                }
            }
            MetadataRecord::CreateAcl { acl } => {
                if !self.acls.insert(acl.clone()) {
                    return Err(format!("CreateAcl at {offset}: {acl:?} exists"));
                }
            }
            MetadataRecord::SetSessionKey { key } => self.session_key = Some(key.clone()),
            MetadataRecord::SetQuota { entity, key, value } => {
                let rates = self.quotas.entry(entity.clone()).or_default();
                match value {
                    Some(rate) => {
                        rates.insert(*key, *rate);
                    }
                    None => {
                        rates.remove(key);
                    }
                }
                if rates.is_empty() {
                    self.quotas.remove(entity);
                }
            }
            MetadataRecord::DeleteAcl { acl } => {
                if !self.acls.remove(acl) {
                    return Err(format!("DeleteAcl at {offset}: no {acl:?}"));
                }
            }
        }
        Ok(())
    }

    pub fn topic(&self, name: &str) -> Option<&TopicState> {
        self.topics.get(name)
    }

    /// Brokers not fenced, by id.
    pub fn live_brokers(&self) -> Vec<u32> {
        self.brokers.values().filter(|b| !b.fenced).map(|b| b.broker_id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, id: u64) -> MetadataRecord {
        MetadataRecord::CreateTopic {
            name: name.into(),
            topic_id: id,
            config: BTreeMap::new(),
            partitions: vec![PartitionRecord {
                replicas: vec![1],
                leader: 1,
                leader_epoch: 0,
                isr: vec![1],
                partition_epoch: 0,
            }],
        }
    }

    #[test]
    fn replaying_the_same_records_gives_the_same_state() {
        let records = [
            MetadataRecord::RegisterBroker { broker_id: 1, address: "a:1".into(), kafka_address: None },
            create("t", 0),
            create("u", 1),
            MetadataRecord::DeleteTopic { name: "t".into(), topic_id: 0 },
        ];
        let mut a = MetadataState::default();
        let mut b = MetadataState::default();
        for (i, r) in records.iter().enumerate() {
            a.apply(i as u64, r).unwrap();
            b.apply(i as u64, r).unwrap();
        }
        assert_eq!(a, b);
        assert!(a.topic("t").is_none());
        assert_eq!(a.next_topic_id, 2);
        assert_eq!(a.next_offset, 4);
    }

    #[test]
    fn a_registration_carries_the_kafka_address_and_older_records_without_one_still_read() {
        let mut s = MetadataState::default();
        let record = MetadataRecord::RegisterBroker {
            broker_id: 1,
            address: "a:1".into(),
            kafka_address: Some("a:9092".into()),
        };
        s.apply(0, &record).unwrap();
        assert_eq!(s.brokers[&1].kafka_address.as_deref(), Some("a:9092"));
        // A record and a snapshot entry as written before brokers had a Kafka listener.
        let old: MetadataRecord =
            serde_json::from_str(r#"{"type":"RegisterBroker","broker_id":2,"address":"b:1"}"#).unwrap();
        assert_eq!(old, MetadataRecord::RegisterBroker { broker_id: 2, address: "b:1".into(), kafka_address: None });
        s.apply(1, &old).unwrap();
        assert_eq!(s.brokers[&2].kafka_address, None);
        let old: BrokerRegistration =
            serde_json::from_str(r#"{"broker_id":2,"broker_epoch":1,"address":"b:1","fenced":false}"#).unwrap();
        assert_eq!(old, s.brokers[&2]);
        // And none is written where there is none, so such records keep their old bytes.
        assert!(!serde_json::to_string(&s.brokers[&2]).unwrap().contains("kafka"));
    }

    #[test]
    fn records_that_do_not_fit_are_skipped_and_reported() {
        let mut s = MetadataState::default();
        s.apply(0, &create("t", 0)).unwrap();
        assert!(s.apply(1, &create("t", 1)).is_err());
        assert!(s.apply(2, &MetadataRecord::DeleteTopic { name: "t".into(), topic_id: 9 }).is_err());
        assert_eq!(s.topic("t").unwrap().topic_id, 0);
        assert_eq!(s.next_offset, 3);
    }

    #[test]
    fn offsets_may_skip_but_never_repeat() {
        let mut s = MetadataState::default();
        s.apply(3, &create("t", 0)).unwrap();
        s.apply(7, &create("u", 1)).unwrap();
        assert_eq!(s.next_offset, 8);
        let repeat = std::panic::catch_unwind(move || s.apply(7, &create("v", 2)));
        assert!(repeat.is_err(), "an offset applied twice is a broken invariant");
    }

    #[test]
    fn partition_change_refuses_epochs_going_backwards() {
        let mut s = MetadataState::default();
        s.apply(0, &create("t", 0)).unwrap();
        let change =
            PartitionRecord { replicas: vec![1], leader: 1, leader_epoch: 1, isr: vec![1], partition_epoch: 1 };
        let rec = |c: &PartitionRecord| MetadataRecord::PartitionChange {
            topic: "t".into(),
            partition: 0,
            change: c.clone(),
        };
        s.apply(1, &rec(&change)).unwrap();
        assert!(s.apply(2, &rec(&change)).is_err(), "same partition epoch again");
        assert_eq!(s.topic("t").unwrap().partitions[0].leader_epoch, 1);
    }
}
