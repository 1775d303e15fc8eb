//! Rill's wire protocol: the generated gRPC types and services (`v1`) and the record batch codec (`batch`)
//! shared by the client, which encodes batches, and the broker, which validates and stores them verbatim.

pub mod batch;
mod varint;

/// Generated from `proto/rill.proto`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("rill.v1");
}
