//! The benchmark topic: created if missing (and then deleted at the end unless `--keep-topic`), or checked
//! against the requested settings if it exists, so a run never silently measures the wrong durability.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rill_client::{Admin, ClientConfig, Error, ErrorCode};

use crate::settings::Settings;

/// How long a new topic may take to get a leader for every partition.
const TOPIC_READY_MS_MAX: u64 = 30_000;
/// Pause between readiness checks of a new topic.
const TOPIC_READY_POLL_MS: u64 = 50;

/// The topic a run uses, and whether this run created it.
pub struct BenchTopic {
    admin: Admin,
    pub name: String,
    pub partitions: u32,
    created: bool,
}

impl BenchTopic {
    /// Creates the topic per the settings, or checks the existing one; then waits for its leaders.
    ///
    /// # Errors
    ///
    /// When no broker answers, creation fails, or an existing topic's configuration contradicts a
    /// `--topic-config` value.
    pub async fn prepare(client: &ClientConfig, settings: &Settings) -> anyhow::Result<BenchTopic> {
        let admin = Admin::connect(client.clone()).await.context("connecting to the cluster")?;
        let name = settings.topic.clone();
        let created = match admin
            .create_topic(&name, settings.partitions, settings.replication_factor, settings.topic_config.clone())
            .await
        {
            Ok(()) => true,
            Err(e) if e.code() == Some(ErrorCode::TopicAlreadyExists) => false,
            Err(e) => return Err(e).with_context(|| format!("creating topic '{name}'")),
        };
        let partitions = wait_until_led(&admin, &name).await?;
        if !created {
            check_existing(&admin, &name, settings).await?;
        }
        Ok(BenchTopic { admin, name, partitions, created })
    }

    /// Deletes the topic if this run created it and `keep` is false, freeing its disk space.
    ///
    /// # Errors
    ///
    /// When the deletion fails.
    pub async fn finish(self, keep: bool) -> anyhow::Result<()> {
        if self.created && !keep {
            self.admin.delete_topic(&self.name).await.with_context(|| format!("deleting topic '{}'", self.name))?;
        }
        Ok(())
    }
}

/// Waits until every partition of the topic has a leader; returns the partition count.
async fn wait_until_led(admin: &Admin, name: &str) -> anyhow::Result<u32> {
    let deadline = Instant::now() + Duration::from_millis(TOPIC_READY_MS_MAX);
    loop {
        let outcome = admin.describe_topic(name).await;
        match outcome {
            Ok(topic) if !topic.partitions.is_empty() && topic.partitions.iter().all(|p| p.isr.contains(&p.leader)) => {
                return Ok(topic.partitions.len() as u32);
            }
            Ok(_) | Err(Error::UnknownTopic(_)) if Instant::now() < deadline => {}
            Ok(_) => bail!("topic '{name}' has partitions without a leader after {TOPIC_READY_MS_MAX} ms"),
            Err(e) => return Err(e).with_context(|| format!("describing topic '{name}'")),
        }
        tokio::time::sleep(Duration::from_millis(TOPIC_READY_POLL_MS)).await;
    }
}

/// Refuses an existing topic whose configuration sets a requested key to another value; warns when the
/// requested partition count differs, since that changes the run but is sometimes intended.
async fn check_existing(admin: &Admin, name: &str, settings: &Settings) -> anyhow::Result<()> {
    let topic = admin.describe_topic(name).await.with_context(|| format!("describing topic '{name}'"))?;
    for (key, wanted) in &settings.topic_config {
        match topic.config.get(key) {
            Some(actual) if actual != wanted => bail!(
                "topic '{name}' already exists with {key}={actual}, but {key}={wanted} was requested; delete it \
                 (rill topic delete {name}) or choose another --topic"
            ),
            Some(_) => {}
            None => eprintln!(
                "warning: topic '{name}' already exists without an explicit {key}; it runs with the broker default, \
                 not {key}={wanted}"
            ),
        }
    }
    if topic.partitions.len() as u32 != settings.partitions {
        eprintln!(
            "warning: topic '{name}' already exists with {} partitions; --partitions {} applies only to new topics",
            topic.partitions.len(),
            settings.partitions
        );
    }
    Ok(())
}
