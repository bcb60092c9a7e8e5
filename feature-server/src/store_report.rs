//! The online store's report on keeping values (eviction policy, persistence, evictions) while
//! serving. Serving cannot fix a store that evicts values (they turn `NOT_FOUND` until the next
//! materialization of their range); it can make it loud: a warning whenever what the store
//! reports changes, and gauges (`metrics::set_online_store_report`) to alert on.

use std::sync::Arc;
use std::time::Duration;

use quiver_online_store::health::EVICTION_FIX;
use quiver_online_store::{OnlineStore, StoreReport};

/// How often the store is asked again once it has answered.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);
/// How often it is asked until it first answers (a store connected in the background).
const FIRST_CHECK_RETRY: Duration = Duration::from_secs(2);

/// Asks `store` now and every `every` until the process ends, logging its warnings when they
/// change and exporting the gauges each time.
pub async fn watch(store: Arc<dyn OnlineStore>, key_ttl: bool, every: Duration) {
    let mut said: Option<Vec<String>> = None;
    loop {
        match store.health_report().await {
            Ok(report) => {
                crate::metrics::set_online_store_report(
                    report.may_evict_values(key_ttl),
                    report.survives_restart(),
                    report.evicted_keys().filter(|_| !report.servers.is_empty()),
                );
                let warnings = warnings(&report, key_ttl);
                if said.as_ref() != Some(&warnings) {
                    for w in &warnings {
                        tracing::warn!("{w}");
                    }
                    said = Some(warnings);
                }
            }
            // Unreachable: readiness says so; the report waits for the store.
            Err(e) => tracing::debug!(error = %e, "online store report unavailable"),
        }
        tokio::time::sleep(if said.is_some() {
            every
        } else {
            FIRST_CHECK_RETRY
        })
        .await;
    }
}

/// What serving from a store with this report should warn about.
pub fn warnings(report: &StoreReport, key_ttl: bool) -> Vec<String> {
    report
        .eviction_risks(key_ttl)
        .into_iter()
        .map(|r| {
            format!(
                "{r}: served values it evicts are NOT_FOUND until their range is materialized again, and serving cannot prevent it; {EVICTION_FIX}"
            )
        })
        .chain(report.warnings())
        .collect()
}
