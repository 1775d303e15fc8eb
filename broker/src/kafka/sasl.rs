//! A Kafka connection's identity and its SASL login (SaslHandshake, then SaslAuthenticate once for PLAIN or
//! twice for SCRAM). A connection acts as its TLS client certificate's principal, or as `User:ANONYMOUS`,
//! until a login succeeds; the login itself is checked by the request core (`requests/auth.rs`).

use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use rill_proto::scram::{Mechanism, ServerFirst};

use super::errors;
use super::handlers::str_bytes;
use crate::requests::{BrokerCore, Error, ErrorKind, PeerIdentity, Principal};

/// The mechanisms offered in SaslHandshake answers. PLAIN is refused at SaslAuthenticate unless the
/// connection is TLS.
const MECHANISMS: [&str; 3] = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"];

/// One connection's identity.
pub struct Session {
    pub peer: PeerIdentity,
    /// Who the connection's requests act as.
    pub principal: Principal,
    login: Login,
    /// Until when a quota holds the connection: nothing more is read from it before then.
    held_until: Option<tokio::time::Instant>,
}

enum Login {
    /// No handshake yet (or the last login finished, either way).
    Idle,
    Plain,
    Scram(Mechanism),
    /// Between SCRAM's first and final messages.
    ScramFinal(Box<ServerFirst>),
}

impl Session {
    pub fn new(peer: PeerIdentity) -> Self {
        let principal = peer.certificate_principal.clone().unwrap_or_else(Principal::anonymous);
        Session { peer, principal, login: Login::Idle, held_until: None }
    }

    /// Holds the connection for `throttle_ms` from now (or longer, if a hold already runs past that).
    pub fn hold(&mut self, throttle_ms: u64) {
        if throttle_ms == 0 {
            return;
        }
        let until = tokio::time::Instant::now() + std::time::Duration::from_millis(throttle_ms);
        self.held_until = Some(self.held_until.map_or(until, |held| held.max(until)));
    }

    /// Until when the connection is held, if it still is.
    pub fn held_until(&mut self) -> Option<tokio::time::Instant> {
        self.held_until = self.held_until.filter(|until| *until > tokio::time::Instant::now());
        self.held_until
    }

    pub fn handshake(&mut self, request: &SaslHandshakeRequest) -> SaslHandshakeResponse {
        let offered = MECHANISMS.iter().map(|m| str_bytes(*m)).collect();
        let response = SaslHandshakeResponse::default().with_mechanisms(offered);
        let mechanism = request.mechanism.as_str();
        self.login = match (mechanism, Mechanism::parse(mechanism)) {
            ("PLAIN", _) => Login::Plain,
            (_, Some(scram)) => Login::Scram(scram),
            (_, None) => {
                tracing::info!(peer = ?self.peer.remote_addr, mechanism, "SASL handshake with an unsupported mechanism");
                self.login = Login::Idle;
                return response.with_error_code(errors::code(ErrorKind::UnsupportedSaslMechanism));
            }
        };
        response
    }

    pub fn authenticate(&mut self, core: &BrokerCore, request: &SaslAuthenticateRequest) -> SaslAuthenticateResponse {
        let step = std::mem::replace(&mut self.login, Login::Idle);
        let outcome = match step {
            Login::Idle => Err(Error::new(ErrorKind::IllegalSaslState, "SaslAuthenticate before a SaslHandshake")),
            Login::Plain => core.plain_login(&request.auth_bytes, &self.peer).map(|principal| {
                self.principal = principal;
                Vec::new()
            }),
            Login::Scram(mechanism) => utf8(&request.auth_bytes)
                .and_then(|first| core.scram_start(mechanism, first, &self.peer))
                .map(|(exchange, reply)| {
                    self.login = Login::ScramFinal(Box::new(exchange));
                    reply.into_bytes()
                }),
            Login::ScramFinal(exchange) => utf8(&request.auth_bytes)
                .and_then(|last| core.scram_finish(*exchange, last, &self.peer))
                .map(|(principal, reply)| {
                    self.principal = principal;
                    reply.into_bytes()
                }),
        };
        match outcome {
            Ok(reply) => SaslAuthenticateResponse::default().with_auth_bytes(reply.into()),
            Err(e) => SaslAuthenticateResponse::default()
                .with_error_code(errors::code(e.kind))
                .with_error_message(Some(str_bytes(&e.message))),
        }
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(bytes).map_err(|_| Error::new(ErrorKind::AuthenticationFailed, "SCRAM message is not UTF-8"))
}
