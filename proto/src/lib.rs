//! Quiver's protobuf definitions — the Feast-compatible `feast.serving.ServingService`,
//! `feast.types.Value` and Feast's package-less `GrpcFeatureServer` (pushes and writes) — and
//! the prost/tonic code generated from them; nothing else. Used only by the feature server, the
//! load generator and tests.

#![allow(missing_debug_implementations, clippy::all)]

pub mod feast {
    pub mod types {
        tonic::include_proto!("feast.types");
    }
    pub mod serving {
        tonic::include_proto!("feast.serving");
    }
}

// Feast's `GrpcFeatureServer` (`feast/serving/GrpcServer.proto`) has no package: its messages
// and service live at the root (`quiver_proto::PushRequest`, `quiver_proto::grpc_feature_server_client`).
include!(concat!(env!("OUT_DIR"), "/_.rs"));
