//! The library's Producer, Consumer and Admin against a real broker, including broker restarts, a kill -9
//! and a paused (SIGSTOP) broker.

use std::time::Duration;

use futures::StreamExt;
use rill_client::{
    Acks, Admin, ClientConfig, Consumer, ConsumerConfig, Error, Producer, ProducerConfig, ProducerRecord,
    TopicPartition,
};
use rill_tests::{BrokerOptions, BrokerProcess, Signal};

async fn setup(topic: &str, partitions: u32) -> (BrokerProcess, ClientConfig) {
    let broker = BrokerProcess::start(BrokerOptions::default());
    let client = ClientConfig::new(&broker.addr()).unwrap();
    let admin = Admin::connect(client.clone()).await.unwrap();
    admin.create_topic(topic, partitions, None, Default::default()).await.unwrap();
    (broker, client)
}

async fn read_all(client: &ClientConfig, tp: &TopicPartition) -> Vec<String> {
    let mut consumer = Consumer::connect(client.clone(), ConsumerConfig::default()).await.unwrap();
    consumer.assign(vec![tp.clone()]).await.unwrap();
    let end = consumer.end_offsets(std::slice::from_ref(tp)).await.unwrap()[tp];
    consumer.seek_to_beginning(std::slice::from_ref(tp)).await.unwrap();
    let mut values = Vec::new();
    while consumer.position(tp).unwrap() < end {
        for record in consumer.poll(Duration::from_secs(1)).await.unwrap() {
            values.push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
        }
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_futures_report_consecutive_offsets_and_the_consumer_reads_them() {
    let (_broker, client) = setup("api", 2).await;
    let producer = Producer::connect(client.clone(), ProducerConfig::default()).await.unwrap();
    let mut deliveries = Vec::new();
    for i in 0..500 {
        deliveries.push(producer.send(ProducerRecord::new("api", format!("v{i}")).partition(1)).await.unwrap());
    }
    producer.flush().await;
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let metadata = delivery.await.unwrap();
        assert_eq!((&*metadata.topic, metadata.partition, metadata.offset), ("api", 1, i as u64));
    }

    let tp = TopicPartition::new("api", 1);
    let mut consumer = Consumer::connect(client, ConsumerConfig::default()).await.unwrap();
    consumer.assign(vec![tp.clone()]).await.unwrap();
    consumer.seek(&tp, 250).unwrap();
    let records: Vec<_> = consumer.stream().take(250).collect().await;
    let offsets: Vec<u64> = records.into_iter().map(|r| r.unwrap().offset).collect();
    assert_eq!(offsets, (250..500).collect::<Vec<_>>());
    assert_eq!(consumer.position(&tp), Some(500));
    producer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_record_errors_reach_their_own_future() {
    let (_broker, client) = setup("errs", 1).await;
    let config = ProducerConfig { batch_bytes_max: 4096, ..ProducerConfig::default() };
    let producer = Producer::connect(client, config).await.unwrap();
    let unknown = producer.send(ProducerRecord::new("missing", "x")).await.unwrap();
    let too_large = producer.send(ProducerRecord::new("errs", vec![0u8; 10_000])).await.unwrap();
    let bad_partition = producer.send(ProducerRecord::new("errs", "x").partition(9)).await.unwrap();
    let fine = producer.send(ProducerRecord::new("errs", "ok")).await.unwrap();
    assert!(matches!(unknown.await, Err(Error::UnknownTopic(t)) if t == "missing"));
    assert!(matches!(too_large.await, Err(Error::RecordTooLarge { .. })));
    assert!(matches!(bad_partition.await, Err(Error::UnknownPartition { partition: 9, partitions: 1, .. })));
    assert_eq!(fine.await.unwrap().offset, 0);
    producer.close().await;
    assert!(matches!(producer.send(ProducerRecord::new("errs", "late")).await, Err(Error::ProducerClosed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_to_timestamp_finds_the_first_record_at_or_after_it() {
    let (_broker, client) = setup("times", 1).await;
    let producer = Producer::connect(client.clone(), ProducerConfig::default()).await.unwrap();
    for (i, ts) in [1_000i64, 2_000, 3_000, 4_000].into_iter().enumerate() {
        let record = ProducerRecord::new("times", format!("t{i}")).partition(0).timestamp_ms(ts);
        producer.send(record).await.unwrap().await.unwrap();
    }
    let tp = TopicPartition::new("times", 0);
    let mut consumer = Consumer::connect(client, ConsumerConfig::default()).await.unwrap();
    consumer.assign(vec![tp.clone()]).await.unwrap();
    assert_eq!(consumer.seek_to_timestamp(&tp, 2_500).await.unwrap(), 2);
    let records = consumer.poll(Duration::from_secs(2)).await.unwrap();
    assert_eq!(records[0].offset, 2);
    assert_eq!(records[0].timestamp_ms, 3_000);
    consumer.seek_to_end(std::slice::from_ref(&tp)).await.unwrap();
    assert_eq!(consumer.position(&tp), Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_sigterm_and_kill9_restarts() {
    let (mut broker, client) = setup("durable", 1).await;
    let tp = TopicPartition::new("durable", 0);
    let producer = Producer::connect(client.clone(), ProducerConfig::default()).await.unwrap();
    let mut deliveries = Vec::new();
    for i in 0..100 {
        deliveries.push(producer.send(ProducerRecord::new("durable", format!("a{i}"))).await.unwrap());
    }
    producer.close().await;
    for delivery in deliveries {
        delivery.await.unwrap();
    }

    broker.terminate();
    broker.restart();
    assert_eq!(read_all(&client, &tp).await.len(), 100);

    // acks=all under the default fsync policy: acknowledged means on disk, so a crash loses none of it.
    let producer =
        Producer::connect(client.clone(), ProducerConfig { acks: Acks::All, ..Default::default() }).await.unwrap();
    let mut deliveries = Vec::new();
    for i in 0..100 {
        deliveries.push(producer.send(ProducerRecord::new("durable", format!("b{i}"))).await.unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    broker.kill9();
    broker.restart();
    let values = read_all(&client, &tp).await;
    assert_eq!(values.len(), 200);
    assert_eq!(values[100], "b0");
    assert_eq!(values[199], "b99");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_retries_until_a_restarted_broker_is_back() {
    let (mut broker, client) = setup("retry", 1).await;
    let producer = Producer::connect(client.clone(), ProducerConfig::default()).await.unwrap();
    producer.send(ProducerRecord::new("retry", "before")).await.unwrap().await.unwrap();
    broker.kill9();
    // Sent while nothing listens: the first attempts fail at the transport level and must be retried.
    let delivery = producer.send(ProducerRecord::new("retry", "during")).await.unwrap();
    let restarted = tokio::task::spawn_blocking(move || {
        broker.restart();
        broker
    });
    let metadata = tokio::time::timeout(Duration::from_secs(60), delivery).await.expect("delivered in time").unwrap();
    assert_eq!(metadata.offset, 1);
    producer.close().await;
    // Keep the broker alive until here: dropping it kills the process.
    drop(restarted.await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_broker_delays_delivery_until_it_resumes() {
    let (broker, client) = setup("paused", 1).await;
    let producer = Producer::connect(client, ProducerConfig::default()).await.unwrap();
    producer.send(ProducerRecord::new("paused", "warm-up")).await.unwrap().await.unwrap();
    broker.stop_signal(Signal::Stop);
    let mut delivery = producer.send(ProducerRecord::new("paused", "held")).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut delivery).await.is_err(),
        "a stopped broker cannot acknowledge"
    );
    broker.stop_signal(Signal::Cont);
    let metadata = tokio::time::timeout(Duration::from_secs(30), delivery).await.expect("delivered after resume");
    assert_eq!(metadata.unwrap().offset, 1);
}
