//! The broker's gRPC service end to end inside one process: a real server on a loopback port, real logs in a
//! temporary directory, and the generated gRPC client.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use rill_broker::{Args, BrokerConfig};
use rill_proto::batch::{BatchBuilder, decode_records};
use rill_proto::v1::rill_client::RillClient;
use rill_proto::v1::*;
use tokio::sync::oneshot;
use tonic::transport::Channel;

struct TestBroker {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    client: RillClient<Channel>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl TestBroker {
    async fn start(dir: &Path, extra: &[&str]) -> TestBroker {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        // No Kafka listener: tests run brokers in parallel, and they would all want its default port.
        let mut argv = vec![
            "rill-broker",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            &listen,
            "--kafka-listen",
            "none",
            "--http-listen",
            "none",
        ];
        argv.extend_from_slice(extra);
        let config = BrokerConfig::resolve(<Args as clap::Parser>::parse_from(argv)).unwrap();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(rill_broker::run(config, async {
            let _ = stopped.await;
        }));
        let endpoint = format!("http://{listen}");
        let mut attempts = 0;
        let channel = loop {
            match Channel::from_shared(endpoint.clone()).unwrap().connect().await {
                Ok(c) => break c,
                Err(_) if attempts < 200 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err(e) => panic!("broker did not come up: {e}"),
            }
        };
        let client = RillClient::new(channel).max_decoding_message_size(usize::MAX);
        TestBroker { stop: Some(stop), task, client }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

async fn create(
    client: &mut RillClient<Channel>,
    name: &str,
    partitions: u32,
    config: &[(&str, &str)],
) -> Option<Error> {
    let config: HashMap<String, String> = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let request = CreateTopicsRequest {
        topics: vec![NewTopic { name: name.into(), partitions, replication_factor: 1, config }],
        validate_only: false,
    };
    client.create_topics(request).await.unwrap().into_inner().results.remove(0).error
}

fn batch_of(values: &[&str], timestamp_ms: i64) -> Bytes {
    let mut b = BatchBuilder::new();
    for v in values {
        b.push(timestamp_ms, None, Some(v.as_bytes()), &[]);
    }
    b.finish()
}

async fn produce(
    client: &mut RillClient<Channel>,
    topic: &str,
    partition: u32,
    records: Bytes,
) -> PartitionProduceResult {
    let request = ProduceRequest {
        acks: Acks::All as i32,
        timeout_ms: 10_000,
        partitions: vec![PartitionRecords { topic: topic.into(), partition, records }],
    };
    client.produce(request).await.unwrap().into_inner().results.remove(0)
}

async fn fetch(client: &mut RillClient<Channel>, topic: &str, offset: u64, max_wait_ms: u32) -> PartitionFetchResult {
    let request = FetchRequest {
        partitions: vec![PartitionFetch { topic: topic.into(), partition: 0, offset, max_bytes: 0 }],
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 0,
    };
    client.fetch(request).await.unwrap().into_inner().results.remove(0)
}

async fn describe(client: &mut RillClient<Channel>, topic: &str) -> PartitionDescription {
    let request = DescribeTopicRequest { name: topic.into(), local_only: false };
    client.describe_topic(request).await.unwrap().into_inner().partitions.remove(0)
}

fn code(e: &Option<Error>) -> ErrorCode {
    ErrorCode::try_from(e.as_ref().expect("an error").code).unwrap()
}

#[tokio::test]
async fn produced_batches_are_fetched_back_in_order_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = TestBroker::start(dir.path(), &[]).await;
    assert_eq!(create(&mut broker.client, "orders", 2, &[]).await, None);
    let first = produce(&mut broker.client, "orders", 0, batch_of(&["a", "b"], 1_000)).await;
    assert_eq!((first.error, first.base_offset, first.last_offset), (None, 0, 1));
    let second = produce(&mut broker.client, "orders", 0, batch_of(&["c"], 2_000)).await;
    assert_eq!((second.base_offset, second.last_offset), (2, 2));

    let fetched = fetch(&mut broker.client, "orders", 0, 0).await;
    assert_eq!(fetched.error, None);
    assert_eq!(fetched.high_watermark, 3);
    assert_eq!(fetched.next_offset, 3);
    let values: Vec<Bytes> = decode_records(&fetched.records).unwrap().into_iter().map(|r| r.value.unwrap()).collect();
    assert_eq!(values, vec!["a", "b", "c"]);
    broker.stop().await;

    let mut broker = TestBroker::start(dir.path(), &[]).await;
    let fetched = fetch(&mut broker.client, "orders", 1, 0).await;
    let records = decode_records(&fetched.records).unwrap();
    assert_eq!(records.first().map(|r| r.offset), Some(0), "whole batches are served, starting at the one holding 1");
    assert_eq!(records.len(), 3);
    assert_eq!(describe(&mut broker.client, "orders").await.log_end_offset, 3);
    broker.stop().await;
}

#[tokio::test]
async fn malformed_produce_requests_get_typed_errors_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = TestBroker::start(dir.path(), &["--batch-bytes-max", "4096"]).await;
    create(&mut broker.client, "t", 1, &[]).await;
    let good = batch_of(&["x"], 1);

    let mut bad_crc = good.to_vec();
    *bad_crc.last_mut().unwrap() ^= 0x40;
    let r = produce(&mut broker.client, "t", 0, Bytes::from(bad_crc)).await;
    assert_eq!(code(&r.error), ErrorCode::CorruptBatch);

    let r = produce(&mut broker.client, "t", 0, good.slice(..good.len() - 2)).await;
    assert_eq!(code(&r.error), ErrorCode::InvalidBatch);
    assert!(r.error.unwrap().message.contains("truncated"));

    let mut absurd = good.to_vec();
    absurd[8..12].copy_from_slice(&0x7fff_fff0u32.to_be_bytes());
    let r = produce(&mut broker.client, "t", 0, Bytes::from(absurd)).await;
    assert_eq!(code(&r.error), ErrorCode::InvalidBatch);

    // A good batch followed by a bad one: the request is refused whole.
    let mut mixed = good.to_vec();
    mixed.extend_from_slice(&[0u8; 20]);
    let r = produce(&mut broker.client, "t", 0, Bytes::from(mixed)).await;
    assert_eq!(code(&r.error), ErrorCode::InvalidBatch);

    let big = "v".repeat(5000);
    let r = produce(&mut broker.client, "t", 0, batch_of(&[&big], 1)).await;
    assert_eq!(code(&r.error), ErrorCode::BatchTooLarge);

    let r = produce(&mut broker.client, "nope", 0, good.clone()).await;
    assert_eq!(code(&r.error), ErrorCode::UnknownTopicOrPartition);
    assert!(r.error.unwrap().message.contains("'nope' does not exist"));
    let r = produce(&mut broker.client, "t", 7, good.clone()).await;
    assert_eq!(code(&r.error), ErrorCode::UnknownTopicOrPartition);

    let p = describe(&mut broker.client, "t").await;
    assert_eq!(p.log_end_offset, 0, "no rejected request wrote anything");
    let r = produce(&mut broker.client, "t", 0, good).await;
    assert_eq!((r.error, r.base_offset), (None, 0), "the broker still serves");

    let fetch_far = fetch(&mut broker.client, "t", 99, 0).await;
    assert_eq!(code(&fetch_far.error), ErrorCode::OffsetOutOfRange);
    broker.stop().await;
}

#[tokio::test]
async fn a_request_over_the_size_limit_is_refused_and_the_broker_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker =
        TestBroker::start(dir.path(), &["--request-bytes-max", "65536", "--batch-bytes-max", "4096"]).await;
    create(&mut broker.client, "t", 1, &[]).await;
    let huge = Bytes::from(vec![0u8; 100_000]);
    let request = ProduceRequest {
        acks: Acks::All as i32,
        timeout_ms: 0,
        partitions: vec![PartitionRecords { topic: "t".into(), partition: 0, records: huge }],
    };
    assert!(broker.client.produce(request).await.is_err());
    let r = produce(&mut broker.client, "t", 0, batch_of(&["ok"], 1)).await;
    assert_eq!(r.error, None);
    broker.stop().await;
}

#[tokio::test]
async fn topic_admin_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = TestBroker::start(dir.path(), &[]).await;
    assert_eq!(create(&mut broker.client, "a", 1, &[]).await, None);
    assert_eq!(code(&create(&mut broker.client, "a", 1, &[]).await), ErrorCode::TopicAlreadyExists);
    assert_eq!(code(&create(&mut broker.client, "b", 1, &[("retention.ms", "soon")]).await), ErrorCode::InvalidConfig);
    assert_eq!(code(&create(&mut broker.client, "b/../c", 1, &[]).await), ErrorCode::InvalidTopicName);
    assert_eq!(code(&create(&mut broker.client, "b", 0, &[]).await), ErrorCode::InvalidPartitions);
    let request = CreateTopicsRequest {
        topics: vec![NewTopic { name: "b".into(), partitions: 1, replication_factor: 3, config: HashMap::new() }],
        validate_only: false,
    };
    let r = broker.client.create_topics(request).await.unwrap().into_inner().results.remove(0);
    assert_eq!(code(&r.error), ErrorCode::InvalidReplicationFactor);

    let deleted = broker.client.delete_topics(DeleteTopicsRequest { names: vec!["a".into(), "zz".into()] }).await;
    let results = deleted.unwrap().into_inner().results;
    assert_eq!(results[0].error, None);
    assert_eq!(code(&results[1].error), ErrorCode::UnknownTopicOrPartition);
    let meta = broker.client.metadata(MetadataRequest { topics: vec![] }).await.unwrap().into_inner();
    assert!(meta.topics.is_empty());
    assert_eq!(meta.brokers.len(), 1);
    // The same name again is a new, empty topic.
    assert_eq!(create(&mut broker.client, "a", 1, &[]).await, None);
    assert_eq!(describe(&mut broker.client, "a").await.log_end_offset, 0);
    broker.stop().await;
}

#[tokio::test]
async fn a_long_poll_fetch_returns_as_soon_as_records_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = TestBroker::start(dir.path(), &[]).await;
    create(&mut broker.client, "t", 1, &[]).await;
    let mut waiting_client = broker.client.clone();
    let waiting = tokio::spawn(async move { fetch(&mut waiting_client, "t", 0, 20_000).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "nothing to read yet: the fetch waits");
    produce(&mut broker.client, "t", 0, batch_of(&["late"], 5)).await;
    let fetched = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken by the append").unwrap();
    assert_eq!(decode_records(&fetched.records).unwrap()[0].value.as_deref(), Some(&b"late"[..]));
    broker.stop().await;
}

#[tokio::test]
async fn fetch_stream_follows_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = TestBroker::start(dir.path(), &[]).await;
    create(&mut broker.client, "t", 1, &[]).await;
    let request = FetchRequest {
        partitions: vec![PartitionFetch { topic: "t".into(), partition: 0, offset: 0, max_bytes: 0 }],
        max_wait_ms: 200,
        min_bytes: 1,
        max_bytes: 0,
    };
    let mut stream = broker.client.fetch_stream(request).await.unwrap().into_inner();
    let mut seen = Vec::new();
    for i in 0..3 {
        produce(&mut broker.client, "t", 0, batch_of(&[&format!("r{i}")], i)).await;
        let response = tokio::time::timeout(Duration::from_secs(5), stream.message()).await.unwrap().unwrap().unwrap();
        for r in response.results {
            seen.extend(decode_records(&r.records).unwrap().into_iter().map(|r| r.offset));
        }
    }
    assert_eq!(seen, vec![0, 1, 2]);
    drop(stream);
    broker.stop().await;
}

#[tokio::test]
async fn list_offsets_by_timestamp_earliest_and_latest() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = TestBroker::start(dir.path(), &[]).await;
    create(&mut broker.client, "t", 1, &[]).await;
    produce(&mut broker.client, "t", 0, batch_of(&["a", "b"], 1_000)).await;
    produce(&mut broker.client, "t", 0, batch_of(&["c"], 5_000)).await;
    let query = |spec: OffsetSpec, timestamp_ms: i64| OffsetQuery {
        topic: "t".into(),
        partition: 0,
        spec: spec as i32,
        timestamp_ms,
    };
    let request = ListOffsetsRequest {
        queries: vec![
            query(OffsetSpec::Earliest, 0),
            query(OffsetSpec::Latest, 0),
            query(OffsetSpec::Timestamp, 2_000),
            query(OffsetSpec::Timestamp, 9_000),
        ],
    };
    let results = broker.client.list_offsets(request).await.unwrap().into_inner().results;
    let offsets: Vec<u64> = results.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![0, 3, 2, 3]);
    assert_eq!(results[2].timestamp_ms, 5_000);
    assert_eq!(results[3].timestamp_ms, -1);
    broker.stop().await;
}

#[tokio::test]
async fn a_flipped_byte_in_a_stored_batch_is_reported_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = TestBroker::start(dir.path(), &[]).await;
    create(&mut broker.client, "t", 1, &[]).await;
    produce(&mut broker.client, "t", 0, batch_of(&["first-batch-value"], 1)).await;
    produce(&mut broker.client, "t", 0, batch_of(&["second-batch-value"], 2)).await;
    broker.stop().await;

    let partition_dir = std::fs::read_dir(dir.path().join("topics")).unwrap().next().unwrap().unwrap().path().join("0");
    let segment = partition_dir.join("00000000000000000000.log");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.windows(5).position(|w| w == b"first").unwrap();
    bytes[at] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();

    let mut broker = TestBroker::start(dir.path(), &[]).await;
    let fetched = fetch(&mut broker.client, "t", 0, 0).await;
    assert_eq!(code(&fetched.error), ErrorCode::CorruptStoredData);
    assert!(fetched.records.is_empty());
    // The intact batch after it is still served.
    let fetched = fetch(&mut broker.client, "t", 1, 0).await;
    let records = decode_records(&fetched.records).unwrap();
    assert_eq!(records[0].value.as_deref(), Some(&b"second-batch-value"[..]));
    broker.stop().await;
}

#[tokio::test]
async fn producer_ids_are_unique_and_a_newer_epoch_fences_the_older() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = TestBroker::start(dir.path(), &[]).await;
    let mut init = async |producer_id: i64, producer_epoch: i32| {
        let request = InitProducerIdRequest { producer_id, producer_epoch };
        broker.client.init_producer_id(request).await.unwrap().into_inner()
    };
    let first = init(-1, -1).await;
    let second = init(-1, -1).await;
    assert_eq!((first.error.clone(), second.error.clone()), (None, None));
    assert_ne!(first.producer_id, second.producer_id);
    assert_eq!(first.producer_epoch, 0);
    let bumped = init(first.producer_id, 0).await;
    assert_eq!((bumped.producer_id, bumped.producer_epoch), (first.producer_id, 1));
    let fenced = init(first.producer_id, 0).await;
    assert_eq!(code(&fenced.error), ErrorCode::ProducerFenced);
    let unknown = init(1_000_000, 0).await;
    assert_eq!(code(&unknown.error), ErrorCode::UnknownProducerId);
    broker.stop().await;
}

fn idempotent_batch(producer_id: i64, producer_epoch: i16, base_sequence: i32, values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new();
    b.set_producer(producer_id, producer_epoch, base_sequence);
    for v in values {
        b.push(1_700_000_000_000, None, Some(v.as_bytes()), &[]);
    }
    b.finish()
}

async fn new_producer(client: &mut RillClient<Channel>) -> i64 {
    let request = InitProducerIdRequest { producer_id: -1, producer_epoch: -1 };
    let response = client.init_producer_id(request).await.unwrap().into_inner();
    assert_eq!(response.error, None);
    response.producer_id
}

#[tokio::test]
async fn a_retried_idempotent_batch_is_written_once_even_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = TestBroker::start(dir.path(), &[]).await;
    create(&mut broker.client, "t", 1, &[]).await;
    let pid = new_producer(&mut broker.client).await;
    let first = idempotent_batch(pid, 0, 0, &["a", "b"]);
    let second = idempotent_batch(pid, 0, 2, &["c"]);
    let r = produce(&mut broker.client, "t", 0, first.clone()).await;
    assert_eq!((r.error, r.base_offset, r.last_offset), (None, 0, 1));
    let retry = produce(&mut broker.client, "t", 0, first.clone()).await;
    assert_eq!((retry.error, retry.base_offset, retry.last_offset), (None, 0, 1), "a retry gets the original offsets");
    let r = produce(&mut broker.client, "t", 0, second.clone()).await;
    assert_eq!((r.error, r.base_offset), (None, 2));
    assert_eq!(describe(&mut broker.client, "t").await.log_end_offset, 3, "the retry appended nothing");
    let gap = produce(&mut broker.client, "t", 0, idempotent_batch(pid, 0, 9, &["x"])).await;
    assert_eq!(code(&gap.error), ErrorCode::OutOfOrderSequence);
    broker.stop().await;

    // A clean restart loads the producer-state snapshot written at close.
    let mut broker = TestBroker::start(dir.path(), &[]).await;
    let retry = produce(&mut broker.client, "t", 0, second.clone()).await;
    assert_eq!((retry.error, retry.base_offset), (None, 2));
    broker.stop().await;

    // Without any snapshot the state is rebuilt by replaying the log.
    let partition_dir = std::fs::read_dir(dir.path().join("topics")).unwrap().next().unwrap().unwrap().path().join("0");
    for entry in std::fs::read_dir(&partition_dir).unwrap().flatten() {
        if entry.file_name().to_string_lossy().ends_with(".snapshot") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let mut broker = TestBroker::start(dir.path(), &[]).await;
    let retry = produce(&mut broker.client, "t", 0, first).await;
    assert_eq!((retry.error, retry.base_offset, retry.last_offset), (None, 0, 1));
    assert_eq!(describe(&mut broker.client, "t").await.log_end_offset, 3);
    broker.stop().await;
}

#[tokio::test]
async fn producer_sequence_rules_are_enforced_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = TestBroker::start(dir.path(), &[]).await;
    create(&mut broker.client, "t", 1, &[]).await;
    let pid = new_producer(&mut broker.client).await;
    assert_eq!(produce(&mut broker.client, "t", 0, idempotent_batch(pid, 0, 0, &["a"])).await.error, None);
    // A newer epoch of the same id fences the old one.
    let request = InitProducerIdRequest { producer_id: pid, producer_epoch: 0 };
    let bumped = broker.client.init_producer_id(request).await.unwrap().into_inner();
    assert_eq!(bumped.producer_epoch, 1);
    assert_eq!(produce(&mut broker.client, "t", 0, idempotent_batch(pid, 1, 0, &["b"])).await.error, None);
    let fenced = produce(&mut broker.client, "t", 0, idempotent_batch(pid, 0, 1, &["c"])).await;
    assert_eq!(code(&fenced.error), ErrorCode::ProducerFenced);
    // A producer new to the partition starts at sequence 0.
    let other = new_producer(&mut broker.client).await;
    let unknown = produce(&mut broker.client, "t", 0, idempotent_batch(other, 0, 4, &["d"])).await;
    assert_eq!(code(&unknown.error), ErrorCode::UnknownProducerId);
    // One idempotent batch per partition per request.
    let mut two = idempotent_batch(other, 0, 0, &["e"]).to_vec();
    two.extend_from_slice(&idempotent_batch(other, 0, 1, &["f"]));
    let refused = produce(&mut broker.client, "t", 0, Bytes::from(two)).await;
    assert_eq!(code(&refused.error), ErrorCode::InvalidRequest);
    assert_eq!(describe(&mut broker.client, "t").await.log_end_offset, 2, "refused batches wrote nothing");
    broker.stop().await;
}

#[tokio::test]
async fn a_batch_that_overtakes_its_predecessor_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = TestBroker::start(dir.path(), &[]).await;
    create(&mut broker.client, "t", 1, &[]).await;
    let pid = new_producer(&mut broker.client).await;
    // Sequence 1 arrives first (pipelined requests travel as concurrent HTTP/2 streams): the broker holds it
    // until sequence 0 is in, then appends it after it.
    let mut ahead_client = broker.client.clone();
    let ahead =
        tokio::spawn(async move { produce(&mut ahead_client, "t", 0, idempotent_batch(pid, 0, 1, &["b"])).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!ahead.is_finished(), "the batch ahead waits");
    let first = produce(&mut broker.client, "t", 0, idempotent_batch(pid, 0, 0, &["a"])).await;
    assert_eq!((first.error, first.base_offset), (None, 0));
    let ahead = ahead.await.unwrap();
    assert_eq!((ahead.error, ahead.base_offset), (None, 1), "appended right after its predecessor");
    // A gap nobody fills is refused once the wait is over.
    let gap = produce(&mut broker.client, "t", 0, idempotent_batch(pid, 0, 5, &["x"])).await;
    assert_eq!(code(&gap.error), ErrorCode::OutOfOrderSequence);
    assert_eq!(describe(&mut broker.client, "t").await.log_end_offset, 2);
    broker.stop().await;
}
