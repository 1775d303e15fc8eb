//! Principals and the identity of the peer at the other end of a connection.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// An authenticated identity, written `User:NAME` as in Kafka's ACLs. A connection that proved nothing is
/// `User:ANONYMOUS`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Principal {
    pub name: String,
}

impl Principal {
    /// The name every unauthenticated connection has.
    pub const ANONYMOUS: &'static str = "ANONYMOUS";

    pub fn user(name: impl Into<String>) -> Self {
        Principal { name: name.into() }
    }

    pub fn anonymous() -> Self {
        Principal::user(Principal::ANONYMOUS)
    }

    pub fn is_anonymous(&self) -> bool {
        self.name == Principal::ANONYMOUS
    }

    /// Parses `User:NAME` (or a bare `NAME`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let name = text.strip_prefix("User:").unwrap_or(text);
        if name.is_empty() {
            return Err(format!("'{text}' names no principal"));
        }
        Ok(Principal::user(name))
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "User:{}", self.name)
    }
}

/// What a transport knows about the peer of a connection before any request: where it connects from,
/// whether the connection is TLS, and the principal its client certificate maps to (only with a verified
/// client certificate). gRPC requests carry it in their extensions; the Kafka listener keeps it per
/// connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub remote_addr: Option<SocketAddr>,
    pub tls: bool,
    pub certificate_principal: Option<Principal>,
}

impl PeerIdentity {
    /// A plaintext connection from `remote_addr`.
    pub fn plaintext(remote_addr: Option<SocketAddr>) -> Self {
        PeerIdentity { remote_addr, tls: false, certificate_principal: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_parse_with_or_without_the_user_prefix() {
        assert_eq!(Principal::parse("User:alice").unwrap(), Principal::user("alice"));
        assert_eq!(Principal::parse("bob").unwrap().to_string(), "User:bob");
        assert!(Principal::parse("User:").is_err());
        assert!(Principal::anonymous().is_anonymous());
    }
}
