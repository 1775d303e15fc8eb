//! The gRPC transport: the client-facing `Rill` service and the internal `Replication` and `Controller`
//! services. Each call decodes its proto request into the request core's types, calls one operation of
//! `requests::BrokerCore`, and encodes the answer, with application errors as typed codes inside the
//! response (`errors.rs`). No request logic lives here.

mod admin;
mod controller;
mod errors;
mod fetch;
mod group;
mod produce;
mod replication;
mod security;

pub use controller::ControllerService;
pub use replication::ReplicationService;
pub use tonic::service::interceptor::InterceptedService;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rill_proto::v1::rill_server::Rill;
use rill_proto::v1::*;
use tonic::{Request, Response, Status};

use crate::requests::{BrokerCore, Usage};
use crate::security::{Operation, PeerIdentity, Principal, Resource};

/// The principal a request acts as: its session token's (`authorization: Bearer TOKEN`, from a SCRAM
/// login through `Authenticate`), else its verified TLS client certificate's, else `User:ANONYMOUS`. An
/// unknown or expired token is `UNAUTHENTICATED`, so the client knows to log in again.
pub(crate) fn caller<T>(core: &BrokerCore, request: &Request<T>) -> Result<Principal, Status> {
    if let Some(value) = request.metadata().get("authorization") {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("the authorization metadata is not 'Bearer TOKEN'"))?;
        return core.session_principal(token.trim()).map_err(|e| Status::unauthenticated(e.message));
    }
    let certificate = request.extensions().get::<PeerIdentity>().and_then(|p| p.certificate_principal.clone());
    Ok(certificate.unwrap_or_else(Principal::anonymous))
}

/// An interceptor for the broker-to-broker services (replication, controller requests, the controller
/// quorum's Raft): a caller needs `cluster_action` on the cluster. With the authorizer off that is everyone;
/// with it on, the brokers' own principals (super users, from their mTLS certificates) and whoever an ACL
/// grants it.
pub fn internal_only(core: Arc<BrokerCore>) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |request: Request<()>| {
        let who = caller(&core, &request)?;
        core.authorize(&who, Operation::ClusterAction, Resource::cluster())
            .map_err(|e| Status::permission_denied(e.message))?;
        Ok(request)
    }
}

/// The peer of a request as the listener saw it (plaintext and unknown when the listener gave none).
pub(crate) fn peer<T>(request: &Request<T>) -> PeerIdentity {
    request
        .extensions()
        .get::<PeerIdentity>()
        .cloned()
        .unwrap_or_else(|| PeerIdentity::plaintext(request.remote_addr()))
}

/// Waits until the broker is ready for client requests: a starting broker answers `UNAVAILABLE`, a transport
/// status, since the request never reached an operation.
async fn await_ready(core: &BrokerCore) -> Result<(), Status> {
    core.await_ready().await.map_err(|e| Status::unavailable(e.message))
}

#[derive(Clone)]
pub struct RillService {
    core: Arc<BrokerCore>,
}

impl RillService {
    pub fn new(core: Arc<BrokerCore>) -> Self {
        RillService { core }
    }

    /// The caller of a request once the broker is ready, after holding the request back as long as the
    /// caller's request quota asks (a gRPC channel carries many clients' calls, so it is the call that
    /// waits, not a connection).
    async fn admit<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let (who, client_id) = self.admit_measured(request).await?;
        hold(self.core.throttle_ms(&who, &client_id, Usage::Request)).await;
        Ok(who)
    }

    /// The caller and client id of a request once the broker is ready, for the calls that measure their own
    /// quota use (Produce and Fetch count their bytes with the request).
    async fn admit_measured<T>(&self, request: &Request<T>) -> Result<(Principal, String), Status> {
        let who = caller(&self.core, request)?;
        await_ready(&self.core).await?;
        Ok((who, client_id(request)))
    }
}

/// The client id a request gives in its `rill-client-id` metadata; empty when it gives none.
fn client_id<T>(request: &Request<T>) -> String {
    let value = request.metadata().get(CLIENT_ID_METADATA).and_then(|v| v.to_str().ok());
    value.unwrap_or_default().to_string()
}

/// The metadata key that carries a gRPC request's client id (for client-id quotas).
pub const CLIENT_ID_METADATA: &str = "rill-client-id";

/// Holds an answer back for a quota.
pub(crate) async fn hold(throttle_ms: u64) {
    if throttle_ms > 0 {
        tokio::time::sleep(Duration::from_millis(throttle_ms)).await;
    }
}

type FetchStream = Pin<Box<dyn futures::Stream<Item = Result<FetchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Rill for RillService {
    async fn produce(&self, request: Request<ProduceRequest>) -> Result<Response<ProduceResponse>, Status> {
        let (who, client_id) = self.admit_measured(&request).await?;
        Ok(Response::new(produce::produce(&self.core, &who, &client_id, request.into_inner()).await))
    }

    async fn fetch(&self, request: Request<FetchRequest>) -> Result<Response<FetchResponse>, Status> {
        let (who, client_id) = self.admit_measured(&request).await?;
        Ok(Response::new(fetch::fetch(&self.core, &who, &client_id, request.into_inner()).await))
    }

    type FetchStreamStream = FetchStream;

    async fn fetch_stream(&self, request: Request<FetchRequest>) -> Result<Response<FetchStream>, Status> {
        let (who, client_id) = self.admit_measured(&request).await?;
        Ok(Response::new(fetch::fetch_stream(self.core.clone(), who, client_id, request.into_inner())))
    }

    async fn list_offsets(
        &self,
        request: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(fetch::list_offsets(&self.core, &who, request.into_inner())))
    }

    async fn metadata(&self, request: Request<MetadataRequest>) -> Result<Response<MetadataResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(admin::metadata(&self.core, &who, request.into_inner())))
    }

    async fn describe_topic(
        &self,
        request: Request<DescribeTopicRequest>,
    ) -> Result<Response<DescribeTopicResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(admin::describe_topic(&self.core, &who, request.into_inner()).await))
    }

    async fn create_topics(
        &self,
        request: Request<CreateTopicsRequest>,
    ) -> Result<Response<CreateTopicsResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(admin::create_topics(&self.core, &who, request.into_inner()).await))
    }

    async fn delete_topics(
        &self,
        request: Request<DeleteTopicsRequest>,
    ) -> Result<Response<DeleteTopicsResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(admin::delete_topics(&self.core, &who, request.into_inner()).await))
    }

    async fn describe_cluster(
        &self,
        request: Request<DescribeClusterRequest>,
    ) -> Result<Response<DescribeClusterResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(admin::describe_cluster(&self.core, &who)))
    }

    async fn drain_broker(
        &self,
        request: Request<DrainBrokerRequest>,
    ) -> Result<Response<DrainBrokerResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(admin::drain_broker(&self.core, &who, request.into_inner()).await))
    }

    async fn elect_leaders(
        &self,
        request: Request<ElectLeadersRequest>,
    ) -> Result<Response<ElectLeadersResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(admin::elect_leaders(&self.core, &who, request.into_inner()).await))
    }

    async fn alter_configs(
        &self,
        request: Request<AlterConfigsRequest>,
    ) -> Result<Response<AlterConfigsResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(admin::alter_configs(&self.core, &who, request.into_inner()).await))
    }

    async fn create_partitions(
        &self,
        request: Request<CreatePartitionsRequest>,
    ) -> Result<Response<CreatePartitionsResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(admin::create_partitions(&self.core, &who, request.into_inner()).await))
    }

    async fn broker_stats(
        &self,
        request: Request<BrokerStatsRequest>,
    ) -> Result<Response<BrokerStatsResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(admin::broker_stats(&self.core, &who)))
    }

    async fn init_producer_id(
        &self,
        request: Request<InitProducerIdRequest>,
    ) -> Result<Response<InitProducerIdResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(admin::init_producer_id(&self.core, &who, request.into_inner()).await))
    }
    async fn find_coordinator(
        &self,
        request: Request<FindCoordinatorRequest>,
    ) -> Result<Response<FindCoordinatorResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(group::find_coordinator(&self.core, &who, request.into_inner()).await))
    }

    async fn join_group(&self, request: Request<JoinGroupRequest>) -> Result<Response<JoinGroupResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(group::join_group(&self.core, &who, request.into_inner()).await))
    }

    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(group::heartbeat(&self.core, &who, request.into_inner()).await))
    }

    async fn leave_group(&self, request: Request<LeaveGroupRequest>) -> Result<Response<LeaveGroupResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(group::leave_group(&self.core, &who, request.into_inner()).await))
    }

    async fn commit_offsets(
        &self,
        request: Request<CommitOffsetsRequest>,
    ) -> Result<Response<CommitOffsetsResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(group::commit_offsets(&self.core, &who, request.into_inner()).await))
    }

    async fn fetch_offsets(
        &self,
        request: Request<FetchOffsetsRequest>,
    ) -> Result<Response<FetchOffsetsResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(group::fetch_offsets(&self.core, &who, request.into_inner()).await))
    }

    async fn list_groups(&self, request: Request<ListGroupsRequest>) -> Result<Response<ListGroupsResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(group::list_groups(&self.core, &who).await))
    }

    async fn describe_group(
        &self,
        request: Request<DescribeGroupRequest>,
    ) -> Result<Response<DescribeGroupResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(group::describe_group(&self.core, &who, request.into_inner()).await))
    }

    async fn reset_offsets(
        &self,
        request: Request<ResetOffsetsRequest>,
    ) -> Result<Response<ResetOffsetsResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(group::reset_offsets(&self.core, &who, request.into_inner()).await))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        await_ready(&self.core).await?;
        let peer = peer(&request);
        Ok(Response::new(security::authenticate(&self.core, &peer, request.into_inner())))
    }

    async fn upsert_user(&self, request: Request<UpsertUserRequest>) -> Result<Response<UpsertUserResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(security::upsert_user(&self.core, &who, request.into_inner()).await))
    }

    async fn delete_user(&self, request: Request<DeleteUserRequest>) -> Result<Response<DeleteUserResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(security::delete_user(&self.core, &who, request.into_inner()).await))
    }

    async fn list_users(&self, request: Request<ListUsersRequest>) -> Result<Response<ListUsersResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(security::list_users(&self.core, &who)))
    }

    async fn create_acls(&self, request: Request<CreateAclsRequest>) -> Result<Response<CreateAclsResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(security::create_acls(&self.core, &who, request.into_inner()).await))
    }

    async fn delete_acls(&self, request: Request<DeleteAclsRequest>) -> Result<Response<DeleteAclsResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(security::delete_acls(&self.core, &who, request.into_inner()).await))
    }

    async fn list_acls(&self, request: Request<ListAclsRequest>) -> Result<Response<ListAclsResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(security::list_acls(&self.core, &who, request.into_inner())))
    }

    async fn set_quotas(&self, request: Request<SetQuotasRequest>) -> Result<Response<SetQuotasResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(security::set_quotas(&self.core, &who, request.into_inner()).await))
    }

    async fn list_quotas(&self, request: Request<ListQuotasRequest>) -> Result<Response<ListQuotasResponse>, Status> {
        let who = self.admit(&request).await?;
        Ok(Response::new(security::list_quotas(&self.core, &who)))
    }
}
