//! FindCoordinator for consumer groups (key type 0), one key (v0-v3) or a batch (v4+): the Kafka endpoint of
//! the leader of the group's `__consumer_offsets` partition, from `BrokerCore::find_coordinator`.
//! Transaction coordinators (key type 1) do not exist yet.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, RequestHeader, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use super::super::errors;
use super::common::{self, str_bytes};
use crate::requests::{BrokerCore, Error, ErrorKind};
use crate::security::Principal;

const KEY_TYPE_GROUP: i8 = 0;
/// The first version that batches keys (KIP-699).
const BATCHED_VERSION: i16 = 4;

/// The coordinator of one key, as the batched form's entry.
async fn coordinator(core: &BrokerCore, who: &Principal, key: StrBytes, key_type: i8) -> Coordinator {
    let entry = Coordinator::default().with_key(key.clone()).with_node_id(BrokerId(-1)).with_port(-1);
    if key_type != KEY_TYPE_GROUP {
        return entry
            .with_error_code(ResponseError::CoordinatorNotAvailable.code())
            .with_error_message(Some(str_bytes("transaction coordinators are not supported yet")));
    }
    let found = core.find_coordinator(who, key.as_str()).await.and_then(|c| {
        common::kafka_endpoint(&c.broker).map(|endpoint| (c.broker.broker_id, endpoint)).ok_or_else(|| {
            let why = format!("broker {}, the coordinator, has no Kafka listener", c.broker.broker_id);
            Error::new(ErrorKind::CoordinatorNotAvailable, why)
        })
    });
    match found {
        Ok((id, (host, port))) => entry.with_node_id(BrokerId(id as i32)).with_host(str_bytes(host)).with_port(port),
        Err(e) => entry.with_error_code(errors::code(e.kind)).with_error_message(Some(str_bytes(e.message))),
    }
}

pub async fn handle_find_coordinator(
    core: &Arc<BrokerCore>,
    who: &Principal,
    header: &RequestHeader,
    request: FindCoordinatorRequest,
) -> ResponseKind {
    if header.request_api_version >= BATCHED_VERSION {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in request.coordinator_keys {
            coordinators.push(coordinator(core, who, key, request.key_type).await);
        }
        return ResponseKind::FindCoordinator(FindCoordinatorResponse::default().with_coordinators(coordinators));
    }
    let c = coordinator(core, who, request.key, request.key_type).await;
    ResponseKind::FindCoordinator(
        FindCoordinatorResponse::default()
            .with_error_code(c.error_code)
            .with_error_message(c.error_message)
            .with_node_id(c.node_id)
            .with_host(c.host)
            .with_port(c.port),
    )
}
