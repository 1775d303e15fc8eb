//! The gRPC `Rill` service: decodes each request once, dispatches it to the controller or the partitions,
//! and answers application errors as typed codes inside the response.

mod admin;
mod errors;
mod fetch;
mod produce;
mod replication;

pub use replication::ReplicationService;

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use rill_proto::v1::rill_server::Rill;
use rill_proto::v1::*;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::config::BrokerConfig;
use crate::manager::PartitionManager;
use crate::metadata::{Controller, MetadataState};

/// Everything a request handler needs, shared by every connection.
pub struct BrokerCore {
    pub config: BrokerConfig,
    pub controller: Arc<Mutex<Controller>>,
    pub metadata: watch::Receiver<Arc<MetadataState>>,
    pub partitions: Arc<PartitionManager>,
    /// Turns true when the broker starts shutting down; long polls and fetch streams end on it.
    pub shutdown: watch::Receiver<bool>,
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
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

type FetchStream = Pin<Box<dyn futures::Stream<Item = Result<FetchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Rill for RillService {
    async fn produce(&self, request: Request<ProduceRequest>) -> Result<Response<ProduceResponse>, Status> {
        Ok(Response::new(produce::produce(&self.core, request.into_inner()).await))
    }

    async fn fetch(&self, request: Request<FetchRequest>) -> Result<Response<FetchResponse>, Status> {
        Ok(Response::new(fetch::fetch(&self.core, request.into_inner()).await))
    }

    type FetchStreamStream = FetchStream;

    async fn fetch_stream(&self, request: Request<FetchRequest>) -> Result<Response<FetchStream>, Status> {
        Ok(Response::new(fetch::fetch_stream(self.core.clone(), request.into_inner())))
    }

    async fn list_offsets(
        &self,
        request: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        Ok(Response::new(fetch::list_offsets(&self.core, request.into_inner())))
    }

    async fn metadata(&self, request: Request<MetadataRequest>) -> Result<Response<MetadataResponse>, Status> {
        Ok(Response::new(admin::metadata(&self.core, request.into_inner())))
    }

    async fn describe_topic(
        &self,
        request: Request<DescribeTopicRequest>,
    ) -> Result<Response<DescribeTopicResponse>, Status> {
        Ok(Response::new(admin::describe_topic(&self.core, request.into_inner())))
    }

    async fn create_topics(
        &self,
        request: Request<CreateTopicsRequest>,
    ) -> Result<Response<CreateTopicsResponse>, Status> {
        Ok(Response::new(admin::create_topics(&self.core, request.into_inner()).await))
    }

    async fn delete_topics(
        &self,
        request: Request<DeleteTopicsRequest>,
    ) -> Result<Response<DeleteTopicsResponse>, Status> {
        Ok(Response::new(admin::delete_topics(&self.core, request.into_inner()).await))
    }

    async fn describe_cluster(
        &self,
        _request: Request<DescribeClusterRequest>,
    ) -> Result<Response<DescribeClusterResponse>, Status> {
        Ok(Response::new(admin::describe_cluster(&self.core)))
    }
}
