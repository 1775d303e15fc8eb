//! The accept loop: a task per connection, at most `KAFKA_CONNECTIONS_MAX` at once, until shutdown. With
//! TLS, each connection's task runs its handshake first (bounded by `TLS_HANDSHAKE_TIMEOUT_MS`, so a silent
//! or plaintext client frees its slot) and Kafka clients connect with `security.protocol=SSL`.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::BrokerCore;
use super::connection::serve_connection;
use crate::limits::{KAFKA_ACCEPT_BACKOFF_MS, KAFKA_CONNECTIONS_MAX};
use crate::security::tls::{Listener, Tls, handshake};

/// Accepts Kafka clients on `listener` until `core.shutdown` turns true, then stops accepting and returns
/// once every connection has answered the request it was handling and closed.
pub async fn serve(listener: TcpListener, core: Arc<BrokerCore>, tls: Option<Arc<Tls>>) {
    let slots = Arc::new(Semaphore::new(KAFKA_CONNECTIONS_MAX));
    let mut connections = JoinSet::new();
    let mut shutdown = core.shutdown.clone();
    loop {
        // A free slot first: at the limit, new clients wait in the kernel's accept backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = shutdown.wait_for(|stopping| *stopping) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stopping| *stopping) => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let core = core.clone();
                let tls = tls.clone();
                connections.spawn(async move {
                    // `handshake` sets TCP_NODELAY: responses are whole frames written at once.
                    match handshake(stream, peer, tls.as_deref(), Listener::Kafka).await {
                        Ok(accepted) => serve_connection(core, accepted.io, accepted.identity).await,
                        Err(e) => tracing::debug!(%peer, "TLS handshake on the Kafka listener failed: {e}"),
                    }
                    drop(slot);
                });
            }
            // Out of file descriptors, or a connection reset before it was accepted: try again shortly
            // rather than spin.
            Err(e) => {
                tracing::warn!("cannot accept a Kafka connection: {e}");
                tokio::time::sleep(Duration::from_millis(KAFKA_ACCEPT_BACKOFF_MS)).await;
            }
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}
