//! Encryption at rest with real broker processes: a 3-node cluster whose topic has `encryption=aes-256-gcm`
//! keeps none of its values readable in any file of any node, reads back intact after a restart and after
//! kill -9 of the leader, and a broker restarted with a rotated key file writes new segments under the new
//! key id while still serving the old ones. A broker without a key refuses such a topic, and a bad key file
//! stops a broker at start-up with the reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rill_client::Admin;
use rill_proto::v1;
use rill_storage::KeyRecord;
use rill_tests::checker::read_partition;
use rill_tests::cluster::{ClusterOptions, ClusterProcess, wait_for};
use rill_tests::rpc;
use rill_tests::{BrokerOptions, BrokerProcess};

const HEARTBEAT_INTERVAL_MS: u64 = 300;
const SESSION_TIMEOUT_MS: u64 = 2_000;
/// From a failure to a new leader: the session timeout, an election, and slack for debug builds on two
/// shared cores.
const FAILOVER_MS_MAX: u64 = SESSION_TIMEOUT_MS + 28_000;
/// Reading the partition back through its leader.
const READ_MS_MAX: u64 = 30_000;
/// Values per produce phase, sent as batches of `VALUES_PER_BATCH`.
const VALUES_PER_PHASE: usize = 60;
const VALUES_PER_BATCH: usize = 10;
const TOPIC: &str = "secrets";
const ALL: [u32; 3] = [1, 2, 3];

const KEY_1: &str = "k1:1111111111111111111111111111111111111111111111111111111111111111";
const KEY_2: &str = "k2:2222222222222222222222222222222222222222222222222222222222222222";

/// Distinctive values: a phase name, an index, and a marker nobody else writes.
fn values(phase: &str) -> Vec<String> {
    (0..VALUES_PER_PHASE).map(|i| format!("plaintext-{phase}-{i:03}-must-not-reach-disk")).collect()
}

/// The partition's metadata once all of `nodes` agree on leader, epoch and ISR, and `condition` holds.
async fn agreed(
    nodes: &[u32],
    cluster: &ClusterProcess,
    what: &str,
    condition: impl Fn(&v1::PartitionMetadata) -> bool,
) -> v1::PartitionMetadata {
    let what = format!("nodes {nodes:?} agree on {TOPIC}-0 and {what}");
    wait_for(Duration::from_millis(FAILOVER_MS_MAX), &what, || async {
        let mut states = Vec::new();
        for id in nodes {
            let state = rpc::partition_metadata(&cluster.client_address(*id), TOPIC, 0).await;
            states.push(state.map_err(|e| format!("node {id}: {e:#}"))?);
        }
        let first = states[0].clone();
        let same =
            states.iter().all(|s| (s.leader, s.leader_epoch, &s.isr) == (first.leader, first.leader_epoch, &first.isr));
        if same && nodes.contains(&first.leader) && condition(&first) { Ok(first) } else { Err(format!("{states:?}")) }
    })
    .await
}

/// Waits for all three replicas in the ISR and returns the leader.
async fn all_in_sync(cluster: &ClusterProcess) -> u32 {
    agreed(&ALL, cluster, "all three replicas are in the ISR", |p| p.isr.len() == 3).await.leader
}

/// Produces `values` with acks=all through the leader (retrying on a leader change) and waits until the
/// leader's HW has reached its log end, so every replica holds them.
async fn produce(cluster: &ClusterProcess, nodes: &[u32], values: &[String]) {
    for chunk in values.chunks(VALUES_PER_BATCH) {
        wait_for(Duration::from_millis(FAILOVER_MS_MAX), "an acks=all produce succeeds", || async {
            let leader = agreed(nodes, cluster, "a leader is known", |_| true).await.leader;
            let address = cluster.client_address(leader);
            let result = rpc::produce_values(&address, TOPIC, 0, v1::Acks::All, 10_000, chunk)
                .await
                .map_err(|e| format!("{e:#}"))?;
            match rpc::error_code(result.error.as_ref()) {
                v1::ErrorCode::None => Ok(()),
                code => Err(format!("node {leader} answered {code:?}")),
            }
        })
        .await;
    }
}

/// Reads the whole partition through its leader and checks it holds exactly `expected`, in order.
async fn read_back(cluster: &ClusterProcess, nodes: &[u32], expected: &[String], context: &str) {
    let addresses: Vec<String> = nodes.iter().map(|id| cluster.client_address(*id)).collect();
    let log = read_partition(&addresses, TOPIC, 0, Duration::from_millis(READ_MS_MAX)).await.expect("read back");
    let read: Vec<String> = log
        .records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    assert_eq!(read, expected, "{context}: the partition reads back intact");
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The directory of `TOPIC`'s partition 0 on a node (`topics/<name>.<id>/0`).
fn partition_dir(data_dir: &Path) -> PathBuf {
    let topics = data_dir.join("topics");
    let entry = std::fs::read_dir(&topics)
        .expect("topics directory")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(&format!("{TOPIC}.")))
        .expect("the topic's directory");
    entry.path().join("0")
}

/// The key ids the node's segments of `TOPIC` were written with, one per segment.
fn segment_key_ids(data_dir: &Path) -> Vec<String> {
    let mut records: Vec<PathBuf> = files_under(&partition_dir(data_dir))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "keyid"))
        .collect();
    records.sort();
    records.iter().map(|p| KeyRecord::decode(&std::fs::read(p).unwrap()).expect("a valid key record").key_id).collect()
}

/// No file under any node's data directory holds any of `values`; and, so the scan is known to see what it
/// looks for, the control value written to a plaintext topic is found on every node.
fn assert_no_plaintext_on_disk(cluster: &ClusterProcess, values: &[String], control: &str) {
    for id in ALL {
        let files = files_under(cluster.node(id).data_dir());
        let mut control_seen = false;
        for path in &files {
            let bytes = std::fs::read(path).unwrap_or_default();
            control_seen |= contains(&bytes, control.as_bytes());
            for value in values {
                assert!(!contains(&bytes, value.as_bytes()), "node {id}: {} holds plaintext {value}", path.display());
            }
            assert!(
                !contains(&bytes, b"must-not-reach-disk"),
                "node {id}: {} holds a plaintext marker",
                path.display()
            );
        }
        assert!(control_seen, "node {id}: the plaintext topic's value is on disk, so the scan can see values");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_encrypted_topic_never_reaches_disk_in_plaintext_and_survives_restart_failover_and_rotation() {
    let keys_dir = tempfile::tempdir().unwrap();
    let key_file = keys_dir.path().join("keys");
    std::fs::write(&key_file, format!("{KEY_1}\n")).unwrap();
    let extra_args = vec![
        "--heartbeat-interval-ms".to_owned(),
        HEARTBEAT_INTERVAL_MS.to_string(),
        "--session-timeout-ms".to_owned(),
        SESSION_TIMEOUT_MS.to_string(),
        "--encryption-key-file".to_owned(),
        key_file.to_string_lossy().into_owned(),
    ];
    let mut cluster =
        tokio::task::block_in_place(|| ClusterProcess::start(3, ClusterOptions { extra_args, through_proxy: false }));
    let admin = Admin::connect(cluster.client_config()).await.expect("connect admin");
    let config = BTreeMap::from([
        ("encryption".to_owned(), "aes-256-gcm".to_owned()),
        ("min.insync.replicas".to_owned(), "2".to_owned()),
        // Small segments, so each replica holds several and rotation starts new ones.
        ("segment.bytes".to_owned(), "2048".to_owned()),
    ]);
    admin.create_topic(TOPIC, 1, Some(3), config).await.expect("create the encrypted topic");
    let control = "control-value-of-a-plaintext-topic";
    admin.create_topic("plain", 1, Some(3), BTreeMap::new()).await.expect("create the plaintext topic");
    wait_for(Duration::from_millis(FAILOVER_MS_MAX), "the plaintext topic takes a write", || async {
        let meta =
            rpc::partition_metadata(&cluster.client_address(1), "plain", 0).await.map_err(|e| format!("{e:#}"))?;
        let result = rpc::produce_values(
            &cluster.client_address(meta.leader),
            "plain",
            0,
            v1::Acks::All,
            10_000,
            &[control.to_owned()],
        )
        .await
        .map_err(|e| format!("{e:#}"))?;
        if rpc::error_code(result.error.as_ref()) == v1::ErrorCode::None { Ok(()) } else { Err(format!("{result:?}")) }
    })
    .await;
    let first_leader = all_in_sync(&cluster).await;

    // Phase A: values on every replica, none of them readable in any file.
    let mut expected = values("a");
    produce(&cluster, &ALL, &expected).await;
    all_in_sync(&cluster).await;
    assert_no_plaintext_on_disk(&cluster, &expected, control);
    for id in ALL {
        let ids = segment_key_ids(cluster.node(id).data_dir());
        assert!(ids.len() >= 2 && ids.iter().all(|k| k == "k1"), "node {id}: segments under k1: {ids:?}");
    }

    // Rotation: the key file gains k2 (the last line, so active); only the restarted leader reads it.
    std::fs::write(&key_file, format!("{KEY_1}\n{KEY_2}\n")).unwrap();
    let rotated = first_leader;
    tokio::task::block_in_place(|| cluster.node_mut(rotated).restart());
    // The restarted broker may lead again, in a newer epoch (its old epoch is closed).
    agreed(&ALL, &cluster, "all are in sync in a newer epoch after the restart", |p| p.isr.len() == 3).await;
    read_back(&cluster, &ALL, &expected, "after a restart").await;

    // Phase B: the restarted broker stores what it appends under k2, in new segments; its old ones stay k1,
    // and the brokers that did not restart still write k1.
    let b = values("b");
    produce(&cluster, &ALL, &b).await;
    expected.extend(b);
    let leader = all_in_sync(&cluster).await;
    let ids = segment_key_ids(cluster.node(rotated).data_dir());
    let first_k2 = ids.iter().position(|k| k == "k2").unwrap_or_else(|| panic!("node {rotated} writes k2: {ids:?}"));
    assert!(first_k2 > 0 && ids[..first_k2].iter().all(|k| k == "k1"), "old segments stay k1: {ids:?}");
    assert!(ids[first_k2..].iter().all(|k| k == "k2"), "new segments are k2: {ids:?}");
    for id in ALL.into_iter().filter(|id| *id != rotated) {
        assert!(segment_key_ids(cluster.node(id).data_dir()).iter().all(|k| k == "k1"), "node {id} still writes k1");
    }

    // kill -9 of the leader: a survivor takes over and serves everything.
    tokio::task::block_in_place(|| cluster.node_mut(leader).kill9());
    let survivors: Vec<u32> = ALL.into_iter().filter(|id| *id != leader).collect();
    let mut serving = agreed(&survivors, &cluster, "a survivor leads", |p| p.leader != leader).await.leader;
    read_back(&cluster, &survivors, &expected, "after kill -9 of the leader").await;
    tokio::task::block_in_place(|| cluster.node_mut(leader).restart());
    all_in_sync(&cluster).await;

    // A broker running with the rotated key file must serve its old (k1) and new segments itself: the killed
    // leader's restart read the rotated file too; if the third node leads, restart it as well.
    let mut restarted = vec![rotated, leader];
    if !restarted.contains(&serving) {
        tokio::task::block_in_place(|| cluster.node_mut(serving).restart());
        restarted.push(serving);
        serving = all_in_sync(&cluster).await;
    }
    assert!(restarted.contains(&serving), "the serving leader {serving} runs with the rotated key file");
    read_back(&cluster, &ALL, &expected, &format!("served by node {serving} with keys k1 and k2")).await;

    // Phase C, written by a leader whose active key is k2; then nothing of any phase is on any disk.
    let c = values("c");
    produce(&cluster, &ALL, &c).await;
    expected.extend(c);
    all_in_sync(&cluster).await;
    read_back(&cluster, &ALL, &expected, "after phase C").await;
    assert!(segment_key_ids(cluster.node(serving).data_dir()).iter().any(|k| k == "k2"));
    assert_no_plaintext_on_disk(&cluster, &expected, control);
}

#[test]
fn a_broker_without_a_key_refuses_encrypted_topics_and_a_bad_key_file_stops_it() {
    let broker = BrokerProcess::start(BrokerOptions::default());
    let out =
        broker.rill(&["topic", "create", "secret", "--partitions", "1", "--config", "encryption=aes-256-gcm"], b"");
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("encryption=aes-256-gcm") && out.stderr.contains("no encryption key"),
        "{}",
        out.stderr
    );
    let bad = broker.rill(&["topic", "create", "odd", "--partitions", "1", "--config", "encryption=rot13"], b"");
    assert!(bad.stderr.contains("must be none or aes-256-gcm"), "{}", bad.stderr);

    let dir = tempfile::tempdir().unwrap();
    use rill_tests::broker_start_refusal as start;
    let short = dir.path().join("short-key");
    std::fs::write(&short, "k1:abcd\n").unwrap();
    let err = start(&["--encryption-key-file", short.to_str().unwrap()]);
    assert!(err.contains("short-key line 1") && err.contains("64 hex digits"), "{err}");
    let err = start(&["--encryption-key-file", dir.path().join("absent").to_str().unwrap()]);
    assert!(err.contains("cannot read encryption-key-file"), "{err}");
    let good = dir.path().join("keys");
    std::fs::write(&good, format!("{KEY_1}\n")).unwrap();
    let err = start(&["--encryption-key-file", good.to_str().unwrap(), "--encryption-key-id", "k9"]);
    assert!(err.contains("k9") && err.contains("not among the keys"), "{err}");
}
