//! Compiles `proto/` into Rust (messages, tonic clients and servers) without a system `protoc`,
//! and writes the descriptor set that server reflection serves.

use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = ["proto/haplane/v1/ha.proto", "proto/haplane/v1/entity.proto"];
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("haplane_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .codec_path("crate::codec::HaplaneCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
