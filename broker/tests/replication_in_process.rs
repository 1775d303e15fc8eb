//! Replication between brokers: three real brokers in one process, each with its own data directory, gRPC
//! port and partitions, sharing one controller (the controller quorum is the next step; the replication
//! protocol between the brokers is the real one, over gRPC on loopback).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_broker::metadata::controller::TopicPolicy;
use rill_broker::metadata::log::FileMetadataLog;
use rill_broker::metadata::Controller;
use rill_broker::{Args, BrokerConfig};
use rill_proto::batch::BatchBuilder;
use rill_proto::v1::rill_client::RillClient;
use rill_proto::v1::*;
use tokio::sync::oneshot;
use tonic::transport::Channel;

struct Node {
    id: u32,
    dir: PathBuf,
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Node {
    fn start(&mut self, controller: &Arc<Mutex<Controller>>) {
        let listen = format!("127.0.0.1:{}", self.port);
        let argv = [
            "rill-broker",
            "--node-id",
            &self.id.to_string(),
            "--data-dir",
            self.dir.to_str().unwrap(),
            "--listen",
            &listen,
            "--replica-lag-ms-max",
            "1000",
            "--log",
            "warn",
        ];
        let config = BrokerConfig::resolve(<Args as clap::Parser>::parse_from(argv)).unwrap();
        let (stop, stopped) = oneshot::channel();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(rill_broker::run_with_controller(config, controller.clone(), async {
            let _ = stopped.await;
        })));
    }

    async fn stop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    async fn client(&self) -> RillClient<Channel> {
        for _ in 0..400 {
            if let Ok(channel) = Channel::from_shared(format!("http://127.0.0.1:{}", self.port)).unwrap().connect().await {
                return RillClient::new(channel).max_decoding_message_size(usize::MAX);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("broker {} did not come up", self.id);
    }
}

struct Cluster {
    _dir: tempfile::TempDir,
    controller: Arc<Mutex<Controller>>,
    nodes: Vec<Node>,
}

impl Cluster {
    async fn start(size: u32) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let (log, records) = FileMetadataLog::open(&dir.path().join("controller")).unwrap();
        let policy = TopicPolicy { defaults: Default::default(), batch_bytes_max: 1 << 20, default_replication_factor: 3 };
        let controller = Arc::new(Mutex::new(Controller::open(Box::new(log), records, policy)));
        let mut nodes: Vec<Node> = (1..=size)
            .map(|id| Node { id, dir: dir.path().join(format!("node-{id}")), port: free_port(), stop: None, task: None })
            .collect();
        for node in &mut nodes {
            node.start(&controller);
        }
        for node in &nodes {
            node.client().await;
        }
        Cluster { _dir: dir, controller, nodes }
    }

    fn node(&mut self, id: u32) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).unwrap()
    }

    fn partition(&self, topic: &str) -> rill_broker::metadata::PartitionState {
        let controller = self.controller.lock().unwrap();
        controller.state().topic(topic).unwrap().partitions[0].clone()
    }

    /// Waits until the controller's view of the partition satisfies `done`.
    async fn wait_for_partition(&self, topic: &str, what: &str, done: impl Fn(&rill_broker::metadata::PartitionState) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !done(&self.partition(topic)) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {:?}", self.partition(topic));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn batch(values: &[String]) -> Bytes {
    let mut b = BatchBuilder::new();
    for v in values {
        b.push(1_700_000_000_000, None, Some(v.as_bytes()), &[]);
    }
    b.finish()
}

async fn produce(client: &mut RillClient<Channel>, topic: &str, values: &[String]) -> PartitionProduceResult {
    let request = ProduceRequest {
        acks: Acks::All as i32,
        timeout_ms: 10_000,
        partitions: vec![PartitionRecords { topic: topic.into(), partition: 0, records: batch(values) }],
    };
    client.produce(request).await.unwrap().into_inner().results.remove(0)
}

async fn create_topic(client: &mut RillClient<Channel>, name: &str, config: &[(&str, &str)]) {
    let config: HashMap<String, String> = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let request = CreateTopicsRequest {
        topics: vec![NewTopic { name: name.into(), partitions: 1, replication_factor: 3, config }],
        validate_only: false,
    };
    let result = client.create_topics(request).await.unwrap().into_inner().results.remove(0);
    assert_eq!(result.error, None);
}

async fn log_end_on(node: &Node, topic: &str) -> u64 {
    let mut client = node.client().await;
    let described = client.describe_topic(DescribeTopicRequest { name: topic.into() }).await.unwrap().into_inner();
    described.partitions[0].log_end_offset
}

/// The bytes of a partition's single segment on one node.
fn segment_bytes(node_dir: &Path) -> Vec<u8> {
    let topic_dir = std::fs::read_dir(node_dir.join("topics")).unwrap().next().unwrap().unwrap().path();
    std::fs::read(topic_dir.join("0").join("00000000000000000000.log")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_records_are_on_every_in_sync_replica_byte_for_byte() {
    let mut cluster = Cluster::start(3).await;
    let mut client = cluster.nodes[0].client().await;
    create_topic(&mut client, "r", &[("min.insync.replicas", "2")]).await;
    let leader = cluster.partition("r").leader;
    let mut client = cluster.node(leader).client().await;
    for i in 0..50 {
        let values: Vec<String> = (0..20).map(|j| format!("record-{i}-{j}")).collect();
        let result = produce(&mut client, "r", &values).await;
        assert_eq!(result.error, None);
        assert_eq!(result.base_offset, i * 20);
    }
    // acks=all returned: the HW covers every record, so every ISR member holds all of them durably.
    let isr = cluster.partition("r").isr;
    assert_eq!(isr.len(), 3, "no follower fell behind");
    for node in &cluster.nodes {
        assert!(log_end_on(node, "r").await >= 1000, "broker {} is missing acknowledged records", node.id);
    }
    let leader_bytes = segment_bytes(&cluster.node(leader).dir);
    for node in &cluster.nodes {
        let bytes = segment_bytes(&node.dir);
        assert_eq!(bytes[..leader_bytes.len().min(bytes.len())], leader_bytes[..leader_bytes.len().min(bytes.len())]);
        assert!(bytes.len() >= leader_bytes.len() || node.id != leader);
    }
    // Followers refuse client reads: consumers go to the leader.
    let follower = cluster.nodes.iter().find(|n| n.id != leader).unwrap();
    let mut follower_client = follower.client().await;
    let request = FetchRequest {
        partitions: vec![PartitionFetch { topic: "r".into(), partition: 0, offset: 0, max_bytes: 0 }],
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 0,
    };
    let result = follower_client.fetch(request).await.unwrap().into_inner().results.remove(0);
    assert_eq!(result.error.map(|e| e.code), Some(ErrorCode::NotLeader as i32));
    for node in &mut cluster.nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_follower_leaves_the_isr_and_rejoins_once_caught_up() {
    let mut cluster = Cluster::start(3).await;
    let mut client = cluster.nodes[0].client().await;
    create_topic(&mut client, "r", &[("min.insync.replicas", "2")]).await;
    let state = cluster.partition("r");
    let leader = state.leader;
    let follower = *state.replicas.iter().find(|r| **r != leader).unwrap();
    let mut client = cluster.node(leader).client().await;
    produce(&mut client, "r", &["before".to_string()]).await;

    cluster.node(follower).stop().await;
    cluster.wait_for_partition("r", "the stopped follower to leave the ISR", |p| !p.isr.contains(&follower)).await;
    // Two in-sync replicas remain, enough for min.insync.replicas=2: writes go on.
    for i in 0..20 {
        let result = produce(&mut client, "r", &[format!("while-down-{i}")]).await;
        assert_eq!(result.error, None, "write {i} with one follower down");
    }

    let controller = cluster.controller.clone();
    cluster.node(follower).start(&controller);
    cluster.wait_for_partition("r", "the restarted follower to rejoin the ISR", |p| p.isr.contains(&follower)).await;
    assert!(log_end_on(cluster.node(follower), "r").await >= 21, "the follower caught up before rejoining");
    let result = produce(&mut client, "r", &["after".to_string()]).await;
    assert_eq!((result.error, result.base_offset), (None, 21));
    for node in &mut cluster.nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acks_all_is_refused_when_the_isr_is_below_min_insync_replicas() {
    let mut cluster = Cluster::start(3).await;
    let mut client = cluster.nodes[0].client().await;
    create_topic(&mut client, "r", &[("min.insync.replicas", "3")]).await;
    let state = cluster.partition("r");
    let leader = state.leader;
    let follower = *state.replicas.iter().find(|r| **r != leader).unwrap();
    let mut client = cluster.node(leader).client().await;
    assert_eq!(produce(&mut client, "r", &["ok".to_string()]).await.error, None);
    cluster.node(follower).stop().await;
    cluster.wait_for_partition("r", "the ISR to shrink", |p| p.isr.len() == 2).await;
    let refused = produce(&mut client, "r", &["refused".to_string()]).await;
    assert_eq!(refused.error.map(|e| e.code), Some(ErrorCode::NotEnoughReplicas as i32));
    for node in cluster.nodes.iter_mut().filter(|n| n.stop.is_some()) {
        node.stop().await;
    }
}
