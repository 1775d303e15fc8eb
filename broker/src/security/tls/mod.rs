//! TLS for every listener and every connection to peer brokers, with certificate identities.
//!
//! `Tls` holds the material read from `--tls-cert`, `--tls-key` and `--tls-ca` as ready rustls
//! configurations: one for the gRPC listener (ALPN `h2`), one for the Kafka listener (no ALPN, as Kafka
//! clients send none) and one for dialling peers (verifying them against the CA and presenting this broker's
//! certificate as a client certificate). Each connection takes the configuration current when it starts, so a
//! reload (`reload.rs`, on SIGHUP or when the files change) affects new connections only and a bad new file
//! leaves the previous material in place. `accept.rs` turns accepted TCP connections into streams that carry
//! their `PeerIdentity`; `dial.rs` gives tonic channels to peers; `identity.rs` maps a verified client
//! certificate to its principal.

mod accept;
mod dial;
mod files;
mod identity;
mod reload;

use std::sync::{Arc, RwLock};

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::{ClientAuth, PrincipalFrom, TlsConfig};

pub use accept::{Accepted, Io, Listener, grpc_incoming, handshake};
pub use dial::peer_channel;
pub use identity::principal_of;
pub use reload::watch_files;

/// The ALPN protocol of gRPC: HTTP/2 over TLS. tonic's and other gRPC clients refuse a TLS connection that
/// does not agree on it.
const ALPN_H2: &[u8] = b"h2";

/// This broker's TLS settings and the material currently in force.
pub struct Tls {
    config: TlsConfig,
    current: RwLock<Arc<Material>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The rustls configurations built from one reading of the files.
pub struct Material {
    pub grpc: Arc<ServerConfig>,
    pub kafka: Arc<ServerConfig>,
    /// For dialling peers; `None` without a CA to verify them (a single-voter broker never dials one).
    pub peer: Option<Arc<ClientConfig>>,
}

impl Tls {
    /// Reads the files named by `config` and builds the configurations.
    ///
    /// # Errors
    /// A file is missing, unreadable, holds no certificate or key, the key does not belong to the
    /// certificate, or the CA bundle holds no usable certificate; the message names the file.
    pub fn load(config: TlsConfig) -> anyhow::Result<Arc<Tls>> {
        let material = build(&config)?;
        Ok(Arc::new(Tls { config, current: RwLock::new(Arc::new(material)) }))
    }

    /// The material new connections use.
    pub fn current(&self) -> Arc<Material> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the files again and, if they are all good, makes them the material of new connections.
    ///
    /// # Errors
    /// As `load`; the previous material stays in force.
    pub fn reload(&self) -> anyhow::Result<()> {
        let material = build(&self.config)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(material);
        Ok(())
    }

    pub fn config(&self) -> &TlsConfig {
        &self.config
    }

    pub fn principal_from(&self) -> PrincipalFrom {
        self.config.principal_from
    }
}

fn build(config: &TlsConfig) -> anyhow::Result<Material> {
    let files = files::read(config)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = |alpn: Vec<Vec<u8>>| -> anyhow::Result<Arc<ServerConfig>> {
        let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
        let builder = match (config.client_auth, &files.roots) {
            (ClientAuth::None, _) => builder.with_no_client_auth(),
            (auth, Some(roots)) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
                let verifier = if auth == ClientAuth::Request { verifier.allow_unauthenticated() } else { verifier };
                builder.with_client_cert_verifier(verifier.build()?)
            }
            (auth, None) => anyhow::bail!("tls-client-auth {auth:?} needs --tls-ca"),
        };
        let mut server = builder.with_single_cert(files.chain.clone(), files.key.clone_key())?;
        server.alpn_protocols = alpn;
        Ok(Arc::new(server))
    };
    let peer = match &files.roots {
        Some(roots) => Some(peer_client(provider.clone(), roots.clone(), &files)?),
        None => None,
    };
    Ok(Material { grpc: server(vec![ALPN_H2.to_vec()])?, kafka: server(Vec::new())?, peer })
}

/// Verifies peers against the CA and presents this broker's certificate, so peers that require client
/// certificates accept it.
fn peer_client(
    provider: Arc<rustls::crypto::CryptoProvider>,
    roots: Arc<RootCertStore>,
    files: &files::Files,
) -> anyhow::Result<Arc<ClientConfig>> {
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(files.chain.clone(), files.key.clone_key())?;
    client.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(client))
}

#[cfg(test)]
mod tests;
