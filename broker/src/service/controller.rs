//! The internal `Controller` service: brokers register, heartbeat and change ISRs here, and other voters
//! forward topic changes here. Only the active controller answers; the others reply `NOT_CONTROLLER`.

use std::sync::Arc;

use rill_proto::v1::controller_server::Controller as ControllerRpc;
use rill_proto::v1::{
    AlterPartitionErrorCode, AlterPartitionRequest, AlterPartitionResponse, BrokerHeartbeatRequest,
    BrokerHeartbeatResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    InitProducerIdRequest, InitProducerIdResponse, RegisterBrokerRequest, RegisterBrokerResponse,
};
use tonic::{Request, Response, Status};

use super::errors::from_controller;
use super::{BrokerCore, admin, now_ms};
use crate::replication::AlterPartitionError;

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
        let response = match self.core.controller.register_broker(r.broker_id, &r.address, now_ms()).await {
            Ok(broker_epoch) => RegisterBrokerResponse { error: None, broker_epoch },
            Err(e) => RegisterBrokerResponse { error: from_controller(&e), broker_epoch: 0 },
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
            Err(e) => BrokerHeartbeatResponse { error: from_controller(&e), ..Default::default() },
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
        Ok(Response::new(admin::create_topics_here(&self.core, request.into_inner()).await))
    }

    async fn delete_topics(
        &self,
        request: Request<DeleteTopicsRequest>,
    ) -> Result<Response<DeleteTopicsResponse>, Status> {
        Ok(Response::new(admin::delete_topics_here(&self.core, request.into_inner()).await))
    }

    async fn init_producer_id(
        &self,
        request: Request<InitProducerIdRequest>,
    ) -> Result<Response<InitProducerIdResponse>, Status> {
        Ok(Response::new(admin::init_producer_id_here(&self.core, request.into_inner()).await))
    }
}
