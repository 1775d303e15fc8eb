//! The client's error type: broker error codes mapped to typed errors, transport failures, and local misuse.

use std::fmt;

use rill_proto::batch::BatchError;
pub use rill_proto::v1::ErrorCode;

/// Result alias used across the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An application error reported by a broker inside a response, with the broker's own message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerError {
    /// What went wrong, as the broker classified it.
    pub code: ErrorCode,
    /// The broker's explanation, meant for humans.
    pub message: String,
    /// Whether the broker says the same request may succeed if sent again (possibly to another leader).
    pub retriable: bool,
}

impl BrokerError {
    /// Builds the error from a response's `error` field; `None` (or code `NONE`) means success.
    pub fn from_proto(error: Option<&rill_proto::v1::Error>) -> Option<BrokerError> {
        let error = error?;
        // An unknown numeric code comes from a newer broker; treat it as a generic failure, not as success.
        let code = ErrorCode::try_from(error.code).unwrap_or(ErrorCode::Unknown);
        if code == ErrorCode::None {
            return None;
        }
        Some(BrokerError { code, message: error.message.clone(), retriable: error.retriable })
    }
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "broker error {}", self.code.as_str_name())
        } else {
            write!(f, "{} ({})", self.message, self.code.as_str_name())
        }
    }
}

/// Everything that can go wrong in the client.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The topic is not in the cluster's metadata.
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    /// The topic exists but has no such partition.
    #[error("topic '{topic}' has no partition {partition} (it has {partitions})")]
    UnknownPartition { topic: String, partition: u32, partitions: u32 },
    /// A consumer asked for an offset the partition does not hold.
    #[error(
        "offset {offset} is out of range for partition {partition} of '{topic}' \
         (valid offsets {log_start_offset}..{high_watermark})"
    )]
    OffsetOutOfRange { topic: String, partition: u32, offset: u64, log_start_offset: u64, high_watermark: u64 },
    /// Any other error code a broker answered with.
    #[error("{0}")]
    Broker(BrokerError),
    /// The gRPC call failed below the application: connection refused or reset, deadline, bad HTTP/2.
    #[error("request to {address} failed: {message}")]
    Transport { address: String, code: tonic::Code, message: String },
    /// A TLS connection to a broker failed, or TLS settings do not match the broker's (a plaintext client at a
    /// TLS broker, say); the message says which and what to pass. Not retriable: the same settings fail again.
    #[error("{message}")]
    Tls { address: String, message: String },
    /// No address in the bootstrap list (or the known brokers) answered.
    #[error("no broker reachable at {addresses}: {last_error}")]
    NoBrokerReachable { addresses: String, last_error: String },
    /// The producer gave up on a record after `delivery_timeout_ms`.
    #[error("record not delivered within {delivery_timeout_ms} ms: {last_error}")]
    DeliveryTimeout { delivery_timeout_ms: u64, last_error: String },
    /// A single record is larger than a batch may be.
    #[error("record of {record_bytes} bytes exceeds batch_bytes_max of {batch_bytes_max} bytes")]
    RecordTooLarge { record_bytes: usize, batch_bytes_max: usize },
    /// A newer instance of this idempotent producer (same producer id, later epoch) exists; this one can no
    /// longer write. Fatal: every later record fails with it too.
    #[error("producer fenced: {message}")]
    ProducerFenced { message: String },
    /// `send` after `close`, or the producer's background task ended.
    #[error("producer is closed")]
    ProducerClosed,
    /// The partition is not assigned to this consumer.
    #[error("partition {partition} of '{topic}' is not assigned to this consumer")]
    NotAssigned { topic: String, partition: u32 },
    /// Invalid configuration or argument supplied by the caller.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The broker sent records that do not decode.
    #[error("corrupt record batch from partition {partition} of '{topic}': {source}")]
    CorruptBatch { topic: String, partition: u32, source: BatchError },
    /// The broker's answer does not follow the protocol (for example, a result for a partition not asked for).
    #[error("unexpected response from broker: {0}")]
    Protocol(String),
}

impl Error {
    /// Whether sending the same request again (after a metadata refresh and a backoff) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Broker(e) => e.retriable,
            Error::Transport { code, .. } => is_retriable_status(*code),
            Error::NoBrokerReachable { .. } => true,
            _ => false,
        }
    }

    /// The broker's error code, if this error came from a broker response.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Broker(e) => Some(e.code),
            Error::UnknownTopic(_) | Error::UnknownPartition { .. } => Some(ErrorCode::UnknownTopicOrPartition),
            Error::OffsetOutOfRange { .. } => Some(ErrorCode::OffsetOutOfRange),
            _ => None,
        }
    }

    /// Whether the client's view of the cluster may be stale, so metadata should be fetched again.
    pub(crate) fn needs_metadata_refresh(&self) -> bool {
        match self {
            Error::Broker(e) => {
                matches!(e.code, ErrorCode::NotLeader | ErrorCode::UnknownTopicOrPartition | ErrorCode::ShuttingDown)
            }
            Error::Transport { .. } | Error::NoBrokerReachable { .. } => true,
            Error::UnknownTopic(_) | Error::UnknownPartition { .. } => true,
            _ => false,
        }
    }

    /// Maps a gRPC status from a call to `address`.
    pub(crate) fn from_status(address: &str, status: &tonic::Status) -> Error {
        Error::Transport { address: address.to_owned(), code: status.code(), message: status.message().to_owned() }
    }

    /// Maps a broker error about one topic or partition, turning "unknown topic" into its typed form.
    pub(crate) fn from_broker(error: BrokerError, topic: &str) -> Error {
        match error.code {
            ErrorCode::UnknownTopicOrPartition => Error::UnknownTopic(topic.to_owned()),
            _ => Error::Broker(error),
        }
    }
}

/// gRPC codes after which a retry may reach a healthy broker. Others (e.g. `InvalidArgument`,
/// `Unimplemented`) would fail the same way again.
fn is_retriable_status(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled | tonic::Code::Aborted
    ) || code == tonic::Code::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto_error(code: ErrorCode, retriable: bool) -> rill_proto::v1::Error {
        rill_proto::v1::Error { code: code as i32, message: "the broker says so".into(), retriable }
    }

    #[test]
    fn absent_or_none_code_is_success() {
        assert_eq!(BrokerError::from_proto(None), None);
        assert_eq!(BrokerError::from_proto(Some(&proto_error(ErrorCode::None, false))), None);
    }

    #[test]
    fn broker_error_keeps_code_message_and_retriable_flag() {
        let e = BrokerError::from_proto(Some(&proto_error(ErrorCode::NotLeader, true))).unwrap();
        assert_eq!(e.code, ErrorCode::NotLeader);
        assert_eq!(e.message, "the broker says so");
        let error = Error::Broker(e);
        assert!(error.is_retriable());
        assert!(error.needs_metadata_refresh());
        assert_eq!(error.to_string(), "the broker says so (NOT_LEADER)");
    }

    #[test]
    fn unknown_numeric_code_is_a_failure() {
        let raw = rill_proto::v1::Error { code: 999, message: String::new(), retriable: false };
        let e = BrokerError::from_proto(Some(&raw)).unwrap();
        assert_eq!(e.code, ErrorCode::Unknown);
        assert!(!Error::Broker(e).is_retriable());
    }

    #[test]
    fn unknown_topic_becomes_typed() {
        let e = BrokerError::from_proto(Some(&proto_error(ErrorCode::UnknownTopicOrPartition, false))).unwrap();
        let error = Error::from_broker(e, "demo");
        assert_eq!(error.to_string(), "topic 'demo' does not exist");
        assert_eq!(error.code(), Some(ErrorCode::UnknownTopicOrPartition));
    }

    #[test]
    fn transport_errors_are_retried_only_when_a_retry_can_help() {
        let unavailable = Error::from_status("127.0.0.1:9400", &tonic::Status::unavailable("refused"));
        assert!(unavailable.is_retriable());
        assert_eq!(unavailable.to_string(), "request to 127.0.0.1:9400 failed: refused");
        let invalid = Error::from_status("127.0.0.1:9400", &tonic::Status::invalid_argument("bad"));
        assert!(!invalid.is_retriable());
    }

    #[test]
    fn offset_out_of_range_names_the_valid_range() {
        let error = Error::OffsetOutOfRange {
            topic: "demo".into(),
            partition: 2,
            offset: 99,
            log_start_offset: 0,
            high_watermark: 10,
        };
        assert_eq!(error.to_string(), "offset 99 is out of range for partition 2 of 'demo' (valid offsets 0..10)");
    }
}
