//! Client quotas with a real `rill-broker` process: quotas set with `rill quota set` hold a producer limited
//! to 1 MiB/s near that rate while an unlimited producer beside it is not slowed, a consumer limited to
//! 2 MiB/s reads no faster, and a Kafka client (librdkafka) held by a client-id quota is told the throttle
//! time in its responses.

use std::time::{Duration, Instant};

use rill_client::{ClientConfig, Producer, ProducerConfig, ProducerRecord, SaslConfig, SaslMechanism};
use rill_tests::kafka_clients::run_python;
use rill_tests::{BrokerOptions, BrokerProcess, run_rill};
use serde_json::Value;

const MIB: u64 = 1 << 20;
const RECORD_BYTES: usize = 16 * 1024;
/// A bucket holds one second of its rate: that much passes before the first answer is held.
const BURST_S: f64 = 1.0;
/// How long a Kafka client run may take on a loaded machine.
const CLIENT_MS_MAX: u64 = 120_000;

/// Produces `bytes` to `topic` in 16 KiB records, acks=all, and returns how long it took.
async fn produce(config: ClientConfig, topic: &str, bytes: u64) -> Duration {
    let producer = Producer::connect(config, ProducerConfig::default()).await.expect("producer connects");
    let started = Instant::now();
    let mut deliveries = Vec::new();
    for _ in 0..bytes / RECORD_BYTES as u64 {
        deliveries.push(producer.send(ProducerRecord::new(topic, vec![b'q'; RECORD_BYTES])).await.unwrap());
    }
    for delivery in deliveries {
        delivery.await.expect("every record is acknowledged");
    }
    let took = started.elapsed();
    producer.close().await;
    took
}

/// The shortest time `bytes` may take at `rate` bytes/s after the first second's burst, with 10% slack for
/// measuring, and the longest it should (twice the rate's time plus start-up).
fn expected_window(bytes: u64, rate: u64) -> (f64, f64) {
    let at_rate = bytes as f64 / rate as f64;
    ((at_rate - BURST_S) * 0.9, at_rate * 2.0 + 5.0)
}

#[test]
fn quotas_hold_limited_clients_near_their_rate_and_leave_others_alone() {
    let mut broker = BrokerProcess::spawn(BrokerOptions::default());
    broker.wait_ready();
    let bootstrap = broker.addr();
    let cli = |args: &[&str]| run_rill(&bootstrap, args, b"");
    for topic in ["metered", "open", "kafka-metered"] {
        cli(&["topic", "create", topic, "--partitions", "1", "--replication-factor", "1"]).success();
    }
    cli(&["user", "create", "slow", "--password", "slow-secret"]).success();
    cli(&["quota", "set", "user=slow", "producer_byte_rate=1048576", "consumer_byte_rate=2097152"]).success();
    cli(&["quota", "set", "client-id=kafka-slow", "producer_byte_rate=524288"]).success();
    let listed = cli(&["quota", "list"]).success().stdout;
    for expected in ["user=slow", "producer_byte_rate", "1048576", "consumer_byte_rate", "client-id=kafka-slow"] {
        assert!(listed.contains(expected), "{expected} missing from:\n{listed}");
    }
    // Bad quota input is refused with a reason, and changes nothing.
    let unknown_key = cli(&["quota", "set", "user=slow", "request_percentage=5"]);
    assert!(!unknown_key.status.success() && unknown_key.stderr.contains("not a quota key"), "{}", unknown_key.stderr);
    let bad_entity = cli(&["quota", "set", "group=g", "request_rate=5"]);
    assert!(!bad_entity.status.success() && bad_entity.stderr.contains("not a quota entity"), "{}", bad_entity.stderr);
    let zero = cli(&["quota", "set", "user=slow", "request_rate=0"]);
    assert!(!zero.status.success() && zero.stderr.contains("at least 1"), "{}", zero.stderr);
    assert_eq!(cli(&["quota", "list"]).success().stdout, listed);

    // The limited and the unlimited producer write at the same time.
    let (slow_bytes, fast_bytes) = (5 * MIB, 16 * MIB);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (slow_took, fast_took) = runtime.block_on(async {
        let sasl =
            SaslConfig { user: "slow".into(), password: "slow-secret".into(), mechanism: SaslMechanism::ScramSha256 };
        let slow = ClientConfig { sasl: Some(sasl), ..ClientConfig::new(&bootstrap).unwrap() };
        let fast = ClientConfig::new(&bootstrap).unwrap();
        tokio::join!(produce(slow, "metered", slow_bytes), produce(fast, "open", fast_bytes))
    });
    let rate = |bytes: u64, took: Duration| bytes as f64 / MIB as f64 / took.as_secs_f64();
    eprintln!(
        "limited producer: {:.2} MiB/s over {slow_took:?}; unlimited: {:.2} MiB/s over {fast_took:?}",
        rate(slow_bytes, slow_took),
        rate(fast_bytes, fast_took)
    );
    let (shortest, longest) = expected_window(slow_bytes, MIB);
    let slow_s = slow_took.as_secs_f64();
    assert!(slow_s >= shortest && slow_s <= longest, "5 MiB at 1 MiB/s took {slow_s:.2} s");
    // Unslowed: several times the limited rate, though the two share one broker and its disk.
    assert!(rate(fast_bytes, fast_took) >= 4.0, "the unlimited producer was held too: {fast_took:?}");

    // The limited user reads its 5 MiB back at 2 MiB/s at most.
    let started = Instant::now();
    let count = (slow_bytes / RECORD_BYTES as u64).to_string();
    let read = cli(&[
        "--user",
        "slow",
        "--password",
        "slow-secret",
        "consume",
        "metered",
        "--from-beginning",
        "--max-messages",
        &count,
    ])
    .success();
    let read_s = started.elapsed().as_secs_f64();
    assert_eq!(read.stdout.lines().count().to_string(), count, "every record read back");
    let (shortest, longest) = expected_window(slow_bytes, 2 * MIB);
    assert!(read_s >= shortest && read_s <= longest, "5 MiB at 2 MiB/s took {read_s:.2} s");

    // A Kafka client held by its client id is told so in the responses.
    let kafka_bytes = 2 * MIB;
    let out = run_python(
        "quota_produce.py",
        &[&broker.kafka_addr(), "kafka-metered", "kafka-slow", &kafka_bytes.to_string()],
        CLIENT_MS_MAX,
    )
    .success();
    let result: Value = serde_json::from_str(out.stdout.trim()).expect("one JSON line");
    assert_eq!(result["bytes"].as_u64(), Some(kafka_bytes), "{result}");
    let seconds = result["seconds"].as_f64().unwrap();
    // The Kafka listener answers at once and holds the connection after, so the run's last hold is not in
    // its time: a quarter less at the shortest.
    let (shortest, longest) = expected_window(kafka_bytes, 512 * 1024);
    let shortest = shortest / 0.9 * 0.75;
    assert!(seconds >= shortest && seconds <= longest, "2 MiB at 512 KiB/s took {seconds:.2} s: {result}");
    let throttles = result["throttle_ms"].as_array().unwrap();
    assert!(throttles.iter().any(|t| t.as_f64().unwrap() > 0.0), "no throttle time reported: {result}");

    // Removing the quota lifts it.
    cli(&["quota", "set", "user=slow", "producer_byte_rate=none", "consumer_byte_rate=none"]).success();
    assert!(!cli(&["quota", "list"]).success().stdout.contains("user=slow"));
}
