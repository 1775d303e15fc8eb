//! The gRPC `Rill` service: decodes each request once, dispatches it to the controller or the partitions,
//! and answers application errors as typed codes inside the response.

mod admin;
mod controller;
mod errors;
mod fetch;
mod group;
mod produce;
mod replication;

pub use controller::ControllerService;
pub use replication::ReplicationService;

use std::pin::Pin;
use std::sync::Arc;

use rill_proto::v1::rill_server::Rill;
use rill_proto::v1::*;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::cluster_link::ClusterLink;
use crate::config::BrokerConfig;
use crate::group::GroupCoordinator;
use crate::manager::PartitionManager;
use crate::metadata::{Controller, MetadataState};

/// Everything a request handler needs, shared by every connection.
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
    /// Turns true once the broker is registered and has opened its partitions. The server runs before
    /// that (the controller quorum elects over it), so client requests wait for it.
    pub ready: watch::Receiver<bool>,
}

impl BrokerCore {
    /// Waits until the broker is ready for client requests.
    async fn await_ready(&self) -> Result<(), Status> {
        let mut ready = self.ready.clone();
        let wait = ready.wait_for(|r| *r);
        match tokio::time::timeout(std::time::Duration::from_millis(crate::limits::STARTUP_WAIT_MS), wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Status::unavailable("the broker is starting: it has not joined the cluster yet")),
        }
    }
}

#[derive(Clone)]
pub struct RillService {
    core: Arc<BrokerCore>,
}

impl RillService {
    pub fn new(core: Arc<BrokerCore>) -> Self {
        RillService { core }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

type FetchStream = Pin<Box<dyn futures::Stream<Item = Result<FetchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Rill for RillService {
    async fn produce(&self, request: Request<ProduceRequest>) -> Result<Response<ProduceResponse>, Status> {
        self.core.await_ready().await?;
        Ok(Response::new(produce::produce(&self.core, request.into_inner()).await))
    }

    async fn fetch(&self, request: Request<FetchRequest>) -> Result<Response<FetchResponse>, Status> {
        self.core.await_ready().await?;
        Ok(Response::new(fetch::fetch(&self.core, request.into_inner()).await))
    }

    type FetchStreamStream = FetchStream;

    async fn fetch_stream(&self, request: Request<FetchRequest>) -> Result<Response<FetchStream>, Status> {
        self.core.await_ready().await?;
        Ok(Response::new(fetch::fetch_stream(self.core.clone(), request.into_inner())))
    }

    async fn list_offsets(
        &self,
        request: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        self.core.await_ready().await?;
        Ok(Response::new(fetch::list_offsets(&self.core, request.into_inner())))
    }

    async fn metadata(&self, request: Request<MetadataRequest>) -> Result<Response<MetadataResponse>, Status> {
        self.core.await_ready().await?;
        Ok(Response::new(admin::metadata(&self.core, request.into_inner())))
    }

    async fn describe_topic(
        &self,
        request: Request<DescribeTopicRequest>,
    ) -> Result<Response<DescribeTopicResponse>, Status> {
        self.core.await_ready().await?;
        Ok(Response::new(admin::describe_topic(&self.core, request.into_inner()).await))
    }

    async fn create_topics(
        &self,
        request: Request<CreateTopicsRequest>,
    ) -> Result<Response<CreateTopicsResponse>, Status> {
        self.core.await_ready().await?;
        Ok(Response::new(admin::create_topics(&self.core, request.into_inner()).await))
    }

    async fn delete_topics(
        &self,
        request: Request<DeleteTopicsRequest>,
    ) -> Result<Response<DeleteTopicsResponse>, Status> {
        self.core.await_ready().await?;
        Ok(Response::new(admin::delete_topics(&self.core, request.into_inner()).await))
    }

    async fn describe_cluster(
        &self,
        _request: Request<DescribeClusterRequest>,
    ) -> Result<Response<DescribeClusterResponse>, Status> {
        self.core.await_ready().await?;
        Ok(Response::new(admin::describe_cluster(&self.core)))
    }

    async fn init_producer_id(
        &self,
        request: Request<InitProducerIdRequest>,
    ) -> Result<Response<InitProducerIdResponse>, Status> {
        self.core.await_ready().await?;
        Ok(Response::new(admin::init_producer_id(&self.core, request.into_inner()).await))
    }
    async fn find_coordinator(
        &self,
        request: Request<FindCoordinatorRequest>,
    ) -> Result<Response<FindCoordinatorResponse>, Status> {
        self.core.await_ready().await?;
        Ok(Response::new(group::find_coordinator(&self.core, request.into_inner()).await))
    }

    async fn join_group(&self, request: Request<JoinGroupRequest>) -> Result<Response<JoinGroupResponse>, Status> {
        self.core.await_ready().await?;
        Ok(Response::new(group::join_group(&self.core, request.into_inner()).await))
    }

    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        self.core.await_ready().await?;
        Ok(Response::new(group::heartbeat(&self.core, request.into_inner()).await))
    }

    async fn leave_group(&self, request: Request<LeaveGroupRequest>) -> Result<Response<LeaveGroupResponse>, Status> {
        self.core.await_ready().await?;
        Ok(Response::new(group::leave_group(&self.core, request.into_inner()).await))
    }

    async fn commit_offsets(
        &self,
        request: Request<CommitOffsetsRequest>,
    ) -> Result<Response<CommitOffsetsResponse>, Status> {
        self.core.await_ready().await?;
        Ok(Response::new(group::commit_offsets(&self.core, request.into_inner()).await))
    }

    async fn fetch_offsets(
        &self,
        request: Request<FetchOffsetsRequest>,
    ) -> Result<Response<FetchOffsetsResponse>, Status> {
        self.core.await_ready().await?;
        Ok(Response::new(group::fetch_offsets(&self.core, request.into_inner()).await))
    }

    async fn list_groups(&self, _request: Request<ListGroupsRequest>) -> Result<Response<ListGroupsResponse>, Status> {
        self.core.await_ready().await?;
        Ok(Response::new(group::list_groups(&self.core).await))
    }

    async fn describe_group(
        &self,
        request: Request<DescribeGroupRequest>,
    ) -> Result<Response<DescribeGroupResponse>, Status> {
        self.core.await_ready().await?;
        Ok(Response::new(group::describe_group(&self.core, request.into_inner()).await))
    }

    async fn reset_offsets(
        &self,
        request: Request<ResetOffsetsRequest>,
    ) -> Result<Response<ResetOffsetsResponse>, Status> {
        self.core.await_ready().await?;
        Ok(Response::new(group::reset_offsets(&self.core, request.into_inner()).await))
    }
}
