//! Reading a view's input for a run: each entity's latest row in a range, scanned on every
//! partition, with row-group pruning on the event time.

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::prelude::{col, lit};
use futures::StreamExt;
use quiver_registry::FeatureView;

use super::{Job, Progress};
use crate::columns::{Layout, Rows};
use crate::error::{Error, Result};
use crate::latest::Latest;
use crate::source::{engine_session, needed_columns, view_input};

/// The source a view reads, from the job's registry version.
fn source_of<'r>(job: &Job<'r>, view: &FeatureView) -> Result<&'r quiver_registry::Source> {
    job.registry
        .registry
        .history_source(view)
        .map_err(Error::Invalid)
}

/// Whether the view's input has a row with an event time before `start` (the part of its
/// history a range starting at `start` leaves out). Row-group statistics prune most files.
pub(super) async fn has_rows_before(job: &Job<'_>, view: &FeatureView, start: i64) -> Result<bool> {
    if start == i64::MIN {
        return Ok(false);
    }
    let source = source_of(job, view)?;
    let ctx = engine_session(job.partitions, job.cluster.as_ref()).await?;
    let context = format!("looking for rows of `{}` before the range", view.name);
    let df = view_input(
        &ctx,
        job.root,
        source,
        view.query.as_deref(),
        Some((i64::MIN, start)),
    )
    .await?;
    let ts_type = df
        .schema()
        .field_with_unqualified_name(&source.timestamp_field)
        .map(|f| f.data_type().clone())
        .map_err(Error::engine(&context))?;
    let Some(before) = time_filter(&ts_type, &source.timestamp_field, i64::MIN, start) else {
        return Ok(true);
    };
    let rows = df
        .filter(before)
        .and_then(|df| df.limit(0, Some(1)))
        .map_err(Error::engine(&context))?
        .count()
        .await
        .map_err(Error::engine(&context))?;
    Ok(rows > 0)
}

/// A filter on the event-time column that Parquet row-group statistics can prune with, exact
/// for timestamps of any unit; other types are filtered row by row only.
fn time_filter(
    data_type: &DataType,
    column: &str,
    start: i64,
    end: i64,
) -> Option<datafusion::prelude::Expr> {
    let DataType::Timestamp(unit, tz) = data_type else {
        return None;
    };
    let per = match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    };
    // event_ns >= start  ⟺  event_u >= ceil(start / per), likewise for end.
    let bound = |ns: i64| {
        let v = Some(ns.div_euclid(per) + i64::from(ns.rem_euclid(per) != 0));
        match unit {
            TimeUnit::Second => ScalarValue::TimestampSecond(v, tz.clone()),
            TimeUnit::Millisecond => ScalarValue::TimestampMillisecond(v, tz.clone()),
            TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(v, tz.clone()),
            TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(v, tz.clone()),
        }
    };
    let c = || col(format!("\"{column}\""));
    let upper = c().lt(lit(bound(end)));
    Some(if start == i64::MIN {
        upper
    } else {
        c().gt_eq(lit(bound(start))).and(upper)
    })
}

/// The view's input in `[start, end)`: `columns` of it (each checked to exist), filtered on the
/// event time so Parquet statistics prune row groups.
pub(super) async fn ranged_input(
    ctx: &datafusion::prelude::SessionContext,
    job: &Job<'_>,
    view: &FeatureView,
    columns: &[String],
    (start, end): (i64, i64),
    context: &str,
) -> Result<datafusion::prelude::DataFrame> {
    let source = source_of(job, view)?;
    let mut df = view_input(
        ctx,
        job.root,
        source,
        view.query.as_deref(),
        Some((start, end)),
    )
    .await?;
    for c in columns {
        if df.schema().field_with_unqualified_name(c).is_err() {
            return Err(Error::Invalid(format!(
                "{context}: column `{c}` is missing from the view's input; run `quiver plan` to see why"
            )));
        }
    }
    df = df
        .select(
            columns
                .iter()
                .map(|c| col(format!("\"{c}\"")))
                .collect::<Vec<_>>(),
        )
        .map_err(Error::engine(context))?;
    let ts_type = df
        .schema()
        .field_with_unqualified_name(&source.timestamp_field)
        .map(|f| f.data_type().clone())
        .map_err(Error::engine(context))?;
    if let Some(filter) = time_filter(&ts_type, &source.timestamp_field, start, end) {
        df = df.filter(filter).map_err(Error::engine(context))?;
    }
    Ok(df)
}

/// Scans the view's input over the range on every partition and reduces it to one row per entity.
pub async fn latest_rows(
    job: &Job<'_>,
    view: &FeatureView,
    start: i64,
    end: i64,
    progress: &dyn Progress,
) -> Result<Latest> {
    let registry = &job.registry.registry;
    let source = source_of(job, view)?;
    let join_keys: Vec<_> = registry.join_keys(view).into_iter().cloned().collect();
    let layout = Arc::new(Layout {
        join_keys: join_keys.clone(),
        timestamp: source.timestamp_field.clone(),
        created: source.created_timestamp_field.clone(),
        features: view.features.clone(),
    });
    let ctx = engine_session(job.partitions, job.cluster.as_ref()).await?;
    let context = format!("materializing `{}`", view.name);
    let names: Vec<String> = join_keys.iter().map(|k| k.name.clone()).collect();
    let columns = needed_columns(view, &names, source);
    let df = ranged_input(&ctx, job, view, &columns, (start, end), &context).await?;
    if job.cluster.is_some() {
        return super::reduce::latest_on_cluster(df, &layout, (start, end), &context, progress)
            .await;
    }
    let streams = df
        .execute_stream_partitioned()
        .await
        .map_err(Error::engine(&context))?;
    let features = view.features.len();
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let layout = layout.clone();
            let context = context.clone();
            tokio::spawn(async move {
                let mut latest = Latest::new(features, start, end);
                let mut reported = Vec::new();
                while let Some(batch) = stream.next().await {
                    let batch = batch.map_err(Error::engine(&context))?;
                    let rows = Rows::new(&batch, &layout)
                        .map_err(|e| Error::Invalid(format!("{context}: {e}")))?;
                    latest.add(&rows);
                    reported.push(batch.num_rows() as u64);
                }
                Ok::<_, Error>((latest, reported))
            })
        })
        .collect();
    let mut total: Option<Latest> = None;
    for task in tasks {
        let (part, reported) = task
            .await
            .map_err(|e| Error::Invalid(format!("{context}: scan task failed: {e}")))??;
        progress.rows_read(reported.iter().sum());
        match &mut total {
            None => total = Some(part),
            Some(t) => t.merge(part),
        }
    }
    let mut total = total.unwrap_or_else(|| Latest::new(features, start, end));
    let reads = crate::source::reads(&ctx);
    total.files_read = reads.files();
    total.bytes_read = reads.bytes();
    Ok(total)
}
