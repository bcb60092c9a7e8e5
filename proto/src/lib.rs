//! Quiver's protobuf definitions — the Feast-compatible `feast.serving.ServingService` and
//! `feast.types.Value` — and the prost/tonic code generated from them; nothing else. Used only
//! by the feature server and the load generator.

#![allow(missing_debug_implementations, clippy::all)]

pub mod feast {
    pub mod types {
        tonic::include_proto!("feast.types");
    }
    pub mod serving {
        tonic::include_proto!("feast.serving");
    }
}
