//! Quiver's online store: the one owner of the online key/value format (docs/online-format.md)
//! and of the backends that hold it: embedded (redb, on disk) and Redis (standalone, Cluster).
//!
//! It knows the registry's value types and nothing about DataFusion, Parquet, HTTP or gRPC.
//!
//! - [`key_codec`] — keys and entity keys (with the Cluster hash tag)
//! - [`value_codec`] — value blobs: timestamps, presence bitmap, typed values
//! - [`store`] — the [`OnlineStore`] trait (it knows no backend); [`mod@open`] —
//!   [`open()`], a backend from the configuration; [`reconnect`] — [`open_or_retry`], a store
//!   that connects in the background when it cannot be reached at first
//! - [`health`] — what a store reports about keeping values: eviction, persistence, evictions
//! - `embedded`, `redis_backend` — the backends

pub mod aggregate;
mod embedded;
pub mod error;
pub mod health;
pub mod key_codec;
pub mod open;
pub mod reconnect;
mod redis_backend;
mod redis_health;
pub mod store;
pub mod tiles;
pub mod value_codec;

pub use embedded::EmbeddedStore;
pub use error::{Error, Result};
pub use health::StoreReport;
pub use open::open;
pub use reconnect::open_or_retry;
pub use redis_backend::{RedisStore, slot};
pub use store::{LiveSwapEntry, OnlineStore, SwapEntry, WriteEntry};
