//! Generates the `snix.castore.v1` types and gRPC stubs from `proto/`, with
//! protox (a pure-Rust protobuf compiler; no system protoc). The file
//! descriptor set is kept for gRPC reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = "../../proto";
    let files =
        ["snix/castore/v1/castore.proto", "snix/castore/v1/rpc_blobstore.proto", "snix/castore/v1/rpc_directory.proto"];
    let fds = protox::compile(files, [proto_root])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("castore_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().bytes(".").compile_fds(fds)?;
    println!("cargo:rerun-if-changed={proto_root}/snix/castore");
    Ok(())
}
