//! The controller: validates metadata requests, decides placement, and commits each change as records to the
//! metadata log before applying them, then publishes the new state to the rest of the broker.
//!
//! On one node the controller runs in the broker process over a local `MetadataLog`; with replication the same
//! logic runs on the active controller of an openraft quorum.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::log::MetadataLog;
use super::records::{MetadataRecord, PartitionRecord};
use super::state::MetadataState;
use crate::limits::{TOPIC_NAME_BYTES_MAX, TOPIC_PARTITIONS_MAX};
use crate::replication::{AcceptedIsr, AlterPartitionError};
use crate::topic_config::TopicConfig;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopicName { name: String, reason: String },
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("invalid topic config: {0}")]
    InvalidConfig(String),
    #[error("metadata log write failed: {0}")]
    Storage(#[from] std::io::Error),
}

/// Settings the controller applies to new topics.
#[derive(Debug, Clone)]
pub struct TopicPolicy {
    pub defaults: BTreeMap<String, String>,
    pub batch_bytes_max: u64,
    pub default_replication_factor: u32,
}

pub struct Controller {
    log: Box<dyn MetadataLog>,
    state: MetadataState,
    published: watch::Sender<Arc<MetadataState>>,
    policy: TopicPolicy,
}

/// Kafka's rule for topic names, so they stay valid file names and portable to Kafka tooling.
pub fn check_topic_name(name: &str) -> Result<(), ControllerError> {
    let invalid = |reason: &str| Err(ControllerError::InvalidTopicName { name: name.into(), reason: reason.into() });
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return invalid(&format!("longer than {TOPIC_NAME_BYTES_MAX} characters"));
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    if name.starts_with("__") {
        return invalid("names starting with '__' are reserved for internal topics");
    }
    Ok(())
}

impl Controller {
    /// Rebuilds the state by replaying `records` (everything the log holds) and starts publishing it.
    pub fn open(log: Box<dyn MetadataLog>, records: Vec<MetadataRecord>, policy: TopicPolicy) -> Controller {
        let mut state = MetadataState::default();
        for (offset, record) in records.iter().enumerate() {
            if let Err(e) = state.apply(offset as u64, record) {
                tracing::warn!(error = %e, "skipped metadata record");
            }
        }
        assert_eq!(state.next_offset, log.next_offset(), "replay must cover the whole metadata log");
        let (published, _) = watch::channel(Arc::new(state.clone()));
        Controller { log, state, published, policy }
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataState>> {
        self.published.subscribe()
    }

    pub fn state(&self) -> &MetadataState {
        &self.state
    }

    /// Writes `records` durably, then applies and publishes them. Returns the offset after the last.
    fn commit(&mut self, records: Vec<MetadataRecord>) -> Result<u64, ControllerError> {
        let first = self.log.append(&records)?;
        for (i, record) in records.iter().enumerate() {
            // The controller checked these against the current state, so they always apply.
            let applied = self.state.apply(first + i as u64, record);
            assert!(applied.is_ok(), "controller wrote a record that does not apply: {applied:?}");
        }
        self.published.send_replace(Arc::new(self.state.clone()));
        Ok(self.state.next_offset)
    }

    /// Registers this broker (on every start), giving it a new broker epoch.
    ///
    /// Every partition this broker led gets a new leader epoch: a restarted leader may have lost unflushed
    /// records of its old epoch that followers already copied, and writing new records at those offsets in the
    /// same epoch would hide the difference from the followers' divergence check.
    pub fn register_broker(&mut self, broker_id: u32, address: &str) -> Result<u64, ControllerError> {
        let broker_epoch = self.log.next_offset();
        let mut records = vec![MetadataRecord::RegisterBroker { broker_id, broker_epoch, address: address.into() }];
        for topic in self.state.topics.values() {
            for (index, p) in topic.partitions.iter().enumerate() {
                if p.leader == broker_id {
                    let change = PartitionRecord {
                        leader_epoch: p.leader_epoch + 1,
                        partition_epoch: p.partition_epoch + 1,
                        ..p.clone()
                    };
                    records.push(MetadataRecord::PartitionChange { topic: topic.name.clone(), partition: index as u32, change });
                }
            }
        }
        self.commit(records)?;
        Ok(broker_epoch)
    }

    /// Validates and creates a topic, spreading replicas and preferred leaders across live brokers. With
    /// `validate_only` nothing is written. Returns the metadata offset after the change.
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        config: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<u64, ControllerError> {
        check_topic_name(name)?;
        if self.state.topic(name).is_some() {
            return Err(ControllerError::TopicExists(name.into()));
        }
        if partitions == 0 || partitions > TOPIC_PARTITIONS_MAX {
            return Err(ControllerError::InvalidPartitions(format!(
                "partitions must be between 1 and {TOPIC_PARTITIONS_MAX}, got {partitions}"
            )));
        }
        let replication_factor =
            if replication_factor == 0 { self.policy.default_replication_factor } else { replication_factor };
        let live = self.state.live_brokers();
        if replication_factor as usize > live.len() {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "replication factor {replication_factor} exceeds the {} live broker(s)",
                live.len()
            )));
        }
        TopicConfig::parse(&config, &self.policy.defaults, self.policy.batch_bytes_max)
            .map_err(ControllerError::InvalidConfig)?;
        if validate_only {
            return Ok(self.state.next_offset);
        }
        let partitions = (0..partitions)
            .map(|p| {
                // Round-robin placement: partition p starts at live broker p mod n, so replicas and preferred
                // leaders spread evenly.
                let replicas: Vec<u32> =
                    (0..replication_factor as usize).map(|r| live[(p as usize + r) % live.len()]).collect();
                PartitionRecord {
                    leader: replicas[0],
                    leader_epoch: 0,
                    isr: replicas.clone(),
                    replicas,
                    partition_epoch: 0,
                }
            })
            .collect();
        let topic_id = self.state.next_topic_id;
        self.commit(vec![MetadataRecord::CreateTopic { name: name.into(), topic_id, config, partitions }])
    }

    /// A leader's request to change a partition's ISR (AlterPartition). Refused when it is based on an old
    /// partition epoch, comes from a deposed leader, or adds a broker that is fenced or not a replica.
    pub fn alter_partition(
        &mut self,
        topic: &str,
        partition: u32,
        leader: u32,
        leader_epoch: u32,
        partition_epoch: u32,
        isr: Vec<u32>,
    ) -> Result<AcceptedIsr, AlterPartitionError> {
        let Some(current) = self.state.topic(topic).and_then(|t| t.partitions.get(partition as usize)) else {
            return Err(AlterPartitionError::FencedLeaderEpoch);
        };
        if current.leader != leader || current.leader_epoch != leader_epoch {
            return Err(AlterPartitionError::FencedLeaderEpoch);
        }
        if current.partition_epoch != partition_epoch {
            return Err(AlterPartitionError::StalePartitionEpoch);
        }
        let eligible = |id: &u32| {
            current.replicas.contains(id)
                && (current.isr.contains(id) || self.state.brokers.get(id).is_some_and(|b| !b.fenced))
        };
        if !isr.contains(&leader) || !isr.iter().all(eligible) {
            return Err(AlterPartitionError::IneligibleReplica);
        }
        let change = PartitionRecord { isr: isr.clone(), partition_epoch: partition_epoch + 1, ..current.clone() };
        let record = MetadataRecord::PartitionChange { topic: topic.into(), partition, change };
        match self.commit(vec![record]) {
            Ok(_) => Ok(AcceptedIsr { isr, partition_epoch: partition_epoch + 1 }),
            Err(e) => {
                tracing::warn!(topic, partition, error = %e, "could not commit an ISR change");
                Err(AlterPartitionError::Unavailable)
            }
        }
    }

    pub fn delete_topic(&mut self, name: &str) -> Result<u64, ControllerError> {
        let Some(topic) = self.state.topic(name) else {
            return Err(ControllerError::UnknownTopic(name.into()));
        };
        let topic_id = topic.topic_id;
        self.commit(vec![MetadataRecord::DeleteTopic { name: name.into(), topic_id }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::log::FileMetadataLog;

    fn controller(dir: &std::path::Path) -> Controller {
        let (log, records) = FileMetadataLog::open(dir).unwrap();
        let policy = TopicPolicy { defaults: BTreeMap::new(), batch_bytes_max: 1 << 20, default_replication_factor: 1 };
        Controller::open(Box::new(log), records, policy)
    }

    #[test]
    fn created_topics_survive_restart_and_ids_are_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = controller(dir.path());
        c.register_broker(1, "127.0.0.1:9400").unwrap();
        c.create_topic("a", 3, 1, BTreeMap::new(), false).unwrap();
        c.delete_topic("a").unwrap();
        c.create_topic("a", 2, 0, BTreeMap::new(), false).unwrap();
        let before = c.state().clone();
        drop(c);
        let c = controller(dir.path());
        assert_eq!(c.state(), &before);
        assert_eq!(c.state().topic("a").unwrap().topic_id, 1);
        assert_eq!(c.state().topic("a").unwrap().partitions.len(), 2);
    }

    #[test]
    fn invalid_requests_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = controller(dir.path());
        c.register_broker(1, "h:1").unwrap();
        c.create_topic("t", 1, 1, BTreeMap::new(), false).unwrap();
        let offset = c.state().next_offset;
        let bad_config: BTreeMap<_, _> = [("retention.ms".to_string(), "x".to_string())].into();
        assert!(matches!(c.create_topic("t", 1, 1, BTreeMap::new(), false), Err(ControllerError::TopicExists(_))));
        assert!(matches!(c.create_topic("bad/name", 1, 1, BTreeMap::new(), false), Err(ControllerError::InvalidTopicName { .. })));
        assert!(matches!(c.create_topic("u", 0, 1, BTreeMap::new(), false), Err(ControllerError::InvalidPartitions(_))));
        assert!(matches!(c.create_topic("u", 1, 3, BTreeMap::new(), false), Err(ControllerError::InvalidReplicationFactor(_))));
        assert!(matches!(c.create_topic("u", 1, 1, bad_config, false), Err(ControllerError::InvalidConfig(_))));
        assert!(matches!(c.delete_topic("nope"), Err(ControllerError::UnknownTopic(_))));
        c.create_topic("u", 1, 1, BTreeMap::new(), true).unwrap();
        assert_eq!(c.state().next_offset, offset, "validate_only and refused requests write nothing");
    }
}
