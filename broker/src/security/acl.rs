//! Access control lists and the decision they give: pure functions over the ACLs in cluster metadata, so
//! every broker that has applied the same metadata decides the same way.
//!
//! A request is allowed when its principal is a super user, or when some ACL allows the operation on the
//! resource and none denies it (deny wins). As in Kafka, `describe` is implied by `read`, `write`, `delete`
//! and `alter`, and `all` stands for every operation.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::Principal;

/// The principal an ACL names for everyone.
pub const ANY_PRINCIPAL: &str = "*";

/// The resource name that, as a literal pattern, matches every resource of its type.
pub const ANY_RESOURCE: &str = "*";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    Topic,
    Group,
    /// The cluster as a whole: creating topics, managing users and ACLs, broker-to-broker traffic.
    Cluster,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    /// Broker-to-broker requests: replication, controller requests, the controller quorum's Raft.
    ClusterAction,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternType {
    /// The resource name itself, or `*` for every resource of the type.
    Literal,
    /// Every resource whose name starts with the pattern.
    Prefixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Allow,
    Deny,
}

/// One ACL: `permission` of `principal` to perform `operation` on the resources `pattern` matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub pattern_type: PatternType,
    /// The resource name or prefix; the cluster resource is named `cluster`.
    pub resource_name: String,
    /// `User:NAME`, or `*` for every principal.
    pub principal: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// A resource a request acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource<'a> {
    pub resource_type: ResourceType,
    pub name: &'a str,
}

/// The name of the one cluster resource.
pub const CLUSTER: &str = "cluster";

impl<'a> Resource<'a> {
    pub fn topic(name: &'a str) -> Self {
        Resource { resource_type: ResourceType::Topic, name }
    }

    pub fn group(name: &'a str) -> Self {
        Resource { resource_type: ResourceType::Group, name }
    }

    pub fn cluster() -> Resource<'static> {
        Resource { resource_type: ResourceType::Cluster, name: CLUSTER }
    }
}

impl fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} '{}'", self.resource_type, self.name)
    }
}

impl AclBinding {
    fn matches_resource(&self, resource: &Resource<'_>) -> bool {
        self.resource_type == resource.resource_type
            && match self.pattern_type {
                PatternType::Literal => self.resource_name == ANY_RESOURCE || self.resource_name == resource.name,
                PatternType::Prefixed => resource.name.starts_with(&self.resource_name),
            }
    }

    fn matches_principal(&self, principal: &Principal) -> bool {
        self.principal == ANY_PRINCIPAL || Principal::parse(&self.principal).is_ok_and(|p| &p == principal)
    }

    /// Whether this ACL's operation covers `operation`: itself, `all`, and `describe` implied by the
    /// operations that need to see a resource to use it.
    fn covers(&self, operation: Operation) -> bool {
        self.operation == operation
            || self.operation == Operation::All
            || (operation == Operation::Describe
                && self.permission == Permission::Allow
                && matches!(self.operation, Operation::Read | Operation::Write | Operation::Delete | Operation::Alter))
    }

    /// Checks the fields a client sets: a cluster ACL names the cluster, a pattern is not empty, and the
    /// principal parses.
    pub fn validate(&self) -> Result<(), String> {
        if self.resource_name.is_empty() {
            return Err("an ACL needs a resource name or prefix".into());
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER {
            return Err(format!("the cluster resource is named '{CLUSTER}', not '{}'", self.resource_name));
        }
        if self.principal != ANY_PRINCIPAL {
            Principal::parse(&self.principal)?;
        }
        Ok(())
    }
}

/// A filter over ACLs for listing and deleting: every field left `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub pattern_type: Option<PatternType>,
    pub resource_name: Option<String>,
    pub principal: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    pub fn matches(&self, acl: &AclBinding) -> bool {
        self.resource_type.is_none_or(|t| t == acl.resource_type)
            && self.pattern_type.is_none_or(|t| t == acl.pattern_type)
            && self.resource_name.as_ref().is_none_or(|n| *n == acl.resource_name)
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.operation.is_none_or(|o| o == acl.operation)
            && self.permission.is_none_or(|p| p == acl.permission)
    }
}

/// What the ACLs say about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// No ACL allows it.
    NoAllow,
    /// An ACL denies it.
    Denied,
}

/// Decides whether `principal` may perform `operation` on `resource`.
pub fn decide(
    acls: &BTreeSet<AclBinding>,
    super_users: &[Principal],
    principal: &Principal,
    operation: Operation,
    resource: &Resource<'_>,
) -> Decision {
    if super_users.contains(principal) {
        return Decision::Allowed;
    }
    let applicable = acls.iter().filter(|acl| acl.matches_principal(principal) && acl.matches_resource(resource));
    let mut allowed = false;
    for acl in applicable.filter(|acl| acl.covers(operation)) {
        match acl.permission {
            Permission::Deny => return Decision::Denied,
            Permission::Allow => allowed = true,
        }
    }
    if allowed { Decision::Allowed } else { Decision::NoAllow }
}

/// Whether `principal` may perform `operation` on at least one resource of `resource_type`: some ACL allows
/// it (on any name or prefix) and no `*` literal denies it. Kafka's rule for `InitProducerId` without a
/// transaction: an idempotent producer needs write access to some topic.
pub fn allowed_on_any(
    acls: &BTreeSet<AclBinding>,
    super_users: &[Principal],
    principal: &Principal,
    operation: Operation,
    resource_type: ResourceType,
) -> bool {
    if super_users.contains(principal) {
        return true;
    }
    let applicable =
        || acls.iter().filter(|acl| acl.resource_type == resource_type && acl.matches_principal(principal));
    let denied_everywhere = applicable().any(|acl| {
        acl.permission == Permission::Deny
            && acl.covers(operation)
            && acl.pattern_type == PatternType::Literal
            && acl.resource_name == ANY_RESOURCE
    });
    !denied_everywhere && applicable().any(|acl| acl.permission == Permission::Allow && acl.covers(operation))
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceType::Topic => "topic",
            ResourceType::Group => "group",
            ResourceType::Cluster => "cluster",
        })
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Create => "create",
            Operation::Delete => "delete",
            Operation::Alter => "alter",
            Operation::Describe => "describe",
            Operation::ClusterAction => "cluster_action",
            Operation::All => "all",
        })
    }
}

impl PatternType {
    pub fn as_str(self) -> &'static str {
        match self {
            PatternType::Literal => "literal",
            PatternType::Prefixed => "prefixed",
        }
    }
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Allow => "allow",
            Permission::Deny => "deny",
        }
    }
}

impl std::str::FromStr for PatternType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "literal" => Ok(PatternType::Literal),
            "prefixed" => Ok(PatternType::Prefixed),
            _ => Err(format!("unknown pattern type '{s}' (literal or prefixed)")),
        }
    }
}

impl std::str::FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "allow" => Ok(Permission::Allow),
            "deny" => Ok(Permission::Deny),
            _ => Err(format!("unknown permission '{s}' (allow or deny)")),
        }
    }
}

impl std::str::FromStr for ResourceType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "topic" => Ok(ResourceType::Topic),
            "group" => Ok(ResourceType::Group),
            "cluster" => Ok(ResourceType::Cluster),
            _ => Err(format!("unknown resource type '{s}' (topic, group or cluster)")),
        }
    }
}

impl std::str::FromStr for Operation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "read" => Ok(Operation::Read),
            "write" => Ok(Operation::Write),
            "create" => Ok(Operation::Create),
            "delete" => Ok(Operation::Delete),
            "alter" => Ok(Operation::Alter),
            "describe" => Ok(Operation::Describe),
            "cluster_action" => Ok(Operation::ClusterAction),
            "all" => Ok(Operation::All),
            _ => Err(format!(
                "unknown operation '{s}' (read, write, create, delete, alter, describe, cluster_action or all)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        resource: &str,
        pattern: PatternType,
        principal: &str,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            pattern_type: pattern,
            resource_name: resource.into(),
            principal: principal.into(),
            operation,
            permission,
        }
    }

    fn decide_for(acls: &[AclBinding], who: &str, operation: Operation, topic: &str) -> Decision {
        let acls: BTreeSet<AclBinding> = acls.iter().cloned().collect();
        decide(&acls, &[Principal::user("root")], &Principal::user(who), operation, &Resource::topic(topic))
    }

    #[test]
    fn nothing_is_allowed_without_an_acl_but_super_users_may_do_anything() {
        assert_eq!(decide_for(&[], "alice", Operation::Read, "orders"), Decision::NoAllow);
        assert_eq!(decide_for(&[], "root", Operation::Delete, "orders"), Decision::Allowed);
    }

    #[test]
    fn a_literal_acl_allows_its_operation_on_its_resource_only() {
        let acls = [acl("orders", PatternType::Literal, "User:alice", Operation::Write, Permission::Allow)];
        assert_eq!(decide_for(&acls, "alice", Operation::Write, "orders"), Decision::Allowed);
        assert_eq!(decide_for(&acls, "alice", Operation::Read, "orders"), Decision::NoAllow);
        assert_eq!(decide_for(&acls, "alice", Operation::Write, "payments"), Decision::NoAllow);
        assert_eq!(decide_for(&acls, "bob", Operation::Write, "orders"), Decision::NoAllow);
    }

    #[test]
    fn write_read_delete_and_alter_imply_describe_but_not_each_other() {
        let acls = [acl("orders", PatternType::Literal, "User:alice", Operation::Write, Permission::Allow)];
        assert_eq!(decide_for(&acls, "alice", Operation::Describe, "orders"), Decision::Allowed);
        assert_eq!(decide_for(&acls, "alice", Operation::Delete, "orders"), Decision::NoAllow);
    }

    #[test]
    fn prefixed_and_wildcard_patterns_match_many_names() {
        let acls = [
            acl("logs.", PatternType::Prefixed, "User:alice", Operation::Read, Permission::Allow),
            acl("*", PatternType::Literal, "*", Operation::Describe, Permission::Allow),
        ];
        assert_eq!(decide_for(&acls, "alice", Operation::Read, "logs.web"), Decision::Allowed);
        assert_eq!(decide_for(&acls, "alice", Operation::Read, "metrics"), Decision::NoAllow);
        assert_eq!(decide_for(&acls, "carol", Operation::Describe, "metrics"), Decision::Allowed);
    }

    #[test]
    fn deny_wins_over_allow() {
        let acls = [
            acl("*", PatternType::Literal, "User:alice", Operation::All, Permission::Allow),
            acl("payments", PatternType::Literal, "User:alice", Operation::Read, Permission::Deny),
        ];
        assert_eq!(decide_for(&acls, "alice", Operation::Read, "payments"), Decision::Denied);
        assert_eq!(decide_for(&acls, "alice", Operation::Read, "orders"), Decision::Allowed);
        // A denied read does not deny describe: only a deny of describe (or all) does.
        assert_eq!(decide_for(&acls, "alice", Operation::Describe, "payments"), Decision::Allowed);
    }

    #[test]
    fn write_on_any_topic_is_found_through_prefixes_and_blocked_by_a_wildcard_deny() {
        let prefixed = [acl("orders.", PatternType::Prefixed, "User:alice", Operation::Write, Permission::Allow)];
        let set: BTreeSet<AclBinding> = prefixed.iter().cloned().collect();
        let alice = Principal::user("alice");
        assert!(allowed_on_any(&set, &[], &alice, Operation::Write, ResourceType::Topic));
        assert!(!allowed_on_any(&set, &[], &Principal::user("bob"), Operation::Write, ResourceType::Topic));
        let mut denied = set.clone();
        denied.insert(acl("*", PatternType::Literal, "*", Operation::Write, Permission::Deny));
        assert!(!allowed_on_any(&denied, &[], &alice, Operation::Write, ResourceType::Topic));
    }

    #[test]
    fn validation_refuses_empty_names_and_misnamed_clusters() {
        let mut binding = acl("", PatternType::Literal, "User:alice", Operation::Read, Permission::Allow);
        assert!(binding.validate().is_err());
        binding.resource_name = "orders".into();
        assert!(binding.validate().is_ok());
        binding.resource_type = ResourceType::Cluster;
        assert!(binding.validate().is_err());
        binding.resource_name = CLUSTER.into();
        assert!(binding.validate().is_ok());
    }
}
