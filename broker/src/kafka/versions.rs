//! The one table of Kafka APIs this broker serves and the versions of each. The ApiVersions response is
//! built from it and dispatch refuses whatever it does not list, so adding an API is an entry here plus its
//! handler (`handlers/mod.rs`).

use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::protocol::VersionRange;

/// One served API.
#[derive(Debug, Clone, Copy)]
pub struct SupportedApi {
    pub api_key: ApiKey,
    /// The versions answered, inclusive at both ends.
    pub versions: VersionRange,
    /// Whether a request waits for the broker to have joined the cluster (registered, partitions open)
    /// before its handler runs; only what needs no cluster state answers earlier.
    pub waits_for_ready: bool,
}

/// Every API served, by API key.
pub const SUPPORTED_APIS: &[SupportedApi] = &[
    // Clients send ApiVersions first on every connection, before anything else. v0-v3: v3 adds the client
    // software name and version and the flexible (tagged-field) encoding. v4 (KAFKA-17011) only lets a
    // response's supported features start at version 0; this broker announces no features, so v3 suffices.
    SupportedApi { api_key: ApiKey::ApiVersions, versions: VersionRange { min: 0, max: 3 }, waits_for_ready: false },
    // v3 is the oldest the codec knows; v12 is the last that names topics (v13 uses topic ids only).
    served(ApiKey::Produce, 3, 11),
    // v13 and later name topics by id only.
    served(ApiKey::Fetch, 4, 12),
    // v7 adds the max-timestamp spec (-3), v8 and later tiered storage; neither is served.
    served(ApiKey::ListOffsets, 1, 6),
    // v13 only adds a top-level error code.
    served(ApiKey::Metadata, 0, 12),
    served(ApiKey::OffsetForLeaderEpoch, 2, 4),
    served(ApiKey::FindCoordinator, 0, 4),
    // v5 and later belong to transactions (KIP-890).
    served(ApiKey::InitProducerId, 0, 4),
    served(ApiKey::CreateTopics, 2, 7),
    served(ApiKey::DeleteTopics, 1, 6),
    served(ApiKey::CreatePartitions, 0, 3),
    served(ApiKey::DescribeConfigs, 1, 4),
    served(ApiKey::AlterConfigs, 0, 2),
    served(ApiKey::IncrementalAlterConfigs, 0, 1),
    served(ApiKey::DescribeCluster, 0, 1),
    // v0 has no election type (always preferred); v2 only adds flexible encoding.
    served(ApiKey::ElectLeaders, 0, 2),
    // The classic group protocol. JoinGroup v4+ would allow MEMBER_ID_REQUIRED (KIP-394); new members are
    // admitted at once instead, which clients accept at every version.
    served(ApiKey::JoinGroup, 0, 9),
    served(ApiKey::SyncGroup, 0, 5),
    served(ApiKey::Heartbeat, 0, 4),
    served(ApiKey::LeaveGroup, 0, 5),
    // v9 and later carry KIP-848 member epochs.
    served(ApiKey::OffsetCommit, 2, 8),
    // v8 and later batch several groups.
    served(ApiKey::OffsetFetch, 1, 7),
    // v5 adds a group-type filter.
    served(ApiKey::ListGroups, 0, 4),
    served(ApiKey::DescribeGroups, 0, 5),
    served(ApiKey::DeleteGroups, 0, 2),
    // SASL logins (docs/KAFKA.md, "Logins and authorization"). Handshake v0 would mean raw SASL tokens outside Kafka's
    // framing; every current client uses v1 and SaslAuthenticate. SaslAuthenticate v2 only adds flexible
    // encoding; its session lifetime is answered as 0 (no re-authentication required).
    SupportedApi { api_key: ApiKey::SaslHandshake, versions: VersionRange { min: 1, max: 1 }, waits_for_ready: false },
    served(ApiKey::SaslAuthenticate, 0, 2),
];

/// An API that needs the broker to have joined the cluster.
const fn served(api_key: ApiKey, min: i16, max: i16) -> SupportedApi {
    SupportedApi { api_key, versions: VersionRange { min, max }, waits_for_ready: true }
}

/// The entry for `api_key`, if this broker serves it.
pub fn supported_versions(api_key: ApiKey) -> Option<&'static SupportedApi> {
    SUPPORTED_APIS.iter().find(|api| api.api_key == api_key)
}

/// Whether `version` of `api_key` is served.
pub fn is_supported(api_key: ApiKey, version: i16) -> bool {
    supported_versions(api_key).is_some_and(|api| (api.versions.min..=api.versions.max).contains(&version))
}

/// The table as ApiVersions announces it.
pub fn api_versions() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|api| {
            ApiVersion::default()
                .with_api_key(api.api_key as i16)
                .with_min_version(api.versions.min)
                .with_max_version(api.versions.max)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_is_within_what_the_codec_knows_and_listed_once() {
        for (index, api) in SUPPORTED_APIS.iter().enumerate() {
            let codec = api.api_key.valid_versions();
            assert!(api.versions.min <= api.versions.max, "{:?}", api.api_key);
            assert!(api.versions.min >= codec.min && api.versions.max <= codec.max, "{:?}", api.api_key);
            assert!(SUPPORTED_APIS[..index].iter().all(|a| a.api_key != api.api_key), "{:?} twice", api.api_key);
        }
    }

    #[test]
    fn api_versions_is_served_without_waiting_and_gates_versions() {
        let api = supported_versions(ApiKey::ApiVersions).expect("ApiVersions is always served");
        assert!(!api.waits_for_ready, "clients send ApiVersions before anything else");
        assert!(is_supported(ApiKey::ApiVersions, 0) && is_supported(ApiKey::ApiVersions, 3));
        assert!(!is_supported(ApiKey::ApiVersions, 4) && !is_supported(ApiKey::ApiVersions, -1));
        assert!(is_supported(ApiKey::Produce, 9) && !is_supported(ApiKey::Produce, 13), "topic ids are not served");
    }
}
