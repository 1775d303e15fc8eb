//! The request core's `ErrorKind` as Kafka error codes, in one function, chosen so that Kafka clients retry
//! or fail as they would against Kafka (a retriable Kafka code for each retriable kind).

use kafka_protocol::ResponseError;

use crate::requests::ErrorKind;

pub fn code(kind: ErrorKind) -> i16 {
    let error = match kind {
        ErrorKind::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        ErrorKind::BatchTooLarge | ErrorKind::RequestTooLarge => ResponseError::MessageTooLarge,
        // A CRC mismatch may be damage in transit: Kafka clients retry CORRUPT_MESSAGE.
        ErrorKind::CorruptBatch => ResponseError::CorruptMessage,
        // A malformed batch will not improve by retrying.
        ErrorKind::InvalidBatch => ResponseError::InvalidRecord,
        ErrorKind::OffsetOutOfRange => ResponseError::OffsetOutOfRange,
        ErrorKind::TopicAlreadyExists => ResponseError::TopicAlreadyExists,
        ErrorKind::InvalidConfig => ResponseError::InvalidConfig,
        ErrorKind::NotLeader => ResponseError::NotLeaderOrFollower,
        ErrorKind::FencedLeaderEpoch => ResponseError::FencedLeaderEpoch,
        ErrorKind::UnknownLeaderEpoch => ResponseError::UnknownLeaderEpoch,
        ErrorKind::NotEnoughReplicas => ResponseError::NotEnoughReplicas,
        ErrorKind::InvalidRequest => ResponseError::InvalidRequest,
        ErrorKind::StorageError | ErrorKind::CorruptStoredData => ResponseError::KafkaStorageError,
        ErrorKind::Timeout => ResponseError::RequestTimedOut,
        ErrorKind::InvalidReplicationFactor => ResponseError::InvalidReplicationFactor,
        ErrorKind::InvalidPartitions => ResponseError::InvalidPartitions,
        ErrorKind::InvalidTopicName => ResponseError::InvalidTopicException,
        // Retriable, and makes the client refresh its metadata and find the partition's next leader.
        ErrorKind::ShuttingDown | ErrorKind::NotReady => ResponseError::LeaderNotAvailable,
        ErrorKind::NotController => ResponseError::NotController,
        ErrorKind::StaleBrokerEpoch => ResponseError::StaleBrokerEpoch,
        ErrorKind::OutOfOrderSequence => ResponseError::OutOfOrderSequenceNumber,
        // What Kafka answers an idempotent producer whose epoch a newer instance replaced.
        ErrorKind::ProducerFenced => ResponseError::InvalidProducerEpoch,
        ErrorKind::UnknownProducerId => ResponseError::UnknownProducerId,
        ErrorKind::NotCoordinator => ResponseError::NotCoordinator,
        ErrorKind::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        ErrorKind::UnknownMemberId => ResponseError::UnknownMemberId,
        ErrorKind::StaleGeneration => ResponseError::IllegalGeneration,
        ErrorKind::NonEmptyGroup => ResponseError::NonEmptyGroup,
        ErrorKind::RebalanceInProgress => ResponseError::RebalanceInProgress,
        ErrorKind::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        ErrorKind::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        ErrorKind::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        ErrorKind::GroupIdNotFound => ResponseError::GroupIdNotFound,
        ErrorKind::TopicAuthorizationFailed => ResponseError::TopicAuthorizationFailed,
        ErrorKind::GroupAuthorizationFailed => ResponseError::GroupAuthorizationFailed,
        ErrorKind::ClusterAuthorizationFailed => ResponseError::ClusterAuthorizationFailed,
        ErrorKind::AuthenticationFailed => ResponseError::SaslAuthenticationFailed,
        ErrorKind::UnsupportedSaslMechanism => ResponseError::UnsupportedSaslMechanism,
        ErrorKind::IllegalSaslState => ResponseError::IllegalSaslState,
        ErrorKind::ResourceNotFound => ResponseError::ResourceNotFound,
        ErrorKind::Unknown => ResponseError::UnknownServerError,
    };
    error.code()
}

#[cfg(test)]
mod tests {
    use kafka_protocol::error::ParseResponseErrorCode;

    use super::*;

    #[test]
    fn retriable_kinds_map_to_codes_kafka_clients_retry() {
        use ErrorKind::*;
        let kinds = ErrorKind::ALL.into_iter().filter(|k| k.retriable());
        for kind in kinds {
            let error = code(kind).err().expect("an error code");
            assert!(error.is_retriable(), "{kind:?} maps to {error:?}, which Kafka clients do not retry");
        }
        for kind in [InvalidBatch, ProducerFenced, UnknownTopicOrPartition, InvalidRequest, BatchTooLarge] {
            assert!(!kind.retriable(), "{kind:?}");
        }
        assert!(ErrorKind::ALL.into_iter().all(|k| code(k) != 0), "every kind is an error to Kafka clients");
        assert_eq!(code(OutOfOrderSequence), 45);
        assert_eq!(code(NotLeader), 6);
    }
}
