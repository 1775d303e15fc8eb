//! Acceptance tests of replication between broker processes: three real `rill-broker` nodes, all controller
//! voters, under kill -9, SIGSTOP/SIGCONT and network isolation, with a continuous `acks=all` producer whose
//! history is checked against what the cluster finally holds (no acknowledged write lost or moved) and
//! replicas compared byte for byte below the high watermark (HW).
//!
//! Clusters are heavy, so the tests of this file run one at a time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rill_client::Admin;
use rill_proto::v1;
use rill_tests::checker::{
    self, CheckReport, ContinuousProducer, History, PartitionLog, WorkloadOptions, decode_log_records, read_partition,
    read_stored_batches,
};
use rill_tests::cluster::{ClusterOptions, ClusterProcess, wait_for};
use rill_tests::rpc;

const HEARTBEAT_INTERVAL_MS: u64 = 500;
const SESSION_TIMEOUT_MS: u64 = 3_000;
const REPLICA_LAG_MS_MAX: u64 = 3_000;
/// From a failure to a new leader or controller: the session timeout, an election, and slack for debug builds
/// sharing two cores with other tests.
const FAILOVER_MS_MAX: u64 = SESSION_TIMEOUT_MS + 27_000;
/// From a healed fault to every replica back in the ISR with the HW at the log end.
const CONVERGENCE_MS_MAX: u64 = 60_000;
/// Reading a partition back through its leader.
const READ_MS_MAX: u64 = 30_000;
/// Writes acknowledged before a fault is injected, and after it, before the test moves on.
const WRITES_PER_PHASE: usize = 100;
/// Writes sent straight to a deposed leader once it is back.
const STALE_WRITES: usize = 10;

/// One cluster at a time: each is three broker processes, and timing-sensitive (session timeouts).
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ALL: [u32; 3] = [1, 2, 3];

async fn start_cluster(through_proxy: bool) -> ClusterProcess {
    let extra_args = [
        ("--heartbeat-interval-ms", HEARTBEAT_INTERVAL_MS),
        ("--session-timeout-ms", SESSION_TIMEOUT_MS),
        ("--replica-lag-ms-max", REPLICA_LAG_MS_MAX),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_owned(), value.to_string()])
    .collect();
    tokio::task::block_in_place(|| ClusterProcess::start(3, ClusterOptions { extra_args, through_proxy }))
}

/// Creates `topic` with `partitions` partitions on all three nodes, `acks=all` needing two in-sync replicas,
/// and waits until every node sees all three replicas of each partition in the ISR.
async fn create_replicated_topic(cluster: &ClusterProcess, topic: &str, partitions: u32) {
    let admin = Admin::connect(cluster.client_config()).await.expect("connect admin");
    let config = BTreeMap::from([("min.insync.replicas".to_owned(), "2".to_owned())]);
    admin.create_topic(topic, partitions, Some(3), config).await.expect("create the topic");
    for partition in 0..partitions {
        agreed_state(cluster, &ALL, topic, partition, "all three replicas are in the ISR", |p| p.isr.len() == 3).await;
    }
}

/// The partition's metadata as node `id` reports it.
async fn state_at(
    cluster: &ClusterProcess,
    id: u32,
    topic: &str,
    partition: u32,
) -> Result<v1::PartitionMetadata, String> {
    rpc::partition_metadata(&cluster.client_address(id), topic, partition)
        .await
        .map_err(|e| format!("node {id}: {e:#}"))
}

/// Waits until every node of `nodes` reports the same leader and epoch for the partition, with a leader among
/// `nodes`, and `condition` holds for it; returns that state.
async fn agreed_state(
    cluster: &ClusterProcess,
    nodes: &[u32],
    topic: &str,
    partition: u32,
    what: &str,
    condition: impl Fn(&v1::PartitionMetadata) -> bool,
) -> v1::PartitionMetadata {
    let what = format!("nodes {nodes:?} agree on {topic}-{partition}, and {what}");
    wait_for(Duration::from_millis(FAILOVER_MS_MAX), &what, || async {
        let mut states = Vec::new();
        for id in nodes {
            states.push(state_at(cluster, *id, topic, partition).await?);
        }
        let first = states[0].clone();
        let agreed =
            states.iter().all(|s| (s.leader, s.leader_epoch, &s.isr) == (first.leader, first.leader_epoch, &first.isr));
        if agreed && nodes.contains(&first.leader) && condition(&first) {
            Ok(first)
        } else {
            Err(format!("{states:?}"))
        }
    })
    .await
}

fn addresses(cluster: &ClusterProcess, nodes: &[u32]) -> Vec<String> {
    nodes.iter().map(|id| cluster.client_address(*id)).collect()
}

fn data_dirs(cluster: &ClusterProcess, nodes: &[u32]) -> Vec<(u32, PathBuf)> {
    nodes.iter().map(|id| (*id, cluster.node(*id).data_dir().to_path_buf())).collect()
}

/// Once writes have stopped: for each of `partitions`, waits until every node of `nodes` is in the ISR and
/// the leader's HW has reached its log end and passed every acknowledged offset, reads the partition back and
/// compares the replicas' stored bytes below the HW; then checks `history` against the logs read. Returns
/// the logs and the report.
async fn converge_and_check(
    cluster: &ClusterProcess,
    nodes: &[u32],
    topic: &str,
    partitions: &[u32],
    history: &History,
) -> (Vec<PartitionLog>, CheckReport) {
    let mut logs = Vec::new();
    for partition in partitions {
        logs.push(converge_and_compare(cluster, nodes, topic, *partition, history).await);
    }
    let report = checker::check(history, &logs);
    println!("{topic}: {report}");
    report.assert_valid();
    // The simulator's checker reads the same history (sends and acknowledgements; these processes record no
    // polls, HWs or leader writes).
    let finals: Vec<_> = logs.iter().map(checker::jepsen::final_from_log).collect();
    let jepsen = checker::jepsen::check_history(&checker::jepsen::ops_from_attempts(history, topic), &finals);
    println!("{topic}: {jepsen}");
    assert!(jepsen.is_valid(), "the Jepsen-style check failed:\n{jepsen}");
    (logs, report)
}

/// The per-partition part of [`converge_and_check`].
async fn converge_and_compare(
    cluster: &ClusterProcess,
    nodes: &[u32],
    topic: &str,
    partition: u32,
    history: &History,
) -> PartitionLog {
    let state = agreed_state(cluster, nodes, topic, partition, "every one of them is in the ISR", |p| {
        nodes.iter().all(|id| p.isr.contains(id))
    })
    .await;
    let acked_end = history.max_acked_offset(topic, partition).map_or(0, |offset| offset + 1);
    let leader = cluster.client_address(state.leader);
    wait_for(
        Duration::from_millis(CONVERGENCE_MS_MAX),
        "the HW reaches the log end and every acknowledged offset",
        || async {
            let p = rpc::describe_partition(&leader, topic, partition).await.map_err(|e| format!("{e:#}"))?;
            if p.high_watermark == p.log_end_offset && p.high_watermark >= acked_end {
                Ok(())
            } else {
                Err(format!("HW {} LEO {} acknowledged end {acked_end}", p.high_watermark, p.log_end_offset))
            }
        },
    )
    .await;
    let log = read_partition(&addresses(cluster, nodes), topic, partition, Duration::from_millis(READ_MS_MAX))
        .await
        .expect("read the partition back");
    checker::assert_replicas_identical(&data_dirs(cluster, nodes), topic, partition, log.high_watermark);
    log
}

/// Every write acknowledged after `since` is stored in an epoch newer than `old_epoch`: only the new leader
/// can have written it.
fn assert_written_after_epoch(history: &History, log: &PartitionLog, since: Instant, old_epoch: u32) {
    for attempt in history.attempts.iter().filter(|a| a.sent_at >= since) {
        let Some(offset) = attempt.acked_offset() else { continue };
        let record = log.record_at(offset).expect("the history check found every acknowledged record");
        assert!(
            record.leader_epoch > old_epoch as i32,
            "seq {} sent after the fault is stored at {offset} in epoch {}, not after epoch {old_epoch}",
            attempt.seq,
            record.leader_epoch
        );
    }
}

/// Sends `STALE_WRITES` single-record `acks=leader` writes straight to node `id`, one after another, and
/// returns each value with the offset it was acknowledged at, if it was.
async fn write_directly(cluster: &ClusterProcess, id: u32, topic: &str) -> Vec<(String, Option<u64>)> {
    let address = cluster.client_address(id);
    let mut outcomes = Vec::new();
    for i in 0..STALE_WRITES {
        let value = format!("stale-{id}-{i}");
        let result =
            rpc::produce_values(&address, topic, 0, v1::Acks::Leader, 2_000, std::slice::from_ref(&value)).await;
        let acked = match &result {
            Ok(r) if rpc::error_code(r.error.as_ref()) == v1::ErrorCode::None => Some(r.base_offset),
            _ => None,
        };
        println!("write straight to node {id}: {value} -> {:?}", result.map(|r| (r.base_offset, r.error)));
        outcomes.push((value, acked));
    }
    outcomes
}

/// A deposed leader must not accept writes in the epoch it led: each write it acknowledged must be in the
/// final log at its offset, in a newer epoch (a write accepted in the old epoch would have been truncated).
fn assert_no_write_in_old_epoch(log: &PartitionLog, stale: &[(String, Option<u64>)], old_epoch: u32) {
    for (value, acked) in stale {
        let Some(offset) = acked else { continue };
        let record = log.record_at(*offset);
        let kept =
            record.is_some_and(|r| r.value.as_deref() == Some(value.as_bytes()) && r.leader_epoch > old_epoch as i32);
        assert!(
            kept,
            "the deposed leader acknowledged {value} at {offset} outside a newer epoch; the log holds {record:?}"
        );
    }
}

/// Waits until `since` is more than a session timeout ago: a paused or cut-off node has then certainly
/// outlived its lease by its own clock too.
async fn outlast_session(since: Instant) {
    let session = Duration::from_millis(SESSION_TIMEOUT_MS + HEARTBEAT_INTERVAL_MS);
    if let Some(rest) = session.checked_sub(since.elapsed()) {
        tokio::time::sleep(rest).await;
    }
}

/// kill -9 of a partition leader: the controller elects another in-sync replica with a newer epoch, writes
/// continue, nothing acknowledged is lost, and after the node returns all replicas are identical below the
/// HW. Prints the time from the kill to the first acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_kill9_elects_a_new_leader_and_loses_no_acknowledged_write() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let topic = "kill-leader";
    let mut cluster = start_cluster(false).await;
    create_replicated_topic(&cluster, topic, 1).await;
    let producer = ContinuousProducer::start(cluster.client_config(), WorkloadOptions::new(1, topic)).await.unwrap();
    producer
        .wait_for(Duration::from_millis(CONVERGENCE_MS_MAX), "writes before the crash", |h| {
            h.acked_count() >= WRITES_PER_PHASE
        })
        .await;
    let before = agreed_state(&cluster, &ALL, topic, 0, "a leader is known", |_| true).await;

    let old = before.leader;
    cluster.node_mut(old).kill9();
    let killed_at = Instant::now();
    let survivors: Vec<u32> = ALL.into_iter().filter(|id| *id != old).collect();
    let after = agreed_state(&cluster, &survivors, topic, 0, "a surviving replica leads in a newer epoch", |p| {
        p.leader != old && p.leader_epoch > before.leader_epoch
    })
    .await;
    producer
        .wait_for(Duration::from_millis(FAILOVER_MS_MAX), "writes acknowledged after the crash", |h| {
            h.acked_sent_since(killed_at) >= WRITES_PER_PHASE
        })
        .await;
    let history = producer.stop().await;
    let first = history.first_ack_sent_since(killed_at).expect("a write after the crash");
    println!(
        "kill -9 of leader {old} (epoch {}): node {} leads in epoch {}; first acknowledged write {:?} after the kill",
        before.leader_epoch,
        after.leader,
        after.leader_epoch,
        first.completed_at - killed_at
    );

    tokio::task::block_in_place(|| cluster.node_mut(old).restart());
    let (logs, _) = converge_and_check(&cluster, &ALL, topic, &[0], &history).await;
    let log = &logs[0];
    assert_written_after_epoch(&history, log, killed_at, before.leader_epoch);
}

/// A leader paused (SIGSTOP) past the session timeout is replaced; resumed (SIGCONT), it accepts no write in
/// the epoch it led, and rejoins the ISR as a follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paused_leader_is_replaced_and_rejoins_as_follower_without_writing_in_its_old_epoch() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let topic = "pause-leader";
    let cluster = start_cluster(false).await;
    deposed_leader_scenario(
        &cluster,
        topic,
        |cluster, old| cluster.node(old).sigstop(),
        |cluster, old| cluster.node(old).sigcont(),
    )
    .await;
}

/// A leader cut off from every other node and every client by the proxies, past the session timeout, is
/// replaced; healed, it accepts no write in the epoch it led, and rejoins the ISR as a follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolated_leader_is_replaced_and_rejoins_as_follower_without_writing_in_its_old_epoch() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let topic = "isolate-leader";
    let cluster = start_cluster(true).await;
    deposed_leader_scenario(
        &cluster,
        topic,
        |cluster, old| {
            let others: Vec<u32> = ALL.into_iter().filter(|id| *id != old).collect();
            // Without recognising the node's own connections, only what reaches it would be cut.
            assert!(
                others.iter().any(|id| cluster.proxy(*id).connections_from(old) > 0),
                "no proxy recognised a connection from node {old}; its outgoing traffic would not be cut"
            );
            cluster.isolate(old);
        },
        |cluster, _| cluster.heal_all(),
    )
    .await;
}

/// The shared course of the paused and isolated leader tests: `fault` takes the leader away, `heal` brings
/// it back once a new leader leads and the old one's session has certainly expired.
async fn deposed_leader_scenario(
    cluster: &ClusterProcess,
    topic: &str,
    fault: impl FnOnce(&ClusterProcess, u32),
    heal: impl FnOnce(&ClusterProcess, u32),
) {
    create_replicated_topic(cluster, topic, 1).await;
    let producer = ContinuousProducer::start(cluster.client_config(), WorkloadOptions::new(1, topic)).await.unwrap();
    producer
        .wait_for(Duration::from_millis(CONVERGENCE_MS_MAX), "writes before the fault", |h| {
            h.acked_count() >= WRITES_PER_PHASE
        })
        .await;
    let before = agreed_state(cluster, &ALL, topic, 0, "a leader is known", |_| true).await;
    let old = before.leader;
    let survivors: Vec<u32> = ALL.into_iter().filter(|id| *id != old).collect();

    fault(cluster, old);
    let fault_at = Instant::now();
    let after = agreed_state(cluster, &survivors, topic, 0, "a surviving replica leads in a newer epoch", |p| {
        p.leader != old && p.leader_epoch > before.leader_epoch
    })
    .await;
    producer
        .wait_for(Duration::from_millis(FAILOVER_MS_MAX), "writes acknowledged after the fault", |h| {
            h.acked_sent_since(fault_at) >= WRITES_PER_PHASE
        })
        .await;
    println!(
        "leader {old} (epoch {}) taken away; node {} leads in epoch {} after {:?}",
        before.leader_epoch,
        after.leader,
        after.leader_epoch,
        fault_at.elapsed()
    );
    outlast_session(fault_at).await;

    heal(cluster, old);
    // At once, before it can have heard of the new epoch from anyone.
    let stale = write_directly(cluster, old, topic).await;
    agreed_state(cluster, &ALL, topic, 0, "the old leader is back in the ISR as a follower", |p| {
        p.isr.contains(&old) && p.leader != old && p.leader_epoch >= after.leader_epoch
    })
    .await;
    let history = producer.stop().await;
    let (logs, _) = converge_and_check(cluster, &ALL, topic, &[0], &history).await;
    let log = &logs[0];
    assert_no_write_in_old_epoch(log, &stale, before.leader_epoch);
    assert_written_after_epoch(&history, log, fault_at, before.leader_epoch);
}

/// Losing one of three controller voters, the active controller among them, leaves a quorum: the survivors
/// elect a new active controller, which commits metadata changes (fencing the lost node, creating a topic)
/// that the topic's writes then rely on; the lost voter catches up when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_the_active_controller_keeps_metadata_changes_committing() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let topic = "after-controller-loss";
    let mut cluster = start_cluster(false).await;
    let described = rpc::describe_cluster(&cluster.client_address(1)).await.expect("describe the cluster");
    let old = described.active_controller;
    assert!(ALL.contains(&old), "active controller {old} is not a node; {described:?}");
    let mut voters = described.voters.clone();
    voters.sort_unstable();
    assert_eq!(voters, ALL, "every node is a voter");

    cluster.node_mut(old).kill9();
    let survivors: Vec<u32> = ALL.into_iter().filter(|id| *id != old).collect();
    let new_controller = wait_for(
        Duration::from_millis(FAILOVER_MS_MAX),
        "the survivors agree on a new active controller that fenced the lost node",
        || async {
            let mut views = Vec::new();
            for id in &survivors {
                views.push(rpc::describe_cluster(&cluster.client_address(*id)).await.map_err(|e| format!("{e:#}"))?);
            }
            let controller = views[0].active_controller;
            let fenced = |view: &v1::DescribeClusterResponse| view.brokers.iter().any(|b| b.id == old && b.fenced);
            if controller != 0
                && controller != old
                && views.iter().all(|v| v.active_controller == controller && fenced(v))
            {
                Ok(controller)
            } else {
                Err(format!("{views:?}"))
            }
        },
    )
    .await;
    println!("active controller {old} killed; node {new_controller} took over");

    let client = rill_client::ClientConfig { bootstrap: addresses(&cluster, &survivors), ..cluster.client_config() };
    let admin = Admin::connect(client.clone()).await.expect("connect admin to the survivors");
    let config = BTreeMap::from([("min.insync.replicas".to_owned(), "2".to_owned())]);
    admin.create_topic(topic, 2, Some(2), config).await.expect("create a topic with two of three voters");
    for partition in 0..2 {
        agreed_state(&cluster, &survivors, topic, partition, "both survivors are in the ISR", |p| p.isr.len() == 2)
            .await;
    }

    let options = WorkloadOptions { partitions: vec![0, 1], ..WorkloadOptions::new(1, topic) };
    let producer = ContinuousProducer::start(client, options).await.unwrap();
    producer
        .wait_for(Duration::from_millis(CONVERGENCE_MS_MAX), "writes to the new topic", |h| {
            h.acked_count() >= WRITES_PER_PHASE
        })
        .await;
    let history = producer.stop().await;
    converge_and_check(&cluster, &survivors, topic, &[0, 1], &history).await;

    tokio::task::block_in_place(|| cluster.node_mut(old).restart());
    wait_for(
        Duration::from_millis(CONVERGENCE_MS_MAX),
        "the returning voter knows the topic created without it",
        || async {
            let metadata = rpc::metadata(&cluster.client_address(old), &[topic]).await.map_err(|e| format!("{e:#}"))?;
            let known = metadata.topics.iter().any(|t| t.name == topic && t.partitions.len() == 2);
            if known { Ok(()) } else { Err(format!("{:?}", metadata.topics)) }
        },
    )
    .await;
}

/// A leader killed with records no follower has fetched (written with `acks=leader` while both followers
/// were paused) comes back as a follower of the replica elected in its place, truncates the diverged tail to
/// the new leader's history, and rejoins the ISR with byte-identical data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_leader_truncates_its_unreplicated_tail_and_rejoins_the_isr() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let topic = "diverged-tail";
    let mut cluster = start_cluster(false).await;
    create_replicated_topic(&cluster, topic, 1).await;
    let producer = ContinuousProducer::start(cluster.client_config(), WorkloadOptions::new(1, topic)).await.unwrap();
    producer
        .wait_for(Duration::from_millis(CONVERGENCE_MS_MAX), "committed writes", |h| {
            h.acked_count() >= WRITES_PER_PHASE
        })
        .await;
    let committed = producer.stop().await;
    let before =
        agreed_state(&cluster, &ALL, topic, 0, "all three replicas are in the ISR", |p| p.isr.len() == 3).await;
    let old = before.leader;
    let followers: Vec<u32> = ALL.into_iter().filter(|id| *id != old).collect();
    let leader_address = cluster.client_address(old);
    wait_for(Duration::from_millis(CONVERGENCE_MS_MAX), "the followers hold everything the leader has", || async {
        let p = rpc::describe_partition(&leader_address, topic, 0).await.map_err(|e| format!("{e:#}"))?;
        if p.high_watermark == p.log_end_offset { Ok(()) } else { Err(format!("{p:?}")) }
    })
    .await;

    // Pause both followers only briefly (well within the session timeout and the replica lag limit), so the
    // ISR and the controller's view stay unchanged while the leader appends a tail they do not fetch. A
    // follower's long-poll fetch already waiting at the leader may still carry the first batch to it (the
    // answer waits in its socket until it resumes); that part of the tail is then legitimately replicated.
    for id in &followers {
        cluster.node(*id).sigstop();
    }
    // (offset, value) of every tail record, as the leader acknowledged them.
    let mut tail: Vec<(u64, String)> = Vec::new();
    for batch in 0..5 {
        let values: Vec<String> = (0..4).map(|i| format!("tail-{batch}-{i}")).collect();
        let result = rpc::produce_values(&leader_address, topic, 0, v1::Acks::Leader, 1_000, &values)
            .await
            .expect("produce the tail");
        assert_eq!(
            rpc::error_code(result.error.as_ref()),
            v1::ErrorCode::None,
            "the leader refused the tail: {result:?}"
        );
        tail.extend(values.into_iter().enumerate().map(|(i, value)| (result.base_offset + i as u64, value)));
    }
    cluster.node_mut(old).kill9();
    for id in &followers {
        cluster.node(*id).sigcont();
    }
    let killed_at = Instant::now();

    let after = agreed_state(&cluster, &followers, topic, 0, "a follower leads in a newer epoch", |p| {
        p.leader != old && p.leader_epoch > before.leader_epoch
    })
    .await;
    println!(
        "leader {old} killed after appending {} records with acks=leader; node {} leads in epoch {}",
        tail.len(),
        after.leader,
        after.leader_epoch
    );
    // More new writes than the tail held, so the new history overwrites every offset of the old tail.
    let producer = ContinuousProducer::start(cluster.client_config(), WorkloadOptions::new(2, topic)).await.unwrap();
    producer
        .wait_for(Duration::from_millis(FAILOVER_MS_MAX), "writes to the new leader", |h| {
            h.acked_count() >= tail.len() + WRITES_PER_PHASE
        })
        .await;
    let history = History::merge([committed, producer.stop().await]);

    tokio::task::block_in_place(|| cluster.node_mut(old).restart());
    let (logs, _) = converge_and_check(&cluster, &ALL, topic, &[0], &history).await;
    let log = &logs[0];
    assert_written_after_epoch(&history, log, killed_at, before.leader_epoch);
    // Each tail offset holds either the tail record itself, stored in the old epoch (it reached a follower
    // before the crash), or a record of the new history; and some of the tail did diverge, or the test proved
    // nothing about truncation.
    let mut diverged = 0;
    for (offset, value) in &tail {
        let record = log.record_at(*offset).expect("the new history covers the old tail's offsets");
        let replicated =
            record.value.as_deref() == Some(value.as_bytes()) && record.leader_epoch == before.leader_epoch as i32;
        assert!(
            replicated || record.leader_epoch > before.leader_epoch as i32,
            "offset {offset} holds neither the replicated tail nor the new history: {record:?}"
        );
        diverged += usize::from(!replicated);
    }
    println!("{diverged} of {} tail records diverged and were truncated", tail.len());
    assert!(diverged > 0, "every tail record reached a follower; no divergence was exercised");

    // The restarted node holds nothing past the HW, and (compared above) exactly the leader's bytes below it:
    // its diverged tail is gone.
    let dir =
        checker::partition_dir(cluster.node(old).data_dir(), topic, 0).expect("the restarted node hosts the partition");
    let stored = read_stored_batches(&dir, u64::MAX).expect("read the restarted node's segments");
    let stored_end = stored.last().map_or(0, |b| b.last_offset + 1);
    assert_eq!(stored_end, log.high_watermark, "the restarted node's log ends elsewhere than the HW");
    let bytes = bytes::Bytes::from(stored.iter().flat_map(|b| b.bytes.clone()).collect::<Vec<u8>>());
    let stored_records = decode_log_records(&bytes).expect("decode the restarted node's batches");
    assert_eq!(stored_records, log.records, "the restarted node's records differ from the leader's");
}
