//! The internal `Controller` service: brokers register, heartbeat and change ISRs here, and other voters
//! forward topic changes here. Only the active controller answers; the others reply `NOT_CONTROLLER`.

use std::sync::Arc;

use rill_proto::v1::controller_server::Controller as ControllerRpc;
use rill_proto::v1::{
    AlterClusterRequest, AlterClusterResponse, AlterPartitionErrorCode, AlterPartitionRequest, AlterPartitionResponse,
    AlterSecurityRequest, AlterSecurityResponse, BrokerHeartbeatRequest, BrokerHeartbeatResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, InitProducerIdRequest, InitProducerIdResponse,
    RegisterBrokerRequest, RegisterBrokerResponse,
};
use tonic::{Request, Response, Status};

use super::admin;
use super::errors::to_proto;
use crate::clock::now_ms;
use crate::metadata::{ClusterChange, SecurityChange};
use crate::replication::AlterPartitionError;
use crate::requests::{BrokerCore, Error};

#[derive(Clone)]
pub struct ControllerService {
    core: Arc<BrokerCore>,
}

impl ControllerService {
    pub fn new(core: Arc<BrokerCore>) -> Self {
        ControllerService { core }
    }
}

#[tonic::async_trait]
impl ControllerRpc for ControllerService {
    async fn register_broker(
        &self,
        request: Request<RegisterBrokerRequest>,
    ) -> Result<Response<RegisterBrokerResponse>, Status> {
        let r = request.into_inner();
        let kafka_address = Some(r.kafka_address.as_str()).filter(|a| !a.is_empty());
        let registered = self.core.controller.register_broker(r.broker_id, &r.address, kafka_address, now_ms());
        let response = match registered.await {
            Ok(broker_epoch) => RegisterBrokerResponse { error: None, broker_epoch },
            Err(e) => RegisterBrokerResponse { error: Some(to_proto(&Error::from_controller(&e))), broker_epoch: 0 },
        };
        Ok(Response::new(response))
    }

    async fn broker_heartbeat(
        &self,
        request: Request<BrokerHeartbeatRequest>,
    ) -> Result<Response<BrokerHeartbeatResponse>, Status> {
        let r = request.into_inner();
        let response = match self.core.controller.heartbeat(r.broker_id, r.broker_epoch, now_ms()).await {
            Ok(reply) => {
                BrokerHeartbeatResponse { error: None, fenced: reply.fenced, metadata_offset: reply.metadata_offset }
            }
            Err(e) => {
                BrokerHeartbeatResponse { error: Some(to_proto(&Error::from_controller(&e))), ..Default::default() }
            }
        };
        Ok(Response::new(response))
    }

    async fn alter_partition(
        &self,
        request: Request<AlterPartitionRequest>,
    ) -> Result<Response<AlterPartitionResponse>, Status> {
        let r = request.into_inner();
        let outcome = self
            .core
            .controller
            .alter_partition(
                &r.topic,
                r.partition,
                r.leader_id,
                r.broker_epoch,
                r.leader_epoch,
                r.partition_epoch,
                r.isr,
            )
            .await;
        let response = match outcome {
            Ok(accepted) => AlterPartitionResponse {
                error: AlterPartitionErrorCode::AlterPartitionOk as i32,
                isr: accepted.isr,
                partition_epoch: accepted.partition_epoch,
            },
            Err(e) => {
                let code = match e {
                    AlterPartitionError::StalePartitionEpoch => {
                        AlterPartitionErrorCode::AlterPartitionStalePartitionEpoch
                    }
                    AlterPartitionError::FencedLeaderEpoch => AlterPartitionErrorCode::AlterPartitionFencedLeaderEpoch,
                    AlterPartitionError::IneligibleReplica => AlterPartitionErrorCode::AlterPartitionIneligibleReplica,
                    AlterPartitionError::Unavailable => AlterPartitionErrorCode::AlterPartitionUnavailable,
                };
                AlterPartitionResponse { error: code as i32, ..Default::default() }
            }
        };
        Ok(Response::new(response))
    }

    async fn create_topics(
        &self,
        request: Request<CreateTopicsRequest>,
    ) -> Result<Response<CreateTopicsResponse>, Status> {
        let request = request.into_inner();
        let outcomes = self.core.create_topics_here(&admin::new_topics(&request), request.validate_only).await;
        Ok(Response::new(CreateTopicsResponse { results: admin::topic_results(outcomes) }))
    }

    async fn delete_topics(
        &self,
        request: Request<DeleteTopicsRequest>,
    ) -> Result<Response<DeleteTopicsResponse>, Status> {
        let outcomes = self.core.delete_topics_here(&request.into_inner().names).await;
        Ok(Response::new(DeleteTopicsResponse { results: admin::topic_results(outcomes) }))
    }

    async fn init_producer_id(
        &self,
        request: Request<InitProducerIdRequest>,
    ) -> Result<Response<InitProducerIdResponse>, Status> {
        let request = request.into_inner();
        let response = match admin::producer_epoch(&request) {
            Ok(epoch) => {
                admin::init_producer_id_response(self.core.init_producer_id_here(request.producer_id, epoch).await)
            }
            Err(refused) => refused,
        };
        Ok(Response::new(response))
    }

    async fn alter_security(
        &self,
        request: Request<AlterSecurityRequest>,
    ) -> Result<Response<AlterSecurityResponse>, Status> {
        let change: SecurityChange = serde_json::from_slice(&request.into_inner().change_json)
            .map_err(|e| Status::invalid_argument(format!("the security change does not decode: {e}")))?;
        let response = match self.core.alter_security_here(&change).await {
            Ok(removed) => AlterSecurityResponse {
                error: None,
                removed_acls_json: serde_json::to_vec(&removed).expect("ACLs always serialise").into(),
            },
            Err(e) => AlterSecurityResponse { error: Some(to_proto(&e)), ..Default::default() },
        };
        Ok(Response::new(response))
    }

    async fn alter_cluster(
        &self,
        request: Request<AlterClusterRequest>,
    ) -> Result<Response<AlterClusterResponse>, Status> {
        let change: ClusterChange = serde_json::from_slice(&request.into_inner().change_json)
            .map_err(|e| Status::invalid_argument(format!("the cluster change does not decode: {e}")))?;
        let response = match self.core.alter_cluster_here(&change).await {
            Ok(outcome) => AlterClusterResponse {
                error: None,
                outcome_json: serde_json::to_vec(&outcome).expect("outcomes always serialise").into(),
            },
            Err(e) => AlterClusterResponse { error: Some(to_proto(&e)), ..Default::default() },
        };
        Ok(Response::new(response))
    }
}
