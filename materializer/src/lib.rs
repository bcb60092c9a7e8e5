//! Quiver's offline engine: DataFusion over Parquet sources and each view's SQL `query`,
//! latest-per-entity selection, and writing to an online store with per-view watermarks.
//!
//! It knows the registry and the online store's trait and codecs; it knows nothing about how a
//! backend stores bytes, nor about HTTP or gRPC.
//!
//! - [`source`] — a view's input as a DataFusion plan; the query-aware `SchemaResolver`
//! - [`columns`] — record batches as entity keys, timestamps and value blobs
//! - [`latest`] — each entity's latest row, in memory bounded by the number of entities
//! - [`materialize`] — ranges, watermarks, writes and run records; `store_check` — refusing a
//!   store that may evict values, counting evictions during a run
//! - [`retrieve`] — point-in-time training tables: the sort-merge as-of join, manifests
//! - [`verify`] — online values against the offline join at each view's watermark
//! - [`output_name`] — a feature's output column name (`view__feature` or `feature`), and
//!   [`OutputNames`], the check that no two output columns share one (training and serving)

pub mod aggregates;
pub mod cluster;
pub mod columns;
pub mod error;
pub mod latest;
pub mod materialize;
mod output_names;
pub mod push;
pub mod retrieve;
pub mod source;
pub mod storage;
mod store_check;
pub mod verify;

pub use error::{Error, Result};
pub use materialize::{Job, Progress, Quiet, Range, materialize, rfc3339, select_views};
pub use output_names::{Collision, OutputNames, output_name};
pub use source::DataFusionSchemaResolver;
