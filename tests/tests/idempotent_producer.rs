//! Acceptance tests of the idempotent producer against real `rill-broker` processes: answers lost on the way
//! back (a fault-injecting proxy drops them after the leader appended), kill -9 of a partition leader in the
//! middle of a pipelined keyed produce, broker restarts between a batch and its retry, and fencing by a newer
//! epoch of the same producer id. Each test reads the partitions back and checks that every acknowledged
//! record is there exactly once, at its acknowledged offset, and that each producer's batches carry
//! contiguous sequence numbers.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use rill_client::{Admin, Error, Producer, ProducerConfig, ProducerRecord, RecordMetadata};
use rill_proto::batch::{BatchHeader, advance_sequence};
use rill_tests::checker::{LogRecord, PartitionLog, partition_dir, read_partition, read_stored_batches};
use rill_tests::cluster::{ClusterOptions, ClusterProcess, wait_for};
use rill_tests::proxy::Direction;
use rill_tests::rpc;

const SESSION_TIMEOUT_MS: u64 = 3_000;
/// From a failure to a new leader: the session timeout, an election, and slack for debug builds sharing two
/// cores with other tests.
const FAILOVER_MS_MAX: u64 = SESSION_TIMEOUT_MS + 27_000;
/// Reading a partition back.
const READ_MS_MAX: u64 = 30_000;
/// Everything a test produces must be acknowledged within this.
const PRODUCE_MS_MAX: u64 = 120_000;

/// One cluster at a time: they are timing-sensitive (session timeouts, request timeouts).
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn start_cluster(nodes: u32, through_proxy: bool) -> ClusterProcess {
    let extra_args = ["--session-timeout-ms".to_owned(), SESSION_TIMEOUT_MS.to_string()].to_vec();
    tokio::task::block_in_place(|| ClusterProcess::start(nodes, ClusterOptions { extra_args, through_proxy }))
}

async fn create_topic(cluster: &ClusterProcess, topic: &str, partitions: u32, replication_factor: u32) {
    let admin = Admin::connect(cluster.client_config()).await.expect("connect admin");
    let config = if replication_factor > 1 {
        BTreeMap::from([("min.insync.replicas".to_owned(), "2".to_owned())])
    } else {
        BTreeMap::new()
    };
    admin.create_topic(topic, partitions, Some(replication_factor), config).await.expect("create the topic");
    for partition in 0..partitions {
        let address = cluster.client_address(cluster.ids()[0]);
        wait_for(Duration::from_millis(FAILOVER_MS_MAX), "every replica is in sync", || async {
            let p = rpc::partition_metadata(&address, topic, partition).await.map_err(|e| format!("{e:#}"))?;
            if p.leader != 0 && p.isr.len() == replication_factor as usize { Ok(()) } else { Err(format!("{p:?}")) }
        })
        .await;
    }
}

/// Producer settings for fault tests: short request timeouts so a lost answer is retried soon, a long
/// delivery timeout so nothing gives up during a failover, small batches so several are in flight at once.
fn producer_config(batch_bytes_max: usize) -> ProducerConfig {
    ProducerConfig {
        linger_ms: 2,
        batch_bytes_max,
        request_timeout_ms: 2_000,
        delivery_timeout_ms: PRODUCE_MS_MAX,
        retry_backoff_ms: 100,
        ..ProducerConfig::default()
    }
}

/// What a produce run sent and how each record ended: `(value, partition, outcome)` in send order.
type Sent = Vec<(String, u32, Result<RecordMetadata, Error>)>;

/// Sends `count` records (`value(i)`, keyed by `key(i)` if given) from a background task, pausing `pause`
/// after each `burst` sends, and awaits every delivery in send order. `acked` counts deliveries resolved so
/// far, for the test to time its fault.
fn produce_in_background(
    producer: Producer,
    topic: &str,
    count: usize,
    burst: usize,
    pause: Duration,
    record: impl Fn(usize) -> ProducerRecord + Send + 'static,
    acked: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Sent> {
    let topic = topic.to_owned();
    tokio::spawn(async move {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let sending = tokio::spawn(async move {
            for i in 0..count {
                let record = record(i);
                let value = String::from_utf8(record.value.clone().expect("a value").to_vec()).expect("utf-8");
                let delivery = producer.send(record).await.expect("the producer accepts records");
                sender.send((value, delivery)).expect("the collector runs");
                if (i + 1) % burst == 0 {
                    tokio::time::sleep(pause).await;
                }
            }
            producer.flush().await;
            producer
        });
        let mut pending = FuturesOrdered::new();
        let mut sent = Vec::with_capacity(count);
        loop {
            tokio::select! {
                next = receiver.recv() => match next {
                    Some((value, delivery)) => pending.push_back(async move { (value, delivery.await) }),
                    None => break,
                },
                Some((value, outcome)) = pending.next(), if !pending.is_empty() => {
                    acked.fetch_add(1, Ordering::SeqCst);
                    sent.push(outcome_of(&topic, value, outcome));
                }
            }
        }
        while let Some((value, outcome)) = pending.next().await {
            acked.fetch_add(1, Ordering::SeqCst);
            sent.push(outcome_of(&topic, value, outcome));
        }
        let producer = sending.await.expect("the sending task");
        producer.close().await;
        sent
    })
}

fn outcome_of(
    topic: &str,
    value: String,
    outcome: Result<RecordMetadata, Error>,
) -> (String, u32, Result<RecordMetadata, Error>) {
    let partition = outcome.as_ref().map_or(u32::MAX, |m| m.partition);
    if let Ok(m) = &outcome {
        assert_eq!(&*m.topic, topic);
    }
    (value, partition, outcome)
}

async fn wait_acked(acked: &AtomicUsize, at_least: usize) {
    wait_for(Duration::from_millis(PRODUCE_MS_MAX), "records acknowledged", || async {
        let n = acked.load(Ordering::SeqCst);
        if n >= at_least { Ok(()) } else { Err(format!("{n} of {at_least}")) }
    })
    .await;
}

/// Reads every partition of `topic` back, through the nodes at `addresses`.
async fn read_all(addresses: &[String], topic: &str, partitions: u32) -> Vec<PartitionLog> {
    let mut logs = Vec::new();
    for partition in 0..partitions {
        logs.push(
            read_partition(addresses, topic, partition, Duration::from_millis(READ_MS_MAX))
                .await
                .expect("read the partition back"),
        );
    }
    logs
}

/// A record's value as text (the tests write UTF-8 values).
fn value_text(record: &LogRecord) -> String {
    String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned()
}

/// The values of a partition's records, in offset order.
fn values_of(log: &PartitionLog) -> Vec<String> {
    log.records.iter().map(value_text).collect()
}

/// How often each value occurs across `logs`, with where it was seen first.
fn occurrences(logs: &[PartitionLog]) -> HashMap<String, (usize, u32, u64)> {
    let mut seen: HashMap<String, (usize, u32, u64)> = HashMap::new();
    for log in logs {
        for record in &log.records {
            seen.entry(value_text(record)).or_insert((0, log.partition, record.offset)).0 += 1;
        }
    }
    seen
}

/// Every record was acknowledged and is in the log exactly once, at the partition and offset it was
/// acknowledged at; nothing else is in the log.
fn assert_exactly_once(sent: &Sent, logs: &[PartitionLog]) {
    let failed: Vec<_> = sent.iter().filter(|(_, _, outcome)| outcome.is_err()).take(5).collect();
    assert!(failed.is_empty(), "records not acknowledged: {failed:?}");
    let seen = occurrences(logs);
    let duplicated: Vec<_> = seen.iter().filter(|(_, (n, _, _))| *n > 1).take(10).collect();
    assert!(duplicated.is_empty(), "records written more than once: {duplicated:?}");
    for (value, partition, outcome) in sent {
        let metadata = outcome.as_ref().expect("checked above");
        let found = seen.get(value);
        assert_eq!(
            found.map(|(_, p, o)| (*p, *o)),
            Some((*partition, metadata.offset)),
            "{value} acknowledged at {partition}/{} but found at {found:?}",
            metadata.offset
        );
    }
    assert_eq!(seen.len(), sent.len(), "the log holds records nobody sent");
}

/// Records of one key are stored in the order they were sent: each key's acknowledged offsets rise.
fn assert_key_order(sent: &Sent, key_of: impl Fn(usize) -> String) {
    let mut last: HashMap<String, (u32, u64)> = HashMap::new();
    for (i, (_, partition, outcome)) in sent.iter().enumerate() {
        let offset = outcome.as_ref().expect("acknowledged").offset;
        if let Some((p, previous)) = last.insert(key_of(i), (*partition, offset)) {
            assert_eq!(p, *partition, "one key, one partition");
            assert!(offset > previous, "key {} went backwards: {previous} then {offset}", key_of(i));
        }
    }
}

/// The producer fields of each batch a replica stores below `below`, in offset order.
fn stored_producer_batches(data_dir: &Path, topic: &str, partition: u32, below: u64) -> Vec<BatchHeader> {
    let dir = partition_dir(data_dir, topic, partition).expect("the node hosts the partition");
    read_stored_batches(&dir, below)
        .expect("read the stored batches")
        .iter()
        .map(|b| BatchHeader::parse(&b.bytes).expect("a stored batch header"))
        .collect()
}

/// Each producer's batches in a partition continue its sequence without a hole or an overlap: the first
/// batch of an epoch starts at 0 and every later one right after the previous one's last sequence.
fn assert_sequences_contiguous(batches: &[BatchHeader], what: &str) {
    let mut next: HashMap<i64, (i16, i32)> = HashMap::new();
    for b in batches.iter().filter(|b| b.producer_id >= 0) {
        let expected = match next.get(&b.producer_id) {
            Some((epoch, sequence)) if *epoch == b.producer_epoch => *sequence,
            Some((epoch, _)) => {
                assert!(b.producer_epoch > *epoch, "{what}: producer {} epoch went back", b.producer_id);
                0
            }
            None => 0,
        };
        assert_eq!(
            b.base_sequence, expected,
            "{what}: producer {} epoch {} batch at offset {} starts at sequence {}, expected {expected}",
            b.producer_id, b.producer_epoch, b.base_offset, b.base_sequence
        );
        next.insert(b.producer_id, (b.producer_epoch, advance_sequence(b.base_sequence, b.record_count)));
    }
}

/// The proxy drops every answer from the broker for a while, after the broker appended: the producer's
/// requests time out and are retried, and each record is in the log once. The same run without
/// idempotence writes duplicates, which shows the fault really produces retries of written batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_lost_after_the_append_are_retried_without_duplicates() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = start_cluster(1, true);
    let direct = vec![cluster.node(1).addr()];
    let proxy = cluster.proxy(1);
    let mut duplicates_without_idempotence = 0;
    for idempotence in [true, false] {
        let topic = if idempotence { "lost-answers" } else { "lost-answers-plain" };
        create_topic(&cluster, topic, 2, 1).await;
        let config = ProducerConfig { idempotence, ..producer_config(4 * 1024) };
        let producer = Producer::connect(cluster.client_config(), config).await.expect("connect the producer");
        let acked = Arc::new(AtomicUsize::new(0));
        let count = 4_000;
        let name = topic.to_owned();
        let record = move |i: usize| ProducerRecord::new(name.clone(), format!("v-{i}")).key(format!("k-{}", i % 16));
        let run = produce_in_background(producer, topic, count, 20, Duration::from_millis(5), record, acked.clone());
        wait_acked(&acked, 500).await;
        let dropped_before = proxy.bytes_dropped(Direction::ServerToClient);
        proxy.one_way(Direction::ServerToClient);
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        // A real network loses a connection, not bytes in the middle of one: reset what the fault cut.
        proxy.drop_connections();
        proxy.heal();
        assert!(proxy.bytes_dropped(Direction::ServerToClient) > dropped_before, "answers were dropped");
        let sent = tokio::time::timeout(Duration::from_millis(PRODUCE_MS_MAX), run)
            .await
            .expect("the produce run ends")
            .expect("the produce task");
        let logs = read_all(&direct, topic, 2).await;
        if idempotence {
            assert_exactly_once(&sent, &logs);
            for partition in 0..2 {
                let hw = logs[partition as usize].high_watermark;
                let batches = stored_producer_batches(cluster.node(1).data_dir(), topic, partition, hw);
                assert_sequences_contiguous(&batches, &format!("{topic}/{partition}"));
            }
        } else {
            duplicates_without_idempotence = occurrences(&logs).values().filter(|(n, _, _)| *n > 1).count();
        }
    }
    println!("without idempotence the same fault wrote {duplicates_without_idempotence} duplicate records");
    assert!(duplicates_without_idempotence > 0, "the fault must cause retries of written batches");
}

/// kill -9 of a partition leader while one producer writes 100,000 keyed records with up to 5 batches in
/// flight per partition: after the failover every acknowledged record is in the log exactly once, each key's
/// records are in send order, and the producer's sequences are contiguous in every partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_kill9_during_a_pipelined_keyed_produce_keeps_every_record_exactly_once() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let topic = "keyed-failover";
    let partitions = 3;
    let mut cluster = start_cluster(3, false);
    create_topic(&cluster, topic, partitions, 3).await;
    let producer =
        Producer::connect(cluster.client_config(), producer_config(16 * 1024)).await.expect("connect the producer");
    let acked = Arc::new(AtomicUsize::new(0));
    let count = 100_000;
    let key_of = |i: usize| format!("key-{}", i % 1_000);
    let name = topic.to_owned();
    let record = move |i: usize| ProducerRecord::new(name.clone(), format!("r-{i}")).key(key_of(i));
    // About 20,000 records/s, so the crash lands in the middle of the run.
    let run = produce_in_background(producer, topic, count, 200, Duration::from_millis(10), record, acked.clone());

    wait_acked(&acked, count / 4).await;
    let address = cluster.client_address(1);
    let leader = rpc::partition_metadata(&address, topic, 0).await.expect("partition metadata").leader;
    cluster.node_mut(leader).kill9();
    let at_kill = acked.load(Ordering::SeqCst);
    let sent = tokio::time::timeout(Duration::from_millis(PRODUCE_MS_MAX), run)
        .await
        .expect("the produce run ends")
        .expect("the produce task");
    println!("killed leader {leader} of {topic}/0 after {at_kill} of {count} acknowledgements");
    assert!(at_kill < count, "the crash must happen while records are still in flight");

    tokio::task::block_in_place(|| cluster.node_mut(leader).restart());
    let addresses: Vec<String> = cluster.ids().iter().map(|id| cluster.client_address(*id)).collect();
    for partition in 0..partitions {
        let leader = rpc::partition_metadata(&addresses[0], topic, partition).await.expect("metadata").leader;
        wait_for(Duration::from_millis(FAILOVER_MS_MAX), "the HW reaches the log end", || async {
            let p = rpc::describe_partition(&cluster.client_address(leader), topic, partition)
                .await
                .map_err(|e| format!("{e:#}"))?;
            if p.high_watermark == p.log_end_offset { Ok(()) } else { Err(format!("{p:?}")) }
        })
        .await;
    }
    let logs = read_all(&addresses, topic, partitions).await;
    assert_exactly_once(&sent, &logs);
    assert_key_order(&sent, key_of);
    for partition in 0..partitions {
        let hw = logs[partition as usize].high_watermark;
        for id in cluster.ids().into_iter().filter(|id| *id != leader) {
            let batches = stored_producer_batches(cluster.node(id).data_dir(), topic, partition, hw);
            assert_sequences_contiguous(&batches, &format!("node {id} {topic}/{partition}"));
        }
    }
}

/// Answers are lost while the broker restarts, once after kill -9 (producer state rebuilt by replaying the
/// log from the last snapshot) and once after a clean shutdown (state from the snapshot written at close):
/// the producer's retries of batches written before the restart are recognised, and each record is in the
/// log once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_restarts_between_a_batch_and_its_retry_keep_deduplicating() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let topic = "restart-retry";
    let mut cluster = start_cluster(1, true);
    let direct = vec![cluster.node(1).addr()];
    create_topic(&cluster, topic, 1, 1).await;
    let producer =
        Producer::connect(cluster.client_config(), producer_config(4 * 1024)).await.expect("connect the producer");
    let acked = Arc::new(AtomicUsize::new(0));
    let count = 6_000;
    let name = topic.to_owned();
    let record = move |i: usize| ProducerRecord::new(name.clone(), format!("v-{i}"));
    let run = produce_in_background(producer, topic, count, 20, Duration::from_millis(5), record, acked.clone());

    for (round, clean) in [(1, false), (2, true)] {
        wait_acked(&acked, round * count / 3).await;
        cluster.proxy(1).one_way(Direction::ServerToClient);
        // Requests keep arriving and being appended; their answers are lost.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let dropped = cluster.proxy(1).bytes_dropped(Direction::ServerToClient);
        tokio::task::block_in_place(|| {
            let node = cluster.node_mut(1);
            if clean {
                assert!(node.terminate().success(), "clean shutdown");
            } else {
                node.kill9();
            }
            node.restart();
        });
        cluster.proxy(1).drop_connections();
        cluster.proxy(1).heal();
        assert!(dropped > 0, "answers were lost before the restart");
    }
    let sent = tokio::time::timeout(Duration::from_millis(PRODUCE_MS_MAX), run)
        .await
        .expect("the produce run ends")
        .expect("the produce task");
    let logs = read_all(&direct, topic, 1).await;
    assert_exactly_once(&sent, &logs);
    let batches = stored_producer_batches(cluster.node(1).data_dir(), topic, 0, logs[0].high_watermark);
    assert_sequences_contiguous(&batches, topic);
}

/// A second producer taking over the first one's id gets the next epoch; the first is fenced on the
/// partition the second wrote to, fails every later record with `ProducerFenced`, and the log holds both
/// producers' acknowledged records and nothing the fenced one sent afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_newer_epoch_of_the_same_producer_id_fences_the_older_one() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let topic = "fencing";
    let cluster = start_cluster(1, false);
    create_topic(&cluster, topic, 1, 1).await;
    let first = Producer::connect(cluster.client_config(), producer_config(4 * 1024)).await.expect("connect");
    let (id, epoch) = first.producer_id().expect("an idempotent producer has an id");
    for i in 0..10 {
        first.send(ProducerRecord::new(topic, format!("old-{i}"))).await.unwrap().await.expect("acknowledged");
    }

    let takeover = ProducerConfig { take_over_producer: Some((id, epoch)), ..producer_config(4 * 1024) };
    let second = Producer::connect(cluster.client_config(), takeover).await.expect("take over the id");
    assert_eq!(second.producer_id(), Some((id, epoch + 1)), "same id, next epoch");
    for i in 0..10 {
        second.send(ProducerRecord::new(topic, format!("new-{i}"))).await.unwrap().await.expect("acknowledged");
    }

    let fenced = first.send(ProducerRecord::new(topic, "zombie-0")).await.unwrap().await;
    assert!(matches!(fenced, Err(Error::ProducerFenced { .. })), "the older epoch is refused: {fenced:?}");
    let later = first.send(ProducerRecord::new(topic, "zombie-1")).await.unwrap().await;
    assert!(matches!(later, Err(Error::ProducerFenced { .. })), "fencing is final: {later:?}");
    // The fenced producer cannot take the id back either.
    let again = Producer::connect(
        cluster.client_config(),
        ProducerConfig { take_over_producer: Some((id, epoch)), ..producer_config(4 * 1024) },
    )
    .await;
    assert!(matches!(again, Err(Error::ProducerFenced { .. })), "a stale epoch cannot take over: {:?}", again.err());
    second.send(ProducerRecord::new(topic, "new-10")).await.unwrap().await.expect("the new epoch still writes");

    let log = read_all(&[cluster.node(1).addr()], topic, 1).await.remove(0);
    let values = values_of(&log);
    let expected: Vec<String> =
        (0..10).map(|i| format!("old-{i}")).chain((0..=10).map(|i| format!("new-{i}"))).collect();
    assert_eq!(values, expected);
    first.close().await;
    second.close().await;
}

/// A batch the broker refuses for good (larger than the topic's `max.message.bytes`) leaves a hole in the
/// partition's sequence: the producer takes the next epoch of its id and carries on from sequence 0, so the
/// records sent after the failure are still written, once each and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_refused_for_good_makes_the_producer_restart_its_sequence_in_a_new_epoch() {
    let _serial = ONE_CLUSTER_AT_A_TIME.lock().await;
    let topic = "sequence-hole";
    let cluster = start_cluster(1, false);
    let admin = Admin::connect(cluster.client_config()).await.expect("connect admin");
    let config = BTreeMap::from([("max.message.bytes".to_owned(), "2048".to_owned())]);
    admin.create_topic(topic, 1, Some(1), config).await.expect("create the topic");
    let producer = Producer::connect(cluster.client_config(), producer_config(64 * 1024)).await.expect("connect");
    let (id, epoch) = producer.producer_id().expect("idempotent");
    let send = |value: String| {
        let producer = producer.clone();
        async move { producer.send(ProducerRecord::new(topic, value)).await.expect("accepted").await }
    };
    for i in 0..10 {
        send(format!("before-{i}")).await.expect("acknowledged");
    }
    let refused = send("x".repeat(10_000)).await;
    assert!(refused.is_err(), "a batch over max.message.bytes is refused: {refused:?}");
    for i in 0..10 {
        send(format!("after-{i}")).await.expect("acknowledged after the hole");
    }
    assert_eq!(producer.producer_id(), Some((id, epoch + 1)), "the producer moved to the next epoch");

    let log = read_all(&[cluster.node(1).addr()], topic, 1).await.remove(0);
    let values = values_of(&log);
    let expected: Vec<String> =
        (0..10).map(|i| format!("before-{i}")).chain((0..10).map(|i| format!("after-{i}"))).collect();
    assert_eq!(values, expected);
    let batches = stored_producer_batches(cluster.node(1).data_dir(), topic, 0, log.high_watermark);
    assert_sequences_contiguous(&batches, topic);
    assert_eq!(batches.last().map(|b| b.producer_epoch), Some(epoch + 1));
    producer.close().await;
}
