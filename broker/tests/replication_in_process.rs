//! Replication between brokers: three real brokers in one process, each with its own data directory, gRPC
//! port, controller quorum voter and partitions, talking over loopback exactly as separate processes do.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
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
    voters: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Node {
    fn start(&mut self) {
        let listen = format!("127.0.0.1:{}", self.port);
        let argv = [
            "rill-broker",
            "--node-id",
            &self.id.to_string(),
            "--data-dir",
            self.dir.to_str().unwrap(),
            "--listen",
            &listen,
            // No Kafka listener: the nodes would all want its default port.
            "--kafka-listen",
            "none",
            "--http-listen",
            "none",
            "--controller-voters",
            &self.voters,
            "--replica-lag-ms-max",
            "1000",
            "--heartbeat-interval-ms",
            "200",
            "--session-timeout-ms",
            "1500",
            "--log",
            "warn",
        ];
        let config = BrokerConfig::resolve(<Args as clap::Parser>::parse_from(argv)).unwrap();
        let (stop, stopped) = oneshot::channel();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(rill_broker::run(config, async {
            let _ = stopped.await;
        })));
    }

    fn is_running(&self) -> bool {
        self.stop.is_some()
    }

    async fn stop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    async fn client(&self) -> RillClient<Channel> {
        for _ in 0..400 {
            if let Ok(channel) =
                Channel::from_shared(format!("http://127.0.0.1:{}", self.port)).unwrap().connect().await
            {
                return RillClient::new(channel).max_decoding_message_size(usize::MAX);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("broker {} did not come up", self.id);
    }
}

struct Cluster {
    _dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

type Partition = PartitionMetadata;

impl Cluster {
    async fn start(size: u32) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let voters: Vec<String> = ports.iter().enumerate().map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1)).collect();
        let voters = voters.join(",");
        let mut nodes: Vec<Node> = (1..=size)
            .map(|id| Node {
                id,
                dir: dir.path().join(format!("node-{id}")),
                port: ports[id as usize - 1],
                voters: voters.clone(),
                stop: None,
                task: None,
            })
            .collect();
        for node in &mut nodes {
            node.start();
        }
        let cluster = Cluster { _dir: dir, nodes };
        cluster
            .wait_until("every broker to register", async |c: &Cluster| {
                let mut client = c.any_client().await;
                let cluster = client.describe_cluster(DescribeClusterRequest {}).await.ok()?.into_inner();
                (cluster.brokers.iter().filter(|b| !b.fenced).count() == c.nodes.len()
                    && cluster.active_controller != 0)
                    .then_some(())
            })
            .await;
        cluster
    }

    fn node(&mut self, id: u32) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).unwrap()
    }

    async fn any_client(&self) -> RillClient<Channel> {
        self.nodes.iter().find(|n| n.is_running()).unwrap().client().await
    }

    /// The partition's metadata as a running broker reports it.
    async fn partition(&self, topic: &str) -> Option<Partition> {
        let mut client = self.any_client().await;
        let response = client.metadata(MetadataRequest { topics: vec![topic.into()] }).await.ok()?.into_inner();
        response.topics.into_iter().next()?.partitions.into_iter().next()
    }

    async fn wait_until<T>(&self, what: &str, check: impl AsyncFn(&Cluster) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(value) = check(self).await {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_for_partition(&self, topic: &str, what: &str, done: impl Fn(&Partition) -> bool) -> Partition {
        self.wait_until(what, async |c: &Cluster| c.partition(topic).await.filter(|p| done(p))).await
    }

    async fn stop_all(&mut self) {
        for node in self.nodes.iter_mut().filter(|n| n.is_running()) {
            node.stop().await;
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
    let described = client
        .describe_topic(DescribeTopicRequest { name: topic.into(), local_only: true })
        .await
        .unwrap()
        .into_inner();
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
    let mut client = cluster.any_client().await;
    create_topic(&mut client, "r", &[("min.insync.replicas", "2")]).await;
    let leader = cluster.partition("r").await.unwrap().leader;
    let mut client = cluster.node(leader).client().await;
    for i in 0..50 {
        let values: Vec<String> = (0..20).map(|j| format!("record-{i}-{j}")).collect();
        let result = produce(&mut client, "r", &values).await;
        assert_eq!(result.error, None);
        assert_eq!(result.base_offset, i * 20);
    }
    // acks=all returned: the HW covers every record, so every ISR member holds all of them durably.
    let isr = cluster.partition("r").await.unwrap().isr;
    assert_eq!(isr.len(), 3, "no follower fell behind");
    for node in &cluster.nodes {
        assert!(log_end_on(node, "r").await >= 1000, "broker {} is missing acknowledged records", node.id);
    }
    let leader_bytes = segment_bytes(&cluster.node(leader).dir);
    for node in &cluster.nodes {
        let bytes = segment_bytes(&node.dir);
        let common = leader_bytes.len().min(bytes.len());
        assert_eq!(bytes[..common], leader_bytes[..common], "broker {} differs from the leader", node.id);
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
    // Any node describes the partition with the leader's offsets.
    let request = DescribeTopicRequest { name: "r".into(), local_only: false };
    let described = follower_client.describe_topic(request).await.unwrap().into_inner();
    assert_eq!((described.partitions[0].high_watermark, described.partitions[0].log_end_offset), (1000, 1000));
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_follower_leaves_the_isr_and_rejoins_once_caught_up() {
    let mut cluster = Cluster::start(3).await;
    let mut client = cluster.any_client().await;
    create_topic(&mut client, "r", &[("min.insync.replicas", "2")]).await;
    let state = cluster.partition("r").await.unwrap();
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

    cluster.node(follower).start();
    cluster.wait_for_partition("r", "the restarted follower to rejoin the ISR", |p| p.isr.contains(&follower)).await;
    assert!(log_end_on(cluster.node(follower), "r").await >= 21, "the follower caught up before rejoining");
    let result = produce(&mut client, "r", &["after".to_string()]).await;
    assert_eq!((result.error, result.base_offset), (None, 21));
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acks_all_is_refused_when_the_isr_is_below_min_insync_replicas() {
    let mut cluster = Cluster::start(3).await;
    let mut client = cluster.any_client().await;
    create_topic(&mut client, "r", &[("min.insync.replicas", "3")]).await;
    let state = cluster.partition("r").await.unwrap();
    let leader = state.leader;
    let follower = *state.replicas.iter().find(|r| **r != leader).unwrap();
    let mut client = cluster.node(leader).client().await;
    assert_eq!(produce(&mut client, "r", &["ok".to_string()]).await.error, None);
    cluster.node(follower).stop().await;
    cluster.wait_for_partition("r", "the ISR to shrink", |p| p.isr.len() == 2).await;
    let refused = produce(&mut client, "r", &["refused".to_string()]).await;
    assert_eq!(refused.error.map(|e| e.code), Some(ErrorCode::NotEnoughReplicas as i32));
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_leader_is_replaced_from_the_isr_and_nothing_acknowledged_is_lost() {
    let mut cluster = Cluster::start(3).await;
    let mut client = cluster.any_client().await;
    create_topic(&mut client, "r", &[("min.insync.replicas", "2")]).await;
    let before = cluster.partition("r").await.unwrap();
    let mut leader_client = cluster.node(before.leader).client().await;
    let mut acknowledged = Vec::new();
    for i in 0..30 {
        let value = format!("v{i}");
        let result = produce(&mut leader_client, "r", std::slice::from_ref(&value)).await;
        assert_eq!(result.error, None);
        acknowledged.push((result.base_offset, value));
    }
    // An idempotent batch acknowledged by the old leader...
    let pid = leader_client.init_producer_id(InitProducerIdRequest { producer_id: -1, producer_epoch: -1 }).await;
    let pid = pid.unwrap().into_inner().producer_id;
    let mut builder = BatchBuilder::new();
    builder.set_producer(pid, 0, 0);
    builder.push(1_700_000_000_000, None, Some(b"idempotent"), &[]);
    let idempotent = builder.finish();
    let request = ProduceRequest {
        acks: Acks::All as i32,
        timeout_ms: 10_000,
        partitions: vec![PartitionRecords { topic: "r".into(), partition: 0, records: idempotent.clone() }],
    };
    let original = leader_client.produce(request.clone()).await.unwrap().into_inner().results.remove(0);
    assert_eq!((original.error, original.base_offset), (None, 30));
    acknowledged.push((30, "idempotent".to_string()));
    let stopped_at = Instant::now();
    cluster.node(before.leader).stop().await;
    let after = cluster.wait_for_partition("r", "a new leader", |p| p.leader != before.leader && p.leader != 0).await;
    assert!(after.leader_epoch > before.leader_epoch, "the new leader has a new epoch");
    assert!(before.isr.contains(&after.leader), "the new leader comes from the ISR");
    let mut new_client = cluster.node(after.leader).client().await;
    let next = cluster
        .wait_until("the first write to the new leader", async |_: &Cluster| {
            let mut client = new_client.clone();
            let result = produce(&mut client, "r", &["after-failover".to_string()]).await;
            result.error.is_none().then_some(result.base_offset)
        })
        .await;
    eprintln!("failover: first successful write {} ms after the leader stopped", stopped_at.elapsed().as_millis());
    assert_eq!(next, 31, "the new leader continues right after the acknowledged records");
    // ...is recognised as a duplicate by the new leader, which built the same producer state as a follower.
    let retry = new_client.produce(request).await.unwrap().into_inner().results.remove(0);
    assert_eq!((retry.error, retry.base_offset), (None, 30), "the retry is answered with the original offset");
    let request = FetchRequest {
        partitions: vec![PartitionFetch { topic: "r".into(), partition: 0, offset: 0, max_bytes: 0 }],
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 0,
    };
    let fetched = new_client.fetch(request).await.unwrap().into_inner().results.remove(0);
    let records = rill_proto::batch::decode_records(&fetched.records).unwrap();
    for (offset, value) in &acknowledged {
        assert_eq!(records[*offset as usize].value.as_deref(), Some(value.as_bytes()), "offset {offset}");
    }
    // The old leader comes back as a follower in the new epoch and rejoins the ISR.
    cluster.node(before.leader).start();
    cluster.wait_for_partition("r", "the old leader to rejoin the ISR", |p| p.isr.contains(&before.leader)).await;
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topic_changes_commit_after_the_active_controller_stops() {
    let mut cluster = Cluster::start(3).await;
    let mut client = cluster.any_client().await;
    let before = client.init_producer_id(InitProducerIdRequest { producer_id: -1, producer_epoch: -1 }).await;
    let before = before.unwrap().into_inner().producer_id;
    let active = client.describe_cluster(DescribeClusterRequest {}).await.unwrap().into_inner().active_controller;
    cluster.node(active).stop().await;
    let created = cluster
        .wait_until("a topic create to commit without the old controller", async |c: &Cluster| {
            let mut client = c.any_client().await;
            let request = CreateTopicsRequest {
                topics: vec![NewTopic {
                    name: "later".into(),
                    partitions: 2,
                    replication_factor: 2,
                    config: HashMap::new(),
                }],
                validate_only: false,
            };
            let result = client.create_topics(request).await.ok()?.into_inner().results.remove(0);
            match result.error {
                None => Some(true),
                Some(e) if e.code == ErrorCode::TopicAlreadyExists as i32 => Some(true),
                Some(_) => None,
            }
        })
        .await;
    assert!(created);
    let mut client = cluster.any_client().await;
    let status = client.describe_cluster(DescribeClusterRequest {}).await.unwrap().into_inner();
    assert_ne!(status.active_controller, active);
    // Producer ids come from the controller quorum: unique whichever node is asked, before and after failover.
    let mut ids = std::collections::BTreeSet::new();
    for node in cluster.nodes.iter().filter(|n| n.is_running()) {
        let mut client = node.client().await;
        let request = InitProducerIdRequest { producer_id: -1, producer_epoch: -1 };
        let response = client.init_producer_id(request).await.unwrap().into_inner();
        assert_eq!(response.error, None);
        assert!(ids.insert(response.producer_id), "producer id {} handed out twice", response.producer_id);
        assert_ne!(response.producer_id, before, "an id from before the failover came back");
    }
    assert_eq!(status.voters.len(), 3);
    cluster.stop_all().await;
}
