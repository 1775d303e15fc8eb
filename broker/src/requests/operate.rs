//! Moving leaderships: draining a broker on an operator's request or before this broker stops (controlled
//! shutdown), and preferred-leader election. Decided by the active controller (in-process when it is this
//! node, forwarded otherwise); an operator needs `alter` on the cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{BrokerCore, Error, ErrorKind, forward};
use crate::limits::{CONTROLLED_SHUTDOWN_RETRY_MS, TOPIC_CHANGE_APPLY_WAIT_MS};
use crate::metadata::{ClusterChange, ClusterChangeOutcome, Election};
use crate::security::{Operation, Principal, Resource};

impl BrokerCore {
    /// Drains `broker_id` (or, with `cancel`, lets it lead again) and returns the leaderships that could not
    /// move (no other live in-sync replica; in `unmovable`, no other live replica at all). The broker keeps
    /// serving as a follower.
    pub async fn drain_broker(
        &self,
        who: &Principal,
        broker_id: u32,
        cancel: bool,
    ) -> Result<ClusterChangeOutcome, Error> {
        self.authorize(who, Operation::Alter, Resource::cluster())?;
        let change = if cancel {
            ClusterChange::Undrain { broker_id }
        } else {
            ClusterChange::Drain { broker_id, broker_epoch: None, shutdown: false }
        };
        let outcome = self.alter_cluster(&change).await?;
        tracing::info!(%who, broker_id, cancel, stuck = outcome.stuck.len(), "broker drain requested");
        Ok(outcome)
    }

    /// Preferred-leader election over `topics` (every topic when both are empty), or over just `partitions`
    /// when it names some.
    pub async fn elect_leaders(
        &self,
        who: &Principal,
        topics: &[String],
        partitions: &[(String, u32)],
    ) -> Result<Vec<Election>, Error> {
        self.authorize(who, Operation::Alter, Resource::cluster())?;
        let change = ClusterChange::ElectLeaders { topics: topics.to_vec(), partitions: partitions.to_vec() };
        let outcome = self.alter_cluster(&change).await?;
        Ok(outcome.elections)
    }

    /// Sets and deletes keys of a topic's config overrides; every broker applies them to the topic's
    /// partitions without a restart. Needs `alter` on the topic. Returns the resulting overrides (with
    /// `validate_only`, what they would be; nothing changes).
    pub async fn alter_topic_config(
        &self,
        who: &Principal,
        topic: &str,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
        validate_only: bool,
    ) -> Result<BTreeMap<String, String>, Error> {
        self.authorize(who, Operation::Alter, Resource::topic(topic))?;
        let change = ClusterChange::AlterTopicConfig { topic: topic.to_owned(), set, delete, validate_only };
        let outcome = self.alter_cluster(&change).await?;
        if !validate_only {
            tracing::info!(%who, topic, config = ?outcome.config, "topic config altered");
        }
        Ok(outcome.config)
    }

    /// Sets and deletes broker `broker_id`'s dynamic topic defaults (over its startup defaults, for topics
    /// without an override); applied without a restart. Needs `alter` on the cluster. Returns the resulting
    /// dynamic defaults (with `validate_only`, what they would be; nothing changes).
    pub async fn alter_broker_config(
        &self,
        who: &Principal,
        broker_id: u32,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
        validate_only: bool,
    ) -> Result<BTreeMap<String, String>, Error> {
        self.authorize(who, Operation::Alter, Resource::cluster())?;
        let change = ClusterChange::AlterBrokerConfig { broker_id, set, delete, validate_only };
        let outcome = self.alter_cluster(&change).await?;
        if !validate_only {
            tracing::info!(%who, broker_id, config = ?outcome.config, "broker config altered");
        }
        Ok(outcome.config)
    }

    /// The controlled shutdown of this broker: asks the controller to move its leaderships to other in-sync
    /// replicas and take it out of every ISR, again every `CONTROLLED_SHUTDOWN_RETRY_MS` while some cannot
    /// move yet (a follower still catching up; partitions with no other live replica are not waited for),
    /// until they all moved and this broker's partitions follow
    /// that metadata, or `timeout_ms` passed. Returns whether every leadership moved.
    pub async fn controlled_shutdown(&self, timeout_ms: u64) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        let change = ClusterChange::Drain {
            broker_id: self.config.node_id,
            broker_epoch: Some(self.link.broker_epoch()),
            shutdown: true,
        };
        loop {
            match tokio::time::timeout_at(deadline, self.alter_cluster(&change)).await {
                Ok(Ok(outcome)) if outcome.stuck.is_empty() => {
                    let mut applied = self.partitions.applied();
                    let followed = applied.wait_for(|offset| *offset >= outcome.metadata_offset);
                    if tokio::time::timeout_at(deadline, followed).await.is_err() {
                        tracing::warn!("controlled shutdown: the partitions did not follow the move in time");
                        return false;
                    }
                    tracing::info!(
                        unmovable = ?outcome.unmovable,
                        "controlled shutdown: every leadership that can move moved to another in-sync replica"
                    );
                    return true;
                }
                Ok(Ok(outcome)) => tracing::info!(
                    stuck = ?outcome.stuck,
                    "controlled shutdown: leaderships without another in-sync replica wait for one"
                ),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "controlled shutdown: the controller refused or is unreachable")
                }
                Err(_) => {}
            }
            let retry = tokio::time::Instant::now() + Duration::from_millis(CONTROLLED_SHUTDOWN_RETRY_MS);
            if retry >= deadline {
                tracing::warn!(timeout_ms, "controlled shutdown timed out; stopping with leaderships left");
                return false;
            }
            tokio::time::sleep_until(retry).await;
        }
    }

    /// A cluster change at this node's controller, which must be the active one (a forwarded request).
    pub async fn alter_cluster_here(&self, change: &ClusterChange) -> Result<ClusterChangeOutcome, Error> {
        self.controller.alter_cluster(change).await.map_err(|e| Error::from_controller(&e))
    }

    /// A cluster change through the active controller wherever it runs; returns once this broker's metadata
    /// has it.
    pub(super) async fn alter_cluster(&self, change: &ClusterChange) -> Result<ClusterChangeOutcome, Error> {
        let outcome = if self.controller.is_active() {
            self.alter_cluster_here(change).await?
        } else {
            forward::alter_cluster(self, change).await?
        };
        let mut metadata = self.metadata.clone();
        let applied = metadata.wait_for(|state| state.next_offset >= outcome.metadata_offset);
        let wait = Duration::from_millis(TOPIC_CHANGE_APPLY_WAIT_MS);
        if tokio::time::timeout(wait, applied).await.is_err() {
            return Err(Error::new(ErrorKind::Timeout, "the change is committed but not yet applied on this broker"));
        }
        Ok(outcome)
    }
}
