//! The replicated metadata log end to end: `MetadataQuorum` nodes with their own storage directories, talking
//! real gRPC over loopback, through leader election, leader loss, restarts, snapshots and log purges.
//!
//! Every wait is on openraft's metrics (`Raft::wait`), never a sleep.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openraft::ServerState;
use rill_broker::metadata::raft::{MetadataQuorum, QuorumConfig, QuorumError};
use rill_broker::metadata::{MetadataRecord, MetadataState, PartitionRecord};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Generous: the machine running the tests may be busy with builds.
const WAIT: Duration = Duration::from_secs(30);

fn test_config() -> QuorumConfig {
    // Faster elections than the defaults keep the tests short; the ratio to the heartbeat stays the same.
    QuorumConfig {
        heartbeat_interval_ms: 100,
        election_timeout_min_ms: 600,
        election_timeout_max_ms: 1_200,
        ..Default::default()
    }
}

fn register(broker_id: u32) -> MetadataRecord {
    MetadataRecord::RegisterBroker {
        broker_id,
        address: format!("127.0.0.1:{}", 9000 + broker_id),
        kafka_address: None,
    }
}

fn create_topic(name: &str, topic_id: u64) -> MetadataRecord {
    let partition = PartitionRecord { replicas: vec![1], leader: 1, leader_epoch: 0, isr: vec![1], partition_epoch: 0 };
    MetadataRecord::CreateTopic { name: name.into(), topic_id, config: BTreeMap::new(), partitions: vec![partition] }
}

/// A node's gRPC server, stopped gracefully on request.
struct Server {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

struct Node {
    dir: PathBuf,
    quorum: Option<MetadataQuorum>,
    server: Option<Server>,
}

/// Voters on 127.0.0.1, each with its own directory and a tonic server serving its `ControllerRaft`.
struct Cluster {
    _root: tempfile::TempDir,
    voters: BTreeMap<u64, String>,
    nodes: BTreeMap<u64, Node>,
    config: QuorumConfig,
}

impl Cluster {
    async fn start(voter_count: u64, config: QuorumConfig) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        // Reserve the ports first: every voter must know every address before any starts.
        let listeners: BTreeMap<u64, std::net::TcpListener> =
            (1..=voter_count).map(|id| (id, std::net::TcpListener::bind("127.0.0.1:0").unwrap())).collect();
        let voters = listeners.iter().map(|(id, l)| (*id, l.local_addr().unwrap().to_string())).collect();
        let nodes = (1..=voter_count)
            .map(|id| (id, Node { dir: root.path().join(format!("node-{id}")), quorum: None, server: None }))
            .collect();
        let mut cluster = Cluster { _root: root, voters, nodes, config };
        for (id, listener) in listeners {
            listener.set_nonblocking(true).unwrap();
            cluster.start_node_on(id, tokio::net::TcpListener::from_std(listener).unwrap()).await;
        }
        cluster
    }

    async fn start_node(&mut self, id: u64) {
        let listener = tokio::net::TcpListener::bind(&self.voters[&id]).await.unwrap();
        self.start_node_on(id, listener).await;
    }

    async fn start_node_on(&mut self, id: u64, listener: tokio::net::TcpListener) {
        let node = self.nodes.get_mut(&id).unwrap();
        let quorum = MetadataQuorum::start(id, self.voters.clone(), &node.dir, self.config.clone()).await.unwrap();
        let service = quorum.grpc_service();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        node.quorum = Some(quorum);
        node.server = Some(Server { stop, task });
    }

    /// Stops the node's server and its Raft, as a crash would, but keeping its directory.
    async fn stop_node(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        let server = node.server.take().unwrap();
        let _ = server.stop.send(());
        node.quorum.take().unwrap().shutdown().await.unwrap();
        tokio::time::timeout(WAIT, server.task).await.expect("server stops").unwrap();
    }

    fn quorum(&self, id: u64) -> &MetadataQuorum {
        self.nodes[&id].quorum.as_ref().unwrap()
    }

    fn running(&self) -> Vec<u64> {
        self.nodes.iter().filter(|(_, n)| n.quorum.is_some()).map(|(id, _)| *id).collect()
    }

    /// Waits until one running node leads and every running node knows it; returns its id.
    async fn wait_for_leader(&self) -> u64 {
        let running = self.running();
        let first = self.quorum(running[0]).raft().wait(Some(WAIT));
        let metrics = first
            .metrics(|m| m.current_leader.is_some_and(|l| running.contains(&l)), "a running node is leader")
            .await
            .unwrap();
        let leader = metrics.current_leader.unwrap();
        self.quorum(leader).raft().wait(Some(WAIT)).state(ServerState::Leader, "leader leads").await.unwrap();
        for id in &running {
            self.quorum(*id).raft().wait(Some(WAIT)).current_leader(leader, format!("node {id} knows")).await.unwrap();
        }
        leader
    }

    /// Waits until every running node has applied what `leader` has, and returns that state.
    async fn wait_converged(&self, leader: u64) -> MetadataState {
        let applied = applied_everything(self.quorum(leader)).await;
        for id in self.running() {
            let wait = self.quorum(id).raft().wait(Some(WAIT));
            wait.applied_index_at_least(applied, format!("node {id} applied")).await.unwrap();
        }
        let state = self.quorum(leader).state();
        for id in self.running() {
            assert_eq!(*self.quorum(id).state(), *state, "node {id} holds the leader's state");
        }
        (*state).clone()
    }
}

/// Waits until `quorum` has applied every entry its log holds (metrics trail `propose` slightly) and returns
/// the last applied index.
async fn applied_everything(quorum: &MetadataQuorum) -> Option<u64> {
    let wait = quorum.raft().wait(Some(WAIT));
    let metrics = wait
        .metrics(|m| m.last_applied.map(|id| id.index) == m.last_log_index, "everything in the log applied")
        .await
        .unwrap();
    metrics.last_log_index
}

fn segment_first_indexes(dir: &Path) -> Vec<u64> {
    let mut firsts: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|d| {
            let name = d.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("log-")?.strip_suffix(".raft")?.parse().ok()
        })
        .collect();
    firsts.sort();
    firsts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_voter_leads_commits_applies_and_keeps_its_state_across_restart() {
    let root = tempfile::tempdir().unwrap();
    let voters = BTreeMap::from([(1, "127.0.0.1:1".to_string())]);
    let quorum = MetadataQuorum::start(1, voters.clone(), root.path(), test_config()).await.unwrap();
    quorum.raft().wait(Some(WAIT)).state(ServerState::Leader, "single voter leads").await.unwrap();
    assert_eq!(quorum.leader(), Some(1));
    assert_eq!(quorum.voters(), voters);

    let mut watch = quorum.subscribe();
    let first = quorum.propose(vec![register(1)]).await.unwrap();
    let second = quorum.propose(vec![create_topic("a", 0), create_topic("b", 1)]).await.unwrap();
    assert!(second > first, "offsets grow: {first} then {second}");
    let state = quorum.state();
    assert_eq!(state.brokers[&1].address, "127.0.0.1:9001");
    assert!(state.topic("a").is_some() && state.topic("b").is_some());
    assert_eq!(state.next_offset, second + 2, "two records at consecutive offsets");
    assert!(watch.has_changed().unwrap(), "subscribers see the applied state");
    assert_eq!(*watch.borrow_and_update().clone(), *state);

    let duplicate = quorum.propose(vec![create_topic("a", 2)]).await;
    assert!(matches!(duplicate, Err(QuorumError::Rejected { .. })), "{duplicate:?}");
    let applied = applied_everything(&quorum).await;
    let before = quorum.state();
    quorum.shutdown().await.unwrap();

    let quorum = MetadataQuorum::start(1, voters, root.path(), test_config()).await.unwrap();
    quorum.raft().wait(Some(WAIT)).applied_index_at_least(applied, "replayed").await.unwrap();
    assert_eq!(*quorum.state(), *before, "the restarted node holds the same state");
    quorum.raft().wait(Some(WAIT)).state(ServerState::Leader, "leads again").await.unwrap();
    let third = quorum.propose(vec![register(2)]).await.unwrap();
    assert!(third > second);
    quorum.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_elect_a_leader_that_alone_accepts_proposals_and_replicates_them() {
    let mut cluster = Cluster::start(3, test_config()).await;
    let leader = cluster.wait_for_leader().await;
    let follower = *cluster.running().iter().find(|id| **id != leader).unwrap();

    let refused = cluster.quorum(follower).propose(vec![register(7)]).await;
    assert!(
        matches!(refused, Err(QuorumError::NotLeader { leader_id: Some(l) }) if l == leader),
        "a follower names the leader: {refused:?}"
    );
    for broker in 1..=3 {
        cluster.quorum(leader).propose(vec![register(broker)]).await.unwrap();
    }
    cluster.quorum(leader).propose(vec![create_topic("t", 0)]).await.unwrap();
    let state = cluster.wait_converged(leader).await;
    assert_eq!(state.brokers.len(), 3);
    assert!(state.topic("t").is_some());
    assert!(!state.brokers.contains_key(&7), "the refused proposal was not committed");

    let status = cluster.quorum(follower).status();
    assert_eq!(status.leader_id, Some(leader));
    assert_eq!(status.voters, cluster.voters);
    for id in cluster.running() {
        cluster.stop_node(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_leader_elects_another_and_the_old_one_catches_up_after_restart() {
    let mut cluster = Cluster::start(3, test_config()).await;
    let old_leader = cluster.wait_for_leader().await;
    cluster.quorum(old_leader).propose(vec![register(1)]).await.unwrap();
    cluster.wait_converged(old_leader).await;

    cluster.stop_node(old_leader).await;
    let new_leader = cluster.wait_for_leader().await;
    assert_ne!(new_leader, old_leader);
    cluster.quorum(new_leader).propose(vec![register(2)]).await.unwrap();
    cluster.quorum(new_leader).propose(vec![create_topic("after-failover", 0)]).await.unwrap();
    cluster.wait_converged(new_leader).await;

    cluster.start_node(old_leader).await;
    let leader = cluster.wait_for_leader().await;
    let state = cluster.wait_converged(leader).await;
    assert_eq!(state.brokers.len(), 2);
    assert!(state.topic("after-failover").is_some(), "the restarted node has what was committed without it");
    for id in cluster.running() {
        cluster.stop_node(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_purge_the_log_and_bring_restarted_and_lagging_nodes_to_the_same_state() {
    let config = QuorumConfig {
        snapshot_interval_entries: 10,
        entries_kept_after_snapshot: 0,
        log_segment_bytes_max: 1024,
        ..test_config()
    };
    let mut cluster = Cluster::start(3, config).await;
    let leader = cluster.wait_for_leader().await;
    let others: Vec<u64> = cluster.running().into_iter().filter(|id| *id != leader).collect();
    let (lagging, restarted) = (others[0], others[1]);
    cluster.stop_node(lagging).await;

    for i in 0..40 {
        cluster.quorum(leader).propose(vec![create_topic(&format!("t{i}"), i)]).await.unwrap();
    }
    let last = applied_everything(cluster.quorum(leader)).await.unwrap();
    for id in [leader, restarted] {
        let wait = cluster.quorum(id).raft().wait(Some(WAIT));
        wait.metrics(|m| m.purged.is_some_and(|p| p.index + 20 >= last), format!("node {id} purged")).await.unwrap();
        let dir = &cluster.nodes[&id].dir;
        assert!(dir.join("snapshot").exists(), "node {id} wrote a snapshot");
        let firsts = segment_first_indexes(dir);
        assert!(firsts.first().is_some_and(|f| *f > 10), "node {id} deleted its old segments: {firsts:?}");
    }

    cluster.stop_node(restarted).await;
    cluster.start_node(restarted).await;
    cluster.start_node(lagging).await;
    let leader = cluster.wait_for_leader().await;
    let state = cluster.wait_converged(leader).await;
    assert_eq!(state.topics.len(), 40);
    let lagging_metrics = cluster.quorum(lagging).raft().metrics().borrow().clone();
    assert!(lagging_metrics.snapshot.is_some(), "the lagging node caught up through a snapshot");
    for id in cluster.running() {
        cluster.stop_node(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_of_the_raft_log_is_cut_on_restart_and_committed_state_survives() {
    let root = tempfile::tempdir().unwrap();
    let voters = BTreeMap::from([(1, "127.0.0.1:1".to_string())]);
    let quorum = MetadataQuorum::start(1, voters.clone(), root.path(), test_config()).await.unwrap();
    quorum.raft().wait(Some(WAIT)).state(ServerState::Leader, "leads").await.unwrap();
    quorum.propose(vec![register(1)]).await.unwrap();
    let applied = applied_everything(&quorum).await;
    let before = quorum.state();
    quorum.shutdown().await.unwrap();

    let last_segment = root.path().join(format!("log-{:020}.raft", segment_first_indexes(root.path()).last().unwrap()));
    let intact_len = std::fs::metadata(&last_segment).unwrap().len();
    let mut torn = std::fs::read(&last_segment).unwrap();
    torn.extend_from_slice(&[0, 0, 0, 40, 1, 2, 3, 4, b'{']); // a frame header and the start of its payload
    std::fs::write(&last_segment, &torn).unwrap();

    let quorum = MetadataQuorum::start(1, voters, root.path(), test_config()).await.unwrap();
    quorum.raft().wait(Some(WAIT)).applied_index_at_least(applied, "replayed").await.unwrap();
    assert_eq!(*quorum.state(), *before);
    assert!(std::fs::metadata(&last_segment).unwrap().len() >= intact_len);
    let reread = std::fs::read(&last_segment).unwrap();
    assert_eq!(&reread[..intact_len as usize], &torn[..intact_len as usize], "the intact prefix is untouched");
    let after = &reread[intact_len as usize..];
    assert!(!after.starts_with(&[0, 0, 0, 40]), "the torn frame is gone; new entries follow the intact ones");
    quorum.shutdown().await.unwrap();
}
