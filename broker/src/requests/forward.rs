//! Requests this broker hands to another one: topic changes and producer ids to the active controller, and
//! topic descriptions to partition leaders. They travel as the internal gRPC services' messages over
//! `ClusterLink`, so this is the one file of the request core that speaks `rill_proto::v1`: it builds those
//! messages from the core's types and reads their answers back into them.

use rill_proto::v1 as proto;
use rill_proto::v1::ErrorCode;

use super::admin::{NewTopic, PartitionDescription, TopicOutcomes};
use super::{BrokerCore, Error, ErrorKind};

/// An error carried in an internal answer, as the core's `Error` (the inverse of `service::errors::to_proto`).
pub fn from_proto(error: &proto::Error) -> Error {
    let kind = match ErrorCode::try_from(error.code).unwrap_or(ErrorCode::Unknown) {
        ErrorCode::None | ErrorCode::Unknown => ErrorKind::Unknown,
        ErrorCode::UnknownTopicOrPartition => ErrorKind::UnknownTopicOrPartition,
        ErrorCode::BatchTooLarge => ErrorKind::BatchTooLarge,
        ErrorCode::CorruptBatch => ErrorKind::CorruptBatch,
        ErrorCode::InvalidBatch => ErrorKind::InvalidBatch,
        ErrorCode::OffsetOutOfRange => ErrorKind::OffsetOutOfRange,
        ErrorCode::TopicAlreadyExists => ErrorKind::TopicAlreadyExists,
        ErrorCode::InvalidConfig => ErrorKind::InvalidConfig,
        ErrorCode::RequestTooLarge => ErrorKind::RequestTooLarge,
        ErrorCode::NotLeader => ErrorKind::NotLeader,
        ErrorCode::NotEnoughReplicas => ErrorKind::NotEnoughReplicas,
        ErrorCode::InvalidRequest => ErrorKind::InvalidRequest,
        ErrorCode::StorageError => ErrorKind::StorageError,
        ErrorCode::Timeout => ErrorKind::Timeout,
        ErrorCode::InvalidReplicationFactor => ErrorKind::InvalidReplicationFactor,
        ErrorCode::InvalidPartitions => ErrorKind::InvalidPartitions,
        ErrorCode::InvalidTopicName => ErrorKind::InvalidTopicName,
        ErrorCode::ShuttingDown => ErrorKind::ShuttingDown,
        ErrorCode::CorruptStoredData => ErrorKind::CorruptStoredData,
        ErrorCode::NotController => ErrorKind::NotController,
        ErrorCode::StaleBrokerEpoch => ErrorKind::StaleBrokerEpoch,
        ErrorCode::OutOfOrderSequence => ErrorKind::OutOfOrderSequence,
        ErrorCode::ProducerFenced => ErrorKind::ProducerFenced,
        ErrorCode::UnknownProducerId => ErrorKind::UnknownProducerId,
        ErrorCode::NotCoordinator => ErrorKind::NotCoordinator,
        ErrorCode::CoordinatorNotAvailable => ErrorKind::CoordinatorNotAvailable,
        ErrorCode::UnknownMemberId => ErrorKind::UnknownMemberId,
        ErrorCode::StaleGeneration => ErrorKind::StaleGeneration,
        ErrorCode::NonEmptyGroup => ErrorKind::NonEmptyGroup,
        ErrorCode::TopicAuthorizationFailed => ErrorKind::TopicAuthorizationFailed,
        ErrorCode::GroupAuthorizationFailed => ErrorKind::GroupAuthorizationFailed,
        ErrorCode::ClusterAuthorizationFailed => ErrorKind::ClusterAuthorizationFailed,
        ErrorCode::AuthenticationFailed => ErrorKind::AuthenticationFailed,
        ErrorCode::ResourceNotFound => ErrorKind::ResourceNotFound,
    };
    Error::new(kind, error.message.clone())
}

fn outcomes(results: Vec<proto::TopicResult>) -> TopicOutcomes {
    results.into_iter().map(|r| (r.name, r.error.as_ref().map_or(Ok(()), |e| Err(from_proto(e))))).collect()
}

/// Creates topics at the active controller (another node).
pub async fn create_topics(core: &BrokerCore, topics: &[NewTopic], validate_only: bool) -> TopicOutcomes {
    let request = proto::CreateTopicsRequest {
        topics: topics
            .iter()
            .map(|t| proto::NewTopic {
                name: t.name.clone(),
                partitions: t.partitions,
                replication_factor: t.replication_factor,
                config: t.config.clone().into_iter().collect(),
            })
            .collect(),
        validate_only,
    };
    match core.link.forward_create_topics(request).await {
        Ok(response) => outcomes(response.results),
        Err(e) => topics.iter().map(|t| (t.name.clone(), Err(Error::controller_unavailable(&e)))).collect(),
    }
}

/// Deletes topics at the active controller (another node).
pub async fn delete_topics(core: &BrokerCore, names: &[String]) -> TopicOutcomes {
    let request = proto::DeleteTopicsRequest { names: names.to_vec() };
    match core.link.forward_delete_topics(request).await {
        Ok(response) => outcomes(response.results),
        Err(e) => names.iter().map(|n| (n.clone(), Err(Error::controller_unavailable(&e)))).collect(),
    }
}

/// A producer id and epoch from the active controller (another node).
pub async fn init_producer_id(core: &BrokerCore, producer_id: i64, producer_epoch: i16) -> Result<(i64, i16), Error> {
    let request = proto::InitProducerIdRequest { producer_id, producer_epoch: i32::from(producer_epoch) };
    let response = core.link.forward_init_producer_id(request).await.map_err(|e| Error::controller_unavailable(&e))?;
    if let Some(e) = &response.error {
        return Err(from_proto(e));
    }
    let epoch = i16::try_from(response.producer_epoch).map_err(|_| {
        Error::new(ErrorKind::Unknown, format!("producer epoch {} out of range", response.producer_epoch))
    })?;
    Ok((response.producer_id, epoch))
}

/// `broker`'s own view of a topic's partitions, or `None` if it does not answer in time.
pub async fn describe_topic_at(core: &BrokerCore, broker: u32, topic: &str) -> Option<Vec<PartitionDescription>> {
    let remote = core.link.describe_topic_at(broker, topic).await?;
    let partitions = remote.partitions.into_iter().map(|p| PartitionDescription {
        partition: p.partition,
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        replicas: p.replicas,
        isr: p.isr,
        log_start_offset: p.log_start_offset,
        high_watermark: p.high_watermark,
        log_end_offset: p.log_end_offset,
    });
    Some(partitions.collect())
}

/// A user or ACL change at the active controller (another node); the ACLs a deletion removed.
pub async fn alter_security(
    core: &BrokerCore,
    change: &crate::metadata::SecurityChange,
) -> Result<Vec<crate::security::AclBinding>, Error> {
    let change_json = serde_json::to_vec(change).expect("security changes always serialise");
    let request = proto::AlterSecurityRequest { change_json: change_json.into() };
    let response = core.link.forward_alter_security(request).await.map_err(|e| Error::controller_unavailable(&e))?;
    if let Some(e) = &response.error {
        return Err(from_proto(e));
    }
    if response.removed_acls_json.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&response.removed_acls_json)
        .map_err(|e| Error::new(ErrorKind::Unknown, format!("the controller's answer does not decode: {e}")))
}

/// A drain, undrain or leader election at the active controller (another node).
pub async fn alter_cluster(
    core: &BrokerCore,
    change: &crate::metadata::ClusterChange,
) -> Result<crate::metadata::ClusterChangeOutcome, Error> {
    let change_json = serde_json::to_vec(change).expect("cluster changes always serialise");
    let request = proto::AlterClusterRequest { change_json: change_json.into() };
    let response = core.link.forward_alter_cluster(request).await.map_err(|e| Error::controller_unavailable(&e))?;
    if let Some(e) = &response.error {
        return Err(from_proto(e));
    }
    serde_json::from_slice(&response.outcome_json)
        .map_err(|e| Error::new(ErrorKind::Unknown, format!("the controller's answer does not decode: {e}")))
}
