//! Users, ACLs and client quotas through [`Admin`]: SCRAM users (created with a password the broker salts and hashes) and
//! the ACLs the brokers check every request against when started with `--authorizer on`.

use std::time::Duration;

use rill_proto::v1;

use crate::Admin;
use crate::error::{BrokerError, Error, Result};

/// A SCRAM user as listed: its mechanisms and their iteration counts, never a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub user: String,
    /// `(mechanism, iterations)` pairs, e.g. `("SCRAM-SHA-256", 4096)`.
    pub credentials: Vec<(String, u32)>,
}

/// One ACL. Fields are spelled as `rill acl` takes them: `resource_type` topic|group|cluster,
/// `pattern_type` literal|prefixed, `principal` `User:NAME` or `*`, `operation`
/// read|write|create|delete|alter|describe|cluster_action|all, `permission` allow|deny.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acl {
    pub resource_type: String,
    pub pattern_type: String,
    pub resource_name: String,
    pub principal: String,
    pub operation: String,
    pub permission: String,
}

/// Selects ACLs to list or delete: empty fields match anything.
pub type AclFilter = Acl;

impl From<v1::Acl> for Acl {
    fn from(a: v1::Acl) -> Acl {
        Acl {
            resource_type: a.resource_type,
            pattern_type: a.pattern_type,
            resource_name: a.resource_name,
            principal: a.principal,
            operation: a.operation,
            permission: a.permission,
        }
    }
}

fn to_proto(a: &Acl) -> v1::Acl {
    v1::Acl {
        resource_type: a.resource_type.clone(),
        pattern_type: a.pattern_type.clone(),
        resource_name: a.resource_name.clone(),
        principal: a.principal.clone(),
        operation: a.operation.clone(),
        permission: a.permission.clone(),
    }
}

fn filter_to_proto(a: &AclFilter) -> v1::AclFilter {
    let acl = to_proto(a);
    v1::AclFilter {
        resource_type: acl.resource_type,
        pattern_type: acl.pattern_type,
        resource_name: acl.resource_name,
        principal: acl.principal,
        operation: acl.operation,
        permission: acl.permission,
    }
}

fn check(error: Option<&v1::Error>) -> Result<()> {
    BrokerError::from_proto(error).map_or(Ok(()), |e| Err(Error::Broker(e)))
}

impl Admin {
    /// Creates a SCRAM user, or sets a new password for one (for `mechanism`, `SCRAM-SHA-256` or
    /// `SCRAM-SHA-512`). Needs `alter` on the cluster.
    ///
    /// # Errors
    ///
    /// [`Error::Broker`] with `CLUSTER_AUTHORIZATION_FAILED` or `INVALID_REQUEST` (bad name, empty password).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the user may or may not have been created when the future is dropped.
    pub async fn upsert_user(&self, user: &str, password: &str, mechanism: &str, iterations: u32) -> Result<()> {
        let request = v1::UpsertUserRequest {
            user: user.to_owned(),
            mechanism: mechanism.to_owned(),
            password: password.to_owned(),
            iterations,
        };
        let response = self
            .retrying(|| {
                self.cluster.call_any(|mut client| {
                    let request = self.cluster.request(request.clone(), Duration::ZERO);
                    async move { client.upsert_user(request).await.map(tonic::Response::into_inner) }
                })
            })
            .await?;
        check(response.error.as_ref())
    }

    /// Deletes a user and its credentials; its sessions end.
    ///
    /// # Errors
    ///
    /// [`Error::Broker`] with `RESOURCE_NOT_FOUND` for an unknown user, or an authorization error.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe.
    pub async fn delete_user(&self, user: &str) -> Result<()> {
        let request = v1::DeleteUserRequest { user: user.to_owned() };
        let response = self
            .retrying(|| {
                self.cluster.call_any(|mut client| {
                    let request = self.cluster.request(request.clone(), Duration::ZERO);
                    async move { client.delete_user(request).await.map(tonic::Response::into_inner) }
                })
            })
            .await?;
        check(response.error.as_ref())
    }

    /// Every SCRAM user, sorted by name. Needs `describe` on the cluster.
    ///
    /// # Errors
    ///
    /// [`Error::Broker`] with `CLUSTER_AUTHORIZATION_FAILED`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn list_users(&self) -> Result<Vec<UserInfo>> {
        let response = self
            .retrying(|| {
                self.cluster.call_any(|mut client| {
                    let request = self.cluster.request(v1::ListUsersRequest {}, Duration::ZERO);
                    async move { client.list_users(request).await.map(tonic::Response::into_inner) }
                })
            })
            .await?;
        check(response.error.as_ref())?;
        let users = response.users.into_iter().map(|u| UserInfo {
            user: u.user,
            credentials: u.credentials.into_iter().map(|c| (c.mechanism, c.iterations)).collect(),
        });
        Ok(users.collect())
    }

    /// Adds ACLs (those that exist already are left as they are). Needs `alter` on the cluster.
    ///
    /// # Errors
    ///
    /// [`Error::Broker`] with `INVALID_REQUEST` naming a malformed field, or an authorization error.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe.
    pub async fn create_acls(&self, acls: &[Acl]) -> Result<()> {
        let request = v1::CreateAclsRequest { acls: acls.iter().map(to_proto).collect() };
        let response = self
            .retrying(|| {
                self.cluster.call_any(|mut client| {
                    let request = self.cluster.request(request.clone(), Duration::ZERO);
                    async move { client.create_acls(request).await.map(tonic::Response::into_inner) }
                })
            })
            .await?;
        check(response.error.as_ref())
    }

    /// Removes every ACL `filter` matches and returns them.
    ///
    /// # Errors
    ///
    /// [`Error::Broker`] with an authorization error or `INVALID_REQUEST`.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe.
    pub async fn delete_acls(&self, filter: &AclFilter) -> Result<Vec<Acl>> {
        let request = v1::DeleteAclsRequest { filter: Some(filter_to_proto(filter)) };
        let response = self
            .retrying(|| {
                self.cluster.call_any(|mut client| {
                    let request = self.cluster.request(request.clone(), Duration::ZERO);
                    async move { client.delete_acls(request).await.map(tonic::Response::into_inner) }
                })
            })
            .await?;
        check(response.error.as_ref())?;
        Ok(response.deleted.into_iter().map(Acl::from).collect())
    }

    /// The ACLs `filter` matches. Needs `describe` on the cluster.
    ///
    /// # Errors
    ///
    /// [`Error::Broker`] with an authorization error or `INVALID_REQUEST`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn list_acls(&self, filter: &AclFilter) -> Result<Vec<Acl>> {
        let request = v1::ListAclsRequest { filter: Some(filter_to_proto(filter)) };
        let response = self
            .retrying(|| {
                self.cluster.call_any(|mut client| {
                    let request = self.cluster.request(request.clone(), Duration::ZERO);
                    async move { client.list_acls(request).await.map(tonic::Response::into_inner) }
                })
            })
            .await?;
        check(response.error.as_ref())?;
        Ok(response.acls.into_iter().map(Acl::from).collect())
    }
}

/// One entity's quotas as listed: `entity` is `user=NAME`, `user=<default>`, `client-id=ID` or
/// `client-id=<default>`; `values` are `(key, rate per second)` with `key` producer_byte_rate,
/// consumer_byte_rate or request_rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityQuotas {
    pub entity: String,
    pub values: Vec<(String, u64)>,
}

impl Admin {
    /// Sets (`Some(rate)`) or removes (`None`) quotas of `entity`, key by key; each broker holds the
    /// entity's clients to the rates on its own, from its next request on. Needs `alter` on the cluster.
    ///
    /// # Errors
    ///
    /// [`Error::Broker`] with `INVALID_REQUEST` naming a bad entity, key or rate, or an authorization error.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the change may or may not have been made when the future is dropped.
    pub async fn set_quotas(&self, entity: &str, values: &[(String, Option<u64>)]) -> Result<()> {
        let request = v1::SetQuotasRequest {
            entity: entity.to_owned(),
            values: values.iter().map(|(key, value)| v1::QuotaValue { key: key.clone(), value: *value }).collect(),
        };
        let response = self
            .retrying(|| {
                self.cluster.call_any(|mut client| {
                    let request = self.cluster.request(request.clone(), Duration::ZERO);
                    async move { client.set_quotas(request).await.map(tonic::Response::into_inner) }
                })
            })
            .await?;
        check(response.error.as_ref())
    }

    /// Every quota set, by entity. Needs `describe` on the cluster.
    ///
    /// # Errors
    ///
    /// [`Error::Broker`] with `CLUSTER_AUTHORIZATION_FAILED`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn list_quotas(&self) -> Result<Vec<EntityQuotas>> {
        let response = self
            .retrying(|| {
                self.cluster.call_any(|mut client| {
                    let request = self.cluster.request(v1::ListQuotasRequest {}, Duration::ZERO);
                    async move { client.list_quotas(request).await.map(tonic::Response::into_inner) }
                })
            })
            .await?;
        check(response.error.as_ref())?;
        let quotas = response.quotas.into_iter().map(|q| EntityQuotas {
            entity: q.entity,
            values: q.values.into_iter().filter_map(|v| Some((v.key, v.value?))).collect(),
        });
        Ok(quotas.collect())
    }
}
