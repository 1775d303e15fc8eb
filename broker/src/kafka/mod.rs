//! The Kafka wire-protocol listener: unmodified Kafka clients (librdkafka, kafka-python, Java) talk to the
//! broker over it. This module owns the transport: accepting connections (`listener`), the size-prefixed
//! frames (`frame`), request headers (`header`), the table of supported API versions (`versions`) and the
//! dispatch that answers each connection's requests in arrival order (`connection`, `dispatch`). Handlers in
//! `handlers/` turn one decoded request into its response on top of the transport-neutral `BrokerCore`.
//! docs/KAFKA.md describes the protocol surface.

mod connection;
mod dispatch;
mod errors;
mod frame;
mod handlers;
mod header;
mod listener;
mod quota;
mod sasl;
mod versions;

// The one place the Kafka listener names the broker's request core.
use crate::requests::BrokerCore;

// What the fuzz target `kafka_request` feeds bytes to: the framing and the decoding a connection does.
pub(crate) use dispatch::{Decoded, decode_request};
pub(crate) use frame::FrameReader;
pub use listener::serve;
pub use versions::{SUPPORTED_APIS, SupportedApi, supported_versions};
