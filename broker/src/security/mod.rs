//! Who is asking and whether they may: the principal a connection authenticated as (from its TLS client
//! certificate or a SASL/SCRAM login), the peer identity every transport hands the request core, and the
//! ACLs that decide what a principal may do, the client quotas that pace it (`quota`), logins in progress and session tokens (`logins`), and TLS
//! set-up and reload (`tls/`). SCRAM itself lives in `rill_proto::scram`, shared with the client.

pub mod acl;
pub mod logins;
mod principal;
pub mod quota;
pub mod tls;

pub use acl::{AclBinding, AclFilter, Decision, Operation, PatternType, Permission, Resource, ResourceType};
pub use principal::{PeerIdentity, Principal};
