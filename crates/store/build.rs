//! Generates the `snix.store.v1` types and gRPC stubs from `proto/` with
//! protox. The castore types it imports are not generated again here: they
//! refer to `snix_castore::proto`, the one place they are generated.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = "../../proto";
    let files = ["snix/store/v1/pathinfo.proto", "snix/store/v1/rpc_pathinfo.proto"];
    let fds = protox::compile(files, [proto_root])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("store_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        .bytes(".")
        .extern_path(".snix.castore.v1", "::snix_castore::proto")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed={proto_root}/snix/store");
    Ok(())
}
