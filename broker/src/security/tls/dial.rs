//! Channels to peer brokers: plain tonic channels without TLS; with TLS, a connector that dials TCP and runs
//! the TLS handshake with the peer client configuration current at that moment, so reconnections after a
//! reload use the new material. Peers are verified against `--tls-ca` under the host name or IP address they
//! are dialled at, and this broker presents its own certificate as a client certificate.

use std::io;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::Tls;

/// A lazily connected channel to the peer of `endpoint` (an `http://host:port` endpoint with its timeouts).
pub fn peer_channel(endpoint: Endpoint, tls: Option<&Arc<Tls>>) -> Channel {
    let Some(tls) = tls else { return endpoint.connect_lazy() };
    let tls = tls.clone();
    endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: Uri| {
        let tls = tls.clone();
        async move { dial(&tls, &uri).await.map(TokioIo::new) }
    }))
}

async fn dial(tls: &Tls, uri: &Uri) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let host = uri.host().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} has no host")))?;
    let port = uri.port_u16().unwrap_or(80);
    // An IPv6 literal comes bracketed in a URI; the name to verify is the bare address.
    let name = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let server_name = ServerName::try_from(name.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("peer host '{name}': {e}")))?;
    let config = tls
        .current()
        .peer
        .clone()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "no --tls-ca to verify peer brokers against"))?;
    let tcp = TcpStream::connect((name.as_str(), port)).await?;
    let _ = tcp.set_nodelay(true);
    tokio_rustls::TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake with peer {name}:{port} failed: {e}")))
}
