//! ApiVersions: which APIs and versions this broker serves, from `versions::SUPPORTED_APIS`. Clients send it
//! first on every connection and pick, per API, the highest version both sides support.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseKind};

use super::super::BrokerCore;
use super::super::versions::api_versions;
use crate::security::Principal;

/// Answers with the version table, or INVALID_REQUEST when a v3+ client names itself with characters Kafka
/// refuses (its brokers do the same, so a client behaves here as there).
pub async fn handle_api_versions(
    _core: &Arc<BrokerCore>,
    _who: &Principal,
    header: &RequestHeader,
    request: ApiVersionsRequest,
) -> ResponseKind {
    let name = request.client_software_name.as_str();
    let version = request.client_software_version.as_str();
    if header.request_api_version >= 3 && !(is_valid_software_field(name) && is_valid_software_field(version)) {
        tracing::warn!(client_software_name = name, client_software_version = version, "invalid ApiVersions request");
        let response = ApiVersionsResponse::default().with_error_code(ResponseError::InvalidRequest.code());
        return ResponseKind::ApiVersions(response);
    }
    tracing::debug!(client_software_name = name, client_software_version = version, "Kafka client connected");
    ResponseKind::ApiVersions(ApiVersionsResponse::default().with_api_keys(api_versions()))
}

/// The answer to an ApiVersions request of a version this broker does not serve (KIP-511): encoded as v0,
/// which every client can read, with UNSUPPORTED_VERSION and the version table, from which the client picks a
/// version to ask again with.
pub fn unsupported_version_response() -> ResponseKind {
    let response = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_versions());
    ResponseKind::ApiVersions(response)
}

/// Kafka's rule for the client software name and version (KIP-511): `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
fn is_valid_software_field(value: &str) -> bool {
    let bytes = value.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else { return false };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_names_follow_kafkas_pattern() {
        for good in ["librdkafka", "2.16.1", "a", "kafka-python", "apache-kafka-java"] {
            assert!(is_valid_software_field(good), "{good}");
        }
        for bad in ["", "-a", "a-", ".", "a b", "a_b", "é"] {
            assert!(!is_valid_software_field(bad), "{bad}");
        }
    }
}
