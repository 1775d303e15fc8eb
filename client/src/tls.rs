//! TLS towards brokers: the client's CA bundle, certificate and key (`TlsConfig`), and the connectors its
//! gRPC channels dial with. Both connectors (TLS and plaintext) watch what the first bytes of a connection
//! say, so that a misconfiguration fails with a sentence naming the fix instead of a bare transport error:
//! a certificate the CA does not vouch for, a broker that requires a client certificate, a plaintext client
//! talking to a TLS broker (its answer starts with a TLS record) or a TLS client talking to a plaintext one.
//! The sentence is kept per address in `Diagnoses`, which `Cluster` consults when a call fails.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{Error, Result};

/// TLS settings of a client: the CA bundle brokers' certificates are verified against and, for brokers that
/// ask for one, a client certificate and its key (PEM files). A broker's certificate must name the host or
/// IP address it is dialled at.
///
/// # Examples
///
/// ```
/// use rill_client::{ClientConfig, TlsConfig};
///
/// let tls = TlsConfig { ca: Some("certs/ca.pem".into()), ..TlsConfig::default() };
/// let config = ClientConfig { tls: Some(tls), ..ClientConfig::new("localhost:9400").unwrap() };
/// assert!(config.tls.is_some());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM CA bundle; required, since the client carries no built-in roots.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain, for brokers that request or require one.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    /// Reads the files into a rustls client configuration.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the file: missing or unreadable, no PEM block in it, a certificate without a
    /// key (or the reverse), a key that does not belong to the certificate, or no CA.
    pub(crate) fn client_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        let config_error = |message: String| Error::Config(message);
        let ca = self.ca.as_ref().ok_or_else(|| {
            config_error("TLS needs a CA bundle to verify brokers against: pass --tls-ca (RILL_TLS_CA)".into())
        })?;
        let mut roots = RootCertStore::empty();
        for certificate in certificates(ca, "tls-ca")? {
            roots.add(certificate).map_err(|e| config_error(format!("tls-ca {}: {e}", ca.display())))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = certificates(cert, "tls-cert")?;
                let key_der = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| config_error(format!("tls-key {}: no PEM private key ({e})", key.display())))?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    config_error(format!("tls-cert {} with tls-key {}: {e}", cert.display(), key.display()))
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => return Err(config_error("tls-cert is set without tls-key".into())),
            (None, Some(_)) => return Err(config_error("tls-key is set without tls-cert".into())),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

fn certificates(path: &PathBuf, flag: &str) -> Result<Vec<CertificateDer<'static>>> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::Config(format!("cannot read {flag} {}: {e}", path.display())))?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("{flag} {} is not valid PEM: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(Error::Config(format!("{flag} {} holds no PEM CERTIFICATE block", path.display())));
    }
    Ok(chain)
}

/// The last explained connection failure per broker address, cleared by the next healthy connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Diagnoses(Arc<Mutex<HashMap<String, String>>>);

impl Diagnoses {
    /// Why the latest connection to `address` failed, if a connector could tell.
    pub fn of(&self, address: &str) -> Option<String> {
        self.0.lock().expect("diagnoses lock poisoned").get(address).cloned()
    }

    fn set(&self, address: &str, why: String) -> io::Error {
        self.0.lock().expect("diagnoses lock poisoned").insert(address.to_owned(), why.clone());
        io::Error::other(why)
    }

    fn clear(&self, address: &str) {
        self.0.lock().expect("diagnoses lock poisoned").remove(address);
    }
}

/// A lazily connected channel to `address` through a connector that explains TLS failures.
pub(crate) fn channel(
    endpoint: Endpoint,
    address: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    diagnoses: Diagnoses,
) -> Channel {
    let address = address.to_owned();
    endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: Uri| {
        let (address, tls, diagnoses) = (address.clone(), tls.clone(), diagnoses.clone());
        async move { dial(&uri, address, tls, diagnoses).await.map(TokioIo::new) }
    }))
}

async fn dial(
    uri: &Uri,
    address: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    diagnoses: Diagnoses,
) -> io::Result<Watched> {
    let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    let _ = tcp.set_nodelay(true);
    let Some(config) = tls else {
        return Ok(Watched { inner: Inner::Plain(tcp), address, diagnoses, answered: false });
    };
    let name = ServerName::try_from(host.clone()).map_err(|e| {
        diagnoses.set(&address, format!("'{host}' is not a host name to verify a certificate for: {e}"))
    })?;
    match tokio_rustls::TlsConnector::from(config).connect(name, tcp).await {
        Ok(stream) => Ok(Watched { inner: Inner::Tls(Box::new(stream)), address, diagnoses, answered: false }),
        Err(e) => Err(diagnoses.set(&address, explain_tls(&address, &e))),
    }
}

/// A client connection that turns its first failure, or a TLS answer to plaintext, into a diagnosis.
struct Watched {
    inner: Inner,
    address: String,
    diagnoses: Diagnoses,
    /// Whether the broker's first bytes arrived and were what the connection expected.
    answered: bool,
}

enum Inner {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// The first bytes of a TLS record: an alert (21) or handshake (22) record, TLS major version 3. An HTTP/2
/// server's first frame (SETTINGS) starts with a 24-bit length, whose first byte is 0 for any frame it sends.
fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [21 | 22, 3, ..])
}

/// Why a TLS connection to `address` failed, as advice.
fn explain_tls(address: &str, error: &io::Error) -> String {
    let rustls_error = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
    let why = match rustls_error {
        Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature)) => {
            "certificate not trusted: the broker's certificate is not signed by a CA in --tls-ca".to_owned()
        }
        Some(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => "the broker's certificate does not name the host it was dialled at".to_owned(),
        Some(rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => "the broker's certificate has expired".to_owned(),
        Some(rustls::Error::InvalidCertificate(other)) => format!("the broker's certificate is not valid ({other:?})"),
        Some(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired | AlertDescription::HandshakeFailure,
        )) => "the broker requires a client certificate: pass --tls-cert and --tls-key".to_owned(),
        Some(rustls::Error::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::DecryptError
            | AlertDescription::AccessDenied,
        )) => "the broker refused this client's certificate (is it issued by the broker's CA?)".to_owned(),
        Some(rustls::Error::InvalidMessage(_)) => {
            "the broker did not answer in TLS: does it run without TLS? Then leave out --tls-ca".to_owned()
        }
        Some(other) => other.to_string(),
        None if error.kind() == io::ErrorKind::UnexpectedEof => {
            "the broker closed the connection: does it run without TLS? Then leave out --tls-ca".to_owned()
        }
        None => error.to_string(),
    };
    format!("TLS handshake with {address} failed: {why}")
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let filled_before = buf.filled().len();
        let polled = match &mut this.inner {
            Inner::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        match polled {
            Poll::Ready(Ok(())) if !this.answered && buf.filled().len() > filled_before => {
                let tls = matches!(this.inner, Inner::Tls(_));
                if !tls && looks_like_tls(&buf.filled()[filled_before..]) {
                    let why = format!(
                        "TLS handshake with {} failed: the broker speaks TLS and this client does not; pass --tls-ca \
                         (and --tls-cert and --tls-key if the broker requires client certificates)",
                        this.address
                    );
                    return Poll::Ready(Err(this.diagnoses.set(&this.address, why)));
                }
                this.answered = true;
                this.diagnoses.clear(&this.address);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) if !this.answered && matches!(this.inner, Inner::Tls(_)) => {
                // TLS 1.3 checks a client certificate after the client's side of the handshake is done, so a
                // refusal arrives as the first read's error.
                Poll::Ready(Err(this.diagnoses.set(&this.address, explain_tls(&this.address, &e))))
            }
            other => other,
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_flush(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_records_are_told_apart_from_http2_frames() {
        assert!(looks_like_tls(&[21, 3, 3, 0, 2, 2, 50]), "an alert");
        assert!(looks_like_tls(&[22, 3, 3, 0, 90]), "a server hello");
        assert!(!looks_like_tls(&[0, 0, 18, 4, 0]), "an HTTP/2 SETTINGS frame");
        assert!(!looks_like_tls(&[21]));
    }

    #[test]
    fn missing_files_and_halves_are_configuration_errors() {
        let none = TlsConfig::default().client_config().unwrap_err().to_string();
        assert!(none.contains("--tls-ca"), "{none}");
        let absent = TlsConfig { ca: Some("/nonexistent/ca.pem".into()), ..TlsConfig::default() };
        assert!(absent.client_config().unwrap_err().to_string().contains("cannot read tls-ca"));
    }
}
