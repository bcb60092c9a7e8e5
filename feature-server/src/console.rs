//! The web console (`/ui`) and the read-only JSON endpoints it is built on, which are part of
//! the public HTTP API: an overview with each view's freshness, registry versions and the diff
//! between any two, materialization run records (with per-feature statistics), and the
//! server's own serving metrics as JSON.
//!
//! The page itself is static (compiled into the binary, [`assets`]) and open; every JSON
//! endpoint needs a valid token when authentication is on (any scope, like the registry
//! listings). Nothing here reaches a secret: registry versions hold `${VAR}` references only
//! (validation refuses literal credentials), and the online store's address is shown only to
//! callers allowed `admin`, as on `/ready`.

pub mod assets;
mod prometheus;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde_json::{Value as J, json};

use quiver_registry::RegistryStore;
use quiver_registry::model::Registry;
use quiver_registry::plan::Plan;

use crate::error::{ErrorCode, REGISTRY_MOVED, ServiceError};
use crate::http::HttpState;

/// Most run records one request reads (the newest ones).
pub const MAX_RUNS: usize = 10_000;
/// Run records read when a request does not say how many.
pub const DEFAULT_RUNS: usize = 1_000;

/// The registry store, or 404 for a server built without one (an embedding application).
fn store(state: &HttpState) -> Result<Arc<dyn RegistryStore>, ServiceError> {
    state.registry.clone().ok_or_else(|| ServiceError {
        code: ErrorCode::NotFound,
        message: "this server has no registry store to read versions and runs from".into(),
    })
}

/// Runs blocking registry-store work off the async threads; its errors are 503 (the store did
/// not answer; the detail goes to the log) or 404 saying `missing` (the store's own words name
/// where it is, which is for the log too).
async fn blocking<T: Send + 'static>(
    state: &HttpState,
    missing: &str,
    work: impl FnOnce(&dyn RegistryStore) -> quiver_registry::Result<T> + Send + 'static,
) -> Result<T, ServiceError> {
    let store = store(state)?;
    match tokio::task::spawn_blocking(move || work(store.as_ref())).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(quiver_registry::Error::NotFound(detail))) => {
            tracing::info!(%detail, "console: not found");
            Err(ServiceError::new(ErrorCode::NotFound, missing))
        }
        Ok(Err(e)) => Err(ServiceError {
            code: ErrorCode::Unavailable,
            message: format!("registry store: {e}"),
        }),
        Err(e) => Err(ServiceError::new(
            ErrorCode::Internal,
            format!("registry read failed: {e}"),
        )),
    }
}

/// How fresh a view is against its ttl: `fresh` (age within half the ttl, or no ttl), `aging`
/// (within the ttl), `stale` (older than the ttl: its values are served as expired), `never`
/// (no watermark: never materialized in this generation), `offline` (not served online).
pub fn freshness(online: bool, ttl_seconds: u64, age_seconds: Option<f64>) -> &'static str {
    match (online, age_seconds) {
        (false, _) => "offline",
        (true, None) => "never",
        (true, Some(_)) if ttl_seconds == 0 => "fresh",
        (true, Some(age)) if age <= ttl_seconds as f64 / 2.0 => "fresh",
        (true, Some(age)) if age <= ttl_seconds as f64 => "aging",
        (true, Some(_)) => "stale",
    }
}

/// `GET /registry/overview`: the served version, counts, the online store's health and each
/// view's freshness (its watermark as of the last registry poll) and last run.
pub async fn overview(
    State(state): State<HttpState>,
    headers: HeaderMap,
) -> Result<Json<J>, ServiceError> {
    let snap = crate::http::loaded(&state)?;
    let ready = crate::health::readiness(&state.service, state.ready_timeout).await;
    let admin = crate::http::is_admin(&state, &headers);
    let runs = match &state.registry {
        Some(_) => match blocking(&state, "", |s| s.latest_runs()).await {
            Ok(runs) => Some(runs),
            Err(e) => {
                tracing::warn!(error = %e.message, "console overview: run records unreadable");
                None
            }
        },
        None => None,
    };
    let v = &snap.version;
    let r = &v.registry;
    let watermarks: HashMap<String, i64> = crate::metrics::view_watermarks().into_iter().collect();
    let pushed = crate::push::newest_pushed();
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let views: Vec<J> = r
        .feature_views
        .values()
        .map(|view| {
            let watermark = watermarks.get(&view.name).copied().filter(|_| view.online);
            let push = pushed
                .get(&(view.name.clone(), view.generation))
                .copied()
                .filter(|_| view.online);
            // The newer of what materialization reached and what was pushed here.
            let newest = watermark.max(push);
            let age = newest.map(|w| (now.saturating_sub(w) as f64 / 1e9).max(0.0));
            let last = runs
                .as_ref()
                .and_then(|runs| runs.get(&(view.name.clone(), view.generation)));
            json!({
                "name": view.name,
                "online": view.online,
                "ttl": view.ttl,
                "ttl_seconds": view.ttl.seconds,
                "generation": view.generation,
                "watermark": watermark.map(crate::http::rfc3339),
                "newest_push": push.map(crate::http::rfc3339),
                "age_seconds": age,
                "freshness": freshness(view.online, view.ttl.seconds, age),
                "last_run": last.map(|run| json!({
                    "finished_at": run.finished_at,
                    "rows_read": run.rows_read,
                    "keys_written": run.keys_written,
                    "seconds": run.seconds,
                })),
            })
        })
        .collect();
    let location = state.service.store().location();
    let kind = if location.starts_with("Redis") {
        if location.ends_with("(cluster)") {
            "redis cluster"
        } else {
            "redis"
        }
    } else {
        "embedded"
    };
    let features: usize = r.feature_views.values().map(|v| v.features.len()).sum();
    Ok(Json(json!({
        "project": r.project,
        "version": v.version,
        "hash": v.hash,
        "applied_at": v.applied_at,
        "quiver_version": v.quiver_version,
        "server_version": env!("CARGO_PKG_VERSION"),
        "grpc": state.grpc.map(|a| a.to_string()),
        "tls": state.tls,
        "ready": ready.ready,
        "registry": ready.registry,
        "online_data": ready.online_data,
        "online_store": {
            "kind": kind,
            "status": ready.online_store,
            "location": admin.then_some(location),
        },
        "counts": {
            "entities": r.entities.len(),
            "sources": r.sources.len(),
            "push_sources": r.push_sources.len(),
            "feature_views": r.feature_views.len(),
            "features": features,
            "feature_services": r.feature_services.len(),
        },
        "runs_readable": runs.is_some(),
        "views": views,
    })))
}

/// `GET /registry/versions`: every applied version, oldest first.
pub async fn versions(State(state): State<HttpState>) -> Result<Json<J>, ServiceError> {
    let history = blocking(&state, "", |s| s.history()).await?;
    let served = state.service.snapshot().version.version;
    if served > 0 && !history.iter().any(|v| v.version == served) {
        return Err(ServiceError::new(
            ErrorCode::Unavailable,
            format!(
                "{REGISTRY_MOVED} {served} (moved, deleted or restored from a backup?); this server keeps serving it"
            ),
        ));
    }
    Ok(Json(json!({ "versions": history })))
}

fn version_number(text: &str, what: &str) -> Result<u64, ServiceError> {
    text.parse::<u64>().map_err(|_| {
        ServiceError::invalid(format!(
            "`{what}` must be a registry version number (0 for none), not `{text}`"
        ))
    })
}

/// `GET /registry/versions/{version}`: one applied version whole (`applied_at`, the registry).
pub async fn version(
    State(state): State<HttpState>,
    Path(version): Path<String>,
) -> Result<Json<J>, ServiceError> {
    let n = version_number(&version, "version")?;
    // The served version is at hand (and readable while the store is not).
    let snap = state.service.snapshot();
    if snap.loaded() && snap.version.version == n {
        return Ok(Json(serde_json::to_value(&snap.version).unwrap_or(J::Null)));
    }
    let v = blocking(
        &state,
        &format!("registry version {n} does not exist"),
        move |s| s.get(n),
    )
    .await?;
    Ok(Json(serde_json::to_value(v).unwrap_or(J::Null)))
}

/// `GET /registry/diff?from=A&to=B`: what changed from version A to version B, as `quiver plan`
/// lists it (`from=0`: from an empty registry; `to` defaults to the newest version).
pub async fn diff(
    State(state): State<HttpState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<J>, ServiceError> {
    let from = match query.get("from") {
        Some(f) => version_number(f, "from")?,
        None => {
            return Err(ServiceError::invalid(
                "give `from` (a version number, 0 for none)",
            ));
        }
    };
    let to = query
        .get("to")
        .map(|t| version_number(t, "to"))
        .transpose()?;
    let missing = format!(
        "registry version {} does not exist",
        [Some(from), to]
            .iter()
            .flatten()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" or ")
    );
    let (from_registry, to_version) = blocking(&state, &missing, move |s| {
        let to = match to {
            Some(t) => s.get(t)?,
            None => s.latest()?.ok_or_else(|| {
                quiver_registry::Error::NotFound("the registry holds no versions".into())
            })?,
        };
        let from = match from {
            0 => None,
            f => Some(s.get(f)?.registry),
        };
        Ok((from, to))
    })
    .await?;
    let plan = Plan::between(
        from_registry.as_ref().map(|r: &Registry| (from, r)),
        &to_version.registry,
    );
    Ok(Json(json!({
        "project": plan.project,
        "from": from,
        "to": to_version.version,
        "changes": plan.changes,
    })))
}

/// `GET /registry/runs?view=V&limit=N`: the newest `N` run records (default
/// [`DEFAULT_RUNS`], at most [`MAX_RUNS`]), oldest first, of one view when `view` is given
/// (however many runs of other views came since), with `total`, how many records the view has
/// (null when the store would have to read every record to count them). Each carries its
/// per-feature statistics (null count, min, max, mean of the rows read).
pub async fn runs(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<J>, ServiceError> {
    let limit = match query.get("limit") {
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_RUNS).contains(&n) => n,
            _ => {
                return Err(ServiceError::invalid(format!(
                    "`limit` must be a number from 1 to {MAX_RUNS}, not `{l}`"
                )));
            }
        },
        None => DEFAULT_RUNS,
    };
    let (mut runs, total) = match query.get("view").cloned() {
        Some(view) => blocking(&state, "", move |s| s.view_runs(&view, limit)).await?,
        None => (blocking(&state, "", move |s| s.runs(limit)).await?, None),
    };
    // Where a cluster is, like where the stores are, is for admins.
    if !crate::http::is_admin(&state, &headers) {
        for run in runs.iter_mut().filter(|r| r.engine.is_some()) {
            run.engine = Some("ballista".into());
        }
    }
    Ok(Json(json!({ "runs": runs, "total": total })))
}

/// `GET /registry/sources/{name}/schema`: the columns of a local Parquet source as its first
/// file declares them (one footer, before `field_mapping`); `columns` is null with a `note`
/// for a source on object storage (not read by the server) or one that cannot be read now.
pub async fn source_schema(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<J>, ServiceError> {
    let snap = crate::http::loaded(&state)?;
    let Some(source) = snap.version.registry.sources.get(&name).cloned() else {
        return Err(ServiceError::new(
            ErrorCode::NotFound,
            format!("no source named `{name}`"),
        ));
    };
    let root = state.service.repository_root().map(|p| p.to_path_buf());
    let read = tokio::task::spawn_blocking(move || match root {
        _ if quiver_registry::source_schema::is_url(&source.path) => {
            Err("on object storage: the server does not read its files for the console".to_string())
        }
        None => Err("this server has no repository root to read files from".to_string()),
        Some(root) => {
            // One footer (the first file), however many files the source has.
            let files = quiver_registry::source_schema::resolve_source_files(&root, &source.path)?;
            let first = files
                .first()
                .ok_or_else(|| "the source has no files yet".to_string())?;
            // Listed as `root`-joined paths (relative when the repository root is): made
            // absolute so that reading it does not join `root` a second time.
            let first =
                std::fs::canonicalize(first).map_err(|e| format!("{}: {e}", first.display()))?;
            quiver_registry::source_schema::read_parquet_schema(&root, &first.to_string_lossy())
        }
    })
    .await
    .map_err(|e| ServiceError::new(ErrorCode::Internal, format!("schema read failed: {e}")))?;
    Ok(Json(match read {
        Ok(schema) => json!({
            "source": name,
            "columns": schema.fields().iter().map(|f| json!({
                "name": f.name(),
                "type": f.data_type().to_string(),
                "nullable": f.is_nullable(),
            })).collect::<Vec<_>>(),
        }),
        Err(note) => {
            // The reason may name server paths: the whole of it is for admins and the log.
            tracing::info!(source = %name, %note, "console: source schema not read");
            let note = if crate::http::is_admin(&state, &headers) {
                note
            } else {
                "the files could not be read here (the server's log says why)".to_string()
            };
            json!({"source": name, "columns": null, "note": note})
        }
    }))
}

/// `GET /serving-stats`: the server's own metrics (every `quiver_` sample `/metrics` shows) as
/// JSON, with the time they were read: two reads give rates and latency percentiles.
pub async fn serving_stats() -> Json<J> {
    let text = crate::metrics::render();
    let at = chrono::Utc::now().timestamp_millis() as f64 / 1e3;
    let samples: Vec<J> = prometheus::samples(&text)
        .into_iter()
        .filter(|s| s.name.starts_with("quiver_"))
        .map(|s| json!({"name": s.name, "labels": s.labels, "value": s.value}))
        .collect();
    Json(json!({ "unix_seconds": at, "samples": samples }))
}

#[cfg(test)]
mod tests {
    use super::freshness;

    #[test]
    fn freshness_against_the_ttl() {
        assert_eq!(freshness(false, 60, Some(1.0)), "offline");
        assert_eq!(freshness(true, 60, None), "never");
        assert_eq!(freshness(true, 0, Some(1e9)), "fresh");
        assert_eq!(freshness(true, 60, Some(30.0)), "fresh");
        assert_eq!(freshness(true, 60, Some(30.5)), "aging");
        assert_eq!(freshness(true, 60, Some(60.0)), "aging");
        assert_eq!(freshness(true, 60, Some(60.1)), "stale");
    }
}
