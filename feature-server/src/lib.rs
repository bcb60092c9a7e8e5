//! Quiver's feature server: a transport-free serving core with thin HTTP (axum) and gRPC (tonic)
//! adapters, an optional in-process cache (moka), Prometheus metrics and registry hot reload.
//!
//! It is the only crate that knows HTTP or gRPC. It reads the online store through its trait and
//! codecs; training retrieval (`/get-historical-features`) runs the materializer's engine.
//!
//! - [`service`] — the core: resolve, one store round trip, columnar results with statuses
//! - [`http`] / [`grpc`] — Feast-compatible adapters; [`error`] maps kinds to both protocols;
//!   [`grpc_wire`] writes the gRPC response bytes straight from the core's result
//! - [`snapshot`], [`reload`] — registry versions served, swapped atomically
//! - [`training`] — point-in-time tables over HTTP: entity table in, Arrow IPC stream out
//! - [`auth`] — bearer tokens with scopes, checked the same way for HTTP and gRPC
//! - [`health`] — readiness, one check for `/ready` and gRPC health
//! - [`listener`] — the accept loop of both ports: TLS, request-head timeouts, HTTP/2 idle and
//!   keep-alive timeouts, a connection limit, graceful shutdown;
//!   [`conn_exec`] runs HTTP/2 requests on their connection's task
//! - [`store_report`] — the online store's eviction policy and persistence, warned about and
//!   exported while serving
//! - [`console`] — the web console at `/ui` and the JSON endpoints it reads (overview,
//!   versions, diff, runs, serving statistics)
//! - [`cache`], [`metrics`], [`server`]

pub mod auth;
pub mod cache;
pub mod conn_exec;
pub mod console;
pub mod error;
pub mod grpc;
pub mod grpc_wire;
pub mod health;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod push;
pub mod reload;
pub mod server;
pub mod service;
pub mod snapshot;
pub mod store_report;
pub mod training;

pub use auth::Authenticator;
pub use server::{ServeOptions, serve};
pub use service::{FeatureService, Limits};
pub use snapshot::Snapshot;
pub use training::Training;
