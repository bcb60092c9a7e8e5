//! Point-in-time retrieval: for every row of an entity table, each requested view's feature
//! values as they were at the row's time (see DESIGN.md, "Point-in-time retrieval").
//!
//! Per view, one DataFusion plan: the view's rows (source → `field_mapping` → `query`), pruned to
//! the entity table's time span and sorted by (join keys, event time, created time); the entity
//! keys and times sorted the same way; the [`asof::AsOfExec`] merge of the two; and a sort back to
//! input order. Sorts spill to disk under the memory limit, so neither side is held whole. The
//! per-view results, each in input order, are zipped with the entity table read again in file
//! order, so the output streams, every entity row exactly once, with all its columns.

pub mod asof;
pub mod entities;
pub mod manifest;
mod parquet_bounds;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, UInt64Array};
use arrow::compute::{can_cast_types, concat_batches};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr_common::sort_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion::prelude::{Expr, SessionConfig, SessionContext, cast as cast_expr, ident, lit};
use futures::StreamExt;
use quiver_registry::{FeatureRef, FeatureView, Registry};
use serde::{Deserialize, Serialize};

use crate::columns::{Layout, canonical_type, key_type, utc_ns};
use crate::error::{Error, Result};
use crate::source::view_input;
use asof::{AsOfExec, AsOfSpec, CREATED, ENTITY_ROW, ENTITY_TIME, EVENT};
pub use entities::{DEFAULT_TIMESTAMP_COLUMN, EntityFormat, EntityInput, EntityLimits};

/// How the table is computed (recorded in the manifest).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// Name output columns `view__feature` instead of `feature`.
    pub full_feature_names: bool,
    /// Only rows created at or before the entity row's time are candidates.
    pub created_cutoff: bool,
}

/// Resources of the engine (not part of the result).
#[derive(Debug, Clone, Copy)]
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
        }
    }
}

/// Entity tables up to this many rows filter view rows by key (see [`Engine::key_filter_rows`]).
pub const DEFAULT_KEY_FILTER_ROWS: u64 = 20_000;

/// A quarter of physical memory, at least 1 GiB: the sorts share it in fair parts (each sort of
/// each partition gets its share), so a limit near the data size would make them spill early.
pub fn default_memory_limit() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<usize>().ok())
            .map(|kb| kb * 1024)
    });
    total.map_or(2 << 30, |t| t / 4).max(1 << 30)
}

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

/// One view's part of the output.
#[derive(Debug)]
struct ViewPart<'r> {
    view: &'r FeatureView,
    /// (index of the feature in the view, output name), in request order.
    outputs: Vec<(usize, String)>,
}

/// Output feature columns in request order, as (view part, output of that part).
type OutputOrder = Vec<(usize, usize)>;

/// Groups the requested features by view (views in order of first mention) and names the output
/// columns; every name must be unique, entity columns included.
fn plan_outputs<'r>(
    registry: &'r Registry,
    features: &[FeatureRef],
    entity_schema: &Schema,
    options: Options,
) -> Result<(Vec<ViewPart<'r>>, OutputOrder)> {
    if features.is_empty() {
        return Err(Error::Invalid("no features requested".into()));
    }
    let mut parts: Vec<ViewPart<'r>> = Vec::new();
    let mut order = Vec::new();
    let mut names: HashSet<String> = entity_schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    for r in features {
        let view = registry
            .feature_views
            .get(&r.view)
            .ok_or_else(|| Error::Invalid(format!("unknown feature view `{}`", r.view)))?;
        let index = view
            .features
            .iter()
            .position(|f| f.name == r.feature)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "feature view `{}` has no feature `{}`",
                    r.view, r.feature
                ))
            })?;
        let name = if options.full_feature_names {
            format!("{}__{}", r.view, r.feature)
        } else {
            r.feature.clone()
        };
        if !names.insert(name.clone()) {
            let from_entities = entity_schema.field_with_name(&name).is_ok();
            let hint = match (from_entities, options.full_feature_names) {
                (true, true) => "rename the entity table's column",
                (true, false) => {
                    "use full feature names (`view__feature`) or rename the entity table's column"
                }
                (false, true) => "request each feature once",
                (false, false) => {
                    "use full feature names (`view__feature`), or request each feature once"
                }
            };
            let other = if from_entities {
                "a column of the entity table"
            } else {
                "another requested feature"
            };
            return Err(Error::Invalid(format!(
                "output column `{name}` (from `{r}`) collides with {other}; {hint}"
            )));
        }
        let p = match parts.iter().position(|p| p.view.name == r.view) {
            Some(p) => p,
            None => {
                parts.push(ViewPart {
                    view,
                    outputs: Vec::new(),
                });
                parts.len() - 1
            }
        };
        order.push((p, parts[p].outputs.len()));
        parts[p].outputs.push((index, name));
    }
    Ok((parts, order))
}

/// A DataFusion session whose sorts spill to disk beyond `memory_limit`.
fn session(engine: &Engine) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_target_partitions(engine.partitions.max(1))
        .with_batch_size(engine.batch_rows.max(1))
        .with_information_schema(false)
        // Each sort reserves this much for merging its spills; several sorts run at once.
        .with_sort_spill_reservation_bytes((engine.memory_limit / 64).clamp(256 << 10, 10 << 20))
        .with_sort_in_place_threshold_bytes((engine.memory_limit / 16).max(1 << 20));
    // Fair shares: sorts of both inputs and of the output run at once, each may spill.
    let pool = Arc::new(FairSpillPool::new(engine.memory_limit));
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(pool)
        .build_arc()
        .map_err(Error::engine("setting up the query engine"))?;
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

fn ts_lit(ns: i64) -> Expr {
    lit(ScalarValue::TimestampNanosecond(
        Some(ns),
        Some("UTC".into()),
    ))
}

/// The entity table's join keys (cast to the key type), time and position, for one view.
#[derive(Debug)]
struct EntityKeys {
    input: EntityInput,
    keys: Vec<(String, DataType)>,
    schema: SchemaRef,
}

impl EntityKeys {
    fn project(&self, batch: &RecordBatch, first_row: u64) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.keys.len() + 2);
        for (name, to) in &self.keys {
            let column = batch
                .column_by_name(name)
                .ok_or_else(|| Error::Invalid(format!("entity table lacks column `{name}`")))?;
            columns.push(self.input.cast_column(name, column, to, first_row)?);
        }
        columns.push(Arc::new(self.input.times(batch, first_row)?));
        let n = batch.num_rows() as u64;
        columns.push(Arc::new(UInt64Array::from_iter_values(
            first_row..first_row + n,
        )));
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(Error::arrow("building the entity keys"))
    }
}

fn external(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl PartitionStream for EntityKeys {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.schema.clone(), 2);
        let tx = builder.tx();
        let this = EntityKeys {
            input: self.input.clone(),
            keys: self.keys.clone(),
            schema: self.schema.clone(),
        };
        builder.spawn_blocking(move || {
            let mut row = 0u64;
            let mut columns: Vec<&str> = this.keys.iter().map(|(k, _)| k.as_str()).collect();
            columns.push(&this.input.timestamp_column);
            for batch in this.input.reader_of(Some(&columns)).map_err(external)? {
                let batch = batch.map_err(|e| external(this.input.read_error(e)))?;
                let out = this.project(&batch, row).map_err(external)?;
                row += batch.num_rows() as u64;
                if tx.blocking_send(Ok(out)).is_err() {
                    break;
                }
            }
            Ok(())
        });
        builder.build()
    }
}

/// One view's join, as a plan whose single partition yields one row per entity row, in the
/// order of (join keys, time): `__row`, the view's features, `__e`, `__c`.
async fn view_plan(
    ctx: &SessionContext,
    request: &Request<'_>,
    view: &FeatureView,
    bounds: Option<(i64, i64)>,
    batch_rows: usize,
    key_filter: bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    let registry = request.registry;
    let source = registry.sources.get(&view.source).ok_or_else(|| {
        Error::Invalid(format!(
            "feature view `{}` reads unknown source `{}`",
            view.name, view.source
        ))
    })?;
    let join_keys: Vec<_> = registry.join_keys(view).into_iter().cloned().collect();
    let entity_schema = request.entities.schema();
    let mut keys = Vec::new();
    for k in &join_keys {
        let to = key_type(k)
            .map_err(|e| Error::Invalid(format!("feature view `{}`: {e}", view.name)))?;
        let field = entity_schema.field_with_name(&k.name).map_err(|_| {
            Error::Invalid(format!(
                "the entity table has no column `{}`, the join key of feature view `{}`",
                k.name, view.name
            ))
        })?;
        if !can_cast_types(field.data_type(), &to) {
            return Err(Error::Invalid(format!(
                "entity table column `{}` is {}, which cannot be read as the join key's {}",
                k.name,
                field.data_type(),
                k.value_type
            )));
        }
        keys.push((k.name.clone(), to));
    }
    let context = || format!("feature view `{}`", view.name);

    // The view's rows, pruned to what can win for some entity row, sorted for the merge.
    let mut df = view_input(ctx, request.root, source, view.query.as_deref()).await?;
    let mut select = Vec::new();
    for (name, to) in &keys {
        select.push(cast_expr(ident(name), to.clone()).alias(name));
    }
    select.push(cast_expr(ident(&source.timestamp_field), utc_ns()).alias(EVENT));
    select.push(match &source.created_timestamp_field {
        Some(c) => cast_expr(ident(c), utc_ns()).alias(CREATED),
        None => lit(ScalarValue::TimestampNanosecond(None, Some("UTC".into()))).alias(CREATED),
    });
    for f in &view.features {
        select.push(cast_expr(ident(&f.name), canonical_type(f.value_type)).alias(&f.name));
    }
    df = df.select(select).map_err(Error::engine(context()))?;
    let ttl_ns = view.ttl.nanos();
    let mut filter = ident(EVENT).is_not_null();
    for (name, _) in &keys {
        filter = filter.and(ident(name).is_not_null());
    }
    if key_filter {
        // Each key column within the values the entity table holds: a superset of the rows any
        // entity row can match (the merge still matches whole key tuples).
        for (name, values) in entity_key_values(request.entities, &keys)? {
            filter = filter.and(if values.is_empty() {
                lit(false)
            } else {
                ident(&name).in_list(values.into_iter().map(lit).collect(), false)
            });
        }
    }
    match bounds {
        None => filter = lit(false),
        Some((lo, hi)) => {
            filter = filter.and(ident(EVENT).lt_eq(ts_lit(hi)));
            if ttl_ns > 0 {
                filter = filter.and(ident(EVENT).gt_eq(ts_lit(lo.saturating_sub(ttl_ns))));
            }
            if request.options.created_cutoff {
                filter = filter.and(
                    ident(CREATED)
                        .is_null()
                        .or(ident(CREATED).lt_eq(ts_lit(hi))),
                );
            }
        }
    }
    let mut order: Vec<_> = keys
        .iter()
        .map(|(n, _)| ident(n).sort(true, true))
        .collect();
    order.push(ident(EVENT).sort(true, true));
    order.push(ident(CREATED).sort(true, true));
    let rows = df
        .filter(filter)
        .and_then(|df| df.sort(order))
        .map_err(Error::engine(context()))?
        .create_physical_plan()
        .await
        .map_err(Error::engine(context()))?;

    // The entity rows, sorted the same way.
    let mut fields: Vec<Field> = keys
        .iter()
        .map(|(n, t)| Field::new(n, t.clone(), true))
        .collect();
    fields.push(Field::new(ENTITY_TIME, utc_ns(), true));
    fields.push(Field::new(ENTITY_ROW, DataType::UInt64, false));
    let schema = Arc::new(Schema::new(fields));
    let partition = Arc::new(EntityKeys {
        input: request.entities.clone(),
        keys: keys.clone(),
        schema: schema.clone(),
    });
    let table = StreamingTable::try_new(schema, vec![partition])
        .map_err(Error::engine("the entity table"))?;
    let mut order: Vec<_> = keys
        .iter()
        .map(|(n, _)| ident(n).sort(true, true))
        .collect();
    order.push(ident(ENTITY_TIME).sort(true, true));
    let entities = ctx
        .read_table(Arc::new(table))
        .and_then(|df| df.sort(order))
        .map_err(Error::engine("the entity table"))?
        .create_physical_plan()
        .await
        .map_err(Error::engine("the entity table"))?;

    let spec = AsOfSpec {
        keys: keys.len(),
        ttl_ns,
        created_cutoff: request.options.created_cutoff,
        layout: Layout {
            join_keys: join_keys.clone(),
            timestamp: EVENT.into(),
            created: Some(CREATED.into()),
            features: view.features.clone(),
        },
        batch_rows: batch_rows.max(1),
    };
    let entities = single_partition(entities);
    let rows = single_partition(rows);
    Ok(Arc::new(
        AsOfExec::try_new(entities, rows, spec).map_err(Error::engine(context()))?,
    ))
}

/// The distinct non-null values of each join key column in the entity table, cast as the view
/// reads them; for small entity tables only (read in full).
fn entity_key_values(
    input: &EntityInput,
    keys: &[(String, DataType)],
) -> Result<Vec<(String, Vec<ScalarValue>)>> {
    let names: Vec<&str> = keys.iter().map(|(n, _)| n.as_str()).collect();
    let mut sets: Vec<std::collections::HashSet<ScalarValue>> =
        vec![Default::default(); keys.len()];
    let mut row = 0u64;
    for batch in input.reader_of(Some(&names))? {
        let batch = batch.map_err(|e| input.read_error(e))?;
        for (i, (name, to)) in keys.iter().enumerate() {
            let column = batch
                .column_by_name(name)
                .ok_or_else(|| Error::Invalid(format!("entity table lacks column `{name}`")))?;
            let cast = input.cast_column(name, column, to, row)?;
            for r in 0..cast.len() {
                if cast.is_valid(r) {
                    let value = ScalarValue::try_from_array(&cast, r)
                        .map_err(Error::engine("reading the entity keys"))?;
                    sets[i].insert(value);
                }
            }
        }
        row += batch.num_rows() as u64;
    }
    Ok(keys
        .iter()
        .zip(sets)
        .map(|((name, _), set)| (name.clone(), set.into_iter().collect()))
        .collect())
}

/// A view's join output back in input order. When it fits in its share of memory, the batches
/// are kept and gathered in `__row` order (one copy, no comparisons); otherwise a spilling sort.
fn in_input_order(
    join: Arc<dyn ExecutionPlan>,
    rows: u64,
    share: u64,
    batch_rows: usize,
    task: Arc<TaskContext>,
) -> datafusion::error::Result<SendableRecordBatchStream> {
    let schema = join.schema();
    if rows.saturating_mul(estimated_row_bytes_of(&schema)) > share || rows > u64::from(u32::MAX) {
        let by_row = LexOrdering::new([PhysicalSortExpr::new_default(Arc::new(Column::new(
            ENTITY_ROW, 0,
        )))])
        .expect("one sort expression");
        return SortExec::new(by_row, join).execute(0, task);
    }
    let mut stream = join.execute(0, task)?;
    let mut builder = RecordBatchReceiverStreamBuilder::new(schema.clone(), 2);
    let tx = builder.tx();
    builder.spawn(async move {
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            batches.push(batch?);
        }
        let all = concat_batches(&schema, &batches)?;
        drop(batches);
        // `at[r]`: where entity row `r` is in `all`.
        let n = all.num_rows();
        let mut at = vec![u32::MAX; n];
        let positions = all.column(0).as_primitive::<UInt64Type>();
        for (i, r) in positions.values().iter().enumerate() {
            let slot = at
                .get_mut(*r as usize)
                .ok_or_else(|| DataFusionError::Internal(format!("as-of join row {r} of {n}")))?;
            *slot = u32::try_from(i).map_err(|_| {
                DataFusionError::Internal("too many rows to reorder in memory".into())
            })?;
        }
        if at.contains(&u32::MAX) {
            return Err(DataFusionError::Internal(
                "as-of join lost an entity row".into(),
            ));
        }
        let batch_rows = batch_rows.max(1);
        for (c, chunk) in at.chunks(batch_rows).enumerate() {
            let first = (c * batch_rows) as u64;
            let indices = arrow::array::UInt32Array::from(chunk.to_vec());
            let mut columns: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from_iter_values(
                first..first + chunk.len() as u64,
            ))];
            for column in &all.columns()[1..] {
                columns.push(arrow::compute::take(column, &indices, None)?);
            }
            if tx
                .send(RecordBatch::try_new(schema.clone(), columns).map_err(Into::into))
                .await
                .is_err()
            {
                break;
            }
        }
        Ok(())
    });
    Ok(builder.build())
}

fn estimated_row_bytes_of(schema: &Schema) -> u64 {
    schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 | DataType::Binary => 32,
            DataType::List(_) => 64,
            _ => 9,
        })
        .sum()
}

/// Plans of more than one partition are merged (they are sorted, so order-preserving).
fn single_partition(plan: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    if plan.output_partitioning().partition_count() == 1 {
        return plan;
    }
    let ordering = plan
        .output_ordering()
        .cloned()
        .expect("a sorted plan has an output ordering");
    Arc::new(
        datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec::new(
            ordering, plan,
        ),
    )
}

/// A retrieval in progress: the output schema and its batches, in entity-table order.
pub struct Retrieval {
    pub schema: SchemaRef,
    pub stream: SendableRecordBatchStream,
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
    let (parts, order) = plan_outputs(
        request.registry,
        request.features,
        &entity_schema,
        request.options,
    )?;
    let (bounds, entity_rows) = request.entities.time_bounds()?;
    // Each view may keep its join output in memory, to restore input order, within this share.
    let share = engine
        .gather_limit
        .unwrap_or(engine.memory_limit as u64 / (2 * parts.len().max(1) as u64));
    let ctx = session(engine)?;
    let task = ctx.task_ctx();

    let mut fields: Vec<Field> = entity_schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for &(p, o) in &order {
        let part = &parts[p];
        let (index, name) = &part.outputs[o];
        let t = canonical_type(part.view.features[*index].value_type);
        fields.push(Field::new(name, t, true));
    }
    if engine.with_times {
        for part in &parts {
            for what in ["event", "created"] {
                fields.push(Field::new(
                    format!("{}__{what}_timestamp", part.view.name),
                    utc_ns(),
                    true,
                ));
            }
        }
    }
    let schema = Arc::new(Schema::new(fields));

    let mut builder = RecordBatchReceiverStreamBuilder::new(schema.clone(), 2);
    let mut views = Vec::new();
    for part in &parts {
        let key_filter = entity_rows <= engine.key_filter_rows;
        let join = view_plan(
            &ctx,
            request,
            part.view,
            bounds,
            engine.batch_rows,
            key_filter,
        )
        .await?;
        let stream = in_input_order(join, entity_rows, share, engine.batch_rows, task.clone())
            .map_err(Error::engine(format!("feature view `{}`", part.view.name)))?;
        // Each view runs on its own task so the views' sorts proceed side by side.
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        builder.spawn(async move {
            let mut stream = stream;
            while let Some(batch) = stream.next().await {
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
            Ok(())
        });
        views.push(ViewStream {
            rx,
            pending: std::collections::VecDeque::new(),
        });
    }

    // Output column sources: entity column i, or (view, column of the view's join output).
    let mut picks: Vec<(usize, usize)> = order
        .iter()
        .map(|&(p, o)| (p, parts[p].outputs[o].0 + 1))
        .collect();
    if engine.with_times {
        for (p, part) in parts.iter().enumerate() {
            let n = part.view.features.len();
            picks.push((p, n + 1));
            picks.push((p, n + 2));
        }
    }

    let (etx, mut erx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
    let input = request.entities.clone();
    builder.spawn_blocking(move || {
        let reader = match input.reader() {
            Ok(r) => r,
            Err(e) => {
                let _ = etx.blocking_send(Err(e));
                return Ok(());
            }
        };
        let mut row = 0u64;
        for batch in reader {
            let batch = batch
                .map_err(|e| input.read_error(e))
                .and_then(|b| input.for_output(&b, row));
            row += batch.as_ref().map_or(0, |b| b.num_rows() as u64);
            let stop = batch.is_err();
            if etx.blocking_send(batch).is_err() || stop {
                break;
            }
        }
        Ok(())
    });
    let tx = builder.tx();
    let out_schema = schema.clone();
    builder.spawn(async move {
        let mut first_row = 0u64;
        while let Some(batch) = erx.recv().await {
            let batch = batch.map_err(external)?;
            let n = batch.num_rows();
            let mut joined = Vec::with_capacity(views.len());
            for v in &mut views {
                joined.push(v.take(n, first_row).await?);
            }
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            for &(p, c) in &picks {
                columns.push(joined[p].column(c).clone());
            }
            first_row += n as u64;
            let out = RecordBatch::try_new(out_schema.clone(), columns)?;
            if tx.send(Ok(out)).await.is_err() {
                break;
            }
        }
        Ok(())
    });
    Ok(Retrieval {
        schema,
        stream: builder.build(),
    })
}

/// One view's join output in input order, consumed `n` rows at a time.
struct ViewStream {
    rx: tokio::sync::mpsc::Receiver<datafusion::error::Result<RecordBatch>>,
    pending: std::collections::VecDeque<RecordBatch>,
}

impl ViewStream {
    async fn take(&mut self, n: usize, first_row: u64) -> datafusion::error::Result<RecordBatch> {
        let mut parts = Vec::new();
        let mut have = 0;
        while have < n {
            let batch = match self.pending.pop_front() {
                Some(b) => b,
                None => match self.rx.recv().await {
                    Some(b) => b?,
                    None => {
                        return Err(DataFusionError::Internal(format!(
                            "as-of join ended {} rows early",
                            n - have
                        )));
                    }
                },
            };
            let want = n - have;
            if batch.num_rows() > want {
                self.pending
                    .push_front(batch.slice(want, batch.num_rows() - want));
                parts.push(batch.slice(0, want));
                have = n;
            } else {
                have += batch.num_rows();
                parts.push(batch);
            }
        }
        let schema = match parts.first() {
            Some(b) => b.schema(),
            None => {
                return Err(DataFusionError::Internal("empty take".into()));
            }
        };
        let batch = concat_batches(&schema, &parts)?;
        let rows = batch.column(0).as_primitive::<UInt64Type>();
        if rows.value(0) != first_row || rows.value(n - 1) != first_row + n as u64 - 1 {
            return Err(DataFusionError::Internal(format!(
                "as-of join out of step at entity row {first_row}"
            )));
        }
        Ok(batch)
    }
}

/// The features a selection names: a feature service, or comma-separated `view:feature` / `view`.
pub fn resolve_selection(registry: &Registry, selection: &str) -> Result<Vec<FeatureRef>> {
    if let Some(service) = registry.feature_services.get(selection.trim()) {
        return Ok(service.features.clone());
    }
    let mut refs = Vec::new();
    for part in selection
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let view = part.split(':').next().unwrap_or(part);
        if registry.feature_services.contains_key(part) {
            return Err(Error::Invalid(format!(
                "`{part}` is a feature service: name it alone, or list `view:feature` references without it"
            )));
        }
        if let Some(v) = part.strip_suffix(':')
            && registry.feature_views.contains_key(v)
        {
            return Err(Error::Invalid(format!(
                "`{part}` names no feature: write `{v}:FEATURE`, or `{v}` for all of its features"
            )));
        }
        refs.extend(registry.resolve_ref(part).map_err(|e| {
            // A hint only for a name that is not a view; never the name itself.
            let hint = if registry.feature_views.contains_key(view) {
                None
            } else {
                let names = registry
                    .feature_services
                    .keys()
                    .chain(registry.feature_views.keys())
                    .map(String::as_str)
                    .filter(|n| *n != view);
                quiver_registry::did_you_mean(view, names)
            };
            let hint = hint.map(|h| format!("; {h}")).unwrap_or_default();
            Error::Invalid(format!(
                "`{part}` is neither a feature service nor a feature reference: {e}{hint}"
            ))
        })?);
    }
    if refs.is_empty() {
        return Err(Error::Invalid(
            "no features given: name a feature service or `view:feature` references".into(),
        ));
    }
    Ok(refs)
}

/// The file formats a table can be written in, by the output's extension: `.arrow`, `.feather`
/// and `.ipc` are Arrow IPC files, anything else Parquet.
pub fn output_is_arrow(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "arrow" | "feather" | "ipc"))
}

/// Writes the whole retrieval to `path` (Parquet, or Arrow IPC by extension), through a
/// temporary file renamed into place only when complete; returns the rows written.
pub async fn write_output(retrieval: Retrieval, path: &Path) -> Result<u64> {
    remove_stale_temps(path);
    let tmp = temp_path(path);
    // Removes the temporary file however this future ends: error, or dropped (interrupted).
    struct Cleanup<'a>(&'a Path, bool);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            if !self.1 {
                let _ = std::fs::remove_file(self.0);
            }
        }
    }
    let mut cleanup = Cleanup(&tmp, false);
    let rows = write_to(retrieval, path, &tmp).await?;
    std::fs::rename(&tmp, path).map_err(Error::io(path))?;
    cleanup.1 = true;
    Ok(rows)
}

/// Temporary outputs of earlier runs for `output` whose process is gone (killed, crashed):
/// removed, so an interrupted retrieval leaves nothing behind for long.
fn remove_stale_temps(output: &Path) {
    let (Some(dir), Some(name)) = (output.parent(), output.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.tmp-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive && std::fs::remove_file(entry.path()).is_ok() {
            tracing::info!(file = %entry.path().display(), "removed the temporary output of an interrupted retrieval");
        }
    }
}

async fn write_to(mut retrieval: Retrieval, path: &Path, tmp: &Path) -> Result<u64> {
    let io = |e: &dyn std::fmt::Display| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    };
    let file = std::fs::File::create(tmp).map_err(Error::io(tmp))?;
    let file = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut rows = 0u64;
    let failed = stream_error;
    if output_is_arrow(path) {
        let mut w =
            arrow::ipc::writer::FileWriter::try_new(file, &retrieval.schema).map_err(|e| io(&e))?;
        while let Some(batch) = retrieval.stream.next().await {
            let batch = batch.map_err(failed)?;
            rows += batch.num_rows() as u64;
            w.write(&batch).map_err(|e| io(&e))?;
        }
        w.finish().map_err(|e| io(&e))?;
    } else {
        // Dictionary encoding pays off for text; for numbers its hashing was ~half the writer's
        // time (perf) for little size gained.
        let mut props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .set_dictionary_enabled(false);
        for field in retrieval.schema.fields() {
            if matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8) {
                let path = parquet::schema::types::ColumnPath::from(field.name().as_str());
                props = props.set_column_dictionary_enabled(path, true);
            }
        }
        let props = props.build();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(file, retrieval.schema.clone(), Some(props))
                .map_err(|e| io(&e))?;
        while let Some(batch) = retrieval.stream.next().await {
            let batch = batch.map_err(failed)?;
            rows += batch.num_rows() as u64;
            w.write(&batch).map_err(|e| io(&e))?;
        }
        w.close().map_err(|e| io(&e))?;
    }
    Ok(rows)
}

/// An error from a retrieval's stream: our own errors (a bad entity table) come back as they
/// were raised; the engine's are wrapped with what was being done.
pub fn stream_error(e: DataFusionError) -> Error {
    match e {
        DataFusionError::External(b) => match b.downcast::<Error>() {
            Ok(e) => *e,
            Err(b) => Error::Engine {
                context: "computing the training table".into(),
                source: DataFusionError::External(b),
            },
        },
        DataFusionError::Context(_, inner) => stream_error(*inner),
        DataFusionError::Shared(shared) => match shared.as_ref() {
            DataFusionError::ResourcesExhausted(m) => memory_error(m),
            other => Error::Engine {
                context: "computing the training table".into(),
                source: DataFusionError::Execution(other.to_string()),
            },
        },
        DataFusionError::ResourcesExhausted(m) => memory_error(&m),
        other if other.to_string().contains("Cannot cast Timestamp") => Error::Invalid(format!(
            "a timestamp in a requested view's source is outside what a timestamp holds here (nanoseconds, 1677-09-21 to 2262-04-11), e.g. a 9999-12-31 sentinel: make such values null in the view's `query` (materialize refuses them too) — {}",
            other.to_string().lines().next().unwrap_or_default()
        )),
        other => Error::Engine {
            context: "computing the training table".into(),
            source: other,
        },
    }
}

/// What [`stream_error`] tells a user whose sorts need more memory (the server says its own).
pub const MEMORY_HINT: &str = "raise --memory-limit (e.g. 1GiB)";

/// The sorts could not work within the memory limit even by spilling: the user's to raise.
fn memory_error(detail: &str) -> Error {
    let first = detail.lines().next().unwrap_or(detail);
    Error::Invalid(format!(
        "the sorts need more memory than the memory limit allows, even spilling to disk ({first}); {MEMORY_HINT}"
    ))
}

/// Output files are written next to their final path and renamed into place when complete.
pub fn temp_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    output.with_file_name(name)
}
