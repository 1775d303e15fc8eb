//! Reading the PEM files named by `--tls-cert`, `--tls-key` and `--tls-ca`, with errors that name the file and
//! say what is wrong with it.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;
use crate::limits::TLS_FILE_BYTES_MAX;

/// What one reading of the files gave.
pub struct Files {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub roots: Option<Arc<RootCertStore>>,
}

pub fn read(config: &TlsConfig) -> anyhow::Result<Files> {
    let chain = certificates(&config.cert, "tls-cert")?;
    let key_bytes = bounded(&config.key, "tls-key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        anyhow::anyhow!("tls-key {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}", config.key.display())
    })?;
    check_key_matches(&chain, &key, config)?;
    let roots = match &config.ca {
        Some(path) => Some(Arc::new(roots(path)?)),
        None => None,
    };
    Ok(Files { chain, key, roots })
}

/// Reads a file of at most `TLS_FILE_BYTES_MAX` bytes.
fn bounded(path: &Path, flag: &str) -> anyhow::Result<Vec<u8>> {
    let metadata =
        std::fs::metadata(path).map_err(|e| anyhow::anyhow!("cannot read {flag} {}: {e}", path.display()))?;
    anyhow::ensure!(
        metadata.len() <= TLS_FILE_BYTES_MAX,
        "{flag} {} is {} bytes, more than a PEM file of certificates or keys should be ({TLS_FILE_BYTES_MAX})",
        path.display(),
        metadata.len()
    );
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {flag} {}: {e}", path.display()))
}

fn certificates(path: &Path, flag: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let bytes = bounded(path, flag)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{flag} {} is not valid PEM: {e}", path.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{flag} {} holds no PEM CERTIFICATE block", path.display());
    Ok(chain)
}

fn roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path, "tls-ca")? {
        roots
            .add(certificate)
            .map_err(|e| anyhow::anyhow!("tls-ca {} holds a certificate rustls cannot use: {e}", path.display()))?;
    }
    Ok(roots)
}

/// A key that does not belong to the certificate would only show up as every handshake failing.
fn check_key_matches(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    config: &TlsConfig,
) -> anyhow::Result<()> {
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| anyhow::anyhow!("tls-key {} is not a key rustls can sign with: {e}", config.key.display()))?;
    rustls::sign::CertifiedKey::new(chain.to_vec(), signing_key).keys_match().map_err(|e| {
        anyhow::anyhow!(
            "tls-key {} does not belong to the certificate in tls-cert {}: {e}",
            config.key.display(),
            config.cert.display()
        )
    })
}
