//! Accepted connections of both listeners as streams that know their peer: plain TCP or a finished TLS
//! handshake (bounded in time), with the `PeerIdentity` tonic puts into every request's extensions
//! (`Connected`) and the Kafka listener keeps per connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::{Tls, principal_of};
use crate::limits::{
    GRPC_ACCEPT_BACKOFF_MS, GRPC_ACCEPTED_QUEUE_MAX, TLS_HANDSHAKE_TIMEOUT_MS, TLS_HANDSHAKES_MAX,
    TLS_REFUSED_DRAIN_BYTES_MAX, TLS_REFUSED_LINGER_MS,
};
use crate::security::PeerIdentity;

/// Which listener a connection came in on: each has its own TLS configuration (ALPN differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Grpc,
    Kafka,
}

/// The byte stream of an accepted connection.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// An accepted connection, ready for the protocol, and who is at its other end.
pub struct Accepted {
    pub io: Io,
    pub identity: PeerIdentity,
}

/// Completes the TLS handshake of `tcp` (when `tls` is given) within `TLS_HANDSHAKE_TIMEOUT_MS`.
///
/// # Errors
/// The handshake failed (a plaintext client, garbage bytes, an untrusted or missing client certificate where
/// one is required) or timed out; the connection is closed by dropping it.
pub async fn handshake(
    tcp: TcpStream,
    remote: SocketAddr,
    tls: Option<&Tls>,
    listener: Listener,
) -> io::Result<Accepted> {
    handshake_within(tcp, remote, tls, listener, Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS)).await
}

/// `handshake` with its time limit given (the tests use a short one).
pub(super) async fn handshake_within(
    tcp: TcpStream,
    remote: SocketAddr,
    tls: Option<&Tls>,
    listener: Listener,
    limit: Duration,
) -> io::Result<Accepted> {
    // Responses are written whole; Nagle's delay would only hold them back.
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Accepted { io: Io::Plain(tcp), identity: PeerIdentity::plaintext(Some(remote)) });
    };
    let material = tls.current();
    let config = match listener {
        Listener::Grpc => material.grpc.clone(),
        Listener::Kafka => material.kafka.clone(),
    };
    let accepting = tokio_rustls::TlsAcceptor::from(config).accept(tcp).into_fallible();
    let stream = match tokio::time::timeout(limit, accepting).await {
        Ok(Ok(stream)) => stream,
        Ok(Err((error, tcp))) => {
            close_gently(tcp).await;
            return Err(error);
        }
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")),
    };
    let (_, connection) = stream.get_ref();
    let certificate_principal = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| principal_of(leaf, tls.principal_from()));
    let identity = PeerIdentity { remote_addr: Some(remote), tls: true, certificate_principal };
    Ok(Accepted { io: Io::Tls(Box::new(stream)), identity })
}

/// Closes a connection whose handshake failed so that the alert rustls wrote reaches the client: closing a
/// socket with unread bytes (a plaintext client's first request, a TLS 1.3 client's first records after its
/// side of the handshake) makes the kernel send a reset, which can discard the alert before the client
/// reads it. So the write side is shut first and what the client still sends is read and dropped, for at
/// most `TLS_REFUSED_LINGER_MS` and `TLS_REFUSED_DRAIN_BYTES_MAX` bytes.
async fn close_gently(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let drain = async {
        let _ = tcp.shutdown().await;
        let mut buffer = [0u8; 4096];
        let mut drained = 0;
        while drained < TLS_REFUSED_DRAIN_BYTES_MAX {
            match tcp.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(TLS_REFUSED_LINGER_MS), drain).await;
}

/// The gRPC server's incoming connections: an accept loop hands each TLS handshake to its own task (so one
/// slow client cannot stall others), at most `TLS_HANDSHAKES_MAX` at once, and queues finished connections
/// for tonic. The loop stops when the server drops the stream.
pub fn grpc_incoming(listener: TcpListener, tls: Option<Arc<Tls>>) -> ReceiverStream<io::Result<Accepted>> {
    let (accepted_tx, accepted) = mpsc::channel(GRPC_ACCEPTED_QUEUE_MAX);
    tokio::spawn(accept_loop(listener, tls, accepted_tx));
    ReceiverStream::new(accepted)
}

async fn accept_loop(listener: TcpListener, tls: Option<Arc<Tls>>, accepted: mpsc::Sender<io::Result<Accepted>>) {
    let handshakes = Arc::new(Semaphore::new(TLS_HANDSHAKES_MAX));
    loop {
        let slot = tokio::select! {
            slot = handshakes.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = accepted.closed() => return,
        };
        let (tcp, remote) = tokio::select! {
            next = listener.accept() => match next {
                Ok(connection) => connection,
                Err(e) => {
                    tracing::warn!("cannot accept a gRPC connection: {e}");
                    tokio::time::sleep(Duration::from_millis(GRPC_ACCEPT_BACKOFF_MS)).await;
                    continue;
                }
            },
            _ = accepted.closed() => return,
        };
        let tls = tls.clone();
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let outcome = handshake(tcp, remote, tls.as_deref(), Listener::Grpc).await;
            drop(slot);
            match outcome {
                Ok(connection) => {
                    let _ = accepted.send(Ok(connection)).await;
                }
                Err(e) => tracing::debug!(%remote, "TLS handshake on the gRPC listener failed: {e}"),
            }
        });
    }
}

impl tonic::transport::server::Connected for Accepted {
    type ConnectInfo = PeerIdentity;

    fn connect_info(&self) -> PeerIdentity {
        self.identity.clone()
    }
}

impl AsyncRead for Accepted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
