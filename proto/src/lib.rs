//! Rill's wire protocol: the generated gRPC types and services (`v1`) and the record batch codec (`batch`)
//! shared by the client, which encodes batches, and the broker, which validates and stores them verbatim.

pub mod batch;
mod varint;

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
