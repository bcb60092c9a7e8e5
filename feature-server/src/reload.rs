//! Picks up new registry versions and materialization commits without a restart: polls the
//! registry store's newest version number and each online view's watermark.

use std::sync::Arc;
use std::time::Duration;

use quiver_registry::RegistryStore;

use crate::service::FeatureService;
use crate::snapshot::Snapshot;

/// Runs until `shutdown` resolves. A registry that cannot be read keeps the last good version
/// serving (reported by `quiver_registry_reload_errors_total` and `/ready`).
pub async fn watch(
    service: Arc<FeatureService>,
    registry: Arc<dyn RegistryStore>,
    every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut watermarks: Vec<Option<i64>> = Vec::new();
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(every) => {}
        }
        let current = service.snapshot().version.version;
        let store = registry.clone();
        let newest = tokio::task::spawn_blocking(move || match store.latest_version() {
            Ok(Some(v)) if v > current => store.get(v).map(Some).map_err(|e| e.to_string()),
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
                tracing::info!(version = version.version, "serving new registry version");
                metrics::gauge!("quiver_registry_version").set(version.version as f64);
                service.replace_snapshot(Snapshot::new(version));
                service.set_registry_problem(None);
            }
            Ok(Ok(None)) => service.set_registry_problem(None),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "registry reload failed; still serving version {current}");
                metrics::counter!("quiver_registry_reload_errors_total").increment(1);
                service.set_registry_problem(Some(e));
            }
            Err(e) => tracing::error!(error = %e, "registry reload task failed"),
        }
        let snap = service.snapshot();
        let mut now = Vec::new();
        let mut views: Vec<_> = snap.views.values().filter(|v| v.online).collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        for view in views {
            let w = service
                .store()
                .watermark(&snap.version.registry.project, &view.name, view.generation)
                .await
                .ok()
                .flatten();
            if let Some(w) = w {
                let lag = chrono::Utc::now()
                    .timestamp_nanos_opt()
                    .unwrap_or(i64::MAX)
                    .saturating_sub(w);
                metrics::gauge!("quiver_view_freshness_seconds", "view" => view.name.clone())
                    .set(lag as f64 / 1e9);
            }
            now.push(w);
        }
        if now != watermarks {
            if let Some(cache) = service.cache() {
                cache.invalidate_all();
            }
            watermarks = now;
        }
    }
}
