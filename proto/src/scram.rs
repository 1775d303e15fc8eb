//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677): the salted credentials kept in cluster metadata
//! and the server side of a login. Pure: nonces and salts come in as arguments, so a login replays the same
//! way in a test.
//!
//! Metadata never holds a password, only `salt`, `iterations`, `StoredKey = H(HMAC(SaltedPassword, "Client
//! Key"))` and `ServerKey = HMAC(SaltedPassword, "Server Key")`: enough to check a client's proof and prove
//! the server knows the credential, not enough to log in as the user. Both sides live here, in the crate
//! the broker and the client share: the broker checks logins, the client makes them.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};

/// Kafka's bounds on SCRAM iterations: fewer makes stolen credentials cheap to attack, more makes every
/// login slow.
pub const ITERATIONS_MIN: u32 = 4096;
pub const ITERATIONS_MAX: u32 = 16384;

/// Bytes of salt drawn for a new credential.
pub const SALT_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::ScramSha256, Mechanism::ScramSha512];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(name))
    }

    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            Mechanism::ScramSha256 => hmac::HMAC_SHA256,
            Mechanism::ScramSha512 => hmac::HMAC_SHA512,
        }
    }

    fn pbkdf2_algorithm(self) -> pbkdf2::Algorithm {
        match self {
            Mechanism::ScramSha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Mechanism::ScramSha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn digest_algorithm(self) -> &'static digest::Algorithm {
        match self {
            Mechanism::ScramSha256 => &digest::SHA256,
            Mechanism::ScramSha512 => &digest::SHA512,
        }
    }

    fn output_bytes(self) -> usize {
        self.digest_algorithm().output_len()
    }

    fn hmac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac_algorithm(), key), message).as_ref().to_vec()
    }

    fn hash(self, message: &[u8]) -> Vec<u8> {
        digest::digest(self.digest_algorithm(), message).as_ref().to_vec()
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One user's credential for one mechanism, as metadata stores it (binary fields in base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: String,
    pub iterations: u32,
    pub stored_key: String,
    pub server_key: String,
}

impl ScramCredential {
    /// The credential for `password` with `salt` and `iterations` (RFC 5802, section 3).
    pub fn derive(mechanism: Mechanism, password: &str, salt: &[u8], iterations: u32) -> ScramCredential {
        let salted = salted_password(mechanism, password, salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        ScramCredential {
            salt: BASE64.encode(salt),
            iterations,
            stored_key: BASE64.encode(mechanism.hash(&client_key)),
            server_key: BASE64.encode(mechanism.hmac(&salted, b"Server Key")),
        }
    }

    /// Whether `password` is the one this credential was derived from (SASL PLAIN logins).
    pub fn verify_password(&self, mechanism: Mechanism, password: &str) -> bool {
        let Ok(salt) = BASE64.decode(&self.salt) else { return false };
        let derived = ScramCredential::derive(mechanism, password, &salt, self.iterations);
        constant_time_eq(derived.stored_key.as_bytes(), self.stored_key.as_bytes())
    }

    fn keys(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        Some((BASE64.decode(&self.stored_key).ok()?, BASE64.decode(&self.server_key).ok()?))
    }
}

fn salted_password(mechanism: Mechanism, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; mechanism.output_bytes()];
    let rounds = std::num::NonZeroU32::new(iterations.max(1)).expect("at least one round");
    pbkdf2::derive(mechanism.pbkdf2_algorithm(), rounds, salt, password.as_bytes(), &mut out);
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Why a login failed. Every failure a client can cause reads the same to it ("authentication failed"), so
/// that a wrong password and an unknown user cannot be told apart; the detail is for the broker's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(String),
    #[error("SCRAM channel binding is not supported")]
    ChannelBinding,
    #[error("unknown user '{0}'")]
    UnknownUser(String),
    #[error("wrong password for user '{0}'")]
    InvalidProof(String),
}

/// A login between the client's first message and its final one.
#[derive(Debug, Clone)]
pub struct ServerFirst {
    mechanism: Mechanism,
    user: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    /// `None` for an unknown user: the login goes on with a made-up salt and fails at the proof.
    credential: Option<ScramCredential>,
}

impl ServerFirst {
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }
}

/// Reads the client's first message and answers with the server's, given the user's credential (if any),
/// the server's nonce and, for unknown users, the salt to show instead (the same for the same name, so
/// that an unknown user looks like a real one).
pub fn server_first(
    mechanism: Mechanism,
    client_first: &str,
    credential: impl FnOnce(&str) -> Option<ScramCredential>,
    server_nonce: &str,
    decoy_salt: impl FnOnce(&str) -> Vec<u8>,
) -> Result<(ServerFirst, String), ScramError> {
    let malformed = |what: &str| ScramError::Malformed(what.to_string());
    // gs2-header: a channel-binding flag, an optional authzid, then the bare message.
    let mut parts = client_first.splitn(3, ',');
    let flag = parts.next().ok_or_else(|| malformed("empty client-first message"))?;
    let authzid = parts.next().ok_or_else(|| malformed("no gs2 header"))?;
    let bare = parts.next().ok_or_else(|| malformed("no client-first-message-bare"))?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(malformed("bad channel-binding flag")),
    }
    let attributes = attributes(bare)?;
    let user = unescape_name(attribute(&attributes, "n").ok_or_else(|| malformed("no user name"))?)?;
    let client_nonce = attribute(&attributes, "r").ok_or_else(|| malformed("no client nonce"))?;
    if client_nonce.is_empty() || client_nonce.contains(',') {
        return Err(malformed("bad client nonce"));
    }
    if let Some(authzid) = authzid.strip_prefix("a=")
        && unescape_name(authzid)? != user
    {
        return Err(malformed("an authorization id other than the user is not supported"));
    }
    let credential = credential(&user);
    let (salt, iterations) = match &credential {
        Some(c) => (c.salt.clone(), c.iterations),
        None => (BASE64.encode(decoy_salt(&user)), ITERATIONS_MIN),
    };
    let nonce = format!("{client_nonce}{server_nonce}");
    let server_first = format!("r={nonce},s={salt},i={iterations}");
    let state = ServerFirst {
        mechanism,
        user,
        gs2_header: format!("{flag},{authzid},"),
        client_first_bare: bare.to_string(),
        server_first: server_first.clone(),
        nonce,
        credential,
    };
    Ok((state, server_first))
}

/// Checks the client's proof in its final message; on success, the user name and the server's final
/// message (which proves to the client that the server holds its credential).
pub fn server_final(first: ServerFirst, client_final: &str) -> Result<(String, String), ScramError> {
    let malformed = |what: &str| ScramError::Malformed(what.to_string());
    let (without_proof, proof) = client_final.rsplit_once(",p=").ok_or_else(|| malformed("no proof"))?;
    let attributes = attributes(without_proof)?;
    let binding = attribute(&attributes, "c").ok_or_else(|| malformed("no channel binding"))?;
    if BASE64.decode(binding).ok().as_deref() != Some(first.gs2_header.as_bytes()) {
        return Err(malformed("channel binding does not repeat the gs2 header"));
    }
    if attribute(&attributes, "r") != Some(first.nonce.as_str()) {
        return Err(malformed("nonce does not match"));
    }
    let proof = BASE64.decode(proof).map_err(|_| malformed("proof is not base64"))?;
    let Some(credential) = &first.credential else { return Err(ScramError::UnknownUser(first.user)) };
    let (stored_key, server_key) = credential.keys().ok_or_else(|| malformed("stored credential is corrupt"))?;
    let auth_message = format!("{},{},{}", first.client_first_bare, first.server_first, without_proof);
    let mechanism = first.mechanism;
    let client_signature = mechanism.hmac(&stored_key, auth_message.as_bytes());
    if proof.len() != client_signature.len() {
        return Err(ScramError::InvalidProof(first.user));
    }
    let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(p, s)| p ^ s).collect();
    if !constant_time_eq(&mechanism.hash(&client_key), &stored_key) {
        return Err(ScramError::InvalidProof(first.user));
    }
    let server_signature = mechanism.hmac(&server_key, auth_message.as_bytes());
    Ok((first.user, format!("v={}", BASE64.encode(server_signature))))
}

fn attributes(message: &str) -> Result<Vec<(&str, &str)>, ScramError> {
    message
        .split(',')
        .map(|item| item.split_once('=').ok_or_else(|| ScramError::Malformed(format!("attribute '{item}' has no '='"))))
        .collect()
}

fn attribute<'a>(attributes: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    attributes.iter().find(|(key, _)| *key == name).map(|(_, value)| *value)
}

/// SCRAM user names escape `,` as `=2C` and `=` as `=3D`.
fn unescape_name(name: &str) -> Result<String, ScramError> {
    let unescaped = name.replace("=2C", ",").replace("=3D", "=");
    if unescaped.is_empty() || name.replace("=2C", "").replace("=3D", "").contains('=') {
        return Err(ScramError::Malformed(format!("bad user name '{name}'")));
    }
    Ok(unescaped)
}

/// The client side of a login, for the client crate's tests of the server here and for Rill's own client.
pub mod client {
    use super::*;

    /// The client's first message for `user` with `nonce`.
    pub fn first(user: &str, nonce: &str) -> String {
        format!("n,,n={},r={nonce}", user.replace('=', "=3D").replace(',', "=2C"))
    }

    /// The client's final message answering `server_first`, and the server signature to expect.
    pub fn final_message(
        mechanism: Mechanism,
        user: &str,
        password: &str,
        client_nonce: &str,
        server_first: &str,
    ) -> Result<(String, String), ScramError> {
        let malformed = |what: &str| ScramError::Malformed(what.to_string());
        let attributes = attributes(server_first)?;
        let nonce = attribute(&attributes, "r").ok_or_else(|| malformed("no nonce"))?;
        if !nonce.starts_with(client_nonce) {
            return Err(malformed("server nonce does not extend the client's"));
        }
        let salt = BASE64
            .decode(attribute(&attributes, "s").ok_or_else(|| malformed("no salt"))?)
            .map_err(|_| malformed("salt is not base64"))?;
        let iterations: u32 =
            attribute(&attributes, "i").and_then(|i| i.parse().ok()).ok_or_else(|| malformed("no iteration count"))?;
        let salted = salted_password(mechanism, password, &salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let stored_key = mechanism.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let bare = first(user, client_nonce)[3..].to_string();
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let signature = mechanism.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
        let server_key = mechanism.hmac(&salted, b"Server Key");
        let expected = format!("v={}", BASE64.encode(mechanism.hmac(&server_key, auth_message.as_bytes())));
        Ok((format!("{without_proof},p={}", BASE64.encode(proof)), expected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677, section 3: user "user", password "pencil", the nonces and salt given there.
    #[test]
    fn the_rfc_7677_exchange_verifies_and_signs_as_published() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credential = ScramCredential::derive(Mechanism::ScramSha256, "pencil", &salt, 4096);
        let client_first = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        let (state, server_first) = server_first(
            Mechanism::ScramSha256,
            client_first,
            |user| (user == "user").then(|| credential.clone()),
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            |_| Vec::new(),
        )
        .unwrap();
        assert_eq!(
            server_first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let (user, server_final) = server_final(state, client_final).unwrap();
        assert_eq!(user, "user");
        assert_eq!(server_final, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    fn login(mechanism: Mechanism, stored_password: &str, given_password: &str) -> Result<String, ScramError> {
        let credential = ScramCredential::derive(mechanism, stored_password, b"0123456789abcdef", ITERATIONS_MIN);
        let first = client::first("ali,ce", "clientnonce");
        let (state, reply) = server_first(
            mechanism,
            &first,
            |u| (u == "ali,ce").then(|| credential.clone()),
            "servernonce",
            |_| b"x".to_vec(),
        )?;
        let (final_message, expected) =
            client::final_message(mechanism, "ali,ce", given_password, "clientnonce", &reply)?;
        let (user, server_final) = server_final(state, &final_message)?;
        assert_eq!(server_final, expected, "the server proves it holds the credential");
        Ok(user)
    }

    #[test]
    fn both_mechanisms_log_in_with_the_right_password_only() {
        for mechanism in Mechanism::ALL {
            assert_eq!(login(mechanism, "s3cret", "s3cret").unwrap(), "ali,ce");
            assert_eq!(login(mechanism, "s3cret", "wrong"), Err(ScramError::InvalidProof("ali,ce".into())));
        }
    }

    #[test]
    fn an_unknown_user_gets_a_salt_and_fails_only_at_the_proof() {
        let first = client::first("mallory", "n1");
        let (state, reply) =
            server_first(Mechanism::ScramSha256, &first, |_| None, "n2", |user| format!("decoy-{user}").into_bytes())
                .unwrap();
        assert!(reply.contains(&format!("s={}", BASE64.encode(b"decoy-mallory"))));
        let (final_message, _) = client::final_message(Mechanism::ScramSha256, "mallory", "pw", "n1", &reply).unwrap();
        assert_eq!(server_final(state, &final_message), Err(ScramError::UnknownUser("mallory".into())));
    }

    #[test]
    fn malformed_messages_and_channel_binding_are_refused() {
        let lookup = |_: &str| None;
        for bad in ["", "n", "n,,", "n,,r=abc", "n,,n=,r=abc", "x,,n=a,r=b", "n,,n=a=b,r=c"] {
            assert!(server_first(Mechanism::ScramSha256, bad, lookup, "s", |_| Vec::new()).is_err(), "{bad:?}");
        }
        assert_eq!(
            server_first(Mechanism::ScramSha256, "p=tls-unique,,n=a,r=b", lookup, "s", |_| Vec::new()).unwrap_err(),
            ScramError::ChannelBinding
        );
    }

    #[test]
    fn a_replayed_or_tampered_final_message_is_refused() {
        let credential = ScramCredential::derive(Mechanism::ScramSha256, "pw", b"salt", ITERATIONS_MIN);
        let start = |server_nonce: &str| {
            let c = credential.clone();
            server_first(
                Mechanism::ScramSha256,
                &client::first("u", "cn"),
                move |_| Some(c),
                server_nonce,
                |_| Vec::new(),
            )
            .unwrap()
        };
        let (state, reply) = start("first");
        let (final_message, _) = client::final_message(Mechanism::ScramSha256, "u", "pw", "cn", &reply).unwrap();
        assert!(server_final(state, &final_message).is_ok());
        // The same final message against a login with another server nonce.
        let (other, _) = start("second");
        assert!(server_final(other, &final_message).is_err());
        let (state, _) = start("first");
        assert!(server_final(state, &final_message.replace("c=biws", "c=eSws")).is_err());
    }

    #[test]
    fn plain_passwords_verify_against_stored_credentials() {
        let credential = ScramCredential::derive(Mechanism::ScramSha512, "hunter2", b"salt", ITERATIONS_MIN);
        assert!(credential.verify_password(Mechanism::ScramSha512, "hunter2"));
        assert!(!credential.verify_password(Mechanism::ScramSha512, "hunter3"));
    }
}
