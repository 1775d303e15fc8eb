//! `rill topic ...` and `rill cluster status` against a real broker: create, list, describe (text and JSON),
//! delete, and the errors a user sees for unknown topics and bad arguments.

use rill_tests::{BrokerOptions, BrokerProcess};
use serde_json::Value;

fn broker() -> BrokerProcess {
    BrokerProcess::start(BrokerOptions::default())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn topic_lifecycle_create_list_describe_delete() {
    let broker = broker();
    broker.rill(&["topic", "create", "demo", "--partitions", "3", "--config", "retention.ms=3600000"], b"").success();

    let list = broker.rill(&["topic", "list"], b"").success();
    let row: Vec<&str> = list
        .stdout
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&"demo"))
        .unwrap_or_else(|| panic!("demo missing from:\n{}", list.stdout))
        .into_iter()
        .collect();
    assert_eq!(row[1], "3", "partition count column: {}", list.stdout);

    let listing = json(&broker.rill(&["topic", "list", "--format", "json"], b"").success().stdout);
    let demo = listing["topics"].as_array().unwrap().iter().find(|t| t["name"] == "demo").expect("demo listed");
    assert_eq!(demo["partitions"], 3);

    let description = json(&broker.rill(&["topic", "describe", "demo", "--format", "json"], b"").success().stdout);
    let mut keys: Vec<&String> = description.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["config", "name", "partitions"]);
    assert_eq!(description["name"], "demo");
    assert_eq!(description["config"]["retention.ms"], "3600000");
    let partitions = description["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3);
    for (index, partition) in partitions.iter().enumerate() {
        let mut fields: Vec<&String> = partition.as_object().unwrap().keys().collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "high_watermark",
                "isr",
                "leader",
                "leader_epoch",
                "log_end_offset",
                "log_start_offset",
                "partition",
                "replicas"
            ]
        );
        assert_eq!(partition["partition"], index);
        assert_eq!(partition["leader"], 1);
        assert_eq!(partition["replicas"], serde_json::json!([1]));
        assert_eq!(partition["isr"], serde_json::json!([1]));
        assert_eq!(partition["high_watermark"], 0);
        assert_eq!(partition["log_end_offset"], 0);
    }

    let text = broker.rill(&["topic", "describe", "demo"], b"").success().stdout;
    assert!(text.contains("PARTITION") && text.contains("HIGH_WATERMARK"), "table header missing:\n{text}");
    assert!(text.contains("retention.ms=3600000"), "config missing:\n{text}");
    let rows = text.lines().filter(|l| l.split_whitespace().next().is_some_and(|c| c.parse::<u32>().is_ok())).count();
    assert_eq!(rows, 3, "one row per partition:\n{text}");

    broker.rill(&["topic", "delete", "demo"], b"").success();
    let listing = json(&broker.rill(&["topic", "list", "--format", "json"], b"").success().stdout);
    assert!(listing["topics"].as_array().unwrap().iter().all(|t| t["name"] != "demo"), "demo still listed");
}

#[test]
fn creating_an_existing_topic_fails_with_one_error_line() {
    let broker = broker();
    broker.rill(&["topic", "create", "twice", "--partitions", "1"], b"").success();
    let again = broker.rill(&["topic", "create", "twice", "--partitions", "1"], b"");
    assert_eq!(again.code(), Some(1));
    assert!(again.stderr.starts_with("error: "), "{}", again.stderr);
    assert_eq!(again.stderr.lines().count(), 1, "{}", again.stderr);
    assert!(again.stderr.contains("TOPIC_ALREADY_EXISTS"), "{}", again.stderr);
}

#[test]
fn unknown_topic_is_one_clear_error_line_for_every_command() {
    let broker = broker();
    let expected = "error: topic 'nope' does not exist\n";
    for (args, stdin) in [
        (&["topic", "describe", "nope"][..], &b""[..]),
        (&["topic", "delete", "nope"], b""),
        (&["produce", "nope"], b"a\nb\n"),
        (&["consume", "nope", "--from-beginning"], b""),
    ] {
        let out = broker.rill(args, stdin);
        assert_eq!(out.code(), Some(1), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr, expected, "{args:?}");
    }
}

#[test]
fn usage_errors_exit_with_status_2() {
    let broker = broker();
    for args in [
        &["topic", "create", "x", "--partitions", "0"][..],
        &["topic", "create", "x", "--partitions", "1", "--config", "novalue"],
        &["consume", "x", "--format", "xml"],
        &["produce", "x", "--acks", "maybe"],
    ] {
        let out = broker.rill(args, b"");
        assert_eq!(out.code(), Some(2), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn unreachable_bootstrap_is_a_clear_error() {
    // Port 1 on loopback refuses connections.
    let out = rill_tests::run_rill("127.0.0.1:1", &["topic", "list"], b"");
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.starts_with("error: no broker reachable at 127.0.0.1:1"), "{}", out.stderr);
}

#[test]
fn cluster_status_reports_the_single_node() {
    let broker = broker();
    let status = json(&broker.rill(&["cluster", "status", "--format", "json"], b"").success().stdout);
    let brokers = status["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 1);
    assert_eq!(brokers[0]["id"], 1);
    assert_eq!(brokers[0]["address"], broker.addr());
    assert_eq!(brokers[0]["kafka_address"], broker.kafka_addr(), "the Kafka listener's address");
    assert_eq!(brokers[0]["state"], "alive");
    assert!(brokers[0]["broker_epoch"].is_u64());
    assert_eq!(status["controller"]["active"], 1);
    assert_eq!(status["controller"]["voters"], serde_json::json!([1]));

    let text = broker.rill(&["cluster", "status"], b"").success().stdout;
    assert!(text.contains("alive") && text.contains(&broker.addr()) && text.contains(&broker.kafka_addr()), "{text}");
}
