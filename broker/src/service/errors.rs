//! The request core's `Error` as the typed `Error` carried in gRPC responses: one mapping of `ErrorKind` to
//! the proto `ErrorCode`, with the retriable flag the core decides.

use rill_proto::v1::{self as proto, ErrorCode};

use crate::requests::{Error, ErrorKind};

pub fn code(kind: ErrorKind) -> ErrorCode {
    match kind {
        ErrorKind::UnknownTopicOrPartition => ErrorCode::UnknownTopicOrPartition,
        ErrorKind::BatchTooLarge => ErrorCode::BatchTooLarge,
        ErrorKind::CorruptBatch => ErrorCode::CorruptBatch,
        ErrorKind::InvalidBatch => ErrorCode::InvalidBatch,
        ErrorKind::OffsetOutOfRange => ErrorCode::OffsetOutOfRange,
        ErrorKind::TopicAlreadyExists => ErrorCode::TopicAlreadyExists,
        ErrorKind::InvalidConfig => ErrorCode::InvalidConfig,
        ErrorKind::RequestTooLarge => ErrorCode::RequestTooLarge,
        // Rill's own clients send no leader epoch; either way the client refreshes metadata and retries.
        ErrorKind::NotLeader | ErrorKind::FencedLeaderEpoch | ErrorKind::UnknownLeaderEpoch => ErrorCode::NotLeader,
        ErrorKind::NotEnoughReplicas => ErrorCode::NotEnoughReplicas,
        ErrorKind::InvalidRequest => ErrorCode::InvalidRequest,
        ErrorKind::StorageError => ErrorCode::StorageError,
        // gRPC has no code of its own for a starting broker: the message says it, and the client retries.
        ErrorKind::Timeout | ErrorKind::NotReady => ErrorCode::Timeout,
        ErrorKind::InvalidReplicationFactor => ErrorCode::InvalidReplicationFactor,
        ErrorKind::InvalidPartitions => ErrorCode::InvalidPartitions,
        ErrorKind::InvalidTopicName => ErrorCode::InvalidTopicName,
        ErrorKind::ShuttingDown => ErrorCode::ShuttingDown,
        ErrorKind::CorruptStoredData => ErrorCode::CorruptStoredData,
        ErrorKind::NotController => ErrorCode::NotController,
        ErrorKind::StaleBrokerEpoch => ErrorCode::StaleBrokerEpoch,
        ErrorKind::OutOfOrderSequence => ErrorCode::OutOfOrderSequence,
        ErrorKind::ProducerFenced => ErrorCode::ProducerFenced,
        ErrorKind::UnknownProducerId => ErrorCode::UnknownProducerId,
        ErrorKind::NotCoordinator => ErrorCode::NotCoordinator,
        ErrorKind::CoordinatorNotAvailable => ErrorCode::CoordinatorNotAvailable,
        ErrorKind::UnknownMemberId => ErrorCode::UnknownMemberId,
        ErrorKind::StaleGeneration => ErrorCode::StaleGeneration,
        ErrorKind::NonEmptyGroup => ErrorCode::NonEmptyGroup,
        // Only Kafka clients meet these; the message says what happened.
        ErrorKind::RebalanceInProgress => ErrorCode::StaleGeneration,
        ErrorKind::InconsistentGroupProtocol | ErrorKind::InvalidSessionTimeout | ErrorKind::GroupMaxSizeReached => {
            ErrorCode::InvalidRequest
        }
        ErrorKind::GroupIdNotFound => ErrorCode::UnknownTopicOrPartition,
        ErrorKind::TopicAuthorizationFailed => ErrorCode::TopicAuthorizationFailed,
        ErrorKind::GroupAuthorizationFailed => ErrorCode::GroupAuthorizationFailed,
        ErrorKind::ClusterAuthorizationFailed => ErrorCode::ClusterAuthorizationFailed,
        // SASL is the Kafka listener's; over gRPC every failed login reads the same.
        ErrorKind::AuthenticationFailed | ErrorKind::UnsupportedSaslMechanism | ErrorKind::IllegalSaslState => {
            ErrorCode::AuthenticationFailed
        }
        ErrorKind::ResourceNotFound => ErrorCode::ResourceNotFound,
        ErrorKind::Unknown => ErrorCode::Unknown,
    }
}

pub fn to_proto(error: &Error) -> proto::Error {
    proto::Error { code: code(error.kind) as i32, message: error.message.clone(), retriable: error.retriable() }
}

/// A response's optional error field from an outcome.
pub fn field<T>(result: &Result<T, Error>) -> Option<proto::Error> {
    result.as_ref().err().map(to_proto)
}

/// An `InvalidRequest` error for a field the proto decoder let through but the core's types cannot hold.
pub fn invalid(message: impl Into<String>) -> Option<proto::Error> {
    Some(to_proto(&Error::invalid(message)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::error_from_proto;

    #[test]
    fn every_kind_survives_the_internal_round_trip_but_those_grpc_has_no_code_for() {
        use ErrorKind::*;
        // Kinds only Kafka clients or a starting broker produce, and the code each travels as.
        let folded = [
            (NotReady, Timeout),
            (FencedLeaderEpoch, NotLeader),
            (UnknownLeaderEpoch, NotLeader),
            (RebalanceInProgress, StaleGeneration),
            (InconsistentGroupProtocol, InvalidRequest),
            (InvalidSessionTimeout, InvalidRequest),
            (GroupMaxSizeReached, InvalidRequest),
            (GroupIdNotFound, UnknownTopicOrPartition),
            (UnsupportedSaslMechanism, AuthenticationFailed),
            (IllegalSaslState, AuthenticationFailed),
        ];
        for kind in ErrorKind::ALL {
            let expected = folded.iter().find(|(k, _)| *k == kind).map_or(kind, |(_, back)| *back);
            let back = error_from_proto(&to_proto(&Error::new(kind, "m")));
            assert_eq!(back, Error::new(expected, "m"), "{kind:?}");
        }
    }

    #[test]
    fn the_retriable_flag_follows_the_kind() {
        assert!(to_proto(&Error::new(ErrorKind::NotLeader, "")).retriable);
        assert!(!to_proto(&Error::new(ErrorKind::CorruptBatch, "")).retriable);
    }
}
