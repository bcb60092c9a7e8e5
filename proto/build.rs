//! Compiles the `.proto` files with protox (pure Rust: no system `protoc`) and generates the
//! prost messages and tonic client/server code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/feast/serving/ServingService.proto",
        "proto/feast/serving/GrpcServer.proto",
        "proto/feast/types/Value.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
