//! One view's join as a DataFusion plan: the view's rows (source → `field_mapping` → `query` →
//! cast), pruned to what can win for some entity row and sorted by (join keys, event time,
//! created time), merged by [`AsOfExec`] with the entity keys sorted the same way.
//!
//! With at least two cores per view, both sides are hash-partitioned by the join keys and
//! sorted per partition, so each partition's merge runs on its own core and no order-preserving
//! merge of sorted runs sits in front of it (a key's rows all land in one partition: the merges are
//! independent). Otherwise each view has one merge and the views' merges run side by side:
//! repartitioning would only copy. On a cluster the same plan, split into the cluster's
//! partitions, runs on the executors (`on_cluster`), the entity keys staged for them.

use std::sync::Arc;

use arrow::compute::can_cast_types;
use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion::prelude::{DataFrame, Expr, SessionContext, cast as cast_expr, ident, lit};
use quiver_registry::{FeatureView, Field, Source};

use super::Request;
use super::asof::{AsOfExec, AsOfSpec, CREATED, ENTITY_TIME, EVENT};
use super::entity_keys::{entity_key_values, entity_keys};
use super::window::{WindowAggExec, WindowSpec};
use crate::columns::{Layout, canonical_type, key_type, utc_ns};
use crate::error::{Error, Result};
use crate::source::view_input;

/// One view's join, as a plan whose partitions together yield one row per entity row, each in
/// the order of (join keys, time): `__row`, the view's features, `__e`, `__c`. The entity keys
/// are read with `ctx`, the view's rows with `rows_ctx` (the same session, or `cluster`'s, on
/// which the whole plan then runs); `merges`: how many partitions the merge runs in.
#[allow(clippy::too_many_arguments)]
pub(super) async fn view_plan(
    ctx: &SessionContext,
    rows_ctx: &SessionContext,
    request: &Request<'_>,
    view: &FeatureView,
    bounds: Option<(i64, i64)>,
    batch_rows: usize,
    key_filter: bool,
    merges: usize,
    cluster: Option<&crate::cluster::Cluster>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let source = request
        .registry
        .history_source(view)
        .map_err(Error::Invalid)?;
    let join_keys: Vec<Field> = request
        .registry
        .join_keys(view)
        .into_iter()
        .cloned()
        .collect();
    let keys = key_types(request, view, &join_keys)?;
    // How far before an entity row's time its rows can be: the ttl, or the longest window.
    let ttl_ns = match (&view.aggregations, bounds) {
        (Some(a), Some((lo, _))) => a.lookback_ns(lo).max(1),
        _ => view.ttl.nanos(),
    };
    let range = match bounds {
        None => Some((0, 0)),
        Some((lo, hi)) if ttl_ns > 0 => Some((lo.saturating_sub(ttl_ns), hi.saturating_add(1))),
        Some((_, hi)) => Some((i64::MIN, hi.saturating_add(1))),
    };
    let columns: Vec<Field> = match &view.aggregations {
        Some(a) => a.input_fields(),
        None => view.features.clone(),
    };
    let rows = view_rows(rows_ctx, request, view, source, &keys, &columns, range).await?;
    let filter = row_filter(request, view, &keys, bounds, key_filter, ttl_ns)?;
    let context = || format!("feature view `{}`", view.name);
    let ties = float_sum_columns(view);
    let row_order: Vec<&str> = [EVENT, CREATED]
        .into_iter()
        .chain(ties.iter().map(String::as_str))
        .collect();
    let by_key = |plan, time: &[&str], n| partitioned_sort(plan, &keys, time, n);
    let mut staged = None;
    let (rows, entities) = match (cluster, merges) {
        (Some(cluster), n) => {
            // Planned here (the files listed, the filter pushed into the scan), run there.
            let rows = rows.filter(filter).map_err(Error::engine(context()))?;
            let rows = ctx
                .state()
                .create_physical_plan(rows.logical_plan())
                .await
                .map_err(Error::engine(context()))?;
            let entities = entity_keys(ctx, request.entities, &keys).await?;
            let (entities, file) =
                super::on_cluster::stage(ctx, rows_ctx, entities, cluster).await?;
            staged = Some(file);
            (
                by_key(rows, &row_order, n).map_err(Error::engine(context()))?,
                by_key(entities, &[ENTITY_TIME], n).map_err(Error::engine(context()))?,
            )
        }
        (None, n) if n > 1 => {
            let rows = rows
                .filter(filter)
                .map_err(Error::engine(context()))?
                .create_physical_plan()
                .await
                .map_err(Error::engine(context()))?;
            let entities = entity_keys(ctx, request.entities, &keys).await?;
            (
                by_key(rows, &row_order, n).map_err(Error::engine(context()))?,
                by_key(entities, &[ENTITY_TIME], n).map_err(Error::engine(context()))?,
            )
        }
        (None, _) => {
            let rows = sorted_rows(rows, filter, view, &keys, &row_order).await?;
            let entities = entity_keys(ctx, request.entities, &keys).await?;
            let entities = by_key(entities, &[ENTITY_TIME], 1).map_err(Error::engine(context()))?;
            (single_partition(rows), entities)
        }
    };
    let merge = merge_exec(
        view, &keys, join_keys, columns, entities, rows, request, batch_rows,
    )?;
    match (cluster, staged) {
        (Some(cluster), Some(staged)) => {
            super::on_cluster::job(ctx, rows_ctx, cluster, merge, staged).await
        }
        _ => Ok(merge),
    }
}

/// The view's merge of its sorted `entities` and `rows`: the as-of join, or the window
/// aggregation of an aggregation view.
#[allow(clippy::too_many_arguments)]
fn merge_exec(
    view: &FeatureView,
    keys: &[(String, DataType)],
    join_keys: Vec<Field>,
    columns: Vec<Field>,
    entities: Arc<dyn ExecutionPlan>,
    rows: Arc<dyn ExecutionPlan>,
    request: &Request<'_>,
    batch_rows: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    if let Some(aggregations) = &view.aggregations {
        let spec = WindowSpec {
            keys: keys.len(),
            layout: Layout {
                join_keys: join_keys.clone(),
                timestamp: EVENT.into(),
                created: Some(CREATED.into()),
                features: columns,
            },
            columns: crate::aggregates::column_indices(aggregations),
            aggregations: aggregations.clone(),
            batch_rows: batch_rows.max(1),
        };
        let exec = WindowAggExec::try_new(entities, rows, spec)
            .map_err(Error::engine(format!("feature view `{}`", view.name)))?;
        return Ok(Arc::new(exec));
    }
    let spec = AsOfSpec {
        keys: keys.len(),
        ttl_ns: view.ttl.nanos(),
        created_cutoff: request.options.created_cutoff,
        layout: Layout {
            join_keys,
            timestamp: EVENT.into(),
            created: Some(CREATED.into()),
            features: view.features.clone(),
        },
        batch_rows: batch_rows.max(1),
    };
    Ok(Arc::new(AsOfExec::try_new(entities, rows, spec).map_err(
        Error::engine(format!("feature view `{}`", view.name)),
    )?))
}

/// Each join key's name and the type both sides are cast to; the entity table must have the
/// column, in a type that can be read as it.
fn key_types(
    request: &Request<'_>,
    view: &FeatureView,
    join_keys: &[Field],
) -> Result<Vec<(String, DataType)>> {
    let entity_schema = request.entities.schema();
    let mut keys = Vec::new();
    for k in join_keys {
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
    Ok(keys)
}

fn ts_lit(ns: i64) -> Expr {
    lit(ScalarValue::TimestampNanosecond(
        Some(ns),
        Some("UTC".into()),
    ))
}

/// The view's rows that can win for some entity row: keys and event time set, within the
/// entity table's time span (less the ttl), with `key_filter` among the entity table's key
/// values, with `created_cutoff` created by its last time. No rows at all for an entity table
/// without times (`bounds` is `None`).
fn row_filter(
    request: &Request<'_>,
    view: &FeatureView,
    keys: &[(String, DataType)],
    bounds: Option<(i64, i64)>,
    key_filter: bool,
    ttl_ns: i64,
) -> Result<Expr> {
    let mut filter = ident(EVENT).is_not_null();
    for (name, _) in keys {
        filter = filter.and(ident(name).is_not_null());
    }
    if key_filter {
        // Each key column within the values the entity table holds: a superset of the rows any
        // entity row can match (the merge still matches whole key tuples).
        for (name, values) in entity_key_values(request.entities, keys)? {
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
            // Aggregates count every event by its event time (no created-time cutoff).
            if request.options.created_cutoff && view.aggregations.is_none() {
                filter = filter.and(
                    ident(CREATED)
                        .is_null()
                        .or(ident(CREATED).lt_eq(ts_lit(hi))),
                );
            }
        }
    }
    Ok(filter)
}

/// The view's rows as the keys, `__e`, `__c` and its features, in canonical types.
async fn view_rows(
    ctx: &SessionContext,
    request: &Request<'_>,
    view: &FeatureView,
    source: &Source,
    keys: &[(String, DataType)],
    columns: &[Field],
    range: Option<(i64, i64)>,
) -> Result<DataFrame> {
    let df = view_input(ctx, request.root, source, view.query.as_deref(), range).await?;
    let mut select = Vec::new();
    for (name, to) in keys {
        select.push(cast_expr(ident(name), to.clone()).alias(name));
    }
    select.push(cast_expr(ident(&source.timestamp_field), utc_ns()).alias(EVENT));
    select.push(match &source.created_timestamp_field {
        Some(c) => cast_expr(ident(c), utc_ns()).alias(CREATED),
        None => lit(ScalarValue::TimestampNanosecond(None, Some("UTC".into()))).alias(CREATED),
    });
    for f in columns {
        select.push(cast_expr(ident(&f.name), canonical_type(f.value_type)).alias(&f.name));
    }
    df.select(select)
        .map_err(Error::engine(format!("feature view `{}`", view.name)))
}

/// The view's rows, filtered by `filter` and sorted for the merge by the keys, then `order`
/// (`__e`, `__c`, then [`float_sum_columns`]).
async fn sorted_rows(
    rows: DataFrame,
    filter: Expr,
    view: &FeatureView,
    keys: &[(String, DataType)],
    order: &[&str],
) -> Result<Arc<dyn ExecutionPlan>> {
    let context = || format!("feature view `{}`", view.name);
    let order: Vec<_> = keys
        .iter()
        .map(|(n, _)| n.as_str())
        .chain(order.iter().copied())
        .map(|n| ident(n).sort(true, true))
        .collect();
    rows.filter(filter)
        .and_then(|df| df.sort(order))
        .map_err(Error::engine(context()))?
        .create_physical_plan()
        .await
        .map_err(Error::engine(context()))
}

/// The columns whose float sums an aggregation view computes (`sum` and `mean` of float
/// columns, every `stddev`): events with the same keys and times are ordered by them too, so
/// they are added in one order on every run and every engine — a float sum depends on the
/// order of its terms, and events that tie on all of these add the same terms whatever their
/// order. Nothing else an aggregate computes depends on the order (`last` breaks ties by
/// value).
fn float_sum_columns(view: &FeatureView) -> Vec<String> {
    use quiver_registry::aggregation::{Function, is_integer};
    let Some(aggregations) = &view.aggregations else {
        return Vec::new();
    };
    let mut columns: Vec<String> = Vec::new();
    for a in &aggregations.items {
        let float_sum = match a.function {
            Function::Sum | Function::Mean => !a.input.is_some_and(is_integer),
            Function::Stddev => true,
            _ => false,
        };
        if let Some(column) = a
            .column
            .as_ref()
            .filter(|c| float_sum && !columns.contains(c))
        {
            columns.push(column.clone());
        }
    }
    columns
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

/// `plan` sorted by `keys` (by name), then `time` (ascending, nulls first): in `partitions`
/// partitions hash-partitioned by the keys, each sorted; one sorted partition for 1.
fn partitioned_sort(
    plan: Arc<dyn ExecutionPlan>,
    keys: &[(String, DataType)],
    time: &[&str],
    partitions: usize,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    use datafusion::physical_expr::expressions::col;
    use datafusion::physical_expr_common::sort_expr::{LexOrdering, PhysicalSortExpr};
    use datafusion::physical_plan::Partitioning;
    use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
    use datafusion::physical_plan::repartition::RepartitionExec;
    use datafusion::physical_plan::sorts::sort::SortExec;

    let schema = plan.schema();
    let key_exprs = keys
        .iter()
        .map(|(name, _)| col(name, &schema))
        .collect::<datafusion::error::Result<Vec<_>>>()?;
    let options = arrow::compute::SortOptions {
        descending: false,
        nulls_first: true,
    };
    let mut order = Vec::with_capacity(keys.len() + time.len());
    for e in &key_exprs {
        order.push(PhysicalSortExpr::new(e.clone(), options));
    }
    for name in time {
        order.push(PhysicalSortExpr::new(col(name, &schema)?, options));
    }
    let order = LexOrdering::new(order).expect("at least the time column");
    let input: Arc<dyn ExecutionPlan> = if partitions > 1 {
        Arc::new(RepartitionExec::try_new(
            plan,
            Partitioning::Hash(key_exprs, partitions),
        )?)
    } else if plan.output_partitioning().partition_count() > 1 {
        Arc::new(CoalescePartitionsExec::new(plan))
    } else {
        plan
    };
    Ok(Arc::new(
        SortExec::new(order, input).with_preserve_partitioning(partitions > 1),
    ))
}
