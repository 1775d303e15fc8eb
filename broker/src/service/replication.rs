//! The internal `Replication` service: a leader answers its followers' fetches.

use std::sync::Arc;

use rill_proto::v1::replication_server::Replication;
use rill_proto::v1::{ReplicaFetchError, ReplicaFetchRequest, ReplicaFetchResponse};
use tonic::{Request, Response, Status};

use crate::requests::BrokerCore;

#[derive(Clone)]
pub struct ReplicationService {
    core: Arc<BrokerCore>,
}

impl ReplicationService {
    pub fn new(core: Arc<BrokerCore>) -> Self {
        ReplicationService { core }
    }
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    async fn replica_fetch(
        &self,
        request: Request<ReplicaFetchRequest>,
    ) -> Result<Response<ReplicaFetchResponse>, Status> {
        let request = request.into_inner();
        let Some(partition) = self.core.partitions.get(&request.topic, request.partition) else {
            let error = ReplicaFetchError::ReplicaFetchUnknownPartition as i32;
            return Ok(Response::new(ReplicaFetchResponse { error, ..Default::default() }));
        };
        Ok(Response::new(partition.answer_replica_fetch(request).await))
    }
}
