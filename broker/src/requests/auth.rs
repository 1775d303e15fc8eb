//! Authorization of requests against the ACLs, and logins: SCRAM exchanges (Kafka's SASL and gRPC's
//! `Authenticate`), SASL PLAIN over TLS, and the session tokens gRPC clients carry afterwards. Every
//! transport calls these; none decides on its own who may do what.

use std::sync::MutexGuard;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rill_proto::scram::{self, Mechanism, ScramCredential, ServerFirst};

use super::{BrokerCore, Error, ErrorKind};
use crate::clock::now_ms;
use crate::limits::{FAILED_LOGINS_MAX, FAILED_LOGINS_PER_ADDRESS_MAX, SESSION_TOKEN_LIFETIME_MS};
use crate::security::acl::{self, Decision};
use crate::security::logins::{Logins, SessionToken};
use crate::security::{Operation, PeerIdentity, Principal, Resource, ResourceType};

/// Random bytes for nonces, tokens and salts, from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the operating system's random source works");
    bytes
}

fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

impl BrokerCore {
    /// `Ok` when `who` may perform `operation` on `resource`; otherwise the authorization error of the
    /// resource's type, naming the principal, operation and resource. Always `Ok` with `--authorizer off`.
    pub fn authorize(&self, who: &Principal, operation: Operation, resource: Resource<'_>) -> Result<(), Error> {
        if self.authorized(who, operation, resource) {
            return Ok(());
        }
        let kind = match resource.resource_type {
            ResourceType::Topic => ErrorKind::TopicAuthorizationFailed,
            ResourceType::Group => ErrorKind::GroupAuthorizationFailed,
            ResourceType::Cluster => ErrorKind::ClusterAuthorizationFailed,
        };
        Err(Error::new(kind, format!("{who} is not authorized to {operation} {resource}")))
    }

    pub fn authorized(&self, who: &Principal, operation: Operation, resource: Resource<'_>) -> bool {
        if !self.config.authorizer {
            return true;
        }
        let state = self.metadata.borrow();
        acl::decide(&state.acls, &self.super_users, who, operation, &resource) == Decision::Allowed
    }

    /// Whether `who` may perform `operation` on some resource of `resource_type` (`acl::allowed_on_any`).
    pub fn authorized_on_any(&self, who: &Principal, operation: Operation, resource_type: ResourceType) -> bool {
        if !self.config.authorizer {
            return true;
        }
        let state = self.metadata.borrow();
        acl::allowed_on_any(&state.acls, &self.super_users, who, operation, resource_type)
    }

    fn logins(&self) -> MutexGuard<'_, Logins> {
        self.logins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses a login from a user or address that failed too often lately.
    fn check_lockout(&self, user: &str, peer: &PeerIdentity) -> Result<(), Error> {
        let now = now_ms();
        let mut logins = self.logins();
        let address = peer.remote_addr.map(|a| a.ip().to_string());
        let keys = std::iter::once((format!("user:{user}"), FAILED_LOGINS_MAX))
            .chain(address.map(|a| (format!("address:{a}"), FAILED_LOGINS_PER_ADDRESS_MAX)));
        for (key, limit) in keys {
            if let Err(wait_ms) = logins.failed.check(&key, limit, now) {
                tracing::warn!(user, peer = ?peer.remote_addr, "login refused: too many failed logins");
                return Err(Error::new(
                    ErrorKind::AuthenticationFailed,
                    format!("too many failed logins; try again in {} s", wait_ms.div_ceil(1000)),
                ));
            }
        }
        Ok(())
    }

    fn login_failed(&self, user: &str, peer: &PeerIdentity, why: &dyn std::fmt::Display) -> Error {
        tracing::warn!(user, peer = ?peer.remote_addr, "failed login: {why}");
        let now = now_ms();
        let mut logins = self.logins();
        logins.failed.record(&format!("user:{user}"), now);
        if let Some(address) = peer.remote_addr {
            logins.failed.record(&format!("address:{}", address.ip()), now);
        }
        Error::new(ErrorKind::AuthenticationFailed, format!("authentication failed for user '{user}'"))
    }

    fn credential(&self, user: &str, mechanism: Mechanism) -> Option<ScramCredential> {
        self.metadata.borrow().users.get(user).and_then(|c| c.get(&mechanism)).cloned()
    }

    /// A made-up salt for an unknown user, the same on every try, so that probing cannot tell unknown users
    /// from real ones by their salt changing.
    fn decoy_salt(&self, user: &str) -> Vec<u8> {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.logins().decoy_key);
        ring::hmac::sign(&key, user.as_bytes()).as_ref()[..scram::SALT_BYTES].to_vec()
    }

    /// The first step of a SCRAM login: the server's first message for the client's.
    pub fn scram_start(
        &self,
        mechanism: Mechanism,
        client_first: &str,
        peer: &PeerIdentity,
    ) -> Result<(ServerFirst, String), Error> {
        let nonce = BASE64.encode(random_bytes::<24>());
        let mut user = String::new();
        let lookup = |name: &str| {
            user = name.to_string();
            self.credential(name, mechanism)
        };
        let decoy = |name: &str| self.decoy_salt(name);
        let started = scram::server_first(mechanism, client_first, lookup, &nonce, decoy);
        let (exchange, reply) = started.map_err(|e| self.login_failed(&user, peer, &e))?;
        self.check_lockout(exchange.user(), peer)?;
        Ok((exchange, reply))
    }

    /// The last step of a SCRAM login: the principal and the server's final message, or why not.
    pub fn scram_finish(
        &self,
        exchange: ServerFirst,
        client_final: &str,
        peer: &PeerIdentity,
    ) -> Result<(Principal, String), Error> {
        let user = exchange.user().to_string();
        match scram::server_final(exchange, client_final) {
            Ok((user, reply)) => {
                tracing::info!(user, peer = ?peer.remote_addr, "SCRAM login");
                Ok((Principal::user(user), reply))
            }
            Err(e) => Err(self.login_failed(&user, peer, &e)),
        }
    }

    /// A SASL PLAIN login (`authzid NUL user NUL password`), only over TLS: the password crosses the wire.
    pub fn plain_login(&self, message: &[u8], peer: &PeerIdentity) -> Result<Principal, Error> {
        if !peer.tls {
            return Err(Error::new(
                ErrorKind::UnsupportedSaslMechanism,
                "SASL PLAIN sends the password in clear: it is only accepted over TLS",
            ));
        }
        let text = std::str::from_utf8(message)
            .map_err(|_| Error::new(ErrorKind::AuthenticationFailed, "SASL PLAIN message is not UTF-8"))?;
        let mut parts = text.split('\0');
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::new(ErrorKind::AuthenticationFailed, "malformed SASL PLAIN message"));
        };
        if !authzid.is_empty() && authzid != user {
            return Err(self.login_failed(user, peer, &"an authorization id other than the user"));
        }
        self.check_lockout(user, peer)?;
        let verified = Mechanism::ALL
            .into_iter()
            .any(|mechanism| self.credential(user, mechanism).is_some_and(|c| c.verify_password(mechanism, password)));
        if !verified {
            return Err(self.login_failed(user, peer, &"unknown user or wrong password"));
        }
        tracing::info!(user, peer = ?peer.remote_addr, "PLAIN login");
        Ok(Principal::user(user))
    }

    /// gRPC's first login step: keeps the exchange and returns its id with the server's first message.
    pub fn login_begin(
        &self,
        mechanism: &str,
        client_first: &str,
        peer: &PeerIdentity,
    ) -> Result<(String, String), Error> {
        let mechanism = Mechanism::parse(mechanism).ok_or_else(|| {
            Error::new(
                ErrorKind::UnsupportedSaslMechanism,
                format!("unsupported mechanism '{mechanism}': SCRAM-SHA-256 or SCRAM-SHA-512"),
            )
        })?;
        let (exchange, reply) = self.scram_start(mechanism, client_first, peer)?;
        let id = random_token();
        if !self.logins().pending.insert(id.clone(), exchange, now_ms()) {
            return Err(Error::new(ErrorKind::Timeout, "too many logins in progress; try again"));
        }
        Ok((id, reply))
    }

    /// gRPC's last login step: a session token for the principal, and the server's final message.
    pub fn login_complete(
        &self,
        exchange_id: &str,
        client_final: &str,
        peer: &PeerIdentity,
    ) -> Result<(String, Principal, String), Error> {
        let exchange = self.logins().pending.take(exchange_id, now_ms()).ok_or_else(|| {
            Error::new(ErrorKind::IllegalSaslState, "no login in progress with this exchange id (it may have expired)")
        })?;
        let user = exchange.user().to_string();
        let mechanism = exchange.mechanism();
        let (principal, reply) = self.scram_finish(exchange, client_final, peer)?;
        let state = self.metadata.borrow().clone();
        let (Some(key), Some(credential)) = (session_key(&state), self.credential(&user, mechanism)) else {
            return Err(Error::new(ErrorKind::NotReady, "the cluster has no session key yet; try again"));
        };
        let token = SessionToken {
            user,
            credential: fingerprint(mechanism, &credential),
            expires_ms: now_ms() + SESSION_TOKEN_LIFETIME_MS as i64,
        };
        Ok((token.sign(&key), principal, reply))
    }

    /// The principal of a gRPC session token: signed with the cluster's key, not expired, and its user still
    /// holding the credential it logged in with (a deleted user or a changed password ends its sessions).
    pub fn session_principal(&self, token: &str) -> Result<Principal, Error> {
        let invalid =
            || Error::new(ErrorKind::AuthenticationFailed, "the session token is invalid or expired: log in again");
        let state = self.metadata.borrow().clone();
        let key = session_key(&state).ok_or_else(invalid)?;
        let token = SessionToken::verify(token, &key, now_ms()).ok_or_else(invalid)?;
        let current = state.users.get(&token.user).into_iter().flat_map(|c| c.iter());
        if !current.into_iter().any(|(m, c)| fingerprint(*m, c) == token.credential) {
            return Err(invalid());
        }
        Ok(Principal::user(token.user))
    }
}

fn session_key(state: &crate::metadata::MetadataState) -> Option<Vec<u8>> {
    state.session_key.as_ref().and_then(|k| BASE64.decode(k).ok())
}

/// Names a credential without revealing any of it: the mechanism and a hash of its stored key.
fn fingerprint(mechanism: Mechanism, credential: &ScramCredential) -> String {
    let hash = ring::digest::digest(&ring::digest::SHA256, credential.stored_key.as_bytes());
    format!("{mechanism}:{}", BASE64.encode(&hash.as_ref()[..12]))
}
