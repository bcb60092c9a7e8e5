//! The scheduler's progress as Prometheus metrics (`quiver ballista scheduler --metrics-bind`):
//! jobs by outcome and how long they took, executors alive and jobs running. Ballista reports
//! job events through its [`SchedulerMetricsCollector`]; the rest is sampled by the
//! scheduler's watcher every second. Executors report nothing of their own (Ballista 55 fixes
//! their collector): their work shows in the jobs' figures.

use std::net::SocketAddr;

use anyhow::{Context as _, Result};
use ballista_core::JobId;
use ballista_scheduler::metrics::SchedulerMetricsCollector;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Job durations' histogram buckets, in seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Records Ballista's job events as `quiver_cluster_*` metrics.
#[derive(Debug, Default)]
pub struct ClusterMetrics;

impl ClusterMetrics {
    fn finished(state: &'static str, queued_at: u64, at: u64) {
        metrics::counter!("quiver_cluster_jobs_total", "state" => state).increment(1);
        // Ballista's times are milliseconds since the epoch.
        metrics::histogram!("quiver_cluster_job_duration_seconds", "state" => state)
            .record(at.saturating_sub(queued_at) as f64 / 1e3);
    }
}

impl SchedulerMetricsCollector for ClusterMetrics {
    fn record_submitted(&self, _job: &JobId, queued_at: u64, submitted_at: u64) {
        metrics::counter!("quiver_cluster_jobs_total", "state" => "submitted").increment(1);
        metrics::histogram!("quiver_cluster_job_planning_seconds")
            .record(submitted_at.saturating_sub(queued_at) as f64 / 1e3);
    }

    fn record_completed(&self, _job: &JobId, queued_at: u64, completed_at: u64) {
        Self::finished("completed", queued_at, completed_at);
    }

    fn record_failed(&self, _job: &JobId, queued_at: u64, failed_at: u64) {
        Self::finished("failed", queued_at, failed_at);
    }

    fn record_cancelled(&self, _job: &JobId) {
        metrics::counter!("quiver_cluster_jobs_total", "state" => "cancelled").increment(1);
    }

    fn set_pending_tasks_queue_size(&self, _value: u64) {
        // Ballista 55 never reports it.
    }

    fn gather_metrics(&self) -> ballista_core::error::Result<Option<(Vec<u8>, String)>> {
        // Served by `serve`, not by Ballista's REST API (not built in).
        Ok(None)
    }
}

/// What the scheduler's watcher sees every second.
pub fn sample(executors_alive: usize, jobs_running: usize) {
    metrics::gauge!("quiver_cluster_executors_alive").set(executors_alive as f64);
    metrics::gauge!("quiver_cluster_jobs_running").set(jobs_running as f64);
}

/// Installs the metrics recorder of this process (before any metric is recorded).
pub fn install() -> Result<PrometheusHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets(DURATION_BUCKETS)
        .context("the metrics' buckets")?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))?;
    describe();
    // Every series exists from the start, so a dashboard shows 0, not "no data".
    for state in ["submitted", "completed", "failed", "cancelled"] {
        metrics::counter!("quiver_cluster_jobs_total", "state" => state).absolute(0);
    }
    sample(0, 0);
    Ok(handle)
}

fn describe() {
    metrics::describe_counter!(
        "quiver_cluster_jobs_total",
        "Jobs by what happened to them: submitted (planned and handed to executors), completed, failed, cancelled."
    );
    metrics::describe_histogram!(
        "quiver_cluster_job_duration_seconds",
        metrics::Unit::Seconds,
        "From a job being queued to its completion or failure."
    );
    metrics::describe_histogram!(
        "quiver_cluster_job_planning_seconds",
        metrics::Unit::Seconds,
        "From a job being queued to its stages being submitted."
    );
    metrics::describe_gauge!(
        "quiver_cluster_executors_alive",
        "Executors whose last heartbeat is within --executor-timeout-seconds."
    );
    metrics::describe_gauge!(
        "quiver_cluster_jobs_running",
        "Jobs running: planned, their stages handed to executors, not finished."
    );
}

/// Connections the `/metrics` port keeps open at once (scrapers and operators, not clients).
const METRICS_CONNECTIONS: usize = 64;

/// Serves `GET /metrics` (Prometheus text) on `bind` until the process ends.
pub async fn serve(bind: SocketAddr, handle: PrometheusHandle) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("listening for /metrics on {bind}"))?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
            }
        }),
    );
    // The feature server's listener: a client that sends nothing, or half a request head, is
    // closed after `header_timeout`, and few connections may be open at once.
    use quiver_feature_server::listener::{self, ConnectionLimits, PortOptions, Protocols, Slots};
    let options = PortOptions {
        header_timeout: std::time::Duration::from_secs(5),
        shutdown_grace: std::time::Duration::from_secs(1),
        limits: ConnectionLimits {
            max_connections: METRICS_CONNECTIONS,
            ..ConnectionLimits::default()
        },
    };
    let slots = Slots::new(METRICS_CONNECTIONS);
    tokio::spawn(async move {
        let serving = listener::serve(
            listener,
            app,
            Protocols::Any,
            None,
            options,
            slots,
            std::future::pending(),
        );
        if let Err(e) = serving.await {
            tracing::warn!("the /metrics listener stopped: {e}");
        }
    });
    Ok(())
}
