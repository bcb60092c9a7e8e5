//! Quiver's online store: the one owner of the online key/value format (docs/online-format.md)
//! and of the backends that hold it: embedded (redb, on disk) and Redis (standalone, Cluster).
//!
//! It knows the registry's value types and nothing about DataFusion, Parquet, HTTP or gRPC.
//!
//! - [`key_codec`] — keys and entity keys (with the Cluster hash tag)
//! - [`value_codec`] — value blobs: timestamps, presence bitmap, typed values
//! - [`store`] — the [`OnlineStore`] trait and [`open`]
//! - `embedded`, `redis_backend` — the backends

mod embedded;
pub mod error;
pub mod key_codec;
mod redis_backend;
pub mod store;
pub mod value_codec;

pub use embedded::EmbeddedStore;
pub use error::{Error, Result};
pub use redis_backend::{RedisStore, slot};
pub use store::{OnlineStore, WriteEntry, open};
