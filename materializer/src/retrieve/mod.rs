//! Point-in-time retrieval: for every row of an entity table, each requested view's feature
//! values as they were at the row's time (ARCHITECTURE.md states its invariants).
//!
//! Per view, one DataFusion plan: the view's rows (source → `field_mapping` → `query`), pruned to
//! the entity table's time span (for small entity tables also to its key values) and sorted by
//! (join keys, event time, created time); the entity keys and times sorted the same way; and the
//! [`asof::AsOfExec`] merge of the two (split by the join keys' hash when there are at least two cores
//! per view). Sorts spill to disk under the memory limit, so neither side is held whole. Each
//! view's join output is put back in input order by a gather on `__row` when it fits the view's
//! share of the memory limit, else by a spilling sort on `__row`. The per-view results are zipped with the entity table read again in file order, so
//! the output streams, every entity row exactly once, with all its columns.
//!
//! - [`entities`] — the entity table (Parquet, Arrow IPC, CSV, or batches in memory)
//! - `budget` — the memory limit: the spilling session, each view's share for the gather
//! - `outputs` — the output's columns and their names; `selection` — what a selection names
//! - `view_plan`, `entity_keys`, [`asof`] — one view's join; `on_cluster` — the same join run
//!   on a Ballista cluster (entity keys staged for its executors, the plan submitted)
//! - `gather` — a view's join output back in input order; `zip` — the views and the entity
//!   table side by side
//! - `output_file` — writing the table; `stream_error` — what a failure means to the user
//! - [`manifest`] — fingerprints of the inputs, checked by `--rebuild`

pub mod asof;
mod budget;
pub mod entities;
mod entity_keys;
mod gather;
pub mod manifest;
mod merge;
mod on_cluster;
mod output_file;
mod outputs;
mod parquet_bounds;
mod selection;
mod stream_error;
mod view_plan;
pub mod window;
mod zip;

use std::path::Path;

use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use quiver_registry::{FeatureRef, Registry};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use budget::default_memory_limit;
pub use entities::{DEFAULT_TIMESTAMP_COLUMN, EntityFormat, EntityInput, EntityLimits};
pub use on_cluster::remove_staged;
pub use output_file::{output_is_arrow, temp_path, write_output};
pub use selection::resolve_selection;
pub use stream_error::{MEMORY_HINT, stream_error};

/// How the table is computed (recorded in the manifest).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// Name output columns `view__feature` instead of `feature`.
    pub full_feature_names: bool,
    /// Only rows created at or before the entity row's time are candidates.
    pub created_cutoff: bool,
}

/// Resources of the engine (not part of the result).
#[derive(Debug, Clone)]
pub struct Engine {
    /// DataFusion partitions (CPU threads) per scan.
    pub partitions: usize,
    /// Memory the sorts may hold before spilling to disk.
    pub memory_limit: usize,
    /// Add each view's winning `(event, created)` times as columns `{view}__event_timestamp` and
    /// `{view}__created_timestamp` (used by `verify`).
    pub with_times: bool,
    /// Rows per batch inside the engine (scans, sorts, the as-of merge, the reorder). Small
    /// values only cost speed; tests use them to put batch boundaries everywhere.
    pub batch_rows: usize,
    /// Bytes of one view's join output the reorder to input order may hold in memory (beyond
    /// them, a spilling sort on `__row`); `None`: an even part of half the memory limit.
    pub gather_limit: Option<u64>,
    /// Entity tables of at most this many rows also filter each view's rows by their join keys
    /// (`key IN (…)`), so a one-row request sorts the few rows of its entities, not the source.
    /// 0 turns it off.
    pub key_filter_rows: u64,
    /// Run the views' joins (scans, filters, sorts and merges) on this Ballista cluster
    /// (`engine:` in quiver.yaml); `None`: in this process.
    pub cluster: Option<crate::cluster::Cluster>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            memory_limit: default_memory_limit(),
            with_times: false,
            batch_rows: entities::BATCH_ROWS,
            gather_limit: None,
            key_filter_rows: DEFAULT_KEY_FILTER_ROWS,
            cluster: None,
        }
    }
}

/// Entity tables up to this many rows filter view rows by key (see [`Engine::key_filter_rows`]).
pub const DEFAULT_KEY_FILTER_ROWS: u64 = 20_000;

/// What to retrieve.
#[derive(Debug)]
pub struct Request<'a> {
    pub registry: &'a Registry,
    /// Source paths are relative to it.
    pub root: &'a Path,
    pub features: &'a [FeatureRef],
    pub entities: &'a EntityInput,
    pub options: Options,
}

/// A retrieval in progress: the output schema and its batches, in entity-table order.
pub struct Retrieval {
    pub schema: SchemaRef,
    pub stream: SendableRecordBatchStream,
    /// What the sources' scans read (complete once the stream is drained).
    pub reads: std::sync::Arc<crate::storage::Reads>,
}

impl std::fmt::Debug for Retrieval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retrieval")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// Starts a retrieval. Problems with the request (unknown features, missing join key columns,
/// name collisions) are reported here, before any data is read; read errors come through the
/// stream.
pub async fn retrieve(request: &Request<'_>, engine: &Engine) -> Result<Retrieval> {
    let entity_schema = request.entities.output_schema();
    let (parts, order) = outputs::plan_outputs(
        request.registry,
        request.features,
        &entity_schema,
        request.options,
    )?;
    let (bounds, entity_rows) = request.entities.time_bounds()?;
    // Each view may keep its join output in memory, to restore input order, within this share.
    let share = budget::gather_share(engine, parts.len());
    let ctx = budget::session(engine)?;
    // The views' joins run where the engine runs; the entity table is read here (and staged
    // for a cluster's executors).
    let rows_ctx = match &engine.cluster {
        Some(cluster) => cluster.session(&ctx).await?,
        None => ctx.clone(),
    };
    let schema = outputs::output_schema(&entity_schema, &parts, &order, engine.with_times);

    let mut builder = RecordBatchReceiverStreamBuilder::new(schema.clone(), 2);
    let mut views = Vec::new();
    // The views' merges run side by side; with at least two cores per view, each view's merge
    // is split by key.
    let merges = match &engine.cluster {
        Some(cluster) => cluster.partitions.unwrap_or(engine.partitions).max(1),
        None => (engine.partitions / parts.len().max(1)).max(1),
    };
    for part in &parts {
        let key_filter = entity_rows <= engine.key_filter_rows;
        let join = view_plan::view_plan(
            &ctx,
            &rows_ctx,
            request,
            part.view,
            bounds,
            engine.batch_rows,
            key_filter,
            merges,
            engine.cluster.as_ref(),
        )
        .await?;
        // The plans run with the rows' session (the same one locally): a cluster's jobs take
        // their settings from it — Ballista's (adaptive planner off) and what reading the
        // views' sources recorded (the stores' `storage:` maps). Both share one memory pool.
        let stream = gather::in_input_order(
            join,
            entity_rows,
            share,
            engine.batch_rows,
            rows_ctx.task_ctx(),
        )
        .map_err(Error::engine(format!("feature view `{}`", part.view.name)))?;
        views.push(zip::ViewStream::spawn(&mut builder, stream));
    }
    let picks = outputs::picks(&parts, &order, engine.with_times);
    zip::zip(
        &mut builder,
        request.entities.clone(),
        views,
        picks,
        schema.clone(),
    );
    let stream = builder.build();
    let stream = match &engine.cluster {
        Some(cluster) => on_cluster::checked(stream, &cluster.url),
        None => stream,
    };
    Ok(Retrieval {
        schema,
        stream,
        reads: crate::source::reads(&ctx),
    })
}

/// Our own error, carried through the engine's stream (see [`stream_error()`]).
fn external(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
