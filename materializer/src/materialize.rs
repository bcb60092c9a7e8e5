//! Materialization: for each online view, each entity's latest row in `[start, end)`, written to
//! the online store with set-if-newer; the view's watermark moves only after every write of the
//! range succeeded, and the run is recorded in the registry store.
//!
//! `scan` reads each entity's latest row, `write` sends the winners to the online store, `runs`
//! keeps the record of what each view reached; this module decides the range and when the
//! watermark moves.

mod aggregate;
mod reduce;
mod runs;
mod scan;
mod write;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use quiver_online_store::OnlineStore;
use quiver_registry::FeatureView;
use quiver_registry::store::{MaterializationRun, RegistryStore, RegistryVersion};

use crate::error::{Error, Result};
use crate::latest::Latest;
use crate::store_check;
pub use aggregate::cutoff;
use runs::run_record;
pub use runs::{lost_message, lost_seen_message, recorded_watermarks};
use scan::has_rows_before;
pub use scan::latest_rows;
pub use write::write;

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
    /// Scan on this Ballista cluster (`engine:` in quiver.yaml); `None`: in this process.
    pub cluster: Option<crate::cluster::Cluster>,
}

/// Which range each view covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// `[start, end)` for every view.
    Fixed { start_ns: i64, end_ns: i64 },
    /// From each view's watermark (or the beginning of its source) to `end`.
    Incremental { end_ns: i64 },
}

/// The online views `names` picks (all online views with a history to read when empty: a view
/// fed only by pushes has none), or an error naming a view that does not exist, is offline
/// only or has no history.
pub fn select_views<'r>(
    registry: &'r RegistryVersion,
    names: &[String],
) -> Result<Vec<&'r FeatureView>> {
    let views = &registry.registry.feature_views;
    if names.is_empty() {
        let reg = &registry.registry;
        return Ok(views
            .values()
            .filter(|v| v.online && reg.batch_source(v).is_some())
            .collect());
    }
    names
        .iter()
        .map(|n| match views.get(n) {
            Some(v) if v.online => match registry.registry.history_source(v) {
                Ok(_) => Ok(v),
                Err(message) => Err(Error::Invalid(message)),
            },
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
    recorded: &HashMap<(String, u64), String>,
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
    if view.aggregations.is_some() {
        let lost = lost_note(view, range, start, recorded);
        return aggregate::materialize_aggregates(
            job,
            view,
            (range, start, end, now),
            lost,
            progress,
        )
        .await;
    }
    if let Some(watermark) = start.filter(|&s| s >= end) {
        return nothing_to_read(job, view, range, watermark, requested_end, now);
    }
    progress.view_started(&view.name);
    let started = Instant::now();
    let (target, note) = watermark_target(job, view, range, end, now).await?;
    let note = lost_note(view, range, start, recorded)
        .or(note)
        .or_else(|| {
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
    let run = run_record(
        job,
        view,
        (start, end),
        &latest,
        entities,
        written,
        started.elapsed().as_secs_f64(),
    );
    commit(job, view, run, (target, note), evicted).await
}

/// The view's range is empty: an explicit range is refused; an incremental run reads nothing
/// and records the view as materialized up to its watermark.
fn nothing_to_read(
    job: &Job<'_>,
    view: &FeatureView,
    range: Range,
    watermark: i64,
    requested_end: i64,
    now: i64,
) -> Result<MaterializationRun> {
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
    Ok(run)
}

/// Where the watermark may go, and why not when it may not: only over a range contiguous with
/// what is materialized (an explicit range that starts after the watermark would skip the gap
/// forever), and never past now (new rows up to END could still arrive).
async fn watermark_target(
    job: &Job<'_>,
    view: &FeatureView,
    range: Range,
    end: i64,
    now: i64,
) -> Result<(Option<i64>, Option<String>)> {
    let project = &job.registry.registry.project;
    Ok(match range {
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
    })
}

/// When an incremental run finds no watermark for a generation the registry recorded, the store
/// lost its data: the run refills it from the beginning, and says so.
fn lost_note(
    view: &FeatureView,
    range: Range,
    start: Option<i64>,
    recorded: &HashMap<(String, u64), String>,
) -> Option<String> {
    match (
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
    }
}

/// Completes `run` (the watermark it reaches and `note` on it, the keys evicted during its
/// writes), records it, and then moves the watermark to `target`.
async fn commit(
    job: &Job<'_>,
    view: &FeatureView,
    mut run: MaterializationRun,
    (target, note): (Option<i64>, Option<String>),
    evicted: Option<(u64, String)>,
) -> Result<MaterializationRun> {
    let project = &job.registry.registry.project;
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

/// A UTC time as RFC 3339 with `Z`, with as many fraction digits as it needs (0, 3, 6 or 9):
/// run records, verify reports and Feast's JSON timestamps (the feature server uses it too).
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
