//! InitProducerId for idempotent producers (no transactional id): a new producer id, or (KIP-360) the next
//! epoch of the producer's own id, from `BrokerCore::init_producer_id`.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, RequestHeader, ResponseKind,
};

use super::super::errors;
use crate::requests::BrokerCore;
use crate::security::Principal;

pub async fn handle_init_producer_id(
    core: &Arc<BrokerCore>,
    who: &Principal,
    _header: &RequestHeader,
    request: InitProducerIdRequest,
) -> ResponseKind {
    let response = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    if request.transactional_id.is_some() {
        tracing::info!("refused InitProducerId with a transactional id: transactions are not supported yet");
        let refused = response.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
        return ResponseKind::InitProducerId(refused);
    }
    let answer = match core.init_producer_id(who, request.producer_id.0, request.producer_epoch).await {
        Ok((producer_id, producer_epoch)) => {
            response.with_producer_id(ProducerId(producer_id)).with_producer_epoch(producer_epoch)
        }
        Err(e) => response.with_error_code(errors::code(e.kind)),
    };
    ResponseKind::InitProducerId(answer)
}
