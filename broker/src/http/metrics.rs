//! `/metrics`: the event counters of `metrics.rs` plus gauges read from the broker's state at scrape time,
//! in the OpenMetrics text format (which Prometheus scrapes). Every name is listed in docs/METRICS.md.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::requests::BrokerCore;

type Labels = Vec<(&'static str, String)>;
type IntGauges = Family<Labels, Gauge>;
type FloatGauges = Family<Labels, Gauge<f64, AtomicU64>>;

/// Registers a family of integer gauges and hands it back to be filled.
fn gauges(registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>) -> IntGauges {
    let family = IntGauges::default();
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, family.clone()),
        None => registry.register(name, help, family.clone()),
    }
    family
}

fn float_gauges(registry: &mut Registry, name: &str, help: &str, unit: Unit) -> FloatGauges {
    let family = FloatGauges::default();
    registry.register_with_unit(name, help, unit, family.clone());
    family
}

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn partition_labels(topic: &str, partition: u32) -> Labels {
    vec![("topic", topic.to_string()), ("partition", partition.to_string())]
}

/// The whole exposition, ending with `# EOF`.
pub async fn render(core: &BrokerCore) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("rill");
    core.metrics.register(&mut registry);
    hosted_partitions(core, &mut registry);
    led_partitions(core, &mut registry);
    controller(core, &mut registry);
    groups(core, &mut registry).await;
    process(&mut registry);
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

/// Offsets, size and role of every partition replica on this broker, and each follower's lag where it leads.
fn hosted_partitions(core: &BrokerCore, registry: &mut Registry) {
    let high_watermark = gauges(registry, "partition_high_watermark", "First offset not yet committed", None);
    let log_end = gauges(registry, "partition_log_end_offset", "Next offset this replica will write", None);
    let log_start = gauges(registry, "partition_log_start_offset", "First offset still in this replica's log", None);
    let size = gauges(registry, "partition_log_size", "Segment bytes of this replica's log", Some(Unit::Bytes));
    let epoch = gauges(registry, "partition_leader_epoch", "Leader epoch this replica last applied", None);
    let leader = gauges(registry, "partition_is_leader", "1 when this broker leads the partition", None);
    let offline = gauges(registry, "partition_offline", "1 when this replica stopped (storage failure)", None);
    let lag_records = gauges(
        registry,
        "replica_lag_records",
        "Records a follower is behind this leader's log end (absent before its first fetch)",
        None,
    );
    let lag_seconds = float_gauges(
        registry,
        "replica_lag",
        "Time since a follower's log end last reached this leader's",
        Unit::Seconds,
    );
    for p in core.hosted_partitions() {
        let labels = partition_labels(&p.topic, p.partition);
        high_watermark.get_or_create(&labels).set(int(p.high_watermark));
        log_end.get_or_create(&labels).set(int(p.log_end));
        log_start.get_or_create(&labels).set(int(p.log_start));
        size.get_or_create(&labels).set(int(p.size_bytes));
        epoch.get_or_create(&labels).set(p.leader_epoch.map_or(-1, i64::from));
        leader.get_or_create(&labels).set(i64::from(p.is_leader));
        offline.get_or_create(&labels).set(i64::from(p.offline));
        for (replica, behind, since_caught_up_ms) in p.followers {
            let mut labels = labels.clone();
            labels.push(("replica", replica.to_string()));
            if let Some(behind) = behind {
                lag_records.get_or_create(&labels).set(int(behind));
            }
            lag_seconds.get_or_create(&labels).set(since_caught_up_ms as f64 / 1000.0);
        }
    }
}

/// ISR state from the committed metadata, reported by each partition's leader (so each partition appears
/// once in the cluster); the active controller also counts partitions without a leader.
fn led_partitions(core: &BrokerCore, registry: &mut Registry) {
    let isr = gauges(registry, "partition_isr_size", "In-sync replicas of a partition led here", None);
    let replicas = gauges(registry, "partition_replicas", "Assigned replicas of a partition led here", None);
    let under = gauges(registry, "partition_under_replicated", "1 when a partition led here has ISR < replicas", None);
    let under_min = gauges(
        registry,
        "partition_under_min_isr",
        "1 when a partition led here has ISR < min.insync.replicas (acks=all writes are refused)",
        None,
    );
    let active = core.controller.is_active();
    let leaderless = gauges(
        registry,
        "cluster_offline_partitions",
        "Partitions without a leader (reported by the active controller)",
        None,
    );
    let mut without_leader = 0;
    for p in core.partition_summaries() {
        if p.leader.is_none() {
            without_leader += 1;
        }
        if p.leader != Some(core.config.node_id) {
            continue;
        }
        let labels = partition_labels(&p.topic, p.partition);
        isr.get_or_create(&labels).set(p.isr.len() as i64);
        replicas.get_or_create(&labels).set(p.replicas.len() as i64);
        under.get_or_create(&labels).set(i64::from(p.under_replicated()));
        under_min.get_or_create(&labels).set(i64::from(p.under_min_isr()));
    }
    if active {
        leaderless.get_or_create(&Vec::new()).set(without_leader);
    }
}

fn controller(core: &BrokerCore, registry: &mut Registry) {
    let view = core.controller_view();
    let active = gauges(registry, "controller_active", "1 on the active controller", None);
    active.get_or_create(&Vec::new()).set(i64::from(view.is_active));
    let term = gauges(registry, "controller_raft_term", "Raft term of the controller quorum (elections)", None);
    term.get_or_create(&Vec::new()).set(int(view.term));
    let applied =
        gauges(registry, "metadata_applied_offset", "Offset of the metadata this broker's partitions reflect", None);
    applied.get_or_create(&Vec::new()).set(int(view.applied_offset));
    let brokers = gauges(registry, "cluster_brokers", "Registered brokers by state", None);
    let (mut alive, mut fenced) = (0, 0);
    for broker in core.brokers() {
        if broker.fenced {
            fenced += 1;
        } else {
            alive += 1;
        }
    }
    brokers.get_or_create(&vec![("state", "alive".to_string())]).set(alive);
    brokers.get_or_create(&vec![("state", "fenced".to_string())]).set(fenced);
}

/// Members, generation and lag of the groups this broker coordinates.
async fn groups(core: &BrokerCore, registry: &mut Registry) {
    let members = gauges(registry, "group_members", "Members of a group coordinated here", None);
    let generation = gauges(registry, "group_generation", "Generation of a group coordinated here", None);
    let committed = gauges(registry, "group_committed_offset", "A group's committed offset (next to read)", None);
    let lag = gauges(registry, "group_lag_records", "Records between a group's committed offset and the HW", None);
    for group in core.group_views().await {
        let labels = vec![("group", group.group_id.clone())];
        members.get_or_create(&labels).set(group.members as i64);
        generation.get_or_create(&labels).set(i64::from(group.generation));
        for p in &group.partitions {
            let mut labels = labels.clone();
            labels.extend(partition_labels(&p.topic, p.partition));
            committed.get_or_create(&labels).set(int(p.committed));
            if let Some(behind) = p.lag() {
                lag.get_or_create(&labels).set(int(behind));
            }
        }
    }
}

/// Resident memory and open file descriptors, from /proc.
fn process(registry: &mut Registry) {
    // SAFETY: sysconf only reads a system constant.
    let page_bytes = i64::from(u32::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096));
    if let Some(resident_pages) = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<i64>().ok()))
    {
        let rss = gauges(registry, "process_resident_memory", "Resident memory of the broker", Some(Unit::Bytes));
        rss.get_or_create(&Vec::new()).set(resident_pages * page_bytes);
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        let fds = gauges(registry, "process_open_fds", "Open file descriptors of the broker", None);
        fds.get_or_create(&Vec::new()).set(entries.count() as i64);
    }
}
