//! Generates the gRPC code from `proto/rill.proto` and `proto/raft.proto` with the vendored `protoc`, so no system
//! package is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Payload fields become `bytes::Bytes`, so decoding a request does not copy record data.
    config.bytes(["."]);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/rill.proto", "proto/raft.proto"],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto/rill.proto");
    println!("cargo:rerun-if-changed=proto/raft.proto");
    Ok(())
}
