//! Materialization: for each online view, each entity's latest row in `[start, end)`, written to
//! the online store with set-if-newer; the view's watermark moves only after every write of the
//! range succeeded, and the run is recorded in the registry store.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::prelude::{col, lit};
use futures::{StreamExt, TryStreamExt};
use quiver_online_store::key_codec::{online_key, view_prefix};
use quiver_online_store::{OnlineStore, WriteEntry};
use quiver_registry::FeatureView;
use quiver_registry::store::{MaterializationRun, RegistryStore, RegistryVersion};

use crate::columns::{Layout, Rows};
use crate::error::{Error, Result};
use crate::latest::Latest;
use crate::source::{needed_columns, session, view_input};
use crate::store_check;

/// Keys handed to the store per write call.
const WRITE_CHUNK: usize = 16_384;
/// Write calls in flight at once.
const WRITES_IN_FLIGHT: usize = 2;

/// Where a run reports progress (a terminal progress bar, a log, nothing).
pub trait Progress: Send + Sync {
    fn view_started(&self, _view: &str) {}
    fn rows_read(&self, _rows: u64) {}
    fn keys_written(&self, _keys: u64, _of: u64) {}
}

/// Reports nothing.
#[derive(Debug)]
pub struct Quiet;
impl Progress for Quiet {}

/// What a materialization works with.
#[derive(Debug)]
pub struct Job<'a> {
    pub registry: &'a RegistryVersion,
    /// The repository root: source paths are relative to it.
    pub root: &'a Path,
    pub online: Arc<dyn OnlineStore>,
    pub registry_store: &'a dyn RegistryStore,
    /// Let the online store expire values once they are older than the view's ttl.
    pub key_ttl: bool,
    /// Write to a store that may evict values, and commit views during whose writes it
    /// evicted keys, with warnings (else the run is refused, the view fails).
    pub allow_eviction: bool,
    /// DataFusion partitions (CPU threads) to scan with.
    pub partitions: usize,
}

/// Which range each view covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// `[start, end)` for every view.
    Fixed { start_ns: i64, end_ns: i64 },
    /// From each view's watermark (or the beginning of its source) to `end`.
    Incremental { end_ns: i64 },
}

/// The online views `names` picks (all online views when empty), or an error naming a view
/// that does not exist or is offline only.
pub fn select_views<'r>(
    registry: &'r RegistryVersion,
    names: &[String],
) -> Result<Vec<&'r FeatureView>> {
    let views = &registry.registry.feature_views;
    if names.is_empty() {
        return Ok(views.values().filter(|v| v.online).collect());
    }
    names
        .iter()
        .map(|n| match views.get(n) {
            Some(v) if v.online => Ok(v),
            Some(_) => Err(Error::Invalid(format!(
                "feature view `{n}` is offline only (`online: false`): it has no online values to materialize or verify"
            ))),
            None => {
                let hint =
                    quiver_registry::did_you_mean(n, views.keys().map(String::as_str))
                        .map(|h| format!("; {h}"))
                        .unwrap_or_default();
                Err(Error::Invalid(format!(
                    "unknown feature view `{n}` in registry version {}{hint}",
                    registry.version
                )))
            }
        })
        .collect()
}

/// Materializes each view in turn. A view's failure stops the run with its watermark unchanged;
/// views finished before it keep their progress. A store that may evict values is refused
/// first, unless the job allows it (see `store_check`).
pub async fn materialize(
    job: &Job<'_>,
    views: &[&FeatureView],
    range: Range,
    progress: &dyn Progress,
) -> Result<Vec<MaterializationRun>> {
    store_check::before_run(job).await?;
    let mut runs = Vec::new();
    let recorded = match range {
        Range::Incremental { .. } => recorded_watermarks(job.registry_store)?,
        Range::Fixed { .. } => Default::default(),
    };
    for view in views {
        match materialize_view(job, view, range, &recorded, progress).await {
            Ok(run) => runs.push(run),
            Err(source) => {
                return Err(Error::ViewFailed {
                    view: view.name.clone(),
                    committed: std::mem::take(&mut runs),
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(runs)
}

/// One view's part of a run; its watermark moves last, so a failure leaves it where it was.
async fn materialize_view(
    job: &Job<'_>,
    view: &FeatureView,
    range: Range,
    recorded: &std::collections::HashMap<(String, u64), String>,
    progress: &dyn Progress,
) -> Result<MaterializationRun> {
    let project = &job.registry.registry.project;
    let (start, requested_end) = match range {
        Range::Fixed { start_ns, end_ns } => (Some(start_ns), end_ns),
        Range::Incremental { end_ns } => (
            job.online
                .watermark(project, &view.name, view.generation)
                .await?,
            end_ns,
        ),
    };
    // Online values answer as of now: rows dated after now are not materialized yet (a later
    // run picks them up), or the store would serve values retrieval at `t = now` cannot see.
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let end = requested_end.min(now.saturating_add(1));
    if let Some(watermark) = start.filter(|&s| s >= end) {
        if matches!(range, Range::Fixed { .. }) {
            return Err(Error::Invalid(if watermark >= requested_end {
                format!("empty range: start must be before end for `{}`", view.name)
            } else {
                format!(
                    "the range starts after now ({}): online values are as of now, so rows dated later are materialized once their time has come",
                    rfc3339(now)
                )
            }));
        }
        if watermark > now {
            tracing::warn!(
                view = %view.name,
                watermark = %rfc3339(watermark),
                "the watermark is in the future: materialize-incremental reads nothing before it, so events up to it that arrive later are never materialized; materialize that range explicitly (`quiver materialize START END`)"
            );
        }
        // Nothing read: the view is materialized up to its watermark, not to END.
        let mut run = run_record(
            job,
            view,
            (Some(watermark), watermark),
            &Latest::new(view.features.len(), 0, 0),
            0,
            0,
            0.0,
        );
        run.watermark = Some(rfc3339(watermark));
        return Ok(run);
    }
    progress.view_started(&view.name);
    let started = Instant::now();
    // Where the watermark may go: only over a range contiguous with what is materialized
    // (an explicit range that starts after the watermark would skip the gap forever), and
    // never past now (new rows up to END could still arrive).
    let (target, note) = match range {
        Range::Incremental { .. } => (Some(end.min(now)), None),
        Range::Fixed { start_ns, .. } => {
            let current = job
                .online
                .watermark(project, &view.name, view.generation)
                .await?;
            let contiguous = match current {
                Some(w) => start_ns <= w,
                None => !has_rows_before(job, view, start_ns).await?,
            };
            if contiguous {
                (Some(end.min(now)), None)
            } else {
                let (from, what) = match current {
                    Some(w) => (rfc3339(w), format!("the watermark is {}", rfc3339(w))),
                    None => (
                        "the beginning".to_string(),
                        "the view has rows before START and no watermark".to_string(),
                    ),
                };
                (
                    None,
                    Some(format!(
                        "watermark not moved: {what}, and moving it to END would skip [{from}, {}) forever; materialize that range too (`quiver materialize-incremental` continues from the watermark)",
                        rfc3339(start_ns)
                    )),
                )
            }
        }
    };
    let lost = match (
        range,
        start,
        recorded.get(&(view.name.clone(), view.generation)),
    ) {
        (Range::Incremental { .. }, None, Some(w)) => {
            let message = lost_message(&view.name, w);
            tracing::warn!("{message}; refilling it from the beginning of its source");
            Some(format!(
                "{message}; refilled from the beginning of the source"
            ))
        }
        _ => None,
    };
    let note = lost.or(note).or_else(|| {
        (target.is_some() && requested_end > now).then(|| {
            format!(
                "END is in the future: rows up to now ({}) were materialized and the watermark moved to now; later rows are picked up once their time has come",
                rfc3339(now)
            )
        })
    });
    let mut latest = latest_rows(job, view, start.unwrap_or(i64::MIN), end, progress).await?;
    // The blobs move into the write batches: the winners are not needed after this.
    let winners = std::mem::take(&mut latest.winners);
    let entities = winners.len() as u64;
    let entries = winners.into_iter().map(|(k, w)| (k, w.event_ns, w.blob));
    let evicted_before = store_check::evicted_so_far(job).await?;
    let written = write(job, view, entries, entities, progress).await?;
    // Before the watermark moves: values evicted behind it would never be written again.
    let evicted = store_check::after_writes(job, &view.name, evicted_before).await?;
    let mut run = run_record(
        job,
        view,
        (start, end),
        &latest,
        entities,
        written,
        started.elapsed().as_secs_f64(),
    );
    let current = job
        .online
        .watermark(project, &view.name, view.generation)
        .await?;
    let after = match (current, target) {
        (Some(w), Some(t)) => Some(w.max(t)),
        (w, t) => w.or(t),
    };
    run.watermark = after.map(rfc3339);
    run.watermark_note = note;
    if let Some((count, warning)) = evicted {
        tracing::warn!("{warning}");
        run.evicted_keys = Some(count);
        run.warnings.push(warning);
    }
    // The watermark is the commit, so it moves last: a run that fails before it (even only
    // recording the run) leaves the range to be materialized again.
    job.registry_store.record_run(&run)?;
    if let Some(t) = target {
        job.online
            .advance_watermark(project, &view.name, view.generation, t)
            .await?;
    }
    Ok(run)
}

/// Run records read to find what each view generation was last materialized to.
const RUNS_CHECKED: usize = 2_000;

/// The watermark each (view, generation) reached according to the registry's run records (the
/// newest of the last [`RUNS_CHECKED`] runs). The online store keeps the real watermark next to
/// the values; when it has none for a generation recorded here, the store lost its data (wiped,
/// flushed, evicted, or a fresh store under an old registry).
pub fn recorded_watermarks(
    store: &dyn RegistryStore,
) -> Result<std::collections::HashMap<(String, u64), String>> {
    let mut out = std::collections::HashMap::new();
    for run in store.runs(RUNS_CHECKED)? {
        // Records from before `watermark` existed: every completed run moved it to `end`.
        let reached = match (&run.watermark, &run.watermark_note) {
            (Some(w), _) => Some(w.clone()),
            (None, None) => Some(run.end.clone()),
            (None, Some(_)) => None,
        };
        if let Some(w) = reached {
            out.insert((run.view.clone(), run.generation), w);
        }
    }
    Ok(out)
}

/// What to say when the online store has no watermark for a generation the registry recorded.
pub fn lost_message(view: &str, recorded: &str) -> String {
    format!(
        "the online store has no watermark for `{view}`, though a run recorded it materialized up to {recorded}: the store was wiped, flushed or evicted (or is not the one materialized into)"
    )
}

/// The source a view reads, from the job's registry version.
fn source_of<'r>(job: &Job<'r>, view: &FeatureView) -> Result<&'r quiver_registry::Source> {
    job.registry
        .registry
        .sources
        .get(&view.source)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "view `{}` names unknown source `{}`",
                view.name, view.source
            ))
        })
}

/// Whether the view's input has a row with an event time before `start` (the part of its
/// history a range starting at `start` leaves out). Row-group statistics prune most files.
async fn has_rows_before(job: &Job<'_>, view: &FeatureView, start: i64) -> Result<bool> {
    if start == i64::MIN {
        return Ok(false);
    }
    let source = source_of(job, view)?;
    let ctx = session(job.partitions);
    let context = format!("looking for rows of `{}` before the range", view.name);
    let df = view_input(&ctx, job.root, source, view.query.as_deref()).await?;
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

/// A UTC time as RFC 3339 with `Z`, with as many fraction digits as it needs (0, 3, 6 or 9):
/// run records, verify reports and Feast's JSON timestamps (the feature server uses it too).
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn run_record(
    job: &Job<'_>,
    view: &FeatureView,
    (start, end): (Option<i64>, i64),
    latest: &Latest,
    entities: u64,
    written: u64,
    seconds: f64,
) -> MaterializationRun {
    MaterializationRun {
        view: view.name.clone(),
        generation: view.generation,
        registry_version: job.registry.version,
        start: start.map(rfc3339),
        end: rfc3339(end),
        rows_read: latest.rows_read,
        entities,
        keys_written: written,
        seconds,
        finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        watermark: None,
        watermark_note: None,
        evicted_keys: None,
        warnings: Vec::new(),
        features: view
            .features
            .iter()
            .zip(&latest.stats)
            .map(|(f, s)| (f.name.clone(), s.finish()))
            .collect(),
    }
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
    let ctx = session(job.partitions);
    let context = format!("materializing `{}`", view.name);
    let mut df = view_input(&ctx, job.root, source, view.query.as_deref()).await?;
    let names: Vec<String> = join_keys.iter().map(|k| k.name.clone()).collect();
    let columns = needed_columns(view, &names, source);
    for c in &columns {
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
        .map_err(Error::engine(&context))?;
    let ts_type = df
        .schema()
        .field_with_unqualified_name(&source.timestamp_field)
        .map(|f| f.data_type().clone())
        .map_err(Error::engine(&context))?;
    if let Some(filter) = time_filter(&ts_type, &source.timestamp_field, start, end) {
        df = df.filter(filter).map_err(Error::engine(&context))?;
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
    Ok(total.unwrap_or_else(|| Latest::new(features, start, end)))
}

/// Writes `(entity key, event time, blob)` triples for a view; returns how many keys were stored.
pub async fn write(
    job: &Job<'_>,
    view: &FeatureView,
    entries: impl Iterator<Item = (String, i64, Vec<u8>)>,
    total: u64,
    progress: &dyn Progress,
) -> Result<u64> {
    let prefix = view_prefix(&job.registry.registry.project, &view.name, view.generation);
    let ttl_ms = (job.key_ttl && !view.ttl.is_unbounded()).then(|| view.ttl.millis());
    let entries: Vec<WriteEntry> = entries
        .map(|(key, event_ns, blob)| WriteEntry {
            key: online_key(&prefix, &key),
            blob,
            expire_at_ms: ttl_ms.map(|t| event_ns.div_euclid(1_000_000).saturating_add(t)),
        })
        .collect();
    let mut chunks = Vec::new();
    let mut it = entries.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(WRITE_CHUNK).collect::<Vec<_>>());
    }
    let done = std::sync::atomic::AtomicU64::new(0);
    let written: Vec<u64> = futures::stream::iter(chunks)
        .map(|chunk| {
            let n = chunk.len() as u64;
            let online = job.online.clone();
            let done = &done;
            async move {
                let w = online.write(chunk).await?;
                let sofar = done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
                progress.keys_written(sofar, total);
                Ok::<_, Error>(w)
            }
        })
        .buffer_unordered(WRITES_IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(written.into_iter().sum())
}
