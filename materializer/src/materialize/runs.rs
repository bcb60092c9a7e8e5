//! The record of a run: what each view reached, kept in the registry store, and what it means
//! when the online store has lost it.

use quiver_registry::FeatureView;
use quiver_registry::store::{MaterializationRun, RegistryStore};

use super::{Job, rfc3339};
use crate::error::Result;
use crate::latest::Latest;

/// The watermark each (view, generation) reached according to the registry's run records (its
/// newest record, however many runs of other views came since: `RegistryStore::latest_runs`).
/// The online store keeps the real watermark next to the values; when it has none for a
/// generation recorded here, the store lost its data (wiped, flushed, evicted, or a fresh store
/// under an old registry).
pub fn recorded_watermarks(
    store: &dyn RegistryStore,
) -> Result<std::collections::HashMap<(String, u64), String>> {
    let mut out = std::collections::HashMap::new();
    for (key, run) in store.latest_runs()? {
        if let Some(w) = run.reached() {
            out.insert(key, w.to_string());
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

/// [`lost_message`] for a watermark a server read earlier and no run record names (the
/// records went too: a registry kept in the same Redis as the store, flushed with it).
pub fn lost_seen_message(view: &str, seen: &str) -> String {
    format!(
        "the online store has no watermark for `{view}`, though this server read it at {seen} earlier: the store was wiped, flushed or evicted (with the registry's run records, if they were kept in it too)"
    )
}

pub(super) fn run_record(
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
        // On a cluster the executors read the files; what this process read is only planning.
        files_read: job.cluster.is_none().then_some(latest.files_read),
        bytes_read: job.cluster.is_none().then_some(latest.bytes_read),
        engine: job.cluster.as_ref().map(|c| c.url.clone()),
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
