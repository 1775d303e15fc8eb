//! The plain data the client API speaks in: partitions, records to send, records received, delivery results.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
pub use rill_proto::batch::Header;

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> TopicPartition {
        TopicPartition { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A record to send.
///
/// # Examples
///
/// ```
/// use rill_client::ProducerRecord;
///
/// let record = ProducerRecord::new("demo", "hello").key("user-1").header("source", "docs");
/// assert_eq!(record.partition, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Shared, so that a caller sending many records to one topic clones a pointer, not the name.
    pub topic: Arc<str>,
    /// Explicit partition; when `None` the partitioner picks one from the key.
    pub partition: Option<u32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Creation time; `None` means the time of `send`.
    pub timestamp_ms: Option<i64>,
}

impl ProducerRecord {
    /// A keyless record with a value.
    pub fn new(topic: impl Into<Arc<str>>, value: impl Into<Bytes>) -> ProducerRecord {
        ProducerRecord {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp_ms: None,
        }
    }

    pub fn key(mut self, key: impl Into<Bytes>) -> ProducerRecord {
        self.key = Some(key.into());
        self
    }

    pub fn partition(mut self, partition: u32) -> ProducerRecord {
        self.partition = Some(partition);
        self
    }

    pub fn timestamp_ms(mut self, timestamp_ms: i64) -> ProducerRecord {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> ProducerRecord {
        self.headers.push(Header { key: key.into(), value: Some(value.into()) });
        self
    }

    /// Upper bound on the bytes this record adds to a batch.
    pub(crate) fn size_bound(&self) -> usize {
        let header_bytes: usize =
            self.headers.iter().map(|h| 10 + h.key.len() + h.value.as_ref().map_or(0, Bytes::len)).sum();
        rill_proto::batch::BatchBuilder::record_size_bound(
            self.key.as_ref().map_or(0, Bytes::len),
            self.value.as_ref().map_or(0, Bytes::len),
            header_bytes,
        )
    }
}

/// Where an acknowledged record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Shared by every record of a batch.
    pub topic: Arc<str>,
    pub partition: u32,
    /// The record's offset in its partition. With [`Acks::None`](crate::Acks::None) the broker does not wait
    /// for the append, so this is whatever it reported and should not be relied on.
    pub offset: u64,
    /// The timestamp stored with the record.
    pub timestamp_ms: i64,
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Shared by every record of a fetch from one partition.
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}
