//! The HTTP listener (`--http-listen`): `/metrics` for Prometheus, `/health` and `/ready` for orchestrators,
//! and the read-only web console under `/ui`. A transport like the others: it reads through the request
//! core's monitoring view (`requests/monitor.rs`) and changes nothing, so it needs no login; it binds to
//! loopback unless told otherwise.

mod console;
mod metrics;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::requests::BrokerCore;

/// What Prometheus asks for and the encoder writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves until the broker shuts down.
pub async fn serve(listener: TcpListener, core: Arc<BrokerCore>) {
    let mut shutdown = core.shutdown.clone();
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .merge(console::routes())
        .with_state(core);
    let stopped = async move {
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
        tracing::error!("HTTP listener failed: {e}");
    }
}

async fn scrape(State(core): State<Arc<BrokerCore>>) -> Response {
    match metrics::render(&core).await {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the metrics: {e}\n")).into_response(),
    }
}

/// 200 once the broker is registered, has opened its partitions and holds its controller lease; 503 with
/// the reason otherwise (starting, fenced or cut off from the controller, shutting down).
async fn ready(State(core): State<Arc<BrokerCore>>) -> Response {
    let not_ready = if *core.shutdown.borrow() {
        Some("shutting down")
    } else if !*core.ready.borrow() {
        Some("starting: not registered with the controller yet")
    } else if !core.link.lease_valid() {
        Some("no controller lease: this broker cannot reach the controller")
    } else {
        None
    };
    match not_ready {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")).into_response(),
    }
}
