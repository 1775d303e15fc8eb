//! Real Kafka clients that no one on this team wrote, against real `rill-broker` processes' Kafka listeners:
//! kcat (librdkafka), confluent-kafka (librdkafka in a Python wheel) and kafka-python, installed by
//! `bash .ci/kafka-clients.sh`. They produce and consume, fail over, share partitions in consumer groups, and
//! exchange records with Rill's own `rill` CLI through the same topics.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rill_tests::checker::{self, Attempt, History, Outcome, read_partition};
use rill_tests::cluster::{ClusterOptions, ClusterProcess, wait_for};
use rill_tests::kafka_clients::{StreamingClient, run_kcat, run_python};
use rill_tests::{BrokerOptions, BrokerProcess};
use serde_json::{Value, json};

/// How long one client run may take before the test fails.
const CLIENT_RUN_MS_MAX: u64 = 120_000;
/// Kafka's API key of ApiVersions.
const API_VERSIONS_KEY: i16 = 18;

fn json_lines(lines: &[String]) -> Vec<Value> {
    lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

fn json_output(stdout: &str) -> Vec<Value> {
    json_lines(&stdout.lines().map(str::to_owned).collect::<Vec<_>>())
}

/// The broker's version table as `(api key, min, max)`, as docs/KAFKA.md lists it. rill-tests does not depend
/// on rill-broker, so it is spelled out here.
fn rill_broker_versions() -> Vec<(i16, i16, i16)> {
    vec![
        (0, 3, 11),
        (1, 4, 12),
        (2, 1, 6),
        (3, 0, 12),
        (8, 2, 8),
        (9, 1, 7),
        (10, 0, 4),
        (11, 0, 9),
        (12, 0, 4),
        (13, 0, 5),
        (14, 0, 5),
        (15, 0, 5),
        (16, 0, 4),
        (17, 1, 1),
        (API_VERSIONS_KEY, 0, 3),
        (19, 2, 7),
        (20, 1, 6),
        (22, 0, 4),
        (23, 2, 4),
        (32, 1, 4),
        (33, 0, 2),
        (36, 0, 2),
        (37, 0, 3),
        (42, 0, 2),
        (43, 0, 2),
        (44, 0, 1),
        (60, 0, 1),
    ]
}

#[test]
fn kafka_python_learns_the_version_table_after_the_kip_511_downgrade() {
    let broker = BrokerProcess::start(BrokerOptions::default());
    let output = run_python("api_versions.py", &[&broker.kafka_addr()], CLIENT_RUN_MS_MAX).success();
    let learned: Value = serde_json::from_str(output.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr:\n{}", output.stdout, output.stderr));
    let expected: serde_json::Map<String, Value> =
        rill_broker_versions().into_iter().map(|(key, min, max)| (key.to_string(), json!([min, max]))).collect();
    assert_eq!(learned["api_versions"], Value::Object(expected), "{learned}");
    // kafka-python asks at its newest ApiVersions version first; the broker serves up to v3, so the client
    // must have been told UNSUPPORTED_VERSION and asked again at v3.
    assert!(learned["client_api_versions_max"].as_i64().unwrap() > 3, "{learned}");
    assert_eq!(learned["api_versions_used"], 3, "{learned}");
}

/// Test 1: kcat writes 100,000 lines and reads every one back, each partition in the order written, and its
/// metadata listing agrees with `rill topic describe`.
#[test]
fn kcat_writes_and_reads_100000_lines_in_order_and_lists_what_rill_describes() {
    let broker = BrokerProcess::start(BrokerOptions::default());
    let kafka = broker.kafka_addr();
    broker.rill(&["topic", "create", "lines", "--partitions", "3"], b"").success();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let input = dir.path().join("lines.txt");
    let lines: Vec<String> = (0..100_000).map(|i| format!("line-{i}")).collect();
    std::fs::write(&input, lines.join("\n") + "\n").expect("write the input");
    run_kcat(&["-b", &kafka, "-P", "-t", "lines", "-l", input.to_str().unwrap()], CLIENT_RUN_MS_MAX).success();

    let read = run_kcat(
        &["-b", &kafka, "-C", "-t", "lines", "-o", "beginning", "-e", "-q", "-f", "%p %o %s\n"],
        CLIENT_RUN_MS_MAX,
    )
    .success();
    let mut by_partition: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
    for line in read.stdout.lines() {
        let mut fields = line.splitn(3, ' ');
        let partition: u32 = fields.next().unwrap().parse().unwrap();
        let offset: u64 = fields.next().unwrap().parse().unwrap();
        let n: u64 = fields.next().unwrap().strip_prefix("line-").expect("a line written").parse().unwrap();
        by_partition.entry(partition).or_default().push((offset, n));
    }
    let total: usize = by_partition.values().map(Vec::len).sum();
    assert_eq!(total, lines.len(), "every line read back once");
    for (partition, records) in &by_partition {
        let offsets: Vec<u64> = records.iter().map(|(o, _)| *o).collect();
        assert_eq!(
            offsets,
            (0..records.len() as u64).collect::<Vec<_>>(),
            "partition {partition}: offsets 0.. without gaps"
        );
        assert!(records.windows(2).all(|w| w[0].1 < w[1].1), "partition {partition}: lines in the order written");
    }

    let listed = run_kcat(&["-b", &kafka, "-L", "-J", "-t", "lines"], CLIENT_RUN_MS_MAX).success();
    let listed: Value = serde_json::from_str(&listed.stdout).expect("kcat -L -J prints JSON");
    let described: Value =
        serde_json::from_str(&broker.rill(&["topic", "describe", "lines", "--format", "json"], b"").success().stdout)
            .expect("rill topic describe prints JSON");
    let kcat_partitions: BTreeMap<u64, (u64, Vec<u64>, Vec<u64>)> = listed["topics"][0]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            let ids = |key: &str| p[key].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect();
            (p["partition"].as_u64().unwrap(), (p["leader"].as_u64().unwrap(), ids("replicas"), ids("isrs")))
        })
        .collect();
    let rill_partitions: BTreeMap<u64, (u64, Vec<u64>, Vec<u64>)> = described["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            let ids = |key: &str| p[key].as_array().unwrap().iter().map(|r| r.as_u64().unwrap()).collect();
            (p["partition"].as_u64().unwrap(), (p["leader"].as_u64().unwrap(), ids("replicas"), ids("isr")))
        })
        .collect();
    assert_eq!(kcat_partitions, rill_partitions, "kcat -L and rill topic describe agree");
    assert_eq!(listed["brokers"][0]["name"], json!(kafka), "the broker's Kafka address is advertised");
}

/// Test 4: records written by `rill produce` read by kcat and kafka-python, and records written by
/// confluent-kafka read by `rill consume`, with keys, values, headers and timestamps equal.
#[test]
fn records_cross_between_rills_own_api_and_kafka_clients_unchanged() {
    let broker = BrokerProcess::start(BrokerOptions::default());
    let kafka = broker.kafka_addr();
    broker.rill(&["topic", "create", "from-rill", "--partitions", "1"], b"").success();
    broker.rill(&["topic", "create", "from-kafka", "--partitions", "1"], b"").success();
    let input = "k1:hello\nk2:world\nk3:again\n";
    broker
        .rill(
            &["produce", "from-rill", "--key-separator", ":", "--header", "origin=rill", "--header", "n=1"],
            input.as_bytes(),
        )
        .success();
    let consume = ["consume", "from-rill", "--from-beginning", "--max-messages", "3", "--format", "json"];
    let ours = json_output(&broker.rill(&consume, b"").success().stdout);
    assert_eq!(ours.len(), 3);
    let headers = json!([["origin", "rill"], ["n", "1"]]);
    let expected: Vec<Value> = ours
        .iter()
        .map(|r| json!({"o": r["offset"], "ts": r["timestamp"], "key": r["key"], "value": r["value"], "headers": headers}))
        .collect();

    let python = run_python("read_records.py", &[&kafka, "from-rill", "3"], CLIENT_RUN_MS_MAX).success();
    let theirs: Vec<Value> = json_output(&python.stdout)
        .into_iter()
        .map(|r| json!({"o": r["o"], "ts": r["ts"], "key": r["key"], "value": r["value"], "headers": r["headers"]}))
        .collect();
    assert_eq!(theirs, expected, "kafka-python reads what rill produce wrote");

    let kcat = run_kcat(
        &["-b", &kafka, "-C", "-t", "from-rill", "-o", "beginning", "-e", "-q", "-f", "%o|%T|%k|%s|%h\n"],
        CLIENT_RUN_MS_MAX,
    )
    .success();
    let kcat_lines: Vec<String> = kcat.stdout.lines().map(str::to_owned).collect();
    let expected_lines: Vec<String> = ours
        .iter()
        .map(|r| {
            let (k, v) = (r["key"].as_str().unwrap(), r["value"].as_str().unwrap());
            format!("{}|{}|{k}|{v}|origin=rill,n=1", r["offset"], r["timestamp"])
        })
        .collect();
    assert_eq!(kcat_lines, expected_lines, "kcat reads what rill produce wrote");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let records: Vec<Value> = (0..5)
        .map(|i| json!({"key": format!("key-{i}"), "value": format!("value-{i}"), "ts": 1_700_000_000_000i64 + i, "headers": [["h", format!("{i}")], ["trace", "x"]]}))
        .collect();
    let path = dir.path().join("records.jsonl");
    std::fs::write(&path, records.iter().map(Value::to_string).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    run_python("produce_records.py", &[&kafka, "from-kafka", path.to_str().unwrap()], CLIENT_RUN_MS_MAX).success();
    let consume = ["consume", "from-kafka", "--from-beginning", "--max-messages", "5", "--format", "json"];
    let read: Vec<Value> = json_output(&broker.rill(&consume, b"").success().stdout)
        .into_iter()
        .map(|r| json!({"key": r["key"], "value": r["value"], "ts": r["timestamp"], "headers": r["headers"]}))
        .collect();
    assert_eq!(read, records, "rill consume reads what confluent-kafka wrote");
}

/// One delivery report of `produce_history.py` as an attempt of the checker's history.
fn attempt(producer: u32, topic: &str, report: &Value, at: Instant) -> Attempt {
    let outcome = match report["offset"].as_u64() {
        Some(offset) => Outcome::Acked { offset },
        None => Outcome::Failed { error: report["error"].to_string() },
    };
    Attempt {
        producer,
        seq: report["seq"].as_u64().expect("a sequence number"),
        topic: topic.to_owned(),
        partition: report["partition"].as_u64().map_or(u32::MAX, |p| p as u32),
        idempotent: true,
        sent_at: at,
        completed_at: at,
        outcome,
    }
}

/// Test 2: idempotent confluent-kafka producers (acks=all), one per compression codec, write to a 3-node
/// cluster at replication factor 3 while the leader of a partition is killed with kill -9: every record is
/// delivered, and every delivered record is in the log exactly once, in order per partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_librdkafka_producers_survive_a_leader_kill_without_loss_or_duplicates() {
    const RECORDS_PER_PRODUCER: usize = 3_000;
    const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
    let args = ["--heartbeat-interval-ms", "500", "--session-timeout-ms", "3000", "--replica-lag-ms-max", "3000"];
    let extra_args = args.iter().map(|a| a.to_string()).collect();
    let mut cluster =
        tokio::task::block_in_place(|| ClusterProcess::start(3, ClusterOptions { extra_args, through_proxy: false }));
    cluster
        .rill(
            &[
                "topic",
                "create",
                "idem",
                "--partitions",
                "3",
                "--replication-factor",
                "3",
                "--config",
                "min.insync.replicas=2",
            ],
            b"",
        )
        .success();
    let bootstrap: Vec<String> = cluster.ids().iter().map(|id| cluster.node(*id).kafka_addr()).collect();
    let bootstrap = bootstrap.join(",");
    let count = RECORDS_PER_PRODUCER.to_string();
    let mut producers: Vec<StreamingClient> = CODECS
        .iter()
        .enumerate()
        .map(|(i, codec)| {
            StreamingClient::python("produce_history.py", &[&bootstrap, "idem", codec, &count, &i.to_string()])
        })
        .collect();
    // Kill the leader of partition 0 once every producer has had some records acknowledged.
    for p in &mut producers {
        p.read_until(Duration::from_secs(60), "200 delivery reports", |seen| seen.len() >= 200);
    }
    let described: Value =
        serde_json::from_str(&cluster.rill(&["topic", "describe", "idem", "--format", "json"], b"").success().stdout)
            .unwrap();
    let leader = described["partitions"][0]["leader"].as_u64().expect("a leader") as u32;
    cluster.node_mut(leader).kill9();
    let reported_before_kill: usize = producers
        .iter_mut()
        .map(|p| {
            p.drain();
            p.seen.len()
        })
        .sum();
    let mut history = History::default();
    let base = Instant::now();
    for (i, p) in producers.into_iter().enumerate() {
        let reports = json_lines(&p.finish(Duration::from_millis(CLIENT_RUN_MS_MAX * 2)));
        assert_eq!(reports.len(), RECORDS_PER_PRODUCER, "producer {i}: one report per record");
        let acked = reports.iter().filter(|r| r["offset"].is_u64()).count();
        assert_eq!(acked, RECORDS_PER_PRODUCER, "producer {i} ({}): every record delivered", CODECS[i]);
        // Reports in the order printed, which is each producer's completion order.
        let at = |n: usize| base + Duration::from_micros(n as u64);
        history.attempts.extend(reports.iter().enumerate().map(|(n, r)| attempt(i as u32, "idem", r, at(n))));
    }
    assert!(reported_before_kill < history.acked_count(), "the kill happened mid-run");
    let live: Vec<String> =
        cluster.ids().into_iter().filter(|id| *id != leader).map(|id| cluster.client_address(id)).collect();
    let mut logs = Vec::new();
    for partition in 0..3 {
        let acked_end = history.max_acked_offset("idem", partition).map_or(0, |o| o + 1);
        let log = wait_for(Duration::from_secs(60), "the HW passes every acknowledged offset", || async {
            let log = read_partition(&live, "idem", partition, Duration::from_secs(30))
                .await
                .map_err(|e| format!("{e:#}"))?;
            if log.high_watermark >= acked_end {
                Ok(log)
            } else {
                Err(format!("HW {} < {acked_end}", log.high_watermark))
            }
        })
        .await;
        logs.push(log);
    }
    let report = checker::check(&history, &logs);
    println!("idem: {report}");
    report.assert_valid();
    assert_eq!(report.duplicates, 0, "an idempotent producer's record is written once");
    let finals: Vec<_> = logs.iter().map(checker::jepsen::final_from_log).collect();
    let jepsen = checker::jepsen::check_history(&checker::jepsen::ops_from_attempts(&history, "idem"), &finals);
    assert!(jepsen.is_valid(), "the Jepsen-style check failed:\n{jepsen}");
}

/// Values read by every member of a group, and the partitions each was last assigned.
fn group_reads(members: &[&[String]]) -> (BTreeSet<String>, Vec<BTreeSet<u64>>) {
    let mut values = BTreeSet::new();
    let mut assignments = Vec::new();
    for lines in members {
        let mut last = BTreeSet::new();
        for line in json_lines(lines) {
            if let Some(v) = line["v"].as_str() {
                values.insert(v.to_owned());
            }
            if let Some(a) = line["assigned"].as_array() {
                last = a.iter().map(|p| p.as_u64().unwrap()).collect();
            }
        }
        assignments.push(last);
    }
    (values, assignments)
}

fn values(range: std::ops::Range<usize>) -> BTreeSet<String> {
    range.map(|i| format!("order-{i}")).collect()
}

fn produce_orders(broker: &BrokerProcess, range: std::ops::Range<usize>) {
    let input: String = range.map(|i| format!("{}:order-{i}\n", i % 17)).collect();
    broker.rill(&["produce", "orders", "--key-separator", ":"], input.as_bytes()).success();
}

/// Committed offset and lag per partition, as `rill group describe` reports them.
fn described_group(broker: &BrokerProcess, group: &str) -> Value {
    serde_json::from_str(&broker.rill(&["group", "describe", group, "--format", "json"], b"").success().stdout)
        .expect("rill group describe prints JSON")
}

fn total_lag(described: &Value) -> u64 {
    described["offsets"].as_array().expect("offsets").iter().map(|o| o["lag"].as_u64().unwrap()).sum()
}

/// Test 3: a group of three confluent-kafka consumers (cooperative-sticky) reads every record; one is killed
/// with kill -9 and the others take its partitions over; a new member resumes at the committed offsets, and
/// `rill group describe` shows the group and its lag. A group of kafka-python consumers (range) reads every
/// record too.
#[test]
fn classic_consumer_groups_share_partitions_take_over_a_killed_member_and_resume_from_commits() {
    const FIRST: usize = 3_000;
    const MORE: usize = 600;
    let broker = BrokerProcess::start(BrokerOptions::default());
    let kafka = broker.kafka_addr();
    broker.rill(&["topic", "create", "orders", "--partitions", "6"], b"").success();
    produce_orders(&broker, 0..FIRST / 2);

    // Members stop on their own once nothing new arrives for a while; the three first ones are stopped by the
    // test, so they outlast the takeover.
    let member = |client: &str, group: &str, strategy: &str, idle_s: &str| {
        StreamingClient::python("group_consumer.py", &[&kafka, group, "orders", client, strategy, idle_s])
    };
    let mut members: Vec<StreamingClient> =
        (0..3).map(|_| member("confluent", "cg", "cooperative-sticky", "120")).collect();
    for m in &mut members {
        m.read_until(Duration::from_secs(60), "an assignment with partitions", |seen| {
            seen.iter().any(|l| l.contains("\"assigned\": [") && !l.contains("[]"))
        });
    }
    // Kill the first member that holds partitions, once the group is reading.
    members[0].read_until(Duration::from_secs(60), "records read", |seen| seen.iter().any(|l| l.contains("\"v\"")));
    members[0].kill9();
    // Records written after the kill land on its partitions too: only a takeover reads them.
    produce_orders(&broker, FIRST / 2..FIRST);
    let mut survivors: Vec<StreamingClient> = members.split_off(1);
    let killed = members;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        for s in &mut survivors {
            s.drain();
        }
        let seen: Vec<&[String]> =
            survivors.iter().map(|s| s.seen.as_slice()).chain(killed.iter().map(|k| k.seen.as_slice())).collect();
        let (read, assignments) = group_reads(&seen);
        let survivors_hold: BTreeSet<u64> = assignments[..survivors.len()].iter().flatten().copied().collect();
        if read.is_superset(&values(0..FIRST)) && survivors_hold == (0..6).collect() {
            break;
        }
        assert!(Instant::now() < deadline, "read {} of {FIRST}; survivors hold {survivors_hold:?}", read.len());
        std::thread::sleep(Duration::from_millis(100));
    }
    for s in &survivors {
        s.terminate();
    }
    for s in survivors {
        s.finish(Duration::from_secs(60));
    }
    let described = described_group(&broker, "cg");
    assert_eq!(total_lag(&described), 0, "every record committed: {described}");

    produce_orders(&broker, FIRST..FIRST + MORE);
    let resumed = member("confluent", "cg", "cooperative-sticky", "5");
    let lines = resumed.finish(Duration::from_millis(CLIENT_RUN_MS_MAX));
    let (read, _) = group_reads(&[&lines]);
    assert_eq!(read, values(FIRST..FIRST + MORE), "a new member starts at the committed offsets");

    let python_members: Vec<StreamingClient> = (0..2).map(|_| member("kafka-python", "kp", "range", "5")).collect();
    let all: Vec<Vec<String>> =
        python_members.into_iter().map(|m| m.finish(Duration::from_millis(CLIENT_RUN_MS_MAX))).collect();
    let (read, assignments) = group_reads(&all.iter().map(Vec::as_slice).collect::<Vec<_>>());
    assert!(assignments.iter().all(|a| !a.is_empty()), "range shares the partitions: {assignments:?}");
    assert_eq!(read, values(0..FIRST + MORE), "the kafka-python group reads every record");
    assert_eq!(total_lag(&described_group(&broker, "kp")), 0, "the kafka-python group committed everything");
}

/// confluent-kafka's AdminClient grows a topic over CreatePartitions: a validation changes nothing, the real
/// request adds the partitions (which `rill topic describe` then lists with leaders, and kcat writes to), and
/// a request for fewer partitions is refused with INVALID_PARTITIONS. Its ElectLeaders gets a per-partition
/// answer.
#[test]
fn a_kafka_admin_client_adds_partitions() {
    let broker = BrokerProcess::start(BrokerOptions::default());
    let kafka = broker.kafka_addr();
    broker.rill(&["topic", "create", "widening", "--partitions", "2"], b"").success();
    let output = run_python("admin_partitions.py", &[&kafka, "widening", "4"], CLIENT_RUN_MS_MAX).success();
    let report: Value = serde_json::from_str(output.stdout.trim()).expect("admin_partitions.py prints JSON");
    assert_eq!(report["validate_only"]["ok"], true, "{report}");
    assert_eq!(report["count_after_validation"], 2, "{report}");
    assert_eq!(report["grow"]["ok"], true, "{report}");
    assert_eq!(report["shrink"]["code"], "INVALID_PARTITIONS", "{report}");
    assert_eq!(report["count"], 4, "{report}");
    // One broker leads every partition already; partition 99 does not exist.
    assert_eq!(report["elect"]["0"], "ELECTION_NOT_NEEDED", "{report}");
    assert_eq!(report["elect"]["99"], "UNKNOWN_TOPIC_OR_PART", "librdkafka's name for the code: {report}");
    let described: Value = serde_json::from_str(
        &broker.rill(&["topic", "describe", "widening", "--format", "json"], b"").success().stdout,
    )
    .expect("JSON");
    let partitions = described["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 4, "{described}");
    assert!(partitions.iter().all(|p| p["leader"] == 1), "{described}");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let input = dir.path().join("line.txt");
    std::fs::write(&input, "in-a-new-partition\n").expect("write the input");
    let produce = ["-b", &kafka, "-P", "-t", "widening", "-p", "3", "-l", input.to_str().unwrap()];
    run_kcat(&produce, CLIENT_RUN_MS_MAX).success();
    let read = run_kcat(
        &["-b", &kafka, "-C", "-t", "widening", "-p", "3", "-o", "beginning", "-e", "-q", "-f", "%o %s\n"],
        CLIENT_RUN_MS_MAX,
    )
    .success();
    assert_eq!(read.stdout, "0 in-a-new-partition\n", "kcat writes to and reads from an added partition");
}

/// confluent-kafka's IncrementalAlterConfigs (validate-only, then for real, then with an unknown key) and
/// kafka-python's legacy AlterConfigs change what `rill topic describe` and DescribeConfigs show.
#[test]
fn kafka_admin_clients_alter_topic_configs() {
    let broker = BrokerProcess::start(BrokerOptions::default());
    let kafka = broker.kafka_addr();
    broker.rill(&["topic", "create", "tuned", "--partitions", "1"], b"").success();
    let output = run_python("admin_configs.py", &[&kafka, "tuned"], CLIENT_RUN_MS_MAX).success();
    let report: Value = serde_json::from_str(output.stdout.trim()).expect("admin_configs.py prints JSON");
    assert_eq!(report["validate_only"]["ok"], true, "{report}");
    assert!(report["after_validation"].get("retention.ms").is_none(), "a validation changes nothing: {report}");
    assert_eq!(report["set"]["ok"], true, "{report}");
    assert_eq!(report["after_set"]["retention.ms"], "3600000", "{report}");
    assert_eq!(report["unknown_key"]["code"], "INVALID_CONFIG", "{report}");
    assert!(report["legacy"].as_str().is_some_and(|s| !s.contains("Error")), "{report}");
    assert_eq!(report["after_legacy"]["segment.bytes"], "1048576", "{report}");
    // AlterConfigs replaces the whole set; kafka-python sends the topic's other overrides along with it.
    assert_eq!(report["after_legacy"]["retention.ms"], "3600000", "{report}");
    let described: Value =
        serde_json::from_str(&broker.rill(&["topic", "describe", "tuned", "--format", "json"], b"").success().stdout)
            .expect("JSON");
    assert_eq!(described["config"]["segment.bytes"], "1048576", "{described}");
    assert_eq!(described["config"]["retention.ms"], "3600000", "{described}");
}
