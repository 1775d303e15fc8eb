//! The brokers' HTTP listeners against a real three-node cluster: `/metrics` parsed as an exposition (not
//! matched line by line), counters that move with the traffic, a killed follower's partitions reported
//! under-replicated within the replica lag limit and healthy again once it caught up, consumer-group lag equal
//! to `rill group describe`'s, `/health` and `/ready`, `rill top` and `rill cluster status --watch`, and the
//! web console in headless Chromium (its rendered DOM shows a killed broker fenced and its partitions
//! under-replicated; screenshots before and after are kept in `<target>/tmp/console/`).

use std::time::{Duration, Instant};

use rill_client::{Admin, Producer, ProducerConfig, ProducerRecord};
use rill_tests::cluster::{ClusterOptions, ClusterProcess, wait_until};
use rill_tests::scrape::{Sample, http_get, scrape, select, sum};
use serde_json::Value;

const TOPIC: &str = "orders";
const PARTITIONS: u32 = 3;
/// The cluster's `--replica-lag-ms-max`: a follower that has not caught up for this long leaves the ISR.
const REPLICA_LAG_MS: u64 = 2_000;
/// Bound for a state change to show in the metrics (debug builds on two shared cores).
const SETTLE: Duration = Duration::from_secs(30);

fn scrape_all(cluster: &ClusterProcess, ids: &[u32]) -> Vec<Sample> {
    ids.iter()
        .flat_map(|id| scrape(&cluster.node(*id).http_addr()).unwrap_or_else(|e| panic!("scrape node {id}: {e}")))
        .collect()
}

/// Each partition of `orders` with its under-replicated flag, as reported by its leader (one report each).
fn under_replicated(samples: &[Sample]) -> Vec<(String, f64)> {
    let mut flags: Vec<(String, f64)> = select(samples, "rill_partition_under_replicated", &[("topic", TOPIC)])
        .into_iter()
        .map(|s| (s.labels["partition"].clone(), s.value))
        .collect();
    flags.sort_by(|a, b| a.0.cmp(&b.0));
    flags
}

async fn produce(cluster: &ClusterProcess, from: u32, count: u32) {
    let producer =
        Producer::connect(cluster.client_config(), ProducerConfig::default()).await.expect("connect producer");
    let mut deliveries = Vec::new();
    for i in from..from + count {
        let record = ProducerRecord::new(TOPIC, format!("order-{i}")).partition(i % PARTITIONS);
        deliveries.push(producer.send(record).await.expect("send"));
    }
    producer.flush().await;
    for delivery in deliveries {
        delivery.await.expect("acknowledged");
    }
    producer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_traffic_a_killed_follower_and_group_lag() {
    let extra_args = [
        "--heartbeat-interval-ms",
        "500",
        "--session-timeout-ms",
        "3000",
        "--replica-lag-ms-max",
        &REPLICA_LAG_MS.to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    let mut cluster =
        tokio::task::block_in_place(|| ClusterProcess::start(3, ClusterOptions { extra_args, through_proxy: false }));
    let all = [1, 2, 3];
    for id in all {
        let address = cluster.node(id).http_addr();
        assert_eq!(http_get(&address, "/health").unwrap().body, "ok\n");
        let ready = http_get(&address, "/ready").unwrap();
        assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"), "node {id}");
        assert_eq!(http_get(&address, "/no-such-page").unwrap().status, 404);
    }
    let admin = Admin::connect(cluster.client_config()).await.unwrap();
    admin.create_topic(TOPIC, PARTITIONS, Some(3), Default::default()).await.unwrap();
    produce(&cluster, 0, 3_000).await;

    // Counters moved by exactly the traffic; every partition reported once, healthy.
    let samples = scrape_all(&cluster, &all);
    assert_eq!(sum(&samples, "rill_topic_produced_records_total", &[("topic", TOPIC)]), 3_000.0);
    assert!(sum(&samples, "rill_requests_total", &[("api", "produce"), ("error", "none")]) >= 1.0);
    assert!(sum(&samples, "rill_request_duration_seconds_count", &[("api", "produce")]) >= 1.0);
    assert!(sum(&samples, "rill_fsync_duration_seconds_count", &[]) >= 3.0, "every replica fsyncs");
    let end_offsets = sum(&samples, "rill_partition_log_end_offset", &[("topic", TOPIC)]);
    assert_eq!(end_offsets, 9_000.0, "three replicas of 3000 records");
    assert_eq!(under_replicated(&samples), [("0".into(), 0.0), ("1".into(), 0.0), ("2".into(), 0.0)]);
    assert_eq!(sum(&samples, "rill_controller_active", &[]), 1.0, "one active controller");
    assert!(sum(&samples, "rill_leaderships_taken_total", &[]) >= f64::from(PARTITIONS));
    assert!(sum(&samples, "rill_process_resident_memory_bytes", &[]) > 0.0);

    // A follower of every partition is killed (every broker holds a replica of each): within the lag limit
    // plus the leaders' detection, every partition is reported under-replicated by its (surviving) leader.
    cluster.node_mut(3).kill9();
    let killed = Instant::now();
    let survivors = [1, 2];
    tokio::task::block_in_place(|| {
        wait_until(SETTLE, "every partition is reported under-replicated", || {
            let flags = under_replicated(&scrape_all(&cluster, &survivors));
            flags.len() == PARTITIONS as usize && flags.iter().all(|(_, v)| *v == 1.0)
        })
    });
    let noticed = killed.elapsed();
    println!(
        "under-replicated reported {} ms after kill -9 (replica lag limit {REPLICA_LAG_MS} ms)",
        noticed.as_millis()
    );
    let samples = scrape_all(&cluster, &survivors);
    assert!(sum(&samples, "rill_isr_shrinks_total", &[]) >= 1.0);
    assert_eq!(sum(&samples, "rill_partition_isr_size", &[("topic", TOPIC)]), 6.0);
    assert_eq!(sum(&samples, "rill_partition_under_min_isr", &[("topic", TOPIC)]), 0.0, "2 of 3 is min.insync");

    // Back and caught up: healthy again.
    produce(&cluster, 3_000, 300).await;
    tokio::task::block_in_place(|| {
        cluster.node_mut(3).restart();
        cluster.node_mut(3).wait_ready();
        wait_until(SETTLE, "every partition is fully replicated again", || {
            let flags = under_replicated(&scrape_all(&cluster, &all));
            flags.len() == PARTITIONS as usize && flags.iter().all(|(_, v)| *v == 0.0)
        })
    });
    let samples = scrape_all(&cluster, &all);
    assert!(sum(&samples, "rill_isr_expands_total", &[]) >= 1.0);
    assert_eq!(sum(&samples, "rill_partition_isr_size", &[("topic", TOPIC)]), 9.0);

    // A group reads part of the topic and commits; its lag in the metrics is `rill group describe`'s.
    cluster.rill(&["consume", TOPIC, "--group", "audit", "--from-beginning", "--max-messages", "1000"], b"").success();
    let describe = cluster.rill(&["group", "describe", "audit", "--format", "json"], b"").success();
    let described: Value = serde_json::from_str(describe.stdout.trim()).unwrap();
    let samples = scrape_all(&cluster, &all);
    let mut compared = 0;
    for offset in described["offsets"].as_array().unwrap() {
        let partition = offset["partition"].as_u64().unwrap().to_string();
        let labels = [("group", "audit"), ("topic", TOPIC), ("partition", partition.as_str())];
        let lag = select(&samples, "rill_group_lag_records", &labels);
        assert_eq!(lag.len(), 1, "one coordinator reports partition {partition}: {lag:?}");
        assert_eq!(lag[0].value, offset["lag"].as_f64().unwrap(), "partition {partition}: {offset}");
        let committed = select(&samples, "rill_group_committed_offset", &labels);
        assert_eq!(committed[0].value, offset["committed_offset"].as_f64().unwrap());
        compared += 1;
    }
    assert_eq!(compared, PARTITIONS);

    // The console's page and its data, from any broker.
    let page = http_get(&cluster.node(2).http_addr(), "/ui").unwrap();
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<script src=\"/ui/app.js\">"));
    let overview: Value =
        serde_json::from_str(&http_get(&cluster.node(2).http_addr(), "/ui/api/overview").unwrap().body)
            .expect("overview is JSON");
    assert_eq!(overview["brokers"].as_array().unwrap().len(), 3);
    assert!(overview["brokers"].as_array().unwrap().iter().all(|b| b["fenced"] == false));
    let orders = overview["topics"].as_array().unwrap().iter().find(|t| t["name"] == TOPIC).unwrap();
    let high_watermarks: u64 =
        orders["partitions"].as_array().unwrap().iter().map(|p| p["high_watermark"].as_u64().unwrap()).sum();
    assert_eq!(high_watermarks, 3_300);

    // In a real browser: the console before and after a broker is killed. A producer runs meanwhile, so the
    // charts have something to draw.
    let console = format!("http://{}/ui", cluster.node(1).http_addr());
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console");
    let traffic = {
        let config = cluster.client_config();
        tokio::spawn(async move {
            let producer = Producer::connect(config, ProducerConfig::default()).await.expect("connect producer");
            for i in 0.. {
                let record = ProducerRecord::new(TOPIC, format!("live-{i}")).partition(i % PARTITIONS);
                if producer.send(record).await.is_err() {
                    break;
                }
                if i % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };
    // `rill top` sees the producer's traffic on the topic and every broker; `cluster status --watch` repeats.
    let top = tokio::task::block_in_place(|| {
        cluster.rill(&["top", "--interval-ms", "1500", "--iterations", "1"], b"").success().stdout
    });
    let orders = top.lines().find(|l| l.starts_with("orders ")).unwrap_or_else(|| panic!("no orders row: {top}"));
    let records_per_second: f64 = orders.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(records_per_second > 0.0, "{top}");
    let broker_rows = top.lines().filter(|l| ["1 ", "2 ", "3 "].iter().any(|id| l.starts_with(id))).count();
    assert_eq!(broker_rows, 3, "{top}");
    let watched = cluster.rill(&["cluster", "status", "--watch", "--iterations", "2", "--interval-ms", "200"], b"");
    assert_eq!(watched.success().stdout.matches("controller: active").count(), 2);

    let dom = tokio::task::block_in_place(|| {
        rill_tests::browser::screenshot(&console, &shots.join("healthy.png"));
        rill_tests::browser::rendered_dom(&console)
    });
    assert!(dom.contains("data-loaded=\"true\""), "the page loaded its data: {dom}");
    for id in all {
        assert!(dom.contains(&format!("<tr class=\"alive\" data-broker=\"{id}\">")), "broker {id} alive: {dom}");
    }
    for partition in 0..PARTITIONS {
        let row = format!("<tr class=\"ok\" data-topic=\"{TOPIC}\" data-partition=\"{partition}\">");
        assert!(dom.contains(&row), "partition {partition} healthy: {dom}");
    }

    cluster.node_mut(3).kill9();
    let killed = Instant::now();
    let dom = tokio::task::block_in_place(|| {
        let mut dom = String::new();
        wait_until(SETTLE, "the console shows broker 3 fenced and every partition under-replicated", || {
            dom = rill_tests::browser::rendered_dom(&console);
            dom.contains("<tr class=\"fenced\" data-broker=\"3\">")
                && (0..PARTITIONS).all(|partition| {
                    let row = format!("data-topic=\"{TOPIC}\" data-partition=\"{partition}\"");
                    dom.contains(&format!("<tr class=\"under-replicated\" {row}>"))
                })
        });
        rill_tests::browser::screenshot(&console, &shots.join("broker-3-killed.png"));
        dom
    });
    println!(
        "console showed the killed broker fenced {} ms after kill -9; screenshots in {}",
        killed.elapsed().as_millis(),
        shots.display()
    );
    assert!(dom.contains("<tr class=\"alive\" data-broker=\"1\">"), "{dom}");
    traffic.abort();
}
