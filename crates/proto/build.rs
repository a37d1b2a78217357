//! Compiles `proto/` with protox (pure Rust), so a bare machine needs no system `protoc`.
//! The descriptor set is kept for gRPC reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "himaya/v1/record.proto",
        "himaya/v1/intake.proto",
        "himaya/v1/cases.proto",
        "himaya/v1/directory.proto",
        "himaya/v1/casework.proto",
        "himaya/v1/staff.proto",
        "himaya/v1/consents.proto",
        "himaya/v1/duplicates.proto",
        "himaya/v1/oversight.proto",
        "himaya/v1/referrals.proto",
        "himaya/v1/audit.proto",
    ];
    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("himaya_descriptor.bin");
    std::fs::write(&out, fds.encode_to_vec())?;
    // Generates from the descriptor protox made: no protoc run, no second parse.
    tonic_prost_build::configure().compile_fds(fds)?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
