//! Rill's wire protocol: the generated gRPC types and services (`v1`), the record batch codec (`batch`), its
//! compression codecs (`compression`) and SCRAM logins (`scram`), shared by the client, which encodes batches
//! and logs in, and the broker, which validates and stores batches verbatim and checks logins.

pub mod batch;
pub mod compression;
pub mod scram;

/// Fuzz target bodies (`fuzz/`, and the stable test that replays them); not part of the API.
#[doc(hidden)]
pub mod fuzzing;
mod varint;

pub use compression::Compression;

/// Generated from `proto/rill.proto`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("rill.v1");
}

/// Generated from `proto/raft.proto`: the controller quorum's internal Raft transport.
#[allow(clippy::all, missing_docs)]
pub mod raft_v1 {
    tonic::include_proto!("rill.raft.v1");
}
