//! One request frame in, at most one response frame out: decodes the header, gates the API and version on
//! the version table, decodes the body, waits for the broker to be ready where the API needs it, runs the
//! handler and encodes its response at the request's version.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

use super::BrokerCore;
use super::frame::SIZE_PREFIX_BYTES;
use super::header::{self, Framed};
use super::sasl::Session;
use super::versions::SupportedApi;
use super::{handlers, quota, versions};
use crate::limits::STARTUP_WAIT_MS;
use crate::requests::Usage;

/// What the connection does after a request.
pub enum Outcome {
    /// Write this frame (size prefix included).
    Respond(Bytes),
    /// Write nothing: the request expects no answer (Produce with acks=0).
    Silent,
    /// Close the connection, logging why: what Kafka does with a request it cannot parse or does not serve.
    Close(String),
    /// A Produce whose batches are appended, waiting for its acknowledgement: the connection may read (and
    /// append) its next Produce meanwhile and writes this outcome once it is ready, in order.
    Pending(BoxFuture<'static, Outcome>),
}

/// A request frame decoded: its header, its body, and the entry of the version table that admitted it.
pub struct Decoded {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub request: RequestKind,
    pub api: SupportedApi,
}

/// Decodes one request frame (without its size prefix): the header, the version gate, the body. Everything a
/// client's bytes reach before a handler runs; the fuzz target `kafka_request` calls it too.
///
/// # Errors
///
/// The outcome to give the connection instead: `Close` for a frame that does not decode or an API not
/// served, `Respond` for ApiVersions at a version not served.
pub fn decode_request(frame: Bytes) -> Result<Decoded, Outcome> {
    let Framed { api_key, header, mut body } = header::decode(frame).map_err(|e| Outcome::Close(e.to_string()))?;
    let version = header.request_api_version;
    let Some(api) = versions::supported_versions(api_key).filter(|_| versions::is_supported(api_key, version)) else {
        return Err(refuse(api_key, version, header.correlation_id));
    };
    let request = RequestKind::decode(api_key, &mut body, version)
        .map_err(|e| Outcome::Close(format!("cannot decode {api_key:?} v{version} request: {e:#}")))?;
    Ok(Decoded { api_key, header, request, api: *api })
}

/// Handles one request frame (without its size prefix) for the connection's `session`.
pub async fn dispatch(core: &Arc<BrokerCore>, session: &mut Session, frame: Bytes) -> Outcome {
    let Decoded { api_key, header, request, api } = match decode_request(frame) {
        Ok(decoded) => decoded,
        Err(outcome) => return outcome,
    };
    let version = header.request_api_version;
    if api.waits_for_ready && !await_ready(core).await {
        return Outcome::Close("the broker has not joined the cluster yet".into());
    }
    let answered = expects_response(&request);
    let request = match request {
        // The login steps change the connection's identity, so they are answered here, not by a handler.
        RequestKind::SaslHandshake(handshake) => {
            let response = ResponseKind::SaslHandshake(session.handshake(&handshake));
            return respond(api_key, version, header.correlation_id, &response);
        }
        RequestKind::SaslAuthenticate(step) => {
            let response = ResponseKind::SaslAuthenticate(session.authenticate(core, &step));
            return respond(api_key, version, header.correlation_id, &response);
        }
        other => other,
    };
    let who = &session.principal.clone();
    // Every request but ApiVersions (a connection's first) is measured against the caller's quotas; the
    // connection is then held as long as they ask (`quota.rs`).
    if let RequestKind::Produce(produce) = request {
        let (waiting, throttle_ms) = handlers::start_produce(core, who, &header, produce);
        session.hold(throttle_ms);
        let correlation_id = header.correlation_id;
        return Outcome::Pending(Box::pin(async move {
            let mut response = waiting.await;
            quota::report(&mut response, version, throttle_ms);
            if answered { respond(api_key, version, correlation_id, &response) } else { Outcome::Silent }
        }));
    }
    // The Fetch handler measures its request with the bytes it returns; ApiVersions is not measured.
    let measured_apart = matches!(request, RequestKind::Fetch(_) | RequestKind::ApiVersions(_));
    let Some(mut response) = handlers::handle(core, who, &header, request).await else {
        tracing::error!(?api_key, "the version table lists an API that has no handler");
        return Outcome::Close(format!("{api_key:?} has no handler"));
    };
    let throttle_ms = match &response {
        ResponseKind::Fetch(fetched) => u64::try_from(fetched.throttle_time_ms).unwrap_or(0),
        _ if measured_apart => 0,
        _ => core.throttle_ms(who, quota::client_id(&header), Usage::Request),
    };
    quota::report(&mut response, version, throttle_ms);
    session.hold(throttle_ms);
    if !answered {
        return Outcome::Silent;
    }
    respond(api_key, version, header.correlation_id, &response)
}

/// An API or version not served: Kafka closes the connection, except for ApiVersions, which it answers at v0
/// with UNSUPPORTED_VERSION and its versions so that the client can ask again with one it shares (KIP-511).
fn refuse(api_key: ApiKey, version: i16, correlation_id: i32) -> Outcome {
    if api_key == ApiKey::ApiVersions {
        tracing::info!(version, "ApiVersions at a version not served: answering at v0 with UNSUPPORTED_VERSION");
        return respond(api_key, 0, correlation_id, &handlers::unsupported_version_response());
    }
    match versions::supported_versions(api_key) {
        Some(api) => Outcome::Close(format!("{api_key:?} v{version} is not served (only v{})", api.versions)),
        None => Outcome::Close(format!("{api_key:?} is not served")),
    }
}

/// Every request is answered but a Produce with acks=0, whose client reads no response.
fn expects_response(request: &RequestKind) -> bool {
    !matches!(request, RequestKind::Produce(produce) if produce.acks == 0)
}

/// Waits until the broker is registered and has opened its partitions, as gRPC requests do.
async fn await_ready(core: &BrokerCore) -> bool {
    let mut ready = core.ready.clone();
    let wait = ready.wait_for(|ready| *ready);
    matches!(tokio::time::timeout(Duration::from_millis(STARTUP_WAIT_MS), wait).await, Ok(Ok(_)))
}

/// Encodes `response` to `api_key` at `version` as a whole frame: size, response header, body.
fn respond(api_key: ApiKey, version: i16, correlation_id: i32, response: &ResponseKind) -> Outcome {
    match encode_response(api_key, version, correlation_id, response) {
        Ok(frame) => Outcome::Respond(frame),
        Err(e) => {
            tracing::error!(?api_key, version, "cannot encode a response: {e:#}");
            Outcome::Close(format!("cannot encode the {api_key:?} v{version} response"))
        }
    }
}

fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> anyhow::Result<Bytes> {
    let mut frame = BytesMut::new();
    frame.put_i32(0); // the size, filled in below
    // ApiVersions responses always use header v0, so that a client can read one whatever version it asked.
    let header_version = api_key.response_header_version(version);
    ResponseHeader::default().with_correlation_id(correlation_id).encode(&mut frame, header_version)?;
    response.encode(&mut frame, version)?;
    let size = i32::try_from(frame.len() - SIZE_PREFIX_BYTES)?;
    frame[..SIZE_PREFIX_BYTES].copy_from_slice(&size.to_be_bytes());
    Ok(frame.freeze())
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::ProduceRequest;

    use super::*;

    #[test]
    fn only_produce_with_acks_0_goes_unanswered() {
        let produce = |acks| RequestKind::Produce(ProduceRequest::default().with_acks(acks));
        assert!(!expects_response(&produce(0)));
        assert!(expects_response(&produce(1)) && expects_response(&produce(-1)));
        assert!(expects_response(&RequestKind::ApiVersions(Default::default())));
    }

    #[test]
    fn unserved_apis_close_but_apiversions_is_answered_at_v0() {
        assert!(matches!(refuse(ApiKey::Produce, 9, 1), Outcome::Close(_)));
        assert!(matches!(refuse(ApiKey::ApiVersions, 4, 1), Outcome::Respond(_)));
    }
}
