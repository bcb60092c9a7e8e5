//! Picks up new registry versions and materialization commits without a restart: polls the
//! registry store's newest version number and each online view's watermark.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_registry::RegistryStore;

use crate::service::FeatureService;
use crate::snapshot::Snapshot;

/// Runs until `shutdown` resolves. A registry that cannot be read keeps the last good version
/// serving (reported by `quiver_registry_reload_errors_total` and `/ready`). A server started
/// without a version ([`Snapshot::unloaded`]: the registry store was unreachable) loads its first
/// one here, retrying every poll (each failure logged) until it can; a version of another
/// project than the one served is never swapped in.
///
/// After each poll the served version's online views and their watermarks go to `/metrics`
/// ([`crate::metrics::set_view_watermarks`]): a removed view, or a view whose new generation has
/// no watermark yet, stops reporting a freshness. A watermark that cannot be read keeps the last
/// one read for the same generation, so its age keeps growing instead of freezing.
///
/// A served (view, generation) whose watermark the store does not have, though the registry's
/// run records say a run materialized it — or this server read the watermark earlier (records
/// kept in the same Redis go with a flush) — has lost its data (the store was wiped, flushed or
/// restarted empty): seen so at two record checks [`LOST_CONFIRM_AFTER`] apart (a run records
/// itself just before it moves the watermark), it makes `/ready` fail naming the view and sets
/// `quiver_view_data_lost{view}`, until a materialization writes the watermark again. Until the
/// first pass has checked this, `/ready` says the data is not checked yet.
pub async fn watch(
    service: Arc<FeatureService>,
    registry: Arc<dyn RegistryStore>,
    every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    crate::metrics::set_registry_version(service.snapshot().version.version);
    let mut watermarks: Vec<Option<i64>> = Vec::new();
    // The last watermark read of each (view, generation) served.
    let mut known: HashMap<(String, u64), i64> = HashMap::new();
    // Every watermark this server has read for a served generation: a watermark never goes
    // away by itself, so one seen and now gone is a loss even when the run records went too
    // (a registry kept in the same Redis, flushed with it).
    let mut seen: HashMap<(String, u64), i64> = HashMap::new();
    let mut suspects: HashSet<(String, u64)> = HashSet::new();
    let mut records_checked: Option<Instant> = None;
    let mut first = true;
    loop {
        // The first pass runs at once: readiness waits for its data check.
        let pause = if std::mem::take(&mut first) {
            Duration::ZERO
        } else {
            every
        };
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(pause) => {}
        }
        let (current, project) = {
            let snap = service.snapshot();
            (snap.version.version, snap.version.registry.project.clone())
        };
        let store = registry.clone();
        let newest = tokio::task::spawn_blocking(move || match store.latest_version() {
            Ok(Some(v)) if v > current => match store.get(v) {
                Ok(version) if version.registry.project != project => Err(format!(
                    "{} holds project `{}`, not `{project}`; point `registry` in quiver.yaml at this project's registry",
                    store.location(),
                    version.registry.project
                )),
                Ok(version) => Ok(Some(version)),
                Err(e) => Err(e.to_string()),
            },
            Ok(Some(v)) if v < current => Err(format!(
                "the registry's newest version is {v}, older than the served {current} (restored from a backup?)"
            )),
            Ok(Some(_)) => Ok(None),
            Ok(None) => Err(format!("{} holds no registry versions (deleted?)", store.location())),
            Err(e) => Err(e.to_string()),
        })
        .await;
        match newest {
            Ok(Ok(Some(version))) => {
                if current == 0 {
                    tracing::warn!(
                        version = version.version,
                        "registry loaded: serving its first version"
                    );
                } else {
                    tracing::info!(version = version.version, "serving new registry version");
                }
                crate::metrics::set_registry_version(version.version);
                service.replace_snapshot(Snapshot::new(version));
                service.set_registry_problem(None);
            }
            Ok(Ok(None)) => service.set_registry_problem(None),
            Ok(Err(e)) if current == 0 => {
                tracing::warn!(error = %e, "no registry version loaded yet; retrying");
                metrics::counter!("quiver_registry_reload_errors_total").increment(1);
                service.set_registry_problem(Some(e));
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "registry reload failed; still serving version {current}");
                metrics::counter!("quiver_registry_reload_errors_total").increment(1);
                service.set_registry_problem(Some(e));
            }
            Err(e) => tracing::error!(error = %e, "registry reload task failed"),
        }
        let snap = service.snapshot();
        let mut now = Vec::new();
        let mut read = HashMap::new();
        let mut missing = Vec::new();
        let mut views: Vec<_> = snap.views.values().filter(|v| v.online).collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        for view in views {
            let key = (view.name.clone(), view.generation);
            let w = service
                .store()
                .watermark(&snap.version.registry.project, &view.name, view.generation)
                .await;
            let shown = match &w {
                Ok(w) => *w,
                Err(_) => known.get(&key).copied(),
            };
            if let Ok(Some(w)) = &w {
                seen.insert(key.clone(), *w);
            }
            if let Some(shown) = shown {
                read.insert(key.clone(), shown);
            }
            if matches!(w, Ok(None)) {
                missing.push(key);
            }
            now.push(w.ok().flatten());
        }
        // A suspected loss is confirmed (or cleared) soon; otherwise records are read rarely.
        let wait = if suspects.is_empty() {
            LOST_CHECK_EVERY
        } else {
            LOST_CONFIRM_AFTER
        };
        let due = records_checked.is_none_or(|at| at.elapsed() >= wait);
        if missing.is_empty() {
            suspects.clear();
        } else if due {
            records_checked = Some(Instant::now());
            suspects = check_lost(&service, &registry, &missing, &suspects, &seen).await;
        }
        if suspects.is_empty() || !service.lost_data().is_empty() {
            service.set_data_checked(true);
        }
        let lost = service.lost_data();
        // Every served view has the gauge, 0 until its data is found lost.
        for view in snap.views.values().filter(|v| v.online) {
            if !lost.iter().any(|(v, _)| *v == view.name) {
                metrics::gauge!("quiver_view_data_lost", "view" => view.name.clone()).set(0.0);
            }
        }
        let still: Vec<_> = lost
            .iter()
            .filter(|(v, _)| missing.iter().any(|(m, _)| m == v))
            .cloned()
            .collect();
        if still.len() != lost.len() {
            service.set_lost_data(still);
        }
        let mut shown: Vec<(String, i64)> =
            read.iter().map(|((v, _), w)| (v.clone(), *w)).collect();
        shown.sort();
        crate::metrics::set_view_watermarks(shown);
        known = read;
        if now != watermarks {
            if let Some(cache) = service.cache() {
                cache.invalidate_all();
            }
            watermarks = now;
        }
    }
}

/// How often run records are read while a served view has no watermark.
pub const LOST_CHECK_EVERY: Duration = Duration::from_secs(5);
/// How soon a suspected loss is checked again to confirm it (a run records itself just before
/// it writes the watermark, so a generation can be recorded and not yet marked for an instant).
pub const LOST_CONFIRM_AFTER: Duration = Duration::from_secs(1);

/// Reads the run records and returns the `missing` generations they say were materialized,
/// or whose watermark this server has `seen`; those that were suspects already (the previous
/// check) are reported lost.
async fn check_lost(
    service: &FeatureService,
    registry: &Arc<dyn RegistryStore>,
    missing: &[(String, u64)],
    suspects: &HashSet<(String, u64)>,
    seen: &HashMap<(String, u64), i64>,
) -> HashSet<(String, u64)> {
    let store = registry.clone();
    let recorded = tokio::task::spawn_blocking(move || {
        quiver_materializer::materialize::recorded_watermarks(store.as_ref())
    })
    .await;
    // Records that cannot be read (a registry blip) decide nothing: verdicts they made stand,
    // suspects stay suspects, and only the watermarks seen can add a loss.
    let recorded = match recorded {
        Ok(Ok(r)) => Some(r),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "run records unreadable; lost data checked against the watermarks seen only");
            None
        }
        Err(_) => None,
    };
    let before = service.lost_data();
    let mut now = HashSet::new();
    let mut lost = Vec::new();
    for key in missing {
        let why = match (recorded.as_ref().and_then(|r| r.get(key)), seen.get(key)) {
            (Some(reached), _) => quiver_materializer::materialize::lost_message(&key.0, reached),
            (None, Some(&w)) => quiver_materializer::materialize::lost_seen_message(
                &key.0,
                &quiver_materializer::materialize::rfc3339(w),
            ),
            (None, None) if recorded.is_none() => {
                if let Some(standing) = before.iter().find(|(v, _)| *v == key.0) {
                    lost.push(standing.clone());
                }
                if suspects.contains(key) {
                    now.insert(key.clone());
                }
                continue;
            }
            (None, None) => continue,
        };
        if suspects.contains(key) {
            lost.push((key.0.clone(), why));
        }
        now.insert(key.clone());
    }
    for (view, why) in &lost {
        if !before.iter().any(|(v, _)| v == view) {
            tracing::error!(%view, "{why}; not ready until it is materialized again");
        }
    }
    if lost != before {
        service.set_lost_data(lost);
    }
    now
}
