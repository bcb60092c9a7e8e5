//! Prometheus metrics: one recorder per process, rendered by `GET /metrics`.
//!
//! `quiver_view_freshness_seconds{view}` is not a recorder gauge. The exporter (0.18) cannot
//! remove one series: its only removal is an idle timeout, per metric kind and process-wide,
//! which would also drop gauges set only on change (`quiver_registry_version`,
//! `quiver_registry_healthy`) and would have to outlast `registry_poll_ms`. So the reload task
//! replaces the whole set of served views' watermarks after each poll ([`set_view_watermarks`])
//! and [`render`] writes one series per view, `now − watermark` at scrape time: a view removed
//! from the registry, or whose new generation has no watermark yet, has no series at all.

use std::sync::{Mutex, OnceLock};

use metrics_exporter_prometheus::formatting::{write_metric_line, write_type_line};
use metrics_exporter_prometheus::{LabelSet, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The watermark (ns since the epoch) of each online view of the served registry version, by
/// view name; see the module documentation.
static VIEW_WATERMARKS: Mutex<Vec<(String, i64)>> = Mutex::new(Vec::new());

const FRESHNESS: &str = "quiver_view_freshness_seconds";

/// Latency buckets in seconds: 50 µs to 1 s.
const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// How often recorded histogram samples are folded into their buckets.
const UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the process-wide recorder on first use and returns its handle.
///
/// The exporter keeps every histogram sample until upkeep folds it into the buckets; a recorder
/// built by hand gets no upkeep of its own, so without the thread below memory grew with every
/// request until `/metrics` was scraped (found by `benches/soak.sh`: ~0.25 MiB/s at 5,000 req/s).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "another metrics recorder is installed; /metrics shows only what reaches this one"
            );
        }
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no metrics upkeep thread: histograms grow until scraped");
        }
        handle
    })
}

/// The registry version being served (`quiver_registry_version`).
pub fn set_registry_version(version: u64) {
    metrics::gauge!("quiver_registry_version").set(version as f64);
}

/// What the online store last reported about keeping values (`store_report`):
/// `quiver_online_store_may_evict` (its policy may evict served values) and
/// `quiver_online_store_persistent` (values survive its restart) are 1 for yes, 0 for no and -1
/// when it would not say; `quiver_online_store_evicted_keys` is its own count, when it has one.
pub fn set_online_store_report(
    may_evict: Option<bool>,
    persistent: Option<bool>,
    evicted_keys: Option<u64>,
) {
    handle();
    let flag = |v: Option<bool>| v.map_or(-1.0, |v| f64::from(u8::from(v)));
    metrics::gauge!("quiver_online_store_may_evict").set(flag(may_evict));
    metrics::gauge!("quiver_online_store_persistent").set(flag(persistent));
    if let Some(n) = evicted_keys {
        metrics::gauge!("quiver_online_store_evicted_keys").set(n as f64);
    }
}

/// Replaces the views whose freshness `/metrics` reports: `(view, watermark ns)` for each online
/// view of the served version whose current generation has a watermark. Views left out lose
/// their series.
pub fn set_view_watermarks(views: Vec<(String, i64)>) {
    *VIEW_WATERMARKS.lock().unwrap_or_else(|e| e.into_inner()) = views;
}

/// The watermarks last set by [`set_view_watermarks`]: `(view, watermark ns)`.
pub fn view_watermarks() -> Vec<(String, i64)> {
    VIEW_WATERMARKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Everything `GET /metrics` shows, in the Prometheus text format.
pub fn render() -> String {
    let mut out = handle().render();
    let views = view_watermarks();
    if views.is_empty() {
        return out;
    }
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    write_type_line(&mut out, FRESHNESS, None, None, "gauge");
    for (view, watermark) in views {
        let key = metrics::Key::from_parts(FRESHNESS, vec![metrics::Label::new("view", view)]);
        let labels = LabelSet::from_key_and_global(&key, &Default::default());
        let lag = now.saturating_sub(watermark) as f64 / 1e9;
        write_metric_line::<&str, f64>(&mut out, FRESHNESS, None, &labels, None, lag, None);
    }
    out.push('\n');
    out
}

/// `work`, timed in `quiver_request_duration_seconds{endpoint, outcome}`.
pub(crate) async fn timed<T, E>(
    endpoint: &'static str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = std::time::Instant::now();
    let result = work.await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::histogram!("quiver_request_duration_seconds", "endpoint" => endpoint, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    result
}
