//! kill -9 of a real `rill-broker` process while producers write with `acks=all` under the `fsync` policy:
//! after restart every acknowledged record is present at its acknowledged offset, in order, and nothing
//! corrupt is served.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rill_proto::batch::{BatchBuilder, decode_records};
use rill_proto::v1::rill_client::RillClient;
use rill_proto::v1::*;
use tonic::transport::Channel;

struct BrokerProcess {
    child: Child,
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path, port: u16) -> BrokerProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_rill-broker"))
        .args(["--data-dir", dir.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}"), "--log", "warn"])
        // No Kafka listener: tests run brokers in parallel, and they would all want its default port.
        .args(["--kafka-listen", "none", "--http-listen", "none"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start rill-broker");
    BrokerProcess { child }
}

async fn connect(port: u16) -> RillClient<Channel> {
    for _ in 0..400 {
        if let Ok(channel) = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await {
            let mut client = RillClient::new(channel).max_decoding_message_size(usize::MAX);
            if client.metadata(MetadataRequest { topics: vec![] }).await.is_ok() {
                return client;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("broker on port {port} did not answer");
}

/// Creates the one-partition topic "crash" the producers write to.
async fn create_topic(client: &mut RillClient<Channel>) {
    let topic = NewTopic { name: "crash".into(), partitions: 1, replication_factor: 1, config: Default::default() };
    let request = CreateTopicsRequest { topics: vec![topic], validate_only: false };
    let created = client.create_topics(request).await.unwrap().into_inner();
    assert_eq!(created.results[0].error, None);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// (offset, value) of every acknowledged record.
type Acked = Arc<Mutex<Vec<(u64, String)>>>;

async fn produce_until_failure(mut client: RillClient<Channel>, producer: usize, acked: Acked) {
    for seq in 0.. {
        let values: Vec<String> = (0..10).map(|i| format!("p{producer}-{seq}-{i}")).collect();
        let mut builder = BatchBuilder::new();
        for v in &values {
            builder.push(1_700_000_000_000, None, Some(v.as_bytes()), &[]);
        }
        let request = ProduceRequest {
            acks: Acks::All as i32,
            timeout_ms: 10_000,
            partitions: vec![PartitionRecords { topic: "crash".into(), partition: 0, records: builder.finish() }],
        };
        let Ok(response) = client.produce(request).await else { return };
        let result = &response.into_inner().results[0];
        if result.error.is_some() {
            return;
        }
        assert_eq!(result.last_offset - result.base_offset, 9);
        let mut acked = acked.lock().unwrap();
        acked.extend(values.into_iter().enumerate().map(|(i, v)| (result.base_offset + i as u64, v)));
    }
}

async fn read_all(client: &mut RillClient<Channel>) -> Vec<(u64, Bytes)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let request = FetchRequest {
            partitions: vec![PartitionFetch { topic: "crash".into(), partition: 0, offset, max_bytes: 0 }],
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 0,
        };
        let result = client.fetch(request).await.unwrap().into_inner().results.remove(0);
        assert_eq!(result.error, None, "a fetch after recovery must not meet corrupt data");
        if result.records.is_empty() {
            assert_eq!(offset, result.high_watermark, "read everything below the high watermark");
            return out;
        }
        let records = decode_records(&result.records).expect("every served batch passes its CRC");
        out.extend(records.into_iter().filter(|r| r.offset >= offset).map(|r| (r.offset, r.value.unwrap())));
        offset = result.next_offset;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_record_survives_kill_9_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker = start(dir.path(), port);
    let mut client = connect(port).await;
    create_topic(&mut client).await;

    let acked: Acked = Arc::default();
    let producers: Vec<_> =
        (0..4).map(|p| tokio::spawn(produce_until_failure(client.clone(), p, acked.clone()))).collect();
    // Kill once a good number of writes were acknowledged, while the producers keep writing.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 20_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "producers stopped early: {} acknowledged",
            acked.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(broker); // SIGKILL, then reap
    for p in producers {
        p.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let _broker = start(dir.path(), port);
    let mut client = connect(port).await;
    let stored = read_all(&mut client).await;
    for (i, (offset, _)) in stored.iter().enumerate() {
        assert_eq!(*offset, i as u64, "offsets are contiguous from 0");
    }
    for (offset, value) in &acked {
        let (_, stored_value) =
            stored.get(*offset as usize).unwrap_or_else(|| panic!("acknowledged offset {offset} lost"));
        assert_eq!(stored_value, value.as_bytes(), "record at offset {offset}");
    }
    // Each producer waited for one acknowledgement before its next batch, so its records are in order.
    for p in 0..4 {
        let prefix = format!("p{p}-");
        let seqs: Vec<(u64, u64)> = stored
            .iter()
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .filter(|v| v.starts_with(&prefix))
            .map(|v| {
                let mut parts = v[prefix.len()..].split('-').map(|n| n.parse::<u64>().unwrap());
                (parts.next().unwrap(), parts.next().unwrap())
            })
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "producer {p} out of order");
    }
    assert!(acked.len() >= 20_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_writes_and_leaves_a_clean_shutdown_marker() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = start(dir.path(), port);
    let mut client = connect(port).await;
    create_topic(&mut client).await;
    let acked: Acked = Arc::default();
    let producer = tokio::spawn(produce_until_failure(client.clone(), 0, acked.clone()));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 1_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "producer stopped early: {} acknowledged",
            acked.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = broker.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::task::spawn_blocking(move || {
        let status = broker.child.wait().unwrap();
        (status, broker)
    })
    .await
    .unwrap()
    .0;
    assert!(status.success(), "a stop signal ends the broker with success, got {status}");
    producer.await.unwrap();

    let partition_dir = std::fs::read_dir(dir.path().join("topics")).unwrap().next().unwrap().unwrap().path().join("0");
    assert!(partition_dir.join("clean-shutdown").exists(), "clean-shutdown marker written");

    let _broker = start(dir.path(), port);
    let mut client = connect(port).await;
    let stored = read_all(&mut client).await;
    let acked = acked.lock().unwrap().clone();
    assert!(stored.len() >= acked.len());
    for (offset, value) in &acked {
        assert_eq!(stored[*offset as usize].1, value.as_bytes());
    }
}
