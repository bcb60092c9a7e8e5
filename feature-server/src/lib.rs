//! Quiver's feature server: a transport-free serving core (`service`) with thin HTTP (axum) and
//! gRPC (tonic) adapters, and an optional in-process cache.
//!
//! It is the only crate that knows HTTP or gRPC. The server arrives with the feature-server
//! issue; this crate is where it lives.
