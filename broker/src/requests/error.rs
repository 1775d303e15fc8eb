//! The request core's one error type: what went wrong with a client-facing operation, in Rill's own terms,
//! with whether a client may retry it unchanged. Each transport maps `ErrorKind` to its own codes in one
//! function (gRPC: `service::errors::to_proto`; Kafka: its listener's error mapping); lower layers' errors
//! (storage, partition, controller, coordinator) become an `Error` here, once.

use rill_proto::batch::BatchError;
use rill_storage::StorageError;

use super::BrokerCore;
use crate::group::classic::ClassicError;
use crate::group::coordinator::CoordinatorError;
use crate::group::state::GroupError;
use crate::metadata::ControllerError;
use crate::partition::{Offline, PartitionError};
use crate::producer_state::Verdict;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    UnknownTopicOrPartition,
    BatchTooLarge,
    /// A batch failed its CRC-32C on the way in.
    CorruptBatch,
    /// A malformed batch: lengths, counts, magic, unsupported attributes.
    InvalidBatch,
    OffsetOutOfRange,
    TopicAlreadyExists,
    InvalidConfig,
    RequestTooLarge,
    NotLeader,
    /// The client's leader epoch is older than this leader's: its metadata is stale.
    FencedLeaderEpoch,
    /// The client's leader epoch is newer than this broker knows: this broker's metadata is behind.
    UnknownLeaderEpoch,
    NotEnoughReplicas,
    InvalidRequest,
    StorageError,
    Timeout,
    InvalidReplicationFactor,
    InvalidPartitions,
    InvalidTopicName,
    ShuttingDown,
    /// A stored batch failed its CRC on read; it is never served.
    CorruptStoredData,
    /// The broker is starting and has not joined the cluster yet.
    NotReady,
    NotController,
    StaleBrokerEpoch,
    OutOfOrderSequence,
    ProducerFenced,
    UnknownProducerId,
    NotCoordinator,
    CoordinatorNotAvailable,
    UnknownMemberId,
    StaleGeneration,
    NonEmptyGroup,
    /// Kafka classic-protocol groups: the group is rebalancing and the member must join again.
    RebalanceInProgress,
    /// A member's protocol type or protocols do not fit the group's (also: a Kafka client joining a group of
    /// Rill's own protocol, or the other way round).
    InconsistentGroupProtocol,
    InvalidSessionTimeout,
    GroupMaxSizeReached,
    /// A group to delete that the coordinator does not know.
    GroupIdNotFound,
    /// The principal may not perform the operation on the topic (the message names both).
    TopicAuthorizationFailed,
    GroupAuthorizationFailed,
    ClusterAuthorizationFailed,
    /// A login failed: unknown user, wrong password, or an expired or unknown session token.
    AuthenticationFailed,
    /// A SASL mechanism the broker does not offer (or PLAIN without TLS).
    UnsupportedSaslMechanism,
    /// A SASL step out of order: authenticating before the handshake, or twice.
    IllegalSaslState,
    /// A user to delete or describe that does not exist.
    ResourceNotFound,
    Unknown,
}

impl ErrorKind {
    /// Every kind, for tests that check each transport's mapping.
    pub const ALL: [ErrorKind; 44] = [
        ErrorKind::UnknownTopicOrPartition,
        ErrorKind::BatchTooLarge,
        ErrorKind::CorruptBatch,
        ErrorKind::InvalidBatch,
        ErrorKind::OffsetOutOfRange,
        ErrorKind::TopicAlreadyExists,
        ErrorKind::InvalidConfig,
        ErrorKind::RequestTooLarge,
        ErrorKind::NotLeader,
        ErrorKind::FencedLeaderEpoch,
        ErrorKind::UnknownLeaderEpoch,
        ErrorKind::NotEnoughReplicas,
        ErrorKind::InvalidRequest,
        ErrorKind::StorageError,
        ErrorKind::Timeout,
        ErrorKind::InvalidReplicationFactor,
        ErrorKind::InvalidPartitions,
        ErrorKind::InvalidTopicName,
        ErrorKind::ShuttingDown,
        ErrorKind::CorruptStoredData,
        ErrorKind::NotReady,
        ErrorKind::NotController,
        ErrorKind::StaleBrokerEpoch,
        ErrorKind::OutOfOrderSequence,
        ErrorKind::ProducerFenced,
        ErrorKind::UnknownProducerId,
        ErrorKind::NotCoordinator,
        ErrorKind::CoordinatorNotAvailable,
        ErrorKind::UnknownMemberId,
        ErrorKind::StaleGeneration,
        ErrorKind::NonEmptyGroup,
        ErrorKind::RebalanceInProgress,
        ErrorKind::InconsistentGroupProtocol,
        ErrorKind::InvalidSessionTimeout,
        ErrorKind::GroupMaxSizeReached,
        ErrorKind::GroupIdNotFound,
        ErrorKind::TopicAuthorizationFailed,
        ErrorKind::GroupAuthorizationFailed,
        ErrorKind::ClusterAuthorizationFailed,
        ErrorKind::AuthenticationFailed,
        ErrorKind::UnsupportedSaslMechanism,
        ErrorKind::IllegalSaslState,
        ErrorKind::ResourceNotFound,
        ErrorKind::Unknown,
    ];

    /// Whether a client may retry as is: the condition is expected to pass without the request changing.
    pub fn retriable(self) -> bool {
        matches!(
            self,
            ErrorKind::NotLeader
                | ErrorKind::FencedLeaderEpoch
                | ErrorKind::UnknownLeaderEpoch
                | ErrorKind::NotEnoughReplicas
                | ErrorKind::Timeout
                | ErrorKind::ShuttingDown
                | ErrorKind::NotReady
                | ErrorKind::NotController
                | ErrorKind::NotCoordinator
                | ErrorKind::CoordinatorNotAvailable
        )
    }
}

/// An operation's refusal: its kind and a message naming what was refused and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidRequest, message)
    }

    pub fn retriable(&self) -> bool {
        self.kind.retriable()
    }

    pub fn unknown_partition(topic: &str, partition: u32, topic_exists: bool) -> Error {
        let message = if topic_exists {
            format!("topic '{topic}' has no partition {partition}")
        } else {
            format!("topic '{topic}' does not exist")
        };
        Error::new(ErrorKind::UnknownTopicOrPartition, message)
    }

    pub fn from_batch(e: &BatchError) -> Error {
        match e {
            BatchError::CrcMismatch { .. } => Error::new(ErrorKind::CorruptBatch, e.to_string()),
            _ => Error::new(ErrorKind::InvalidBatch, e.to_string()),
        }
    }

    pub fn from_storage(partition: &str, e: &StorageError) -> Error {
        let kind = match e {
            StorageError::OffsetOutOfRange { .. } => ErrorKind::OffsetOutOfRange,
            StorageError::Corrupt { .. } => ErrorKind::CorruptStoredData,
            _ => ErrorKind::StorageError,
        };
        Error::new(kind, format!("{partition}: {e}"))
    }

    pub fn from_partition(partition: &str, e: &PartitionError) -> Error {
        let kind = match e {
            PartitionError::Storage(s) => return Error::from_storage(partition, s),
            PartitionError::Offline(_, Offline::TopicDeleted) => {
                return Error::new(ErrorKind::UnknownTopicOrPartition, format!("{partition} was deleted"));
            }
            PartitionError::Timeout(_) => return Error::new(ErrorKind::Timeout, format!("{partition}: {e}")),
            PartitionError::Offline(_, Offline::ShuttingDown) => ErrorKind::ShuttingDown,
            PartitionError::Offline(_, Offline::StorageFailed(_)) => ErrorKind::StorageError,
            PartitionError::NotLeader(_) => ErrorKind::NotLeader,
            PartitionError::NotEnoughReplicas { .. } => ErrorKind::NotEnoughReplicas,
            PartitionError::InvalidRequest(_) => ErrorKind::InvalidRequest,
            PartitionError::Producer { verdict, .. } => match verdict {
                Verdict::OutOfOrderSequence { .. } => ErrorKind::OutOfOrderSequence,
                Verdict::ProducerFenced { .. } => ErrorKind::ProducerFenced,
                Verdict::UnknownProducerId => ErrorKind::UnknownProducerId,
                Verdict::InvalidProducerFields { .. } => ErrorKind::InvalidBatch,
                Verdict::TooManyProducers | Verdict::Append | Verdict::Duplicate { .. } => ErrorKind::InvalidRequest,
            },
        };
        Error::new(kind, e.to_string())
    }

    pub fn from_controller(e: &ControllerError) -> Error {
        let kind = match e {
            ControllerError::TopicExists(_) => ErrorKind::TopicAlreadyExists,
            ControllerError::UnknownTopic(_) => ErrorKind::UnknownTopicOrPartition,
            ControllerError::InvalidTopicName { .. } => ErrorKind::InvalidTopicName,
            ControllerError::InvalidPartitions(_) => ErrorKind::InvalidPartitions,
            ControllerError::InvalidReplicationFactor(_) => ErrorKind::InvalidReplicationFactor,
            ControllerError::InvalidConfig(_) => ErrorKind::InvalidConfig,
            ControllerError::NotController { .. } => ErrorKind::NotController,
            ControllerError::Unavailable(_) => ErrorKind::Timeout,
            ControllerError::StaleBrokerEpoch { .. } => ErrorKind::StaleBrokerEpoch,
            ControllerError::UnknownProducerId { .. } => ErrorKind::UnknownProducerId,
            ControllerError::ProducerFenced { .. } => ErrorKind::ProducerFenced,
            ControllerError::UnknownUser(_) => ErrorKind::ResourceNotFound,
            ControllerError::InvalidSecurityChange(_) | ControllerError::InvalidRequest(_) => ErrorKind::InvalidRequest,
            ControllerError::UnknownBroker(_) => ErrorKind::ResourceNotFound,
        };
        Error::new(kind, e.to_string())
    }

    pub fn from_coordinator(e: &CoordinatorError) -> Error {
        let kind = match e {
            CoordinatorError::NotCoordinator { .. } => ErrorKind::NotCoordinator,
            CoordinatorError::Loading(_) => ErrorKind::CoordinatorNotAvailable,
            CoordinatorError::Group(GroupError::UnknownMember { .. }) => ErrorKind::UnknownMemberId,
            CoordinatorError::Group(GroupError::StaleGeneration { .. } | GroupError::NotOwner { .. }) => {
                ErrorKind::StaleGeneration
            }
            CoordinatorError::Group(GroupError::NonEmpty { .. }) => ErrorKind::NonEmptyGroup,
            CoordinatorError::Group(GroupError::Invalid(_)) => ErrorKind::InvalidRequest,
            // The partition's leadership moved: the client finds the new coordinator.
            CoordinatorError::Write { error: PartitionError::NotLeader(_), .. } => ErrorKind::NotCoordinator,
            CoordinatorError::Write { .. } => ErrorKind::CoordinatorNotAvailable,
            CoordinatorError::Classic(c) => match c {
                ClassicError::UnknownMemberId { .. } => ErrorKind::UnknownMemberId,
                ClassicError::IllegalGeneration { .. } => ErrorKind::StaleGeneration,
                ClassicError::RebalanceInProgress { .. } => ErrorKind::RebalanceInProgress,
                ClassicError::InconsistentGroupProtocol { .. } => ErrorKind::InconsistentGroupProtocol,
                ClassicError::InvalidSessionTimeout { .. } => ErrorKind::InvalidSessionTimeout,
                ClassicError::GroupMaxSizeReached { .. } => ErrorKind::GroupMaxSizeReached,
                ClassicError::MetadataTooLarge { .. } => ErrorKind::InvalidRequest,
            },
        };
        Error::new(kind, e.to_string())
    }

    /// Compares a client's view of the leader epoch (when it sends one) with this leader's.
    pub(super) fn check_leader_epoch(partition: &str, ours: Option<u32>, theirs: Option<u32>) -> Result<(), Error> {
        match (theirs, ours) {
            (Some(theirs), Some(ours)) if theirs < ours => Err(Error::new(
                ErrorKind::FencedLeaderEpoch,
                format!("leader epoch {theirs} of {partition} is older than the current {ours}"),
            )),
            (Some(theirs), Some(ours)) if theirs > ours => Err(Error::new(
                ErrorKind::UnknownLeaderEpoch,
                format!("leader epoch {theirs} of {partition} is newer than {ours}, the latest this broker knows"),
            )),
            _ => Ok(()),
        }
    }

    /// The active controller did not answer a forwarded request.
    pub(super) fn controller_unavailable(message: &str) -> Error {
        Error::new(ErrorKind::Timeout, format!("the controller did not answer: {message}"))
    }
}

impl BrokerCore {
    /// The partition is not hosted here: either it does not exist, or this broker holds no replica of it (a
    /// client with stale metadata), which is `NOT_LEADER` so the client refreshes and retries.
    pub(super) fn missing_partition(&self, topic: &str, partition: u32) -> Error {
        let metadata = self.metadata.borrow();
        match metadata.topic(topic) {
            Some(t) if (partition as usize) < t.partitions.len() => self.not_leader(&format!("{topic}/{partition}")),
            Some(_) => Error::unknown_partition(topic, partition, true),
            None => Error::unknown_partition(topic, partition, false),
        }
    }

    /// A hosted partition that is not led here: a follower answers `NOT_LEADER` to clients.
    pub(super) fn not_leader(&self, partition: &str) -> Error {
        Error::new(ErrorKind::NotLeader, format!("broker {} is not the leader of {partition}", self.config.node_id))
    }
}
