//! Users and ACLs: creating, deleting and listing them, decided by the active controller (in-process when it
//! is this node, forwarded otherwise) and checked against the caller's own rights first. Changing users or
//! ACLs needs `alter` on the cluster; listing them needs `describe` on the cluster.

use rill_proto::scram::{ITERATIONS_MIN, Mechanism, SALT_BYTES, ScramCredential};

use super::auth::random_bytes;
use super::{BrokerCore, Error, ErrorKind, forward};
use crate::metadata::{MetadataState, SecurityChange};
use crate::security::{AclBinding, AclFilter, Operation, Principal, Resource};

/// A user as listings show it: the mechanisms it has credentials for, never the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDescription {
    pub user: String,
    /// Each mechanism with its iteration count.
    pub credentials: Vec<(Mechanism, u32)>,
}

impl BrokerCore {
    /// Creates `user` or replaces its credential for `mechanism`, salting and hashing `password` here so
    /// that it never reaches the metadata log. Sessions made with the old password end with it.
    pub async fn upsert_user(
        &self,
        who: &Principal,
        user: &str,
        mechanism: Mechanism,
        password: &str,
        iterations: Option<u32>,
    ) -> Result<(), Error> {
        self.authorize(who, Operation::Alter, Resource::cluster())?;
        if password.is_empty() {
            return Err(Error::invalid("the password is empty"));
        }
        let salt = random_bytes::<SALT_BYTES>();
        let credential = ScramCredential::derive(mechanism, password, &salt, iterations.unwrap_or(ITERATIONS_MIN));
        let change = SecurityChange::SetCredential { user: user.to_string(), mechanism, credential };
        self.alter_security(&change).await?;
        tracing::info!(%who, user, %mechanism, "user credential set");
        Ok(())
    }

    pub async fn delete_user(&self, who: &Principal, user: &str) -> Result<(), Error> {
        self.authorize(who, Operation::Alter, Resource::cluster())?;
        self.alter_security(&SecurityChange::DeleteUser { user: user.to_string() }).await?;
        tracing::info!(%who, user, "user deleted");
        Ok(())
    }

    pub fn list_users(&self, who: &Principal) -> Result<Vec<UserDescription>, Error> {
        self.authorize(who, Operation::Describe, Resource::cluster())?;
        let state = self.metadata.borrow();
        let users = state.users.iter().map(|(user, credentials)| UserDescription {
            user: user.clone(),
            credentials: credentials.iter().map(|(m, c)| (*m, c.iterations)).collect(),
        });
        Ok(users.collect())
    }

    pub async fn create_acls(&self, who: &Principal, acls: Vec<AclBinding>) -> Result<(), Error> {
        self.authorize(who, Operation::Alter, Resource::cluster())?;
        for acl in &acls {
            acl.validate().map_err(Error::invalid)?;
        }
        let count = acls.len();
        self.alter_security(&SecurityChange::CreateAcls { acls }).await?;
        tracing::info!(%who, count, "ACLs created");
        Ok(())
    }

    /// Deletes every ACL `filter` matches and returns them.
    pub async fn delete_acls(&self, who: &Principal, filter: AclFilter) -> Result<Vec<AclBinding>, Error> {
        self.authorize(who, Operation::Alter, Resource::cluster())?;
        let removed = self.alter_security(&SecurityChange::DeleteAcls { filter }).await?;
        tracing::info!(%who, count = removed.len(), "ACLs deleted");
        Ok(removed)
    }

    pub fn list_acls(&self, who: &Principal, filter: &AclFilter) -> Result<Vec<AclBinding>, Error> {
        self.authorize(who, Operation::Describe, Resource::cluster())?;
        Ok(self.metadata.borrow().acls.iter().filter(|acl| filter.matches(acl)).cloned().collect())
    }

    /// A security change through this node's controller (`NotController` when it is not the active one):
    /// the internal controller service's entry.
    pub async fn alter_security_here(&self, change: &SecurityChange) -> Result<Vec<AclBinding>, Error> {
        self.controller.alter_security(change).await.map_err(|e| Error::from_controller(&e))
    }

    /// A security change through the active controller wherever it runs; returns once this broker's
    /// metadata has it, so the caller's next request here already sees it.
    pub(super) async fn alter_security(&self, change: &SecurityChange) -> Result<Vec<AclBinding>, Error> {
        let removed = if self.controller.is_active() {
            self.alter_security_here(change).await?
        } else {
            forward::alter_security(self, change).await?
        };
        let mut metadata = self.metadata.clone();
        let applied = metadata.wait_for(|state| reflects(state, change, &removed));
        let wait = std::time::Duration::from_millis(crate::limits::TOPIC_CHANGE_APPLY_WAIT_MS);
        if tokio::time::timeout(wait, applied).await.is_err() {
            return Err(Error::new(ErrorKind::Timeout, "the change is committed but not yet applied on this broker"));
        }
        Ok(removed)
    }
}

/// Whether `state` has `change` applied (`removed`: the ACLs a deletion removed).
fn reflects(state: &MetadataState, change: &SecurityChange, removed: &[AclBinding]) -> bool {
    match change {
        SecurityChange::SetCredential { user, mechanism, credential } => {
            state.users.get(user).and_then(|c| c.get(mechanism)) == Some(credential)
        }
        SecurityChange::DeleteUser { user } => !state.users.contains_key(user),
        SecurityChange::CreateAcls { acls } => acls.iter().all(|acl| state.acls.contains(acl)),
        SecurityChange::DeleteAcls { .. } => removed.iter().all(|acl| !state.acls.contains(acl)),
        SecurityChange::SetQuotas { entity, values } => values
            .iter()
            .all(|(key, value)| state.quotas.get(entity).and_then(|rates| rates.get(key)).copied() == *value),
    }
}
