//! The web console: three static files embedded in the binary (plain HTML, JavaScript and CSS; no build
//! step) and one JSON document, `/ui/api/overview`, that the page polls. Rates and charts are computed in
//! the page from successive counter readings.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use serde_json::{Value, json};

use crate::metadata::NO_LEADER;
use crate::requests::BrokerCore;

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

/// How long the overview waits for other brokers' answers (partition offsets) before showing what it has.
const OVERVIEW_WAIT_MS: u64 = 2_000;

pub fn routes() -> Router<Arc<BrokerCore>> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/ui") }))
        .route("/ui", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX_HTML) }))
        .route("/ui/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], APP_JS) }))
        .route("/ui/style.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE_CSS) }))
        .route("/ui/api/overview", get(overview))
}

async fn overview(State(core): State<Arc<BrokerCore>>) -> impl IntoResponse {
    let wait = Duration::from_millis(OVERVIEW_WAIT_MS);
    let summaries = core.partition_summaries();
    let mut leaderships: std::collections::BTreeMap<u32, usize> = std::collections::BTreeMap::new();
    for p in &summaries {
        if let Some(leader) = p.leader {
            *leaderships.entry(leader).or_default() += 1;
        }
    }
    let brokers: Vec<Value> = core
        .brokers()
        .into_iter()
        .map(|b| {
            json!({
                "id": b.broker_id,
                "epoch": b.broker_epoch,
                "address": b.address,
                "kafka_address": b.kafka_address,
                "fenced": b.fenced,
                "draining": b.draining,
                "shutting_down": b.shutting_down,
                "leaderships": leaderships.get(&b.broker_id).copied().unwrap_or(0),
            })
        })
        .collect();
    let offsets: Vec<crate::requests::TopicDescription> =
        tokio::time::timeout(wait, core.topic_views()).await.unwrap_or_default();
    let topics: Vec<Value> = {
        let mut by_topic: std::collections::BTreeMap<&str, Vec<Value>> = std::collections::BTreeMap::new();
        for p in &summaries {
            let known = offsets.iter().find(|t| t.name == p.topic).and_then(|t| t.partitions.get(p.partition as usize));
            by_topic.entry(&p.topic).or_default().push(json!({
                "partition": p.partition,
                "leader": p.leader,
                "leader_epoch": p.leader_epoch,
                "replicas": p.replicas,
                "isr": p.isr,
                "under_replicated": p.under_replicated(),
                "under_min_isr": p.under_min_isr(),
                "high_watermark": known.filter(|k| k.leader != NO_LEADER).map(|k| k.high_watermark),
                "log_end_offset": known.filter(|k| k.leader != NO_LEADER).map(|k| k.log_end_offset),
            }));
        }
        by_topic.into_iter().map(|(name, partitions)| json!({ "name": name, "partitions": partitions })).collect()
    };
    let groups: Vec<Value> = match tokio::time::timeout(wait, core.group_views()).await {
        Ok(groups) => groups
            .into_iter()
            .map(|g| {
                let lag: u64 = g.partitions.iter().filter_map(|p| p.lag()).sum();
                json!({
                    "group_id": g.group_id,
                    "state": g.state,
                    "generation": g.generation,
                    "members": g.members,
                    "lag": lag,
                    "partitions": g.partitions.iter().map(|p| json!({
                        "topic": p.topic, "partition": p.partition, "committed": p.committed, "lag": p.lag(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let controller = core.controller_view();
    let stats = core.stats();
    let per_topic = |value: fn(&crate::requests::TopicTraffic) -> u64| -> serde_json::Map<String, Value> {
        stats.topics.iter().map(|t| (t.topic.clone(), json!(value(t)))).collect()
    };
    let latency = |api: &str| -> Value {
        let (count, sum) = stats.latencies.iter().find(|(a, ..)| *a == api).map_or((0, 0.0), |(_, c, s)| (*c, *s));
        json!({ "count": count, "sum_seconds": sum })
    };
    let body = json!({
        "node_id": core.config.node_id,
        "now_ms": stats.now_ms,
        "controller": {
            "active": controller.active_controller,
            "is_active": controller.is_active,
            "term": controller.term,
            "voters": controller.voters,
            "applied_offset": controller.applied_offset,
        },
        "brokers": brokers,
        "topics": topics,
        "groups": groups,
        "traffic": {
            "produced_bytes": per_topic(|t| t.produced_bytes),
            "produced_records": per_topic(|t| t.produced_records),
            "fetched_bytes": per_topic(|t| t.fetched_bytes),
            "produce_latency": latency("produce"),
            "fetch_latency": latency("fetch"),
        },
        "disk_bytes": stats.disk_bytes,
    });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string())
}
