//! Quiver's offline engine: DataFusion over Parquet sources, each view's SQL `query`,
//! latest-per-entity selection, point-in-time joins, and writing to an online store with
//! per-view watermarks.
//!
//! It knows the registry and the online store's trait; it knows nothing about the online byte
//! format, HTTP or gRPC. The engine arrives with the materializer issue; this crate is where it
//! lives.
