//! Application errors as the typed `Error` carried in responses, with the retriable flag set by code.

use rill_proto::batch::BatchError;
use rill_proto::v1::{Error, ErrorCode};
use rill_storage::StorageError;

use crate::metadata::ControllerError;
use crate::partition::{Offline, PartitionError};
use crate::producer_state::Verdict;

/// Codes a client may retry as is: the condition is expected to pass without the request changing.
fn retriable(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotLeader
            | ErrorCode::NotEnoughReplicas
            | ErrorCode::Timeout
            | ErrorCode::ShuttingDown
            | ErrorCode::NotController
            | ErrorCode::NotCoordinator
            | ErrorCode::CoordinatorNotAvailable
    )
}

pub fn error(code: ErrorCode, message: impl Into<String>) -> Option<Error> {
    Some(Error { code: code as i32, message: message.into(), retriable: retriable(code) })
}

pub fn unknown_partition(topic: &str, partition: u32, topic_exists: bool) -> Option<Error> {
    let message = if topic_exists {
        format!("topic '{topic}' has no partition {partition}")
    } else {
        format!("topic '{topic}' does not exist")
    };
    error(ErrorCode::UnknownTopicOrPartition, message)
}

/// The partition is not hosted here: either it does not exist, or this broker holds no replica of it (a
/// client with stale metadata), which is `NOT_LEADER` so the client refreshes and retries.
pub fn missing_partition(core: &super::BrokerCore, topic: &str, partition: u32) -> Option<Error> {
    let metadata = core.metadata.borrow();
    match metadata.topic(topic) {
        Some(t) if (partition as usize) < t.partitions.len() => error(
            ErrorCode::NotLeader,
            format!("broker {} is not the leader of {topic}/{partition}", core.config.node_id),
        ),
        Some(_) => unknown_partition(topic, partition, true),
        None => unknown_partition(topic, partition, false),
    }
}

/// A hosted partition that is not led here: a follower answers `NOT_LEADER` to clients.
pub fn not_leader(core: &super::BrokerCore, partition: &str) -> Option<Error> {
    error(ErrorCode::NotLeader, format!("broker {} is not the leader of {partition}", core.config.node_id))
}

pub fn from_batch(e: &BatchError) -> Option<Error> {
    match e {
        BatchError::CrcMismatch { .. } => error(ErrorCode::CorruptBatch, e.to_string()),
        _ => error(ErrorCode::InvalidBatch, e.to_string()),
    }
}

pub fn from_storage(partition: &str, e: &StorageError) -> Option<Error> {
    match e {
        StorageError::OffsetOutOfRange { .. } => error(ErrorCode::OffsetOutOfRange, format!("{partition}: {e}")),
        StorageError::Corrupt { .. } => error(ErrorCode::CorruptStoredData, format!("{partition}: {e}")),
        _ => error(ErrorCode::StorageError, format!("{partition}: {e}")),
    }
}

pub fn from_partition(partition: &str, e: &PartitionError) -> Option<Error> {
    match e {
        PartitionError::Storage(s) => from_storage(partition, s),
        PartitionError::Offline(_, Offline::TopicDeleted) => {
            error(ErrorCode::UnknownTopicOrPartition, format!("{partition} was deleted"))
        }
        PartitionError::Offline(_, Offline::ShuttingDown) => error(ErrorCode::ShuttingDown, e.to_string()),
        PartitionError::Offline(_, Offline::StorageFailed(_)) => error(ErrorCode::StorageError, e.to_string()),
        PartitionError::Timeout(_) => error(ErrorCode::Timeout, format!("{partition}: {e}")),
        PartitionError::NotLeader(_) => error(ErrorCode::NotLeader, e.to_string()),
        PartitionError::NotEnoughReplicas { .. } => error(ErrorCode::NotEnoughReplicas, e.to_string()),
        PartitionError::InvalidRequest(_) => error(ErrorCode::InvalidRequest, e.to_string()),
        PartitionError::Producer { verdict, .. } => {
            let code = match verdict {
                Verdict::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequence,
                Verdict::ProducerFenced { .. } => ErrorCode::ProducerFenced,
                Verdict::UnknownProducerId => ErrorCode::UnknownProducerId,
                Verdict::InvalidProducerFields { .. } => ErrorCode::InvalidBatch,
                Verdict::TooManyProducers | Verdict::Append | Verdict::Duplicate { .. } => ErrorCode::InvalidRequest,
            };
            error(code, e.to_string())
        }
    }
}

pub fn from_controller(e: &ControllerError) -> Option<Error> {
    let code = match e {
        ControllerError::TopicExists(_) => ErrorCode::TopicAlreadyExists,
        ControllerError::UnknownTopic(_) => ErrorCode::UnknownTopicOrPartition,
        ControllerError::InvalidTopicName { .. } => ErrorCode::InvalidTopicName,
        ControllerError::InvalidPartitions(_) => ErrorCode::InvalidPartitions,
        ControllerError::InvalidReplicationFactor(_) => ErrorCode::InvalidReplicationFactor,
        ControllerError::InvalidConfig(_) => ErrorCode::InvalidConfig,
        ControllerError::NotController { .. } => ErrorCode::NotController,
        ControllerError::Unavailable(_) => ErrorCode::Timeout,
        ControllerError::StaleBrokerEpoch { .. } => ErrorCode::StaleBrokerEpoch,
        ControllerError::UnknownProducerId { .. } => ErrorCode::UnknownProducerId,
        ControllerError::ProducerFenced { .. } => ErrorCode::ProducerFenced,
    };
    error(code, e.to_string())
}
