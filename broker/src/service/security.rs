//! The gRPC side of logins, users, ACLs and quotas: translation between the proto messages and the request core's
//! `requests/auth.rs` and `requests/security.rs`.

use rill_proto::scram::Mechanism;
use rill_proto::v1 as proto;
use rill_proto::v1::*;

use super::errors;
use crate::requests::{BrokerCore, Error, ErrorKind, PeerIdentity, Principal};
use crate::security::quota::{QuotaEntity, QuotaValues};
use crate::security::{AclBinding, AclFilter};

pub fn authenticate(core: &BrokerCore, peer: &PeerIdentity, request: AuthenticateRequest) -> AuthenticateResponse {
    let refused = |e: Error| AuthenticateResponse { error: Some(errors::to_proto(&e)), ..Default::default() };
    if request.exchange_id.is_empty() {
        return match core.login_begin(&request.mechanism, &request.message, peer) {
            Ok((exchange_id, message)) => AuthenticateResponse { exchange_id, message, ..Default::default() },
            Err(e) => refused(e),
        };
    }
    match core.login_complete(&request.exchange_id, &request.message, peer) {
        Ok((session_token, principal, message)) => AuthenticateResponse {
            error: None,
            exchange_id: request.exchange_id,
            message,
            session_token,
            principal: principal.to_string(),
        },
        Err(e) => refused(e),
    }
}

fn mechanism(name: &str) -> Result<Mechanism, Error> {
    let name = if name.is_empty() { "SCRAM-SHA-256" } else { name };
    Mechanism::parse(name).ok_or_else(|| {
        Error::new(ErrorKind::InvalidRequest, format!("unknown mechanism '{name}': SCRAM-SHA-256 or SCRAM-SHA-512"))
    })
}

pub async fn upsert_user(core: &BrokerCore, who: &Principal, request: UpsertUserRequest) -> UpsertUserResponse {
    let iterations = (request.iterations != 0).then_some(request.iterations);
    let outcome = match mechanism(&request.mechanism) {
        Ok(m) => core.upsert_user(who, &request.user, m, &request.password, iterations).await,
        Err(e) => Err(e),
    };
    UpsertUserResponse { error: errors::field(&outcome) }
}

pub async fn delete_user(core: &BrokerCore, who: &Principal, request: DeleteUserRequest) -> DeleteUserResponse {
    DeleteUserResponse { error: errors::field(&core.delete_user(who, &request.user).await) }
}

pub fn list_users(core: &BrokerCore, who: &Principal) -> ListUsersResponse {
    match core.list_users(who) {
        Ok(users) => ListUsersResponse {
            error: None,
            users: users
                .into_iter()
                .map(|u| UserInfo {
                    user: u.user,
                    credentials: u
                        .credentials
                        .into_iter()
                        .map(|(m, iterations)| UserCredentialInfo { mechanism: m.name().to_string(), iterations })
                        .collect(),
                })
                .collect(),
        },
        Err(e) => ListUsersResponse { error: Some(errors::to_proto(&e)), users: Vec::new() },
    }
}

/// An ACL from its proto form; every field must be given and valid.
fn acl_from_proto(acl: &proto::Acl) -> Result<AclBinding, Error> {
    let field = |name: &str, value: &str| {
        if value.is_empty() { Err(Error::invalid(format!("an ACL needs a {name}"))) } else { Ok(value.to_string()) }
    };
    Ok(AclBinding {
        resource_type: field("resource type", &acl.resource_type)?.parse().map_err(Error::invalid)?,
        pattern_type: field("pattern type", &acl.pattern_type)?.parse().map_err(Error::invalid)?,
        resource_name: field("resource name", &acl.resource_name)?,
        principal: field("principal", &acl.principal)?,
        operation: field("operation", &acl.operation)?.parse().map_err(Error::invalid)?,
        permission: field("permission", &acl.permission)?.parse().map_err(Error::invalid)?,
    })
}

fn filter_from_proto(filter: Option<proto::AclFilter>) -> Result<AclFilter, Error> {
    let filter = filter.unwrap_or_default();
    let some = |value: &str| (!value.is_empty()).then(|| value.to_string());
    Ok(AclFilter {
        resource_type: some(&filter.resource_type).map(|t| t.parse().map_err(Error::invalid)).transpose()?,
        pattern_type: some(&filter.pattern_type).map(|t| t.parse().map_err(Error::invalid)).transpose()?,
        resource_name: some(&filter.resource_name),
        principal: some(&filter.principal),
        operation: some(&filter.operation).map(|o| o.parse().map_err(Error::invalid)).transpose()?,
        permission: some(&filter.permission).map(|p| p.parse().map_err(Error::invalid)).transpose()?,
    })
}

fn acl_to_proto(acl: AclBinding) -> proto::Acl {
    proto::Acl {
        resource_type: acl.resource_type.to_string(),
        pattern_type: acl.pattern_type.as_str().to_string(),
        resource_name: acl.resource_name,
        principal: acl.principal,
        operation: acl.operation.to_string(),
        permission: acl.permission.as_str().to_string(),
    }
}

pub async fn create_acls(core: &BrokerCore, who: &Principal, request: CreateAclsRequest) -> CreateAclsResponse {
    let outcome = match request.acls.iter().map(acl_from_proto).collect::<Result<Vec<_>, _>>() {
        Ok(acls) => core.create_acls(who, acls).await,
        Err(e) => Err(e),
    };
    CreateAclsResponse { error: errors::field(&outcome) }
}

pub async fn delete_acls(core: &BrokerCore, who: &Principal, request: DeleteAclsRequest) -> DeleteAclsResponse {
    let outcome = match filter_from_proto(request.filter) {
        Ok(filter) => core.delete_acls(who, filter).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(deleted) => DeleteAclsResponse { error: None, deleted: deleted.into_iter().map(acl_to_proto).collect() },
        Err(e) => DeleteAclsResponse { error: Some(errors::to_proto(&e)), deleted: Vec::new() },
    }
}

pub fn list_acls(core: &BrokerCore, who: &Principal, request: ListAclsRequest) -> ListAclsResponse {
    match filter_from_proto(request.filter).and_then(|filter| core.list_acls(who, &filter)) {
        Ok(acls) => ListAclsResponse { error: None, acls: acls.into_iter().map(acl_to_proto).collect() },
        Err(e) => ListAclsResponse { error: Some(errors::to_proto(&e)), acls: Vec::new() },
    }
}

pub async fn set_quotas(core: &BrokerCore, who: &Principal, request: SetQuotasRequest) -> SetQuotasResponse {
    let parsed = || -> Result<(QuotaEntity, QuotaValues), Error> {
        let entity = request.entity.parse().map_err(Error::invalid)?;
        let values = request.values.iter().map(|v| Ok((v.key.parse().map_err(Error::invalid)?, v.value)));
        Ok((entity, values.collect::<Result<_, Error>>()?))
    };
    let outcome = match parsed() {
        Ok((entity, values)) => core.set_quotas(who, entity, values).await,
        Err(e) => Err(e),
    };
    SetQuotasResponse { error: errors::field(&outcome) }
}

pub fn list_quotas(core: &BrokerCore, who: &Principal) -> ListQuotasResponse {
    match core.list_quotas(who) {
        Ok(table) => ListQuotasResponse {
            error: None,
            quotas: table
                .into_iter()
                .map(|(entity, rates)| EntityQuotas {
                    entity: entity.to_string(),
                    values: rates
                        .into_iter()
                        .map(|(key, rate)| QuotaValue { key: key.to_string(), value: Some(rate) })
                        .collect(),
                })
                .collect(),
        },
        Err(e) => ListQuotasResponse { error: Some(errors::to_proto(&e)), quotas: Vec::new() },
    }
}
