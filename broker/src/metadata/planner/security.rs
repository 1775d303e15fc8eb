//! The controller's decisions about users, ACLs and client quotas: the records a change makes, checked against the state.

use rill_proto::scram::{ITERATIONS_MAX, ITERATIONS_MIN, Mechanism, ScramCredential};
use serde::{Deserialize, Serialize};

use super::ControllerError;
use crate::limits::{ACLS_MAX, QUOTA_ENTITIES_MAX, USER_NAME_BYTES_MAX};
use crate::metadata::records::MetadataRecord;
use crate::metadata::state::MetadataState;
use crate::security::quota::{QuotaEntity, QuotaKey};
use crate::security::{AclBinding, AclFilter};

/// One change to users or ACLs, as a client asked for it (a password already salted and hashed). It
/// travels to the active controller as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecurityChange {
    SetCredential {
        user: String,
        mechanism: Mechanism,
        credential: ScramCredential,
    },
    DeleteUser {
        user: String,
    },
    /// ACLs that already exist are left as they are.
    CreateAcls {
        acls: Vec<AclBinding>,
    },
    /// Removes every ACL the filter matches.
    DeleteAcls {
        filter: AclFilter,
    },
    /// Sets (`Some`) or removes (`None`) an entity's quotas, key by key.
    SetQuotas {
        entity: QuotaEntity,
        values: Vec<(QuotaKey, Option<u64>)>,
    },
}

/// The records `change` makes, and for `DeleteAcls` the ACLs it removes.
pub fn alter_security(
    state: &MetadataState,
    change: &SecurityChange,
) -> Result<(Vec<MetadataRecord>, Vec<AclBinding>), ControllerError> {
    let invalid = |why: String| Err(ControllerError::InvalidSecurityChange(why));
    match change {
        SecurityChange::SetCredential { user, mechanism, credential } => {
            check_user_name(user)?;
            if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&credential.iterations) {
                return invalid(format!(
                    "{} iterations must be within {ITERATIONS_MIN}..={ITERATIONS_MAX}, not {}",
                    mechanism, credential.iterations
                ));
            }
            let record = MetadataRecord::UpsertScramCredential {
                user: user.clone(),
                mechanism: *mechanism,
                credential: credential.clone(),
            };
            Ok((vec![record], Vec::new()))
        }
        SecurityChange::DeleteUser { user } => {
            if !state.users.contains_key(user) {
                return Err(ControllerError::UnknownUser(user.clone()));
            }
            Ok((vec![MetadataRecord::DeleteUser { user: user.clone() }], Vec::new()))
        }
        SecurityChange::CreateAcls { acls } => {
            for acl in acls {
                acl.validate().map_err(ControllerError::InvalidSecurityChange)?;
            }
            let mut new: Vec<&AclBinding> = acls.iter().filter(|acl| !state.acls.contains(acl)).collect();
            new.sort();
            new.dedup();
            if state.acls.len() + new.len() > ACLS_MAX {
                return invalid(format!("the cluster holds at most {ACLS_MAX} ACLs"));
            }
            let records = new.into_iter().map(|acl| MetadataRecord::CreateAcl { acl: acl.clone() }).collect();
            Ok((records, Vec::new()))
        }
        SecurityChange::DeleteAcls { filter } => {
            let removed: Vec<AclBinding> = state.acls.iter().filter(|acl| filter.matches(acl)).cloned().collect();
            let records = removed.iter().map(|acl| MetadataRecord::DeleteAcl { acl: acl.clone() }).collect();
            Ok((records, removed))
        }
        SecurityChange::SetQuotas { entity, values } => Ok((set_quotas(state, entity, values)?, Vec::new())),
    }
}

fn set_quotas(
    state: &MetadataState,
    entity: &QuotaEntity,
    values: &[(QuotaKey, Option<u64>)],
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let invalid = |why: String| Err(ControllerError::InvalidSecurityChange(why));
    let name = match entity {
        QuotaEntity::User(name) | QuotaEntity::ClientId(name) => name.as_deref().unwrap_or_default(),
    };
    if name.len() > USER_NAME_BYTES_MAX || name.chars().any(char::is_control) {
        return invalid(format!(
            "quota entity '{entity}' is longer than {USER_NAME_BYTES_MAX} bytes or has control characters"
        ));
    }
    if values.is_empty() {
        return invalid(format!("no quota given for {entity}"));
    }
    if !state.quotas.contains_key(entity) && state.quotas.len() >= QUOTA_ENTITIES_MAX {
        return invalid(format!("the cluster holds quotas for at most {QUOTA_ENTITIES_MAX} entities"));
    }
    let current = state.quotas.get(entity);
    let mut records = Vec::new();
    for (key, value) in values {
        if *value == Some(0) {
            return invalid(format!("{key} for {entity} must be at least 1 per second"));
        }
        if records.iter().any(|r| matches!(r, MetadataRecord::SetQuota { key: k, .. } if k == key)) {
            return invalid(format!("{key} is given twice for {entity}"));
        }
        // Removing what is not set writes nothing.
        if value.is_some() || current.is_some_and(|rates| rates.contains_key(key)) {
            records.push(MetadataRecord::SetQuota { entity: entity.clone(), key: *key, value: *value });
        }
    }
    Ok(records)
}

fn check_user_name(user: &str) -> Result<(), ControllerError> {
    let invalid = |why: &str| Err(ControllerError::InvalidSecurityChange(format!("user name '{user}' {why}")));
    if user.is_empty() {
        return invalid("is empty");
    }
    if user.len() > USER_NAME_BYTES_MAX {
        return invalid(&format!("is longer than {USER_NAME_BYTES_MAX} bytes"));
    }
    if user.chars().any(|c| c.is_control()) || user == crate::security::acl::ANY_PRINCIPAL {
        return invalid("has control characters or is '*'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::{Operation, PatternType, Permission, ResourceType};

    fn apply(state: &mut MetadataState, change: SecurityChange) -> Result<Vec<AclBinding>, ControllerError> {
        let (records, removed) = alter_security(state, &change)?;
        for record in records {
            let offset = state.next_offset;
            state.apply(offset, &record).expect("planned records apply");
        }
        Ok(removed)
    }

    fn read_acl(topic: &str, principal: &str) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            pattern_type: PatternType::Literal,
            resource_name: topic.into(),
            principal: principal.into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        }
    }

    #[test]
    fn users_are_created_replaced_and_deleted_and_unknown_ones_are_reported() {
        let mut state = MetadataState::default();
        let credential = ScramCredential::derive(Mechanism::ScramSha256, "pw", b"salt", ITERATIONS_MIN);
        let set = SecurityChange::SetCredential {
            user: "alice".into(),
            mechanism: Mechanism::ScramSha256,
            credential: credential.clone(),
        };
        apply(&mut state, set.clone()).unwrap();
        apply(&mut state, set).unwrap();
        assert_eq!(state.users["alice"][&Mechanism::ScramSha256], credential);
        apply(&mut state, SecurityChange::DeleteUser { user: "alice".into() }).unwrap();
        assert!(state.users.is_empty());
        let missing = apply(&mut state, SecurityChange::DeleteUser { user: "alice".into() });
        assert!(matches!(missing, Err(ControllerError::UnknownUser(_))));
    }

    #[test]
    fn credentials_with_too_few_iterations_or_bad_names_are_refused() {
        let state = MetadataState::default();
        let weak = ScramCredential::derive(Mechanism::ScramSha256, "pw", b"salt", 100);
        for (user, credential) in
            [("alice", weak), ("", ScramCredential::derive(Mechanism::ScramSha256, "p", b"s", 4096))]
        {
            let change =
                SecurityChange::SetCredential { user: user.into(), mechanism: Mechanism::ScramSha256, credential };
            assert!(matches!(alter_security(&state, &change), Err(ControllerError::InvalidSecurityChange(_))));
        }
    }

    #[test]
    fn acls_are_created_once_and_deleted_by_filter() {
        let mut state = MetadataState::default();
        let acls =
            vec![read_acl("orders", "User:alice"), read_acl("orders", "User:bob"), read_acl("orders", "User:alice")];
        apply(&mut state, SecurityChange::CreateAcls { acls: acls.clone() }).unwrap();
        apply(&mut state, SecurityChange::CreateAcls { acls }).unwrap();
        assert_eq!(state.acls.len(), 2);
        let filter = AclFilter { principal: Some("User:alice".into()), ..AclFilter::default() };
        let removed = apply(&mut state, SecurityChange::DeleteAcls { filter }).unwrap();
        assert_eq!(removed, vec![read_acl("orders", "User:alice")]);
        assert_eq!(state.acls.iter().collect::<Vec<_>>(), vec![&read_acl("orders", "User:bob")]);
    }

    #[test]
    fn a_malformed_acl_is_refused_whole() {
        let state = MetadataState::default();
        let acls = vec![read_acl("orders", "User:alice"), read_acl("", "User:alice")];
        assert!(alter_security(&state, &SecurityChange::CreateAcls { acls }).is_err());
    }

    #[test]
    fn quotas_are_set_changed_and_removed_key_by_key() {
        let mut state = MetadataState::default();
        let alice: QuotaEntity = "user=alice".parse().unwrap();
        let (produce, fetch) = (QuotaKey::ProducerByteRate, QuotaKey::ConsumerByteRate);
        let set = |values: Vec<(QuotaKey, Option<u64>)>| SecurityChange::SetQuotas { entity: alice.clone(), values };
        apply(&mut state, set(vec![(produce, Some(1 << 20)), (fetch, Some(2 << 20))])).unwrap();
        apply(&mut state, set(vec![(produce, Some(3 << 20))])).unwrap();
        assert_eq!(state.quotas[&alice], [(produce, 3 << 20), (fetch, 2 << 20)].into_iter().collect());
        // Removing a key that is not set writes nothing; removing the last one removes the entity.
        let (records, _) = alter_security(&state, &set(vec![(QuotaKey::RequestRate, None)])).unwrap();
        assert!(records.is_empty());
        apply(&mut state, set(vec![(produce, None), (fetch, None)])).unwrap();
        assert!(state.quotas.is_empty());
        for bad in [vec![], vec![(produce, Some(0))], vec![(produce, Some(1)), (produce, Some(2))]] {
            assert!(matches!(alter_security(&state, &set(bad)), Err(ControllerError::InvalidSecurityChange(_))));
        }
    }
}
