//! The transport-neutral request core: every client-facing operation (produce, fetch, list offsets,
//! metadata and topic description, topic admin, producer ids, consumer groups and offset commits), taking
//! and returning Rill's own types and one `Error`. Transports (the gRPC service in `service/`, the Kafka
//! listener) decode a request, call one function here, and encode its answer; none holds handler logic of
//! its own. Authorization, quotas and request metrics belong here, once for every transport.
//!
//! Layering: this module uses the broker's core state (partitions, replication, producer state, groups,
//! metadata, the cluster link) and never a transport; transports use it (ARCHITECTURE.md, "Layers").

mod admin;
mod auth;
mod classic;
mod error;
mod fetch;
mod forward;
mod group;
mod monitor;
mod operate;
mod produce;
mod quota;
mod security;

pub use admin::{
    ClusterDescription, ClusterMetadata, NewTopic, PartitionDescription, TopicDescription, TopicMetadata, TopicOutcomes,
};
pub use classic::{CONSUMER_PROTOCOL_TYPE, ClassicJoinRequest, consumer_assignment, consumer_topics};
pub use error::{Error, ErrorKind};
pub use fetch::{
    EpochQuery, FetchPartition, FetchRequest, OffsetFound, OffsetQuery, OffsetSpec, PartitionFetched, PartitionOffset,
};
pub use forward::from_proto as error_from_proto;
pub use group::{
    Coordinator, GroupDescription, GroupMemberDescription, GroupSummary, HeartbeatRequest, JoinGroupRequest,
    OffsetCommit, OffsetFetchRequest, RILL_PROTOCOL_TYPE,
};
pub use monitor::{
    BrokerStats, ControllerView, GroupPartitionLag, GroupView, HostedPartition, PartitionSummary, TopicTraffic,
};
pub(crate) use produce::validate_batches;
pub use produce::{Acks, PartitionProduced, PartitionRecords, ProduceRequest, Produced};
pub use quota::Usage;
pub use security::UserDescription;

pub use crate::security::{PeerIdentity, Principal};

use std::sync::Arc;

use tokio::sync::watch;

use crate::cluster_link::ClusterLink;
use crate::config::BrokerConfig;
use crate::group::GroupCoordinator;
use crate::limits::STARTUP_WAIT_MS;
use crate::manager::PartitionManager;
use crate::metadata::{Controller, MetadataState};
use crate::metrics::Metrics;

/// Everything a request needs, shared by every connection of every transport.
pub struct BrokerCore {
    pub config: BrokerConfig,
    pub controller: Arc<Controller>,
    pub link: Arc<ClusterLink>,
    pub metadata: watch::Receiver<Arc<MetadataState>>,
    pub partitions: Arc<PartitionManager>,
    /// The consumer groups this broker coordinates.
    pub groups: Arc<GroupCoordinator>,
    /// Turns true when the broker starts shutting down; long polls and fetch streams end on it.
    pub shutdown: watch::Receiver<bool>,
    /// Turns true once the broker is registered and has opened its partitions. The transports serve before
    /// that (the controller quorum elects over the gRPC port), so client requests wait for it.
    pub ready: watch::Receiver<bool>,
    /// `--super-users`, allowed everything when the authorizer is on.
    pub super_users: Vec<Principal>,
    /// Sessions, logins in progress and failed logins (`requests/auth.rs`).
    pub logins: std::sync::Mutex<crate::security::logins::Logins>,
    /// This broker's quota buckets (`requests/quota.rs`).
    pub quota_buckets: std::sync::Mutex<crate::security::quota::QuotaBuckets>,
    /// Request and traffic counters (`metrics.rs`), updated once per request and partition.
    pub metrics: Metrics,
}

impl BrokerCore {
    /// The core over the broker's state, with no sessions yet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: BrokerConfig,
        controller: Arc<Controller>,
        link: Arc<ClusterLink>,
        partitions: Arc<PartitionManager>,
        groups: Arc<GroupCoordinator>,
        shutdown: watch::Receiver<bool>,
        ready: watch::Receiver<bool>,
        metrics: Metrics,
    ) -> Self {
        let super_users = config.super_users.iter().map(Principal::user).collect();
        BrokerCore {
            metadata: controller.subscribe(),
            config,
            controller,
            link,
            partitions,
            groups,
            shutdown,
            ready,
            super_users,
            logins: std::sync::Mutex::new(crate::security::logins::Logins::new(auth::random_bytes())),
            quota_buckets: std::sync::Mutex::default(),
            metrics,
        }
    }

    /// Waits until the broker is ready for client requests (`NotReady` after `STARTUP_WAIT_MS`).
    pub async fn await_ready(&self) -> Result<(), Error> {
        let mut ready = self.ready.clone();
        let wait = ready.wait_for(|r| *r);
        match tokio::time::timeout(std::time::Duration::from_millis(STARTUP_WAIT_MS), wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Error::new(ErrorKind::NotReady, "the broker is starting: it has not joined the cluster yet")),
        }
    }
}
