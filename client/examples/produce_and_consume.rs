//! Creates a topic, produces keyed records, and reads them back from the beginning.
//!
//! Run against a broker (`cargo run --release --bin rill-broker` in another terminal):
//!
//! ```sh
//! cargo run -p rill-client --example produce_and_consume
//! RILL_BOOTSTRAP=host:9400 cargo run -p rill-client --example produce_and_consume
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use rill_client::{Admin, ClientConfig, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::var("RILL_BOOTSTRAP").unwrap_or_else(|_| rill_client::DEFAULT_BOOTSTRAP.to_string());
    let client = ClientConfig::new(&bootstrap)?;

    let topic = format!("example-{}", std::process::id());
    let admin = Admin::connect(client.clone()).await?;
    admin.create_topic(&topic, 3, None, BTreeMap::new()).await?;

    // Records with the same key land in the same partition, in the order they were sent.
    let producer = Producer::connect(client.clone(), ProducerConfig::default()).await?;
    let mut deliveries = Vec::new();
    for i in 0..30 {
        let record = ProducerRecord::new(topic.clone(), format!("event {i}")).key(format!("user-{}", i % 4));
        deliveries.push(producer.send(record).await?);
    }
    for delivery in deliveries {
        let meta = delivery.await?;
        println!("acknowledged: partition {} offset {}", meta.partition, meta.offset);
    }
    producer.close().await;

    let mut consumer = Consumer::connect(client, ConsumerConfig::default()).await?;
    let partitions = consumer.partitions_of(&topic).await?;
    consumer.assign(partitions.clone()).await?;
    consumer.seek_to_beginning(&partitions).await?;
    let mut read = 0;
    while read < 30 {
        for record in consumer.poll(Duration::from_secs(1)).await? {
            let key = record.key.as_deref().map(String::from_utf8_lossy);
            let value = record.value.as_deref().map(String::from_utf8_lossy);
            println!("partition {} offset {}: {:?} = {:?}", record.partition, record.offset, key, value);
            read += 1;
        }
    }
    admin.delete_topic(&topic).await?;
    Ok(())
}
