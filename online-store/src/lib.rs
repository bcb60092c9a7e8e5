//! Quiver's online store: the one owner of the online key/value format (keys, value blobs, their
//! versioning) and of the backends that hold it (embedded on-disk, Redis standalone and Cluster).
//!
//! It knows the registry's model (views, generations, value types) and nothing about DataFusion,
//! Parquet, HTTP or gRPC. The format and the backends arrive with the online-store issue; this
//! crate is where they live.
