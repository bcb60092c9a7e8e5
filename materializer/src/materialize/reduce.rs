//! A run's reduction on a cluster (`engine: ballista`): the executors find each entity's
//! latest rows — a rank by event time, then created time, over the entity's rows, ties kept —
//! and the feature statistics, an aggregate over the same rows; this process applies the local
//! engine's exact rule ([`Latest`]: a full tie goes to the greatest value blob) to the few rows
//! per entity that come back. So the values written are the local engine's, and what crosses
//! the network is about one row per entity, not the range's rows.
//!
//! Casts to the online types happen on the executors, before the rank, so a value that cannot
//! be read fails the run as it does locally. Statistics: the same counts, minima and maxima;
//! means may differ from a local run's in the last digits (sums in another order).

use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use datafusion::functions_window::expr_fn::rank;
use datafusion::logical_expr::{ExprFunctionExt, when};
use datafusion::prelude::{DataFrame, Expr, cast, col, lit};
use futures::StreamExt;
use quiver_registry::{ScalarType, ValueType};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};

use super::Progress;
use crate::columns::{Layout, Rows, StatsAcc, canonical_type, key_type, utc_ns};
use crate::error::{Error, Result};
use crate::latest::Latest;

const RANK: &str = "__rank";

fn q(name: &str) -> Expr {
    col(format!("\"{name}\""))
}

fn ts(ns: i64) -> Expr {
    lit(ScalarValue::TimestampNanosecond(
        Some(ns),
        Some("UTC".into()),
    ))
}

/// A row [`Latest`] counts as read: its event time is set and in `[start, end)`.
fn in_range(layout: &Layout, (start, end): (i64, i64)) -> Expr {
    let t = || q(&layout.timestamp);
    t().is_not_null()
        .and(t().gt_eq(ts(start)))
        .and(t().lt(ts(end)))
}

/// A row without an entity: a join key is null.
fn key_missing(layout: &Layout) -> Expr {
    layout
        .join_keys
        .iter()
        .map(|k| q(&k.name).is_null())
        .reduce(Expr::or)
        .unwrap_or(lit(false))
}

/// Whether statistics take min, max and mean of a feature of this type (as [`Rows`] does).
fn numeric(t: ValueType) -> bool {
    matches!(
        t,
        ValueType::Scalar(
            ScalarType::Bool
                | ScalarType::Int32
                | ScalarType::Int64
                | ScalarType::Float32
                | ScalarType::Float64
        )
    )
}

/// `df` (the view's input over the run's range) reduced to each entity's latest rows, and its
/// statistics, computed on the cluster `ctx` runs on.
pub(super) async fn latest_on_cluster(
    df: DataFrame,
    layout: &Layout,
    (start, end): (i64, i64),
    context: &str,
    progress: &dyn Progress,
) -> Result<Latest> {
    let engine = |e| Error::engine(context)(e);
    // The online types, cast on the executors.
    let mut select = Vec::new();
    for k in &layout.join_keys {
        let to = key_type(k).map_err(|e| Error::Invalid(format!("{context}: {e}")))?;
        select.push(cast(q(&k.name), to).alias(&k.name));
    }
    select.push(cast(q(&layout.timestamp), utc_ns()).alias(&layout.timestamp));
    if let Some(c) = &layout.created {
        select.push(cast(q(c), utc_ns()).alias(c));
    }
    for f in &layout.features {
        select.push(cast(q(&f.name), canonical_type(f.value_type)).alias(&f.name));
    }
    let rows = df.select(select).map_err(engine)?;

    let stats = statistics(rows.clone(), layout, (start, end), context).await?;
    progress.rows_read(stats.rows_read);

    let candidates = in_range(layout, (start, end)).and(!key_missing(layout));
    let mut order = vec![q(&layout.timestamp).sort(false, false)];
    if let Some(c) = &layout.created {
        order.push(q(c).sort(false, false));
    }
    let ranked = rank()
        .partition_by(layout.join_keys.iter().map(|k| q(&k.name)).collect())
        .order_by(order)
        .build()
        .map_err(engine)?
        .alias(RANK);
    let names: Vec<Expr> = rows.schema().fields().iter().map(|f| q(f.name())).collect();
    let winners = rows
        .filter(candidates)
        .and_then(|df| df.window(vec![ranked]))
        .and_then(|df| df.filter(q(RANK).eq(lit(1u64))))
        .and_then(|df| df.select(names))
        .map_err(engine)?;
    let mut latest = Latest::new(layout.features.len(), start, end);
    let mut stream = winners.execute_stream().await.map_err(engine)?;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(engine)?;
        let rows =
            Rows::new(&batch, layout).map_err(|e| Error::Invalid(format!("{context}: {e}")))?;
        latest.add(&rows);
    }
    // What the run read is what the cluster counted, not the winners that came back.
    latest.rows_read = stats.rows_read;
    latest.rows_skipped = stats.rows_skipped;
    latest.stats = stats.features;
    Ok(latest)
}

struct Statistics {
    rows_read: u64,
    rows_skipped: u64,
    features: Vec<StatsAcc>,
}

/// What [`Latest`] counts of the rows: read (in the range), skipped (no event time; or in the
/// range without an entity key), and per feature over all rows its nulls and (numeric
/// features) minimum, maximum, sum and count as float64 — one aggregate on the cluster.
async fn statistics(
    rows: DataFrame,
    layout: &Layout,
    range: (i64, i64),
    context: &str,
) -> Result<Statistics> {
    let engine = |e| Error::engine(context)(e);
    let one_if = |condition: Expr| {
        when(condition, lit(1i64))
            .otherwise(lit(0i64))
            .map(sum)
            .map_err(engine)
    };
    let in_range = in_range(layout, range);
    let mut aggregates = vec![
        count(lit(1i64)).alias("__all"),
        one_if(in_range.clone())?.alias("__rows"),
        one_if(
            q(&layout.timestamp)
                .is_null()
                .or(in_range.and(key_missing(layout))),
        )?
        .alias("__skipped"),
    ];
    for (i, f) in layout.features.iter().enumerate() {
        aggregates.push(count(q(&f.name)).alias(format!("__n{i}")));
        if numeric(f.value_type) {
            let v = || cast(q(&f.name), DataType::Float64);
            aggregates.push(min(v()).alias(format!("__min{i}")));
            aggregates.push(max(v()).alias(format!("__max{i}")));
            aggregates.push(sum(v()).alias(format!("__sum{i}")));
        }
    }
    let batches = rows
        .aggregate(vec![], aggregates)
        .map_err(engine)?
        .collect()
        .await
        .map_err(engine)?;
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| Error::Invalid(format!("{context}: the cluster returned no statistics")))?;
    let int = |name: &str| -> u64 {
        batch
            .column_by_name(name)
            .map(|c| {
                let c = arrow::compute::cast(c, &DataType::Int64).unwrap_or_else(|_| c.clone());
                let a = c.as_primitive::<Int64Type>();
                if a.is_null(0) {
                    0
                } else {
                    a.value(0).max(0) as u64
                }
            })
            .unwrap_or(0)
    };
    let float = |name: &str| -> Option<f64> {
        let c = batch.column_by_name(name)?;
        let a = c.as_primitive_opt::<Float64Type>()?;
        (!a.is_null(0)).then(|| a.value(0))
    };
    let all = int("__all");
    let features = layout
        .features
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let present = int(&format!("__n{i}"));
            StatsAcc::of(
                all.saturating_sub(present),
                numeric(f.value_type).then(|| {
                    (
                        float(&format!("__min{i}")),
                        float(&format!("__max{i}")),
                        float(&format!("__sum{i}")).unwrap_or(0.0),
                        present,
                    )
                }),
            )
        })
        .collect();
    Ok(Statistics {
        rows_read: int("__rows"),
        rows_skipped: int("__skipped"),
        features,
    })
}
