//! Materializing an aggregation view: the tiles before the run's cutoff (its END aligned down
//! to the hop) that a window at the cutoff or later can reach, computed from the batch source
//! with each entity's events in `(event_ts, created_ts)` order, then stored per entity with a
//! compare-and-set ([`crate::aggregates::apply`]) that keeps the tiles pushes wrote from the
//! cutoff on. Every run recomputes that whole span, so a run is complete on its own: its START
//! does not matter, and running it twice stores the same tiles.

use std::collections::BTreeMap;
use std::time::Instant;

use datafusion::prelude::col;
use futures::StreamExt;
use quiver_online_store::key_codec::{online_key, view_prefix};
use quiver_online_store::tiles::{Tile, add_to_tile, empty_tile};
use quiver_registry::aggregation::{first_tile, tile_of};
use quiver_registry::store::MaterializationRun;
use quiver_registry::{Aggregations, FeatureView};

use super::runs::run_record;
use super::scan::ranged_input;
use super::{Job, Progress, Range, commit, nothing_to_read};
use crate::aggregates::{self, Update, column_indices, layout};
use crate::columns::Rows;
use crate::error::{Error, Result};
use crate::latest::Latest;
use crate::source::engine_session;

/// Entities per round of read, merge and compare-and-set.
const ENTITIES_PER_ROUND: usize = 4_096;

/// The exclusive end of the tiles a run up to `end` computes: `end` aligned down to the hop.
pub fn cutoff(aggregations: &Aggregations, end: i64) -> i64 {
    let hop = aggregations.hop_ns();
    tile_of(end, hop).saturating_mul(hop)
}

pub(super) async fn materialize_aggregates(
    job: &Job<'_>,
    view: &FeatureView,
    (range, start, end, now): (Range, Option<i64>, i64, i64),
    lost: Option<String>,
    progress: &dyn Progress,
) -> Result<MaterializationRun> {
    let aggregations = view.aggregations.as_ref().expect("an aggregation view");
    let cutoff = cutoff(aggregations, end);
    if let Some(watermark) = start.filter(|&s| s >= cutoff) {
        return nothing_to_read(job, view, range, watermark, end, now);
    }
    progress.view_started(&view.name);
    let started = Instant::now();
    let hop = aggregations.hop_ns();
    // The tiles a window just before the cutoff (where `verify` compares) or later can reach.
    let from =
        first_tile(cutoff.saturating_sub(1), hop, aggregations.max_tiles()).saturating_mul(hop);
    let (scan, applied) =
        scan_and_store(job, view, aggregations, from, cutoff, now, progress).await?;
    let mut latest = Latest::new(view.features.len(), from, cutoff);
    latest.rows_read = scan.rows_read;
    latest.rows_skipped = scan.rows_skipped;
    latest.files_read = scan.files_read;
    latest.bytes_read = scan.bytes_read;
    let mut run = run_record(
        job,
        view,
        (Some(from), cutoff),
        &latest,
        scan.entities,
        applied.written,
        started.elapsed().as_secs_f64(),
    );
    if applied.pushed_during > 0 {
        run.warnings.push(format!(
            "{} entities were pushed to while this run read its source: left as they are (the next run rewrites them)",
            applied.pushed_during
        ));
    }
    if applied.stale > 0 {
        run.warnings.push(format!(
            "{} entities already hold tiles of a later run (cutoff after {}): left as they are",
            applied.stale,
            super::rfc3339(cutoff)
        ));
    }
    let note = lost.or_else(|| (cutoff < end).then(|| {
        format!(
            "aggregation tiles are whole: materialized up to {} (END aligned down to the hop); later events are served from pushes or the next run",
            super::rfc3339(cutoff)
        )
    }));
    commit(job, view, run, (Some(cutoff), note), None).await
}

#[derive(Debug, Default)]
struct Scan {
    rows_read: u64,
    rows_skipped: u64,
    entities: u64,
    files_read: u64,
    bytes_read: u64,
}

/// Reads the view's events in `[from, cutoff)` sorted by entity and time, folds each entity's
/// into tiles, and stores them in rounds.
async fn scan_and_store(
    job: &Job<'_>,
    view: &FeatureView,
    aggregations: &Aggregations,
    from: i64,
    cutoff: i64,
    now: i64,
    progress: &dyn Progress,
) -> Result<(Scan, aggregates::Applied)> {
    let registry = &job.registry.registry;
    let source = registry.history_source(view).map_err(Error::Invalid)?;
    let layout = layout(
        registry,
        view,
        &source.timestamp_field,
        source.created_timestamp_field.as_deref(),
    );
    let indices = column_indices(aggregations);
    let ctx = engine_session(job.partitions, job.cluster.as_ref()).await?;
    let context = format!("materializing `{}`", view.name);
    let mut columns: Vec<String> = layout.join_keys.iter().map(|k| k.name.clone()).collect();
    columns.push(source.timestamp_field.clone());
    columns.extend(source.created_timestamp_field.clone());
    columns.extend(layout.features.iter().map(|f| f.name.clone()));
    // Pushes written online after this instant may be in files the scan does not list.
    let read_from = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MIN);
    let df = ranged_input(&ctx, job, view, &columns, (from, cutoff), &context).await?;
    let mut order: Vec<_> = layout
        .join_keys
        .iter()
        .map(|k| col(format!("\"{}\"", k.name)).sort(true, true))
        .collect();
    order.push(col(format!("\"{}\"", source.timestamp_field)).sort(true, true));
    if let Some(c) = &source.created_timestamp_field {
        order.push(col(format!("\"{c}\"")).sort(true, true));
    }
    let mut stream = df
        .sort(order)
        .map_err(Error::engine(&context))?
        .execute_stream()
        .await
        .map_err(Error::engine(&context))?;
    let prefix = view_prefix(&registry.project, &view.name, view.generation);
    let hop = aggregations.hop_ns();
    let mut scan = Scan::default();
    let mut applied = aggregates::Applied::default();
    let mut pending: Vec<(String, Update)> = Vec::new();
    let mut current: Option<(String, BTreeMap<i64, Tile>)> = None;
    let mut key = String::new();
    let mut values = vec![None; aggregations.items.len()];
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(Error::engine(&context))?;
        let rows =
            Rows::new(&batch, &layout).map_err(|e| Error::Invalid(format!("{context}: {e}")))?;
        scan.rows_read += rows.num_rows() as u64;
        progress.rows_read(rows.num_rows() as u64);
        for row in 0..rows.num_rows() {
            let Some((event, created)) = rows.times(row) else {
                scan.rows_skipped += 1;
                continue;
            };
            if event < from || event >= cutoff || !rows.entity_key(row, &mut key) {
                scan.rows_skipped += u64::from(event >= from && event < cutoff);
                continue;
            }
            if current.as_ref().is_none_or(|(k, _)| *k != key) {
                if let Some((k, tiles)) = current.take() {
                    pending.push(batch_update(&prefix, &k, (cutoff, read_from), tiles));
                    scan.entities += 1;
                }
                current = Some((key.clone(), BTreeMap::new()));
            }
            for (slot, i) in values.iter_mut().zip(&indices) {
                *slot = i.and_then(|i| rows.value(i, row));
            }
            let tiles = &mut current.as_mut().expect("set above").1;
            let tile = tiles
                .entry(tile_of(event, hop))
                .or_insert_with(|| empty_tile(aggregations));
            add_to_tile(tile, aggregations, event, created, &values);
        }
        if pending.len() >= ENTITIES_PER_ROUND {
            store_round(
                job,
                view,
                &mut pending,
                &mut applied,
                now,
                scan.entities,
                progress,
            )
            .await?;
        }
    }
    if let Some((k, tiles)) = current.take() {
        pending.push(batch_update(&prefix, &k, (cutoff, read_from), tiles));
        scan.entities += 1;
    }
    store_round(
        job,
        view,
        &mut pending,
        &mut applied,
        now,
        scan.entities,
        progress,
    )
    .await?;
    let reads = crate::source::reads(&ctx);
    scan.files_read = reads.files();
    scan.bytes_read = reads.bytes();
    Ok((scan, applied))
}

/// One entity's tiles from a run, for [`aggregates::apply`].
fn batch_update(
    prefix: &str,
    entity: &str,
    (cutoff, read_from_ns): (i64, i64),
    tiles: BTreeMap<i64, Tile>,
) -> (String, Update) {
    (
        online_key(prefix, entity),
        Update::Batch {
            cutoff_ns: cutoff,
            tiles,
            read_from_ns,
        },
    )
}

async fn store_round(
    job: &Job<'_>,
    view: &FeatureView,
    pending: &mut Vec<(String, Update)>,
    applied: &mut aggregates::Applied,
    now: i64,
    seen: u64,
    progress: &dyn Progress,
) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let round = aggregates::apply(
        job.online.as_ref(),
        &job.registry.registry.project,
        view,
        std::mem::take(pending),
        job.key_ttl,
        now,
    )
    .await?;
    applied.written += round.written;
    applied.stale += round.stale;
    applied.pushed_during += round.pushed_during;
    progress.keys_written(applied.written, seen);
    Ok(())
}
