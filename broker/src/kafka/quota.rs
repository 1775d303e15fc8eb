//! Quotas on the Kafka listener: the client id a request names, and the throttle time its response reports.
//! The request core measures the request (`requests/quota.rs`); the connection then reads nothing more from
//! the client until the time is over (`connection.rs`), as Kafka does since KIP-219, so a client that does
//! not pace itself is held as surely as one that does.

use kafka_protocol::messages::{RequestHeader, ResponseKind};

/// The client id of a request; empty when the header has none.
pub fn client_id(header: &RequestHeader) -> &str {
    header.client_id.as_deref().unwrap_or_default()
}

/// Writes `throttle_ms` into the response's `throttle_time_ms`, where the response has the field at
/// `version` (Kafka added it to most APIs at some version; a field absent at a version cannot be encoded).
pub fn report(response: &mut ResponseKind, version: i16, throttle_ms: u64) {
    let ms = i32::try_from(throttle_ms).unwrap_or(i32::MAX);
    if ms == 0 {
        return;
    }
    let since = |first: i16| version >= first;
    match response {
        ResponseKind::Produce(r) if since(1) => r.throttle_time_ms = ms,
        ResponseKind::Fetch(r) if since(1) => r.throttle_time_ms = ms,
        ResponseKind::ListOffsets(r) if since(2) => r.throttle_time_ms = ms,
        ResponseKind::Metadata(r) if since(3) => r.throttle_time_ms = ms,
        ResponseKind::OffsetForLeaderEpoch(r) if since(2) => r.throttle_time_ms = ms,
        ResponseKind::FindCoordinator(r) if since(1) => r.throttle_time_ms = ms,
        ResponseKind::InitProducerId(r) => r.throttle_time_ms = ms,
        ResponseKind::CreateTopics(r) if since(2) => r.throttle_time_ms = ms,
        ResponseKind::DeleteTopics(r) if since(1) => r.throttle_time_ms = ms,
        ResponseKind::DescribeConfigs(r) => r.throttle_time_ms = ms,
        ResponseKind::DescribeCluster(r) => r.throttle_time_ms = ms,
        ResponseKind::JoinGroup(r) if since(2) => r.throttle_time_ms = ms,
        ResponseKind::SyncGroup(r) if since(1) => r.throttle_time_ms = ms,
        ResponseKind::Heartbeat(r) if since(1) => r.throttle_time_ms = ms,
        ResponseKind::LeaveGroup(r) if since(1) => r.throttle_time_ms = ms,
        ResponseKind::OffsetCommit(r) if since(3) => r.throttle_time_ms = ms,
        ResponseKind::OffsetFetch(r) if since(3) => r.throttle_time_ms = ms,
        ResponseKind::ListGroups(r) if since(1) => r.throttle_time_ms = ms,
        ResponseKind::DescribeGroups(r) if since(1) => r.throttle_time_ms = ms,
        ResponseKind::DeleteGroups(r) => r.throttle_time_ms = ms,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{ApiKey, ProduceResponse, ResponseKind};

    use super::*;
    use crate::kafka::versions;

    /// Every API served, at every version served, encodes a response that reports a throttle time.
    #[test]
    fn a_reported_throttle_time_encodes_at_every_version_served() {
        for api in versions::SUPPORTED_APIS {
            let key = api.api_key;
            for version in api.versions.min..=api.versions.max {
                let Some(mut response) = default_response(key) else { continue };
                report(&mut response, version, 1234);
                let mut buffer = bytes::BytesMut::new();
                response.encode(&mut buffer, version).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
            }
        }
        let mut produce = ResponseKind::Produce(ProduceResponse::default());
        report(&mut produce, 3, 1234);
        assert!(matches!(produce, ResponseKind::Produce(r) if r.throttle_time_ms == 1234));
    }

    fn default_response(key: ApiKey) -> Option<ResponseKind> {
        use kafka_protocol::messages::*;
        Some(match key {
            ApiKey::Produce => ResponseKind::Produce(Default::default()),
            ApiKey::Fetch => ResponseKind::Fetch(Default::default()),
            ApiKey::ListOffsets => ResponseKind::ListOffsets(Default::default()),
            ApiKey::Metadata => ResponseKind::Metadata(Default::default()),
            ApiKey::OffsetForLeaderEpoch => ResponseKind::OffsetForLeaderEpoch(Default::default()),
            ApiKey::FindCoordinator => ResponseKind::FindCoordinator(Default::default()),
            ApiKey::InitProducerId => ResponseKind::InitProducerId(Default::default()),
            ApiKey::CreateTopics => ResponseKind::CreateTopics(Default::default()),
            ApiKey::DeleteTopics => ResponseKind::DeleteTopics(Default::default()),
            ApiKey::DescribeConfigs => ResponseKind::DescribeConfigs(Default::default()),
            ApiKey::DescribeCluster => ResponseKind::DescribeCluster(Default::default()),
            ApiKey::JoinGroup => ResponseKind::JoinGroup(Default::default()),
            ApiKey::SyncGroup => ResponseKind::SyncGroup(Default::default()),
            ApiKey::Heartbeat => ResponseKind::Heartbeat(Default::default()),
            ApiKey::LeaveGroup => ResponseKind::LeaveGroup(Default::default()),
            ApiKey::OffsetCommit => ResponseKind::OffsetCommit(Default::default()),
            ApiKey::OffsetFetch => ResponseKind::OffsetFetch(Default::default()),
            ApiKey::ListGroups => ResponseKind::ListGroups(Default::default()),
            ApiKey::DescribeGroups => ResponseKind::DescribeGroups(Default::default()),
            ApiKey::DeleteGroups => ResponseKind::DeleteGroups(Default::default()),
            _ => return None,
        })
    }
}
