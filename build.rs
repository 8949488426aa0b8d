//! Compiles hale's own protobuf API (proto/) with protox, so the build needs
//! no system protoc. Each message gets prost types (for the wire and `Any`)
//! and pbjson serde impls (for the same message inside a YAML/JSON
//! `typed_config`), from one definition.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/hale/config/health/v1/health_server.proto",
    "proto/hale/filters/http/degraded/v1/degraded.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("hale_descriptor.bin");

    let fds = protox::compile(PROTOS, ["proto"])?;
    let descriptor_bytes = prost::Message::encode_to_vec(&fds);
    std::fs::write(&descriptor_path, &descriptor_bytes)?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds)?;

    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .build(&[".hale"])?;

    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
