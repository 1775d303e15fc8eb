//! Rill client library: an async [`Producer`], [`Consumer`] and [`Admin`] for Rill brokers, speaking the gRPC
//! protocol of `rill-proto`.
//!
//! Every client object starts from a [`ClientConfig`] holding a bootstrap list of `host:port` addresses. The
//! client asks any reachable broker for the cluster metadata, then sends produce and fetch requests straight
//! to each partition's leader, keeping one HTTP/2 channel per broker. When a broker answers that it is not the
//! leader, or cannot be reached, the client refreshes its metadata and retries after a backoff.
//!
//! A [`Consumer`] either reads partitions it is assigned explicitly (below), or joins a consumer group with
//! [`ConsumerConfig::group_id`] and [`Consumer::subscribe`]: the group's coordinator shares the topics'
//! partitions among the members and keeps their committed offsets (see [`Consumer::subscribe`]).
//!
//! ```no_run
//! # async fn demo() -> rill_client::Result<()> {
//! use std::time::Duration;
//! use rill_client::{ClientConfig, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, TopicPartition};
//!
//! let client = ClientConfig::new("127.0.0.1:9400")?;
//! let producer = Producer::connect(client.clone(), ProducerConfig::default()).await?;
//! producer.send(ProducerRecord::new("demo", "hello").partition(0)).await?.await?;
//!
//! let mut consumer = Consumer::connect(client, ConsumerConfig::default()).await?;
//! let partition = TopicPartition::new("demo", 0);
//! consumer.assign(vec![partition.clone()]).await?;
//! consumer.seek_to_beginning(&[partition]).await?;
//! for record in consumer.poll(Duration::from_secs(1)).await? {
//!     println!("{}: {:?}", record.offset, record.value);
//! }
//! # Ok(())
//! # }
//! ```

mod admin;
mod cluster;
mod config;
mod consumer;
mod error;
mod group;
pub mod partitioner;
mod producer;
mod security;
mod tls;
mod types;

pub use admin::{
    Admin, BrokerStats, BrokerStatus, ClusterDescription, DrainOutcome, GroupDescription, GroupMemberDescription,
    GroupOffset, GroupPartitionRef, GroupSummary, LeaderElection, OffsetResetTarget, PartitionDescription,
    TopicDescription, TopicSummary, TopicTraffic,
};
pub use config::{
    Acks, ClientConfig, ConsumerConfig, DEFAULT_BOOTSTRAP, OffsetReset, ProducerConfig, SaslConfig, parse_bootstrap,
};
pub use consumer::Consumer;
pub use error::{BrokerError, Error, ErrorCode, Result};
pub use producer::{DeliveryFuture, Producer};
pub use rill_proto::Compression;
pub use rill_proto::scram::Mechanism as SaslMechanism;
pub use security::{Acl, AclFilter, EntityQuotas, UserInfo};
pub use tls::TlsConfig;
pub use types::{ConsumerRecord, Header, ProducerRecord, RecordMetadata, TopicPartition};
