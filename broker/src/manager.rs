//! The partitions this broker hosts, kept in step with the metadata: a partition is opened when metadata
//! assigns it here and deleted when its topic is deleted. Directory layout: `<data>/topics/<name>.<topic_id>/
//! <partition>/`, so a directory left by a deleted topic is never mistaken for a new topic of the same name.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rill_storage::{Backend, Keyring, Log};
use tokio::sync::watch;

use crate::cluster_link::ClusterLink;
use crate::metadata::{MetadataState, PartitionState};
use crate::metrics::Metrics;
use crate::partition::{Offline, Partition, PartitionIdentity};
use crate::topic_config::TopicConfig;

type PartitionKey = (String, u32);

/// How long closing waits for a partition's background tasks to let go of it.
const CLOSE_WAIT_MS: u64 = 2_000;

pub struct PartitionManager {
    node_id: u32,
    link: Arc<ClusterLink>,
    topics_dir: PathBuf,
    backend: Arc<dyn Backend>,
    topic_defaults: BTreeMap<String, String>,
    batch_bytes_max: u64,
    replica_lag_ms_max: u64,
    /// The broker's encryption keys, given to every log (encrypted segments need them whatever the topic
    /// says now).
    keyring: Option<Arc<Keyring>>,
    partitions: RwLock<HashMap<PartitionKey, Arc<Partition>>>,
    /// Each hosted partition's settings as last applied (the topic's overrides over this broker's defaults),
    /// to notice config changes in new metadata.
    configured: std::sync::Mutex<HashMap<PartitionKey, BTreeMap<String, String>>>,
    /// Offset of the metadata the hosted partitions reflect; creators wait on it.
    applied: watch::Sender<u64>,
    /// Whether the broker holds a valid controller lease; new partitions start with it.
    lease_valid: std::sync::atomic::AtomicBool,
    metrics: Metrics,
}

fn topic_dir_name(name: &str, topic_id: u64) -> String {
    format!("{name}.{topic_id}")
}

/// The topic id in a directory name made by `topic_dir_name`.
fn topic_id_of_dir(dir_name: &str) -> Option<u64> {
    dir_name.rsplit_once('.').and_then(|(_, id)| id.parse().ok())
}

impl PartitionManager {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        link: Arc<ClusterLink>,
        data_dir: &Path,
        backend: Arc<dyn Backend>,
        topic_defaults: BTreeMap<String, String>,
        batch_bytes_max: u64,
        replica_lag_ms_max: u64,
        keyring: Option<Arc<Keyring>>,
        metrics: Metrics,
    ) -> std::io::Result<Self> {
        let topics_dir = data_dir.join("topics");
        std::fs::create_dir_all(&topics_dir)?;
        Ok(PartitionManager {
            node_id: link.node_id(),
            link,
            topics_dir,
            backend,
            topic_defaults,
            batch_bytes_max,
            replica_lag_ms_max,
            keyring,
            partitions: RwLock::new(HashMap::new()),
            configured: std::sync::Mutex::default(),
            applied: watch::channel(0).0,
            lease_valid: std::sync::atomic::AtomicBool::new(true),
            metrics,
        })
    }

    pub fn get(&self, topic: &str, partition: u32) -> Option<Arc<Partition>> {
        let map = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        map.get(&(topic.to_string(), partition)).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        let map = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    /// The metadata offset the hosted partitions reflect now.
    pub fn applied_offset(&self) -> u64 {
        *self.applied.borrow()
    }

    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Brings the hosted partitions in line with `state`: opens (and recovers) the ones assigned here that
    /// are not open, deletes the ones whose topic is gone. Blocking: run it off the async workers.
    pub fn apply_metadata(&self, state: &MetadataState, now_ms: i64) {
        // The startup defaults, overridden by the dynamic ones committed for this broker.
        let mut defaults = self.topic_defaults.clone();
        if let Some(dynamic) = state.broker_configs.get(&self.node_id) {
            defaults.extend(dynamic.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let mut wanted: HashMap<PartitionKey, (u64, PartitionState)> = HashMap::new();
        for topic in state.topics.values() {
            for (index, p) in topic.partitions.iter().enumerate() {
                if p.replicas.contains(&self.node_id) {
                    wanted.insert((topic.name.clone(), index as u32), (topic.topic_id, p.clone()));
                }
            }
        }
        let stale: Vec<Arc<Partition>> = {
            let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<PartitionKey> = map
                .iter()
                .filter(|(key, p)| wanted.get(*key).is_none_or(|(id, _)| *id != p.topic_id))
                .map(|(key, _)| key.clone())
                .collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        for partition in stale {
            self.configured
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(partition.topic.clone(), partition.index));
            partition.retire(Offline::TopicDeleted);
            let name = partition.name();
            let topic_dir = partition.dir.parent().map(Path::to_path_buf);
            match partition.delete() {
                Ok(()) => tracing::info!(partition = %name, "deleted partition"),
                Err(e) => tracing::error!(partition = %name, error = %e, "could not delete partition"),
            }
            if let Some(dir) = topic_dir {
                // Succeeds once the topic's last partition is gone.
                let _ = std::fs::remove_dir(dir);
            }
        }
        for ((topic, index), (topic_id, partition_state)) in wanted {
            let overrides = &state.topics[&topic].config;
            let mut settings = defaults.clone();
            settings.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
            let partition = match self.get(&topic, index) {
                Some(partition) => {
                    let mut configured = self.configured.lock().unwrap_or_else(|p| p.into_inner());
                    if configured.get(&(topic.clone(), index)) != Some(&settings) {
                        match TopicConfig::parse(overrides, &defaults, self.batch_bytes_max) {
                            Ok(config) => partition.reconfigure(config),
                            Err(e) => tracing::error!(topic, partition = index, error = %e, "topic config not applied"),
                        }
                        configured.insert((topic.clone(), index), settings);
                    }
                    partition
                }
                None => match self.open_partition(&topic, index, topic_id, overrides, &defaults, now_ms) {
                    Ok(partition) => {
                        if !self.lease_valid.load(std::sync::atomic::Ordering::SeqCst) {
                            partition.set_lease(false, now_ms);
                        }
                        let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
                        map.insert((topic.clone(), index), partition.clone());
                        let mut configured = self.configured.lock().unwrap_or_else(|p| p.into_inner());
                        configured.insert((topic.clone(), index), settings);
                        partition
                    }
                    Err(e) => {
                        tracing::error!(topic, partition = index, error = %e, "could not open partition; it stays offline");
                        continue;
                    }
                },
            };
            // The replica ignores metadata it has already applied, so every partition can be told every time.
            partition.apply_metadata(&partition_state, self.node_id, now_ms);
        }
        self.remove_orphan_dirs(state);
        self.applied.send_replace(state.next_offset);
    }

    fn open_partition(
        &self,
        topic: &str,
        index: u32,
        topic_id: u64,
        overrides: &BTreeMap<String, String>,
        defaults: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> anyhow::Result<Arc<Partition>> {
        let mut config = TopicConfig::parse(overrides, defaults, self.batch_bytes_max)
            .map_err(|e| anyhow::anyhow!("invalid stored topic config: {e}"))?;
        config.log.keyring = self.keyring.clone();
        let dir = self.topics_dir.join(topic_dir_name(topic, topic_id)).join(index.to_string());
        let started = std::time::Instant::now();
        // Errors name the topic and partition; storage's name the segment and key id (a missing or wrong key
        // fails here, before recovery could touch the files).
        let (mut log, report) = Log::open(self.backend.clone(), &dir, config.log.clone(), now_ms)
            .map_err(|e| anyhow::anyhow!("topic {topic} partition {index}: {e}"))?;
        // After kill -9 the recovered tail may still sit only in the page cache: make it durable before it
        // counts towards the high watermark.
        log.flush()?;
        tracing::info!(
            topic,
            partition = index,
            ?report,
            elapsed_ms = started.elapsed().as_millis() as u64,
            log_start = log.log_start_offset(),
            log_end = log.end_offset(),
            "opened partition"
        );
        let identity = PartitionIdentity {
            topic: topic.to_string(),
            index,
            topic_id,
            config,
            dir,
            link: self.link.clone(),
            replica_lag_ms_max: self.replica_lag_ms_max,
            metrics: self.metrics.clone(),
        };
        Ok(Partition::new(identity, log)?)
    }

    /// Deletes topic directories that metadata no longer knows (a crash between deleting a topic and
    /// removing its files).
    fn remove_orphan_dirs(&self, state: &MetadataState) {
        let Ok(entries) = std::fs::read_dir(&self.topics_dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let known = topic_id_of_dir(&name).is_some_and(|id| {
                state.topics.values().any(|t| t.topic_id == id && topic_dir_name(&t.name, id) == name)
            });
            if !known {
                tracing::info!(dir = %entry.path().display(), "removing directory of a deleted topic");
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "could not remove orphan directory");
                }
            }
        }
    }

    /// Tells every partition whether the controller lease holds (each acts only on a change of its own).
    pub fn set_lease(&self, valid: bool, now_ms: i64) {
        if self.lease_valid.swap(valid, std::sync::atomic::Ordering::SeqCst) != valid {
            if valid {
                tracing::info!("controller lease renewed");
            } else {
                tracing::warn!(
                    "controller lease expired: this broker stops leading until the controller answers again"
                );
            }
        }
        for partition in self.all() {
            partition.set_lease(valid, now_ms);
        }
    }

    /// Periodic upkeep of every partition.
    pub fn maintain(&self, now_ms: i64, retention_due: bool) {
        for partition in self.all() {
            partition.maintain(now_ms, retention_due);
        }
    }

    pub fn checkpoint_all(&self) {
        for partition in self.all() {
            partition.checkpoint();
        }
    }

    /// Closes every partition cleanly (flush, checkpoint, clean-shutdown marker).
    pub fn close_all(&self) {
        let partitions: Vec<Arc<Partition>> = {
            let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            map.drain().map(|(_, p)| p).collect()
        };
        for partition in &partitions {
            partition.retire(Offline::ShuttingDown);
        }
        // Retired partitions end their background tasks (fetches, flushes) promptly; give them a moment to
        // let go, so each log closes cleanly and writes its clean-shutdown marker.
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(CLOSE_WAIT_MS);
        while partitions.iter().any(|p| Arc::strong_count(p) > 1) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        for partition in partitions {
            let name = partition.name();
            if let Err(e) = partition.close() {
                tracing::error!(partition = %name, error = %e, "unclean close; the next start recovers the tail");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_parse_back_from_directory_names_with_dots() {
        assert_eq!(topic_id_of_dir(&topic_dir_name("a.b-c", 42)), Some(42));
        assert_eq!(topic_id_of_dir("no-id"), None);
    }
}
