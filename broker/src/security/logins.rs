//! The broker's memory of logins: session tokens handed to gRPC clients after a SCRAM login, SCRAM exchanges
//! waiting for their final message, and failed logins, which are rate limited. Time comes in as an argument,
//! so each structure is tested without a clock; every map is bounded.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rill_proto::scram::ServerFirst;

use crate::limits::{
    FAILED_LOGIN_WINDOW_MS, FAILED_LOGINS_PER_ADDRESS_MAX, PENDING_LOGIN_MS_MAX, PENDING_LOGINS_MAX, SESSIONS_MAX,
};

/// Everything a broker remembers about logins, behind one lock (logins are rare next to requests).
pub struct Logins {
    pub pending: PendingLogins,
    pub failed: FailedLogins,
    /// A key of this broker's own for made-up salts of unknown users.
    pub decoy_key: [u8; 32],
}

impl Logins {
    pub fn new(decoy_key: [u8; 32]) -> Self {
        Logins { pending: PendingLogins::default(), failed: FailedLogins::default(), decoy_key }
    }
}

/// A session token: who logged in, which credential it proved (so a changed password ends the session),
/// and until when, signed with the cluster's session key (`MetadataRecord::SetSessionKey`) so that every
/// broker accepts it. Written `PAYLOAD.SIGNATURE`, both base64url.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionToken {
    pub user: String,
    pub credential: String,
    pub expires_ms: i64,
}

impl SessionToken {
    pub fn sign(&self, key: &[u8]) -> String {
        let payload = B64.encode(format!("{}\n{}\n{}", self.expires_ms, self.credential, self.user));
        let signature = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), payload.as_bytes());
        format!("{payload}.{}", B64.encode(signature.as_ref()))
    }

    /// The token `text` says, if `key` signed it and it has not expired at `now_ms`.
    pub fn verify(text: &str, key: &[u8], now_ms: i64) -> Option<SessionToken> {
        let (payload, signature) = text.split_once('.')?;
        let signature = B64.decode(signature).ok()?;
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        ring::hmac::verify(&key, payload.as_bytes(), &signature).ok()?;
        let payload = String::from_utf8(B64.decode(payload).ok()?).ok()?;
        let mut fields = payload.splitn(3, '\n');
        let expires_ms: i64 = fields.next()?.parse().ok()?;
        let credential = fields.next()?.to_string();
        let user = fields.next()?.to_string();
        (expires_ms > now_ms).then_some(SessionToken { user, credential, expires_ms })
    }
}

/// SCRAM exchanges between the server's first message and the client's final one (gRPC only: a Kafka
/// connection keeps its own).
#[derive(Debug, Default)]
pub struct PendingLogins {
    by_id: HashMap<String, (ServerFirst, i64)>,
}

impl PendingLogins {
    /// Keeps an exchange; `false` when too many are pending (the client should retry later).
    pub fn insert(&mut self, id: String, exchange: ServerFirst, now_ms: i64) -> bool {
        self.by_id.retain(|_, (_, started_ms)| now_ms - *started_ms <= PENDING_LOGIN_MS_MAX as i64);
        if self.by_id.len() >= PENDING_LOGINS_MAX {
            return false;
        }
        self.by_id.insert(id, (exchange, now_ms));
        true
    }

    /// Takes the exchange `id`, if it is still pending.
    pub fn take(&mut self, id: &str, now_ms: i64) -> Option<ServerFirst> {
        let (exchange, started_ms) = self.by_id.remove(id)?;
        (now_ms - started_ms <= PENDING_LOGIN_MS_MAX as i64).then_some(exchange)
    }
}

/// Failed logins per key (a user name, a client address), so that guessing passwords is slow: after `limit`
/// failures within `FAILED_LOGIN_WINDOW_MS`, the key's logins are refused until the oldest of them leaves
/// the window.
#[derive(Debug, Default)]
pub struct FailedLogins {
    by_key: HashMap<String, Vec<i64>>,
}

impl FailedLogins {
    /// `Err` with the ms to wait when `key` is locked out now.
    pub fn check(&mut self, key: &str, limit: usize, now_ms: i64) -> Result<(), u64> {
        let Some(times) = self.by_key.get_mut(key) else { return Ok(()) };
        times.retain(|t| now_ms - t < FAILED_LOGIN_WINDOW_MS as i64);
        if times.len() < limit {
            return Ok(());
        }
        let oldest = times.iter().min().copied().unwrap_or(now_ms);
        Err((oldest + FAILED_LOGIN_WINDOW_MS as i64 - now_ms).max(1) as u64)
    }

    pub fn record(&mut self, key: &str, now_ms: i64) {
        // Bounded: a flood of distinct keys forgets the quiet ones first.
        if self.by_key.len() >= SESSIONS_MAX && !self.by_key.contains_key(key) {
            self.by_key.retain(|_, times| times.iter().any(|t| now_ms - t < FAILED_LOGIN_WINDOW_MS as i64));
            if self.by_key.len() >= SESSIONS_MAX {
                return;
            }
        }
        let times = self.by_key.entry(key.to_string()).or_default();
        times.push(now_ms);
        if times.len() > FAILED_LOGINS_PER_ADDRESS_MAX {
            times.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::FAILED_LOGINS_MAX;

    #[test]
    fn tokens_verify_with_their_key_until_they_expire() {
        let token = SessionToken { user: "al\nice".into(), credential: "SCRAM-SHA-256:abc".into(), expires_ms: 100 };
        let text = token.sign(b"key");
        assert_eq!(SessionToken::verify(&text, b"key", 99), Some(token));
        assert_eq!(SessionToken::verify(&text, b"key", 100), None, "expired");
        assert_eq!(SessionToken::verify(&text, b"other key", 99), None);
        let (payload, signature) = text.split_once('.').unwrap();
        let forged = format!("{}.{signature}", B64.encode(format!("999\nx\n{payload}")));
        assert_eq!(SessionToken::verify(&forged, b"key", 99), None);
        assert_eq!(SessionToken::verify("garbage", b"key", 0), None);
    }

    #[test]
    fn too_many_failures_lock_a_key_out_until_the_window_passes() {
        let mut failed = FailedLogins::default();
        for i in 0..FAILED_LOGINS_MAX as i64 {
            assert!(failed.check("alice", FAILED_LOGINS_MAX, i).is_ok());
            failed.record("alice", i);
        }
        let wait = failed.check("alice", FAILED_LOGINS_MAX, 10).unwrap_err();
        assert!(wait > 0 && wait <= FAILED_LOGIN_WINDOW_MS);
        assert!(failed.check("bob", FAILED_LOGINS_MAX, 10).is_ok(), "other keys are not affected");
        assert!(failed.check("alice", FAILED_LOGINS_MAX + 1, 10).is_ok(), "a higher limit is not reached yet");
        assert!(failed.check("alice", FAILED_LOGINS_MAX, FAILED_LOGIN_WINDOW_MS as i64 + 1).is_ok());
    }
}
