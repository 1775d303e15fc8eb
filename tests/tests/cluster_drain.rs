//! Operating a cluster of real `rill-broker` processes: `rill broker drain` moves a broker's leaderships to
//! other in-sync replicas and `rill topic elect-leaders` puts them back; a rolling restart (SIGTERM, restart,
//! wait until in sync, next) of all three brokers under an idempotent acks=all producer and a consumer group
//! fails no write, loses nothing and writes nothing twice, because each stopping broker hands its
//! leaderships over before it stops (controlled shutdown). `rill topic alter-config` and `rill broker
//! alter-config` change settings that every broker applies without a restart, and `rill topic add-partitions`
//! grows a topic that a running producer then writes to.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rill_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord,
};
use rill_tests::checker::read_partition;
use rill_tests::cluster::{ClusterOptions, ClusterProcess, wait_for};
use tokio::sync::watch;

const SESSION_TIMEOUT_MS: u64 = 3_000;
/// A restarted broker catching up into every ISR again (debug builds sharing two cores).
const IN_SYNC_MS_MAX: u64 = 60_000;
/// Everything the producer sent must be acknowledged within this after the roll.
const PRODUCE_MS_MAX: u64 = 60_000;
/// The consumers must have read every acknowledged record within this after the roll.
const CONSUME_MS_MAX: u64 = 60_000;
const READ_MS_MAX: u64 = 30_000;

/// One cluster at a time: they are timing-sensitive.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn start_cluster() -> ClusterProcess {
    start_cluster_with(&[])
}

fn start_cluster_with(more: &[&str]) -> ClusterProcess {
    let mut extra_args = vec!["--session-timeout-ms".to_owned(), SESSION_TIMEOUT_MS.to_string()];
    extra_args.extend(more.iter().map(|a| (*a).to_owned()));
    tokio::task::block_in_place(|| ClusterProcess::start(3, ClusterOptions { extra_args, through_proxy: false }))
}

/// Waits until every partition of `topic` has a leader and all its replicas in sync.
async fn wait_in_sync(admin: &Admin, topic: &str) {
    wait_for(Duration::from_millis(IN_SYNC_MS_MAX), "every replica is in sync", || async {
        let description = admin.describe_topic(topic).await.map_err(|e| e.to_string())?;
        let lagging: Vec<_> =
            description.partitions.iter().filter(|p| p.leader == 0 || p.isr.len() != p.replicas.len()).collect();
        if lagging.is_empty() { Ok(()) } else { Err(format!("{lagging:?}")) }
    })
    .await;
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drain_moves_leaderships_to_in_sync_replicas_and_elect_leaders_brings_them_back() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = start_cluster();
    let admin = Admin::connect(cluster.client_config()).await.expect("connect admin");
    let rill = |args: &[&str]| tokio::task::block_in_place(|| cluster.rill(args, b""));
    rill(&["topic", "create", "drained", "--partitions", "6", "--replication-factor", "3"]).success();
    wait_in_sync(&admin, "drained").await;
    let before = admin.describe_topic("drained").await.unwrap();
    assert!(before.partitions.iter().any(|p| p.leader == 1), "broker 1 leads some partitions: {before:?}");

    let drained = rill(&["broker", "drain", "1"]).success();
    assert!(drained.stderr.contains("broker 1 is drained"), "{drained:?}");
    let after = admin.describe_topic("drained").await.unwrap();
    for (old, new) in before.partitions.iter().zip(&after.partitions) {
        assert_ne!(new.leader, 1, "partition {} still led by the drained broker", new.partition);
        assert_eq!(new.isr.len(), 3, "a drained broker stays in sync: {new:?}");
        if old.leader == 1 {
            assert!(new.leader_epoch > old.leader_epoch, "a moved leadership gets a new epoch: {old:?} {new:?}");
        }
    }
    let status = json(&rill(&["cluster", "status", "--format", "json"]).success().stdout);
    let broker1 = status["brokers"].as_array().unwrap().iter().find(|b| b["id"] == 1).unwrap().clone();
    assert_eq!(broker1["state"], "draining", "{status}");

    // While it drains, its preferred leaderships cannot come back.
    let elections = json(&rill(&["topic", "elect-leaders", "drained", "--format", "json"]).success().stdout);
    for e in elections.as_array().unwrap().iter().filter(|e| e["preferred"] == 1) {
        assert_eq!(e["outcome"], "not-eligible", "{e}");
        assert!(e["reason"].as_str().unwrap().contains("draining"), "{e}");
    }
    rill(&["broker", "drain", "1", "--cancel"]).success();
    let elections = json(&rill(&["topic", "elect-leaders", "--format", "json"]).success().stdout);
    assert!(elections.as_array().unwrap().iter().any(|e| e["topic"] == "drained" && e["outcome"] == "elected"));
    let back = admin.describe_topic("drained").await.unwrap();
    for p in &back.partitions {
        assert_eq!(p.leader, p.replicas[0], "the preferred replica leads again: {p:?}");
    }
    let status = json(&rill(&["cluster", "status", "--format", "json"]).success().stdout);
    assert!(status["brokers"].as_array().unwrap().iter().all(|b| b["state"] == "alive"), "{status}");

    // Bad requests get clear errors and change nothing.
    let unknown = rill(&["broker", "drain", "9"]);
    assert_ne!(unknown.code(), Some(0));
    assert!(unknown.stderr.contains("broker 9 is not registered"), "{unknown:?}");
    let missing = rill(&["topic", "elect-leaders", "no-such-topic"]);
    assert_ne!(missing.code(), Some(0));
    assert!(missing.stderr.contains("no-such-topic"), "{missing:?}");
}

/// What the producer task sent: value, partition and offset (or the error), and the latency of each write.
struct Produced {
    acked: Vec<(String, u32, u64)>,
    failed: Vec<(String, String)>,
    latencies_ms: Vec<f64>,
}

/// Sends keyed records (`bursts` of 10 every 10 ms) until `stop` turns true, then flushes.
fn produce_until(
    client: ClientConfig,
    topic: &'static str,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Produced> {
    tokio::spawn(async move {
        let config = ProducerConfig {
            linger_ms: 2,
            request_timeout_ms: 5_000,
            delivery_timeout_ms: PRODUCE_MS_MAX,
            ..ProducerConfig::default()
        };
        let producer = Producer::connect(client, config).await.expect("connect the producer");
        let mut pending = Vec::new();
        let mut i = 0usize;
        while !*stop.borrow() {
            for _ in 0..10 {
                let value = format!("r-{i}");
                let record = ProducerRecord::new(topic, value.clone()).key(format!("k-{}", i % 64));
                let started = Instant::now();
                let delivery = producer.send(record).await.expect("the producer accepts records");
                pending.push(tokio::spawn(async move { (value, delivery.await, started.elapsed()) }));
                i += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        producer.flush().await;
        let mut produced = Produced { acked: Vec::new(), failed: Vec::new(), latencies_ms: Vec::new() };
        for task in pending {
            let (value, outcome, latency) = task.await.expect("a delivery task");
            match outcome {
                Ok(m) => {
                    produced.latencies_ms.push(latency.as_secs_f64() * 1000.0);
                    produced.acked.push((value, m.partition, m.offset));
                }
                Err(e) => produced.failed.push((value, e.to_string())),
            }
        }
        producer.close().await;
        produced
    })
}

/// A consumer in group `group` reading `topic` until `stop`; returns every value it read.
fn consume_until(
    client: ClientConfig,
    group: &'static str,
    topic: &'static str,
    seen: Arc<Mutex<Vec<String>>>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let config = ConsumerConfig {
            group_id: Some(group.to_owned()),
            offset_reset: OffsetReset::Earliest,
            session_timeout_ms: 6_000,
            heartbeat_interval_ms: 500,
            auto_commit_interval_ms: 500,
            ..ConsumerConfig::default()
        };
        let mut consumer = Consumer::connect(client, config).await.expect("connect the consumer");
        consumer.subscribe(&[topic]).await.expect("subscribe");
        while !*stop.borrow() {
            let records = tokio::select! {
                records = consumer.poll(Duration::from_millis(300)) => records,
                _ = stop.changed() => break,
            };
            match records {
                Ok(records) => {
                    let mut seen = seen.lock().unwrap();
                    seen.extend(records.into_iter().map(|r| String::from_utf8_lossy(&r.value.unwrap()).into_owned()));
                }
                // A broker restarting under the consumer: it retries on the next poll.
                Err(e) => eprintln!("poll failed: {e}"),
            }
        }
        let _ = consumer.close().await;
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_under_an_idempotent_producer_and_a_group_fails_loses_and_duplicates_nothing() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = start_cluster();
    let topic = "rolling";
    let admin = Admin::connect(cluster.client_config()).await.expect("connect admin");
    let config = BTreeMap::from([("min.insync.replicas".to_owned(), "2".to_owned())]);
    admin.create_topic(topic, 3, Some(3), config).await.expect("create the topic");
    wait_in_sync(&admin, topic).await;

    let (stop_producing, producing) = watch::channel(false);
    let (stop_consuming, consuming) = watch::channel(false);
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let producer = produce_until(cluster.client_config(), topic, producing);
    let consumers: Vec<_> = (0..2)
        .map(|_| consume_until(cluster.client_config(), "rollers", topic, seen.clone(), consuming.clone()))
        .collect();
    wait_for(Duration::from_millis(CONSUME_MS_MAX), "the consumers read", || async {
        let n = seen.lock().unwrap().len();
        if n >= 500 { Ok(()) } else { Err(format!("{n} records read")) }
    })
    .await;

    let roll_started = Instant::now();
    for id in cluster.ids() {
        let led_before =
            admin.describe_topic(topic).await.unwrap().partitions.iter().filter(|p| p.leader == id).count();
        let status = tokio::task::block_in_place(|| cluster.node_mut(id).terminate());
        assert!(status.success(), "broker {id} stops cleanly on SIGTERM: {status:?}");
        let log = cluster.node(id).log();
        assert!(
            log.contains("controlled shutdown: every leadership that can move moved"),
            "broker {id} handed its {led_before} leaderships over before stopping:\n{}",
            cluster.logs_tail()
        );
        tokio::task::block_in_place(|| cluster.node_mut(id).restart());
        wait_in_sync(&admin, topic).await;
        println!("rolled broker {id} (led {led_before} partitions) at {:?}", roll_started.elapsed());
    }
    let roll = roll_started.elapsed();
    // Traffic keeps flowing a moment after the last restart, then stops.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    stop_producing.send(true).unwrap();
    let produced = tokio::time::timeout(Duration::from_millis(PRODUCE_MS_MAX), producer)
        .await
        .expect("the producer finishes")
        .expect("the producer task");
    assert!(
        produced.failed.is_empty(),
        "failed writes during the roll: {:?}",
        &produced.failed[..produced.failed.len().min(5)]
    );

    // The log holds every acknowledged record once, where it was acknowledged, and nothing else.
    let addresses: Vec<String> = cluster.ids().iter().map(|id| cluster.client_address(*id)).collect();
    let mut in_log: HashMap<String, Vec<(u32, u64)>> = HashMap::new();
    for partition in 0..3 {
        let log = read_partition(&addresses, topic, partition, Duration::from_millis(READ_MS_MAX)).await.unwrap();
        for r in &log.records {
            let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
            in_log.entry(value).or_default().push((partition, r.offset));
        }
    }
    let duplicated: Vec<_> = in_log.iter().filter(|(_, at)| at.len() > 1).take(5).collect();
    assert!(duplicated.is_empty(), "records written more than once: {duplicated:?}");
    for (value, partition, offset) in &produced.acked {
        assert_eq!(
            in_log.get(value),
            Some(&vec![(*partition, *offset)]),
            "{value} acknowledged at {partition}/{offset}"
        );
    }
    assert_eq!(in_log.len(), produced.acked.len(), "the log holds records nobody sent");

    // The group read every record (at least once: a rebalance may hand a partition over before a commit).
    let acked: HashSet<&str> = produced.acked.iter().map(|(v, _, _)| v.as_str()).collect();
    wait_for(Duration::from_millis(CONSUME_MS_MAX), "the group read every record", || async {
        let seen = seen.lock().unwrap();
        let read: HashSet<&str> = seen.iter().map(String::as_str).collect();
        let missing = acked.iter().filter(|v| !read.contains(*v)).count();
        if missing == 0 { Ok(()) } else { Err(format!("{missing} of {} not read yet", acked.len())) }
    })
    .await;
    stop_consuming.send(true).unwrap();
    for consumer in consumers {
        consumer.await.expect("a consumer task");
    }
    let read_again = seen.lock().unwrap().len() - acked.len();

    let mut latencies = produced.latencies_ms.clone();
    latencies.sort_by(f64::total_cmp);
    println!(
        "rolling restart of 3 brokers in {roll:?}: {} records acknowledged, 0 failed, 0 lost, 0 duplicated in the log; \
         producer latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; the group read {read_again} records a second time",
        produced.acked.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );

    // After the roll, preferred-leader election spreads the leaderships back.
    let elections = admin.elect_leaders(&[topic.to_owned()]).await.expect("elect preferred leaders");
    assert!(elections.iter().all(|e| e.outcome == "elected" || e.outcome == "already-preferred"), "{elections:?}");
    for p in admin.describe_topic(topic).await.unwrap().partitions {
        assert_eq!(p.leader, p.replicas[0], "{p:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topic_and_broker_configs_change_at_runtime_on_every_broker() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = start_cluster_with(&["--retention-check-interval-ms", "200"]);
    let admin = Admin::connect(cluster.client_config()).await.expect("connect admin");
    let rill = |args: &[&str], stdin: &[u8]| tokio::task::block_in_place(|| cluster.rill(args, stdin));
    rill(&["topic", "create", "tuned", "--partitions", "1", "--replication-factor", "3"], b"").success();
    wait_in_sync(&admin, "tuned").await;
    let big = "x".repeat(3_000);

    // A smaller batch limit refuses what it allowed a moment ago; deleting the key allows it again.
    let altered = rill(&["topic", "alter-config", "tuned", "max.message.bytes=1024"], b"").success();
    assert!(altered.stdout.contains("max.message.bytes=1024"), "{altered:?}");
    let refused = rill(&["produce", "tuned"], format!("{big}\n").as_bytes());
    assert_ne!(refused.code(), Some(0), "a 3 kB batch passes a 1 kB limit: {refused:?}");
    assert!(refused.stderr.contains("exceeds the limit of 1024 bytes"), "{refused:?}");
    rill(&["topic", "alter-config", "tuned", "--delete", "max.message.bytes"], b"").success();
    rill(&["produce", "tuned"], format!("{big}\n").as_bytes()).success();

    // Small segments and a byte limit make retention delete old segments, on the running brokers.
    rill(&["topic", "alter-config", "tuned", "segment.bytes=4096", "retention.bytes=8192"], b"").success();
    let description = json(&rill(&["topic", "describe", "tuned", "--format", "json"], b"").success().stdout);
    assert_eq!(description["config"]["retention.bytes"], "8192", "{description}");
    let lines: Vec<String> = (0..200).map(|i| format!("{i:04}-{}", "y".repeat(200))).collect();
    rill(&["produce", "tuned"], &rill_tests::lines_input(&lines)).success();
    wait_for(Duration::from_millis(IN_SYNC_MS_MAX), "retention deletes old segments", || async {
        let p = admin.describe_topic("tuned").await.map_err(|e| e.to_string())?.partitions[0].clone();
        if p.log_start_offset > 0 { Ok(()) } else { Err(format!("{p:?}")) }
    })
    .await;

    // A broker's dynamic defaults apply to topics without an override of their own, on that broker.
    rill(&["topic", "create", "plain", "--partitions", "1", "--replication-factor", "3"], b"").success();
    wait_in_sync(&admin, "plain").await;
    for id in cluster.ids() {
        let out = rill(&["broker", "alter-config", &id.to_string(), "max.message.bytes=1024"], b"").success();
        assert!(out.stdout.contains(&format!("broker {id} config now")), "{out:?}");
    }
    let refused = rill(&["produce", "plain"], format!("{big}\n").as_bytes());
    assert!(refused.stderr.contains("exceeds the limit of 1024 bytes"), "{refused:?}");
    for id in cluster.ids() {
        rill(&["broker", "alter-config", &id.to_string(), "--delete", "max.message.bytes"], b"").success();
    }
    rill(&["produce", "plain"], format!("{big}\n").as_bytes()).success();

    // Bad changes are refused with the reason, and change nothing.
    let unknown_key = rill(&["topic", "alter-config", "tuned", "no.such.key=1"], b"");
    assert!(unknown_key.stderr.contains("unknown topic config key 'no.such.key'"), "{unknown_key:?}");
    let bad_value = rill(&["topic", "alter-config", "tuned", "min.insync.replicas=4"], b"");
    assert!(bad_value.stderr.contains("exceeds the replication factor"), "{bad_value:?}");
    let unknown_topic = rill(&["topic", "alter-config", "nope", "retention.ms=1"], b"");
    assert!(unknown_topic.stderr.contains("nope"), "{unknown_topic:?}");
    let unknown_broker = rill(&["broker", "alter-config", "9", "retention.ms=1"], b"");
    assert!(unknown_broker.stderr.contains("broker 9 is not registered"), "{unknown_broker:?}");
    let nothing = rill(&["topic", "alter-config", "tuned"], b"");
    assert_ne!(nothing.code(), Some(0));
    let description = json(&rill(&["topic", "describe", "tuned", "--format", "json"], b"").success().stdout);
    assert_eq!(description["config"]["segment.bytes"], "4096", "{description}");
    assert!(description["config"].get("no.such.key").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn added_partitions_are_replicated_and_a_running_producer_writes_to_them() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = start_cluster();
    let admin = Admin::connect(cluster.client_config()).await.expect("connect admin");
    let rill = |args: &[&str], stdin: &[u8]| tokio::task::block_in_place(|| cluster.rill(args, stdin));
    let topic = "growing";
    rill(&["topic", "create", topic, "--partitions", "2", "--replication-factor", "3"], b"").success();
    wait_in_sync(&admin, topic).await;
    // A producer that refreshes its metadata often, connected while the topic has two partitions.
    let client = ClientConfig { metadata_max_age_ms: 300, ..cluster.client_config() };
    let producer = Producer::connect(client, ProducerConfig::default()).await.expect("connect the producer");
    let keyed = |i: usize| ProducerRecord::new(topic, format!("v-{i}")).key(format!("key-{i}"));
    let mut acknowledged: Vec<(String, u32, u64)> = Vec::new();
    for i in 0..20 {
        let m = producer.send(keyed(i)).await.expect("queued").await.expect("acknowledged");
        assert!(m.partition < 2, "{m:?}");
        acknowledged.push((format!("v-{i}"), m.partition, m.offset));
    }

    // Bad counts are refused with the reason; a validation changes nothing.
    let same = rill(&["topic", "add-partitions", topic, "--partitions", "2"], b"");
    assert!(same.stderr.contains("has 2 partition(s); the new count must be higher"), "{same:?}");
    let internal = rill(&["topic", "add-partitions", "__consumer_offsets", "--partitions", "100"], b"");
    assert!(internal.stderr.contains("reserved for internal topics"), "{internal:?}");
    let unknown = rill(&["topic", "add-partitions", "nope", "--partitions", "3"], b"");
    assert!(unknown.stderr.contains("nope"), "{unknown:?}");
    let checked = rill(&["topic", "add-partitions", topic, "--partitions", "5", "--validate-only"], b"").success();
    assert!(checked.stderr.contains("nothing changed"), "{checked:?}");
    assert_eq!(admin.describe_topic(topic).await.expect("describe").partitions.len(), 2);

    let grown = rill(&["topic", "add-partitions", topic, "--partitions", "5"], b"").success();
    assert!(grown.stderr.contains("now has 5 partitions"), "{grown:?}");
    wait_in_sync(&admin, topic).await;
    let description = json(&rill(&["topic", "describe", topic, "--format", "json"], b"").success().stdout);
    let partitions = description["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 5, "{description}");
    let leaders: HashSet<u64> = partitions.iter().map(|p| p["leader"].as_u64().expect("a leader")).collect();
    assert_eq!(leaders.len(), 3, "the new partitions' leaders spread over the brokers: {description}");

    // The running producer learns the new count at its next metadata refresh and keyed records spread over
    // all five partitions; records sent before the change stay where they were.
    let mut partitions_used = HashSet::new();
    for i in 20..400 {
        let m = producer.send(keyed(i)).await.expect("queued").await.expect("acknowledged");
        partitions_used.insert(m.partition);
        acknowledged.push((format!("v-{i}"), m.partition, m.offset));
        if partitions_used.len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(partitions_used.len(), 5, "keyed records reach every partition: {partitions_used:?}");
    producer.close().await;

    let addresses: Vec<String> = cluster.ids().iter().map(|id| cluster.client_address(*id)).collect();
    let mut in_log: HashMap<String, (u32, u64)> = HashMap::new();
    for partition in 0..5 {
        let log = read_partition(&addresses, topic, partition, Duration::from_millis(READ_MS_MAX)).await.unwrap();
        for record in log.records {
            let value = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned();
            assert!(in_log.insert(value, (partition, record.offset)).is_none(), "a record written twice");
        }
    }
    assert_eq!(in_log.len(), acknowledged.len(), "the log holds exactly what was acknowledged");
    for (value, partition, offset) in &acknowledged {
        assert_eq!(in_log.get(value), Some(&(*partition, *offset)), "{value}");
    }
}

/// Leader balancing: after a broker is killed (its leaderships fail over) and restarted (it rejoins the ISRs
/// as a follower), the controller's periodic preferred-leader election gives every partition back to its
/// first replica, and every broker leads within one of an even share.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_balancing_spreads_leaders_evenly_again_after_a_restart() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = start_cluster_with(&["--leader-balance-interval-ms", "1000"]);
    let admin = Admin::connect(cluster.client_config()).await.expect("connect admin");
    let topic = "balanced";
    let partitions = 6;
    admin.create_topic(topic, partitions, Some(3), BTreeMap::new()).await.expect("create the topic");
    wait_in_sync(&admin, topic).await;
    let ids = cluster.ids();
    let leaders_per_broker = |description: &rill_client::TopicDescription| {
        let mut counts: BTreeMap<u32, usize> = ids.iter().map(|id| (*id, 0)).collect();
        for p in &description.partitions {
            *counts.entry(p.leader).or_default() += 1;
        }
        counts
    };
    let victim = admin.describe_topic(topic).await.expect("describe").partitions[0].leader;

    tokio::task::block_in_place(|| cluster.node_mut(victim).kill9());
    wait_for(Duration::from_millis(IN_SYNC_MS_MAX), "the killed broker's leaderships fail over", || async {
        let d = admin.describe_topic(topic).await.map_err(|e| e.to_string())?;
        if d.partitions.iter().all(|p| p.leader != victim && p.leader != 0) { Ok(()) } else { Err(format!("{d:?}")) }
    })
    .await;
    let failed_over = admin.describe_topic(topic).await.expect("describe");
    let skewed = leaders_per_broker(&failed_over);
    assert_eq!(skewed[&victim], 0, "{skewed:?}");
    tokio::task::block_in_place(|| cluster.node_mut(victim).restart());

    // A restarted broker answers from its own metadata, which may lag at first: a partition counts as back
    // only once it is led by its preferred replica in an epoch after the failover's.
    wait_for(Duration::from_millis(IN_SYNC_MS_MAX), "every partition led by its preferred replica", || async {
        let d = admin.describe_topic(topic).await.map_err(|e| e.to_string())?;
        let off: Vec<_> = d
            .partitions
            .iter()
            .zip(&failed_over.partitions)
            .filter(|(now, then)| {
                Some(&now.leader) != now.replicas.first()
                    || (then.leader_epoch > 0 && now.leader_epoch <= then.leader_epoch)
            })
            .collect();
        if off.is_empty() { Ok(()) } else { Err(format!("{off:?}")) }
    })
    .await;
    let balanced = leaders_per_broker(&admin.describe_topic(topic).await.expect("describe"));
    let even = partitions as usize / ids.len();
    assert!(balanced.values().all(|n| n.abs_diff(even) <= 1), "leaders per broker: {balanced:?}");
}
