//! IncrementalAlterConfigs and the older AlterConfigs, through `BrokerCore::alter_topic_config` and
//! `alter_broker_config` (served by the active controller wherever it runs). A topic resource edits the
//! topic's overrides; a broker resource (named by its id) edits that broker's dynamic topic defaults, with
//! topic keys as `rill broker alter-config` takes them. AlterConfigs replaces a resource's settings whole,
//! as Kafka's does: keys it does not name go back to their defaults.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    RequestHeader, ResponseKind, alter_configs_response, incremental_alter_configs_response,
};

use super::super::errors;
use super::common::str_bytes;
use crate::requests::{BrokerCore, Error, ErrorKind};
use crate::security::Principal;

/// Config resource types (Kafka's `ConfigResource.Type`).
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// IncrementalAlterConfigs operations (Kafka's `AlterConfigOp.OpType`).
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// The resource a request names, once checked.
enum Target {
    Topic(String),
    Broker(u32),
}

fn target(resource_type: i8, name: &str) -> Result<Target, Error> {
    match resource_type {
        RESOURCE_TOPIC => Ok(Target::Topic(name.to_owned())),
        RESOURCE_BROKER => name.parse().map(Target::Broker).map_err(|_| {
            let why = if name.is_empty() {
                "cluster-wide broker defaults are not supported; name a broker id".to_owned()
            } else {
                format!("broker resource '{name}' is not a broker id")
            };
            Error::new(ErrorKind::InvalidRequest, why)
        }),
        other => Err(Error::new(ErrorKind::InvalidRequest, format!("config resource type {other} is not served"))),
    }
}

/// Applies `set` and `delete` to the resource; `Ok` once committed (or, validating, once accepted).
async fn alter(
    core: &BrokerCore,
    who: &Principal,
    target: Target,
    set: BTreeMap<String, String>,
    delete: Vec<String>,
    validate_only: bool,
) -> Result<(), Error> {
    match target {
        Target::Topic(topic) => core.alter_topic_config(who, &topic, set, delete, validate_only).await.map(drop),
        Target::Broker(id) => core.alter_broker_config(who, id, set, delete, validate_only).await.map(drop),
    }
}

/// The settings `target` has now (a topic's overrides, a broker's dynamic defaults).
fn current(core: &BrokerCore, target: &Target) -> Result<BTreeMap<String, String>, Error> {
    let state = core.metadata.borrow().clone();
    match target {
        Target::Topic(topic) => state
            .topic(topic)
            .map(|t| t.config.clone())
            .ok_or_else(|| Error::new(ErrorKind::UnknownTopicOrPartition, format!("unknown topic '{topic}'"))),
        Target::Broker(id) => Ok(state.broker_configs.get(id).cloned().unwrap_or_default()),
    }
}

fn outcome_code(outcome: &Result<(), Error>) -> (i16, Option<String>) {
    match outcome {
        Ok(()) => (0, None),
        Err(e) => (errors::code(e.kind), Some(e.message.clone())),
    }
}

pub async fn handle_incremental_alter_configs(
    core: &Arc<BrokerCore>,
    who: &Principal,
    _header: &RequestHeader,
    request: IncrementalAlterConfigsRequest,
) -> ResponseKind {
    let mut responses = Vec::new();
    for resource in &request.resources {
        let outcome = async {
            let target = target(resource.resource_type, &resource.resource_name)?;
            let mut set = BTreeMap::new();
            let mut delete = Vec::new();
            for config in &resource.configs {
                let name = config.name.to_string();
                match (config.config_operation, &config.value) {
                    (OP_SET, Some(value)) => {
                        set.insert(name, value.to_string());
                    }
                    (OP_SET, None) => {
                        return Err(Error::new(ErrorKind::InvalidConfig, format!("SET of '{name}' without a value")));
                    }
                    (OP_DELETE, _) => delete.push(name),
                    (op, _) => {
                        return Err(Error::new(
                            ErrorKind::InvalidConfig,
                            format!("operation {op} on '{name}': only SET and DELETE apply (no list-valued keys)"),
                        ));
                    }
                }
            }
            alter(core, who, target, set, delete, request.validate_only).await
        }
        .await;
        let (code, message) = outcome_code(&outcome);
        responses.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message.map(str_bytes)),
        );
    }
    ResponseKind::IncrementalAlterConfigs(IncrementalAlterConfigsResponse::default().with_responses(responses))
}

pub async fn handle_alter_configs(
    core: &Arc<BrokerCore>,
    who: &Principal,
    _header: &RequestHeader,
    request: AlterConfigsRequest,
) -> ResponseKind {
    let mut responses = Vec::new();
    for resource in &request.resources {
        let outcome = async {
            let target = target(resource.resource_type, &resource.resource_name)?;
            let set: BTreeMap<String, String> = resource
                .configs
                .iter()
                .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                .collect();
            // The whole set is replaced: what is set now and not named goes back to its default.
            let delete = current(core, &target)?.into_keys().filter(|k| !set.contains_key(k)).collect();
            alter(core, who, target, set, delete, request.validate_only).await
        }
        .await;
        let (code, message) = outcome_code(&outcome);
        responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message.map(str_bytes)),
        );
    }
    ResponseKind::AlterConfigs(AlterConfigsResponse::default().with_responses(responses))
}
