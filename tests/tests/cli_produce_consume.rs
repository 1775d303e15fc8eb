//! `rill produce` and `rill consume` against a real broker: 100,000 lines round trip in order, keys keep
//! their partition, JSON output fields, where a non-following consumer stops, and where a group consumer
//! resumes.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use rill_tests::{BrokerOptions, BrokerProcess, lines_input};
use serde_json::Value;

fn broker_with_topic(topic: &str, partitions: u32) -> BrokerProcess {
    let broker = BrokerProcess::start(BrokerOptions::default());
    broker.rill(&["topic", "create", topic, "--partitions", &partitions.to_string()], b"").success();
    broker
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}"))).collect()
}

#[test]
fn hundred_thousand_lines_round_trip_in_partition_order() {
    const LINES: usize = 100_000;
    let broker = broker_with_topic("demo", 3);
    let input = lines_input((0..LINES).map(|i| format!("line-{i:06}")));

    let started = Instant::now();
    let produced = broker.rill(&["produce", "demo"], &input).success();
    let produce_elapsed = started.elapsed();
    assert!(
        produced.stderr.starts_with(&format!("wrote {LINES} records to demo: partition ")),
        "summary: {}",
        produced.stderr
    );
    // Batched and pipelined, this takes well under a second in release; even debug builds must not crawl.
    assert!(produce_elapsed.as_secs() < 60, "producing took {produce_elapsed:?}");

    let consumed = broker
        .rill(&["consume", "demo", "--from-beginning", "--max-messages", &LINES.to_string(), "--format", "json"], b"")
        .success();
    let records = json_lines(&consumed.stdout);
    assert_eq!(records.len(), LINES);

    let mut seen = HashSet::new();
    let mut last_per_partition: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    for record in &records {
        let partition = record["partition"].as_u64().unwrap();
        let offset = record["offset"].as_u64().unwrap();
        let value = record["value"].as_str().unwrap().to_owned();
        assert!(seen.insert(value.clone()), "{value} read twice");
        if let Some((last_offset, last_value)) = last_per_partition.get(&partition) {
            assert_eq!(offset, last_offset + 1, "partition {partition} offsets are dense and increasing");
            assert!(value > *last_value, "partition {partition}: {value} after {last_value} breaks send order");
        } else {
            assert_eq!(offset, 0, "partition {partition} starts at offset 0");
        }
        last_per_partition.insert(partition, (offset, value));
    }
    assert_eq!(seen.len(), LINES, "every line present once");
    assert!(last_per_partition.len() > 1, "keyless records spread over partitions");

    // The produce summary's offset ranges match what was read.
    for (partition, (last_offset, _)) in &last_per_partition {
        let range = format!("partition {partition} offsets 0..{}", last_offset + 1);
        assert!(produced.stderr.contains(&range), "{range} missing from {}", produced.stderr);
    }
}

#[test]
fn key_separator_puts_equal_keys_in_one_partition() {
    let broker = broker_with_topic("keyed", 4);
    let input = lines_input((0..400).map(|i| format!("user-{}:event-{i}", i % 10)));
    broker.rill(&["produce", "keyed", "--key-separator", ":"], &input).success();

    let consumed = broker.rill(&["consume", "keyed", "--from-beginning", "--format", "json"], b"").success();
    let records = json_lines(&consumed.stdout);
    assert_eq!(records.len(), 400);
    let mut partition_of_key: BTreeMap<String, u64> = BTreeMap::new();
    for record in &records {
        let key = record["key"].as_str().unwrap().to_owned();
        let partition = record["partition"].as_u64().unwrap();
        assert!(record["value"].as_str().unwrap().starts_with("event-"));
        let first = *partition_of_key.entry(key.clone()).or_insert(partition);
        assert_eq!(first, partition, "key {key} seen in two partitions");
    }
    assert_eq!(partition_of_key.len(), 10);
    // Placement follows Kafka's murmur2 partitioner, so it is predictable.
    for (key, partition) in &partition_of_key {
        assert_eq!(u64::from(rill_client::partitioner::partition_for_key(key.as_bytes(), 4)), *partition);
    }
}

#[test]
fn json_format_has_partition_offset_timestamp_key_value_and_headers() {
    let broker = broker_with_topic("fields", 1);
    let before_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    broker.rill(&["produce", "fields", "--key", "k1", "--header", "h=1"], b"hello\n").success();
    broker.rill(&["produce", "fields"], b"no key\n").success();

    let consumed = broker.rill(&["consume", "fields", "--from-beginning", "--format", "json"], b"").success();
    let lines: Vec<&str> = consumed.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", consumed.stdout);
    let first: Value = serde_json::from_str(lines[0]).unwrap();
    let mut keys: Vec<&String> = first.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["headers", "key", "offset", "partition", "timestamp", "value"]);
    assert_eq!(first["headers"], serde_json::json!([["h", "1"]]));
    assert_eq!(first["partition"], 0);
    assert_eq!(first["offset"], 0);
    assert_eq!(first["key"], "k1");
    assert_eq!(first["value"], "hello");
    assert!(first["timestamp"].as_i64().unwrap() >= before_ms);
    let second: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(second["offset"], 1);
    assert_eq!(second["key"], Value::Null);
    assert_eq!(second["value"], "no key");

    let values = broker.rill(&["consume", "fields", "--from-beginning"], b"").success();
    assert_eq!(values.stdout, "hello\nno key\n");
}

#[test]
fn consume_without_follow_stops_at_the_end_it_saw() {
    let broker = broker_with_topic("bounded", 2);
    broker.rill(&["produce", "bounded"], &lines_input((0..50).map(|i| format!("r{i}")))).success();

    // Default start is the end: nothing to print, and it exits instead of waiting.
    let latest = broker.rill(&["consume", "bounded"], b"").success();
    assert_eq!(latest.stdout, "");

    let all = broker.rill(&["consume", "bounded", "--from-beginning"], b"").success();
    assert_eq!(all.stdout.lines().count(), 50);

    let some = broker.rill(&["consume", "bounded", "--from-beginning", "--max-messages", "7"], b"").success();
    assert_eq!(some.stdout.lines().count(), 7);

    let one_partition =
        broker.rill(&["consume", "bounded", "--partition", "0", "--offset", "0", "--format", "json"], b"");
    let records = json_lines(&one_partition.success().stdout);
    assert!(records.iter().all(|r| r["partition"] == 0));
    let offsets: Vec<u64> = records.iter().map(|r| r["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, (0..offsets.len() as u64).collect::<Vec<_>>());
}

#[test]
fn explicit_partition_and_offset_start_mid_log() {
    let broker = broker_with_topic("mid", 2);
    broker.rill(&["produce", "mid", "--partition", "1"], &lines_input((0..10).map(|i| format!("v{i}")))).success();
    let out = broker.rill(&["consume", "mid", "--partition", "1", "--offset", "4"], b"").success();
    assert_eq!(out.stdout, "v4\nv5\nv6\nv7\nv8\nv9\n");
}

#[test]
fn offset_out_of_range_is_reported() {
    let broker = broker_with_topic("range", 1);
    broker.rill(&["produce", "range"], b"a\n").success();
    // Past the end: nothing to read up to the end seen at start, so it exits cleanly.
    broker.rill(&["consume", "range", "--offset", "5"], b"").success();
    // Following from past the end asks the broker for an offset it does not have.
    let out = broker.rill(&["consume", "range", "--offset", "5", "--follow"], b"");
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.starts_with("error: offset 5 is out of range for partition 0 of 'range'"), "{}", out.stderr);
}

#[test]
fn a_group_consumer_resumes_from_its_committed_offset() {
    let broker = broker_with_topic("grouped", 1);
    broker.rill(&["produce", "grouped"], b"a\nb\nc\n").success();
    let first = broker.rill(&["consume", "grouped", "--group", "g1", "--from-beginning", "--max-messages", "2"], b"");
    assert_eq!(first.success().stdout, "a\nb\n");
    broker.rill(&["produce", "grouped"], b"d\n").success();
    // Where it stopped, not at the beginning (--from-beginning applies only without a committed offset).
    let second = broker.rill(&["consume", "grouped", "--group", "g1", "--from-beginning", "--max-messages", "2"], b"");
    assert_eq!(second.success().stdout, "c\nd\n");
    let unknown = broker.rill(&["consume", "nosuch", "--group", "g1"], b"");
    assert_eq!(unknown.code(), Some(1));
    assert!(unknown.stderr.contains("topic 'nosuch' does not exist"), "{}", unknown.stderr);
}

#[test]
fn produce_with_acks_leader_and_small_batches() {
    let broker = broker_with_topic("small", 2);
    let input = lines_input((0..2000).map(|i| format!("{i}")));
    let out =
        broker.rill(&["produce", "small", "--acks", "leader", "--batch-bytes", "2048", "--linger-ms", "0"], &input);
    assert!(out.success().stderr.starts_with("wrote 2000 records to small"));
    // acks=leader answers before the records are committed: read on until all 2000 are visible.
    let all =
        broker.rill(&["consume", "small", "--from-beginning", "--follow", "--max-messages", "2000"], b"").success();
    assert_eq!(all.stdout.lines().count(), 2000);
}
