//! Whether the online store keeps what a run writes. A store whose policy may evict values is
//! refused before anything is written; keys evicted while a view is written fail that view
//! before its watermark moves, since a moved watermark would hide the loss from every later
//! `materialize-incremental`. `allow_eviction: true` turns both into warnings (and the run's
//! record says how many keys were evicted).

use quiver_online_store::StoreReport;
use quiver_online_store::health::EVICTION_FIX;

use crate::error::{Error, Result};
use crate::materialize::Job;

/// Asks the store how it keeps values, before a run writes anything: refuses a store that may
/// evict them unless the job allows it, and logs everything else worth knowing.
pub(crate) async fn before_run(job: &Job<'_>) -> Result<()> {
    let report = job.online.health_report().await?;
    for warning in admit(&report, job.key_ttl, job.allow_eviction)? {
        tracing::warn!("{warning}");
    }
    Ok(())
}

/// Keys the store has evicted so far, when it counts them (before a view's writes).
pub(crate) async fn evicted_so_far(job: &Job<'_>) -> Result<Option<u64>> {
    Ok(job.online.health_report().await?.evicted_keys())
}

/// After a view's writes: how many keys the store evicted since `before`, with a warning for
/// the run's record, or an error when the view's values may be among them and that is not
/// allowed.
pub(crate) async fn after_writes(
    job: &Job<'_>,
    view: &str,
    before: Option<u64>,
) -> Result<Option<(u64, String)>> {
    let after = job.online.health_report().await?;
    judge_evictions(view, before, &after, job.key_ttl, job.allow_eviction)
}

/// The warnings of a store that may be written to, or why it may not.
fn admit(report: &StoreReport, key_ttl: bool, allow_eviction: bool) -> Result<Vec<String>> {
    let risks = report.eviction_risks(key_ttl);
    let mut warnings = Vec::new();
    if !risks.is_empty() {
        if !allow_eviction {
            return Err(Error::EvictingStore(format!(
                "refusing to materialize: {}; values it evicts would be missing behind a moved watermark, and `materialize-incremental` would never write them again. Nothing was written. To fix: {EVICTION_FIX}",
                risks.join("; ")
            )));
        }
        warnings.extend(risks.into_iter().map(|r| {
            format!(
                "{r}; materializing anyway (allow_eviction: true): evicted values are NOT_FOUND until the range is materialized again, and runs that see evictions only warn"
            )
        }));
    }
    warnings.extend(report.warnings());
    Ok(warnings)
}

fn judge_evictions(
    view: &str,
    before: Option<u64>,
    after: &StoreReport,
    key_ttl: bool,
    allow_eviction: bool,
) -> Result<Option<(u64, String)>> {
    let (Some(before), Some(now)) = (before, after.evicted_keys()) else {
        // Not counted: said once, at the start of the run.
        return Ok(None);
    };
    // A restarted server starts counting again: count from zero then.
    let evicted = if now >= before { now - before } else { now };
    if evicted == 0 {
        return Ok(None);
    }
    let counted = format!(
        "Redis evicted {evicted} keys while `{view}` was written (INFO stats evicted_keys)"
    );
    if after.may_evict_values(key_ttl) == Some(false) {
        // Keys with a ttl were evicted, and Quiver's have none: other data in this Redis.
        return Ok(Some((
            evicted,
            format!(
                "{counted}; under its volatile-* policy with `key_ttl: false` they were other keys with a ttl, not Quiver's values, but Redis is at its maxmemory"
            ),
        )));
    }
    if !allow_eviction {
        return Err(Error::Evicted(format!(
            "{counted}: the evicted keys may be any of this store's values — of `{view}`, so its watermark was not moved, and of views written before it (`quiver verify` finds those). To fix: {EVICTION_FIX}"
        )));
    }
    Ok(Some((
        evicted,
        format!(
            "{counted}: values of any view in this store (not only `{view}`) may be missing (committed anyway: allow_eviction: true); `quiver verify` counts them; give Redis more maxmemory or set maxmemory-policy noeviction"
        ),
    )))
}

#[cfg(test)]
mod tests {
    use quiver_online_store::health::{Eviction, Persistence, ServerReport};

    use super::*;

    fn redis(policy: &str, maxmemory: u64, evicted: u64) -> StoreReport {
        StoreReport {
            servers: vec![ServerReport {
                server: "redis://127.0.0.1:6379".into(),
                eviction: Some(Eviction {
                    policy: policy.into(),
                    maxmemory,
                }),
                persistence: Some(Persistence {
                    rdb: Some(true),
                    aof: false,
                }),
                evicted_keys: Some(evicted),
                unchecked: Vec::new(),
            }],
        }
    }

    #[test]
    fn a_store_that_may_evict_values_is_refused_unless_allowed() {
        let lru = redis("volatile-lru", 40 << 20, 0);
        let err = admit(&lru, true, false).unwrap_err();
        assert!(err.is_user_error());
        let text = err.to_string();
        assert!(
            text.contains("volatile-lru") && text.contains("allow_eviction"),
            "{text}"
        );
        let warnings = admit(&lru, true, true).unwrap();
        assert!(warnings[0].contains("materializing anyway"), "{warnings:?}");
        // Without key_ttl, values have no ttl: a volatile policy cannot evict them.
        assert!(admit(&lru, false, false).unwrap().is_empty());
        assert!(admit(&redis("allkeys-lru", 40 << 20, 0), false, false).is_err());
        assert!(admit(&redis("allkeys-lru", 0, 0), true, false).is_ok());
        assert!(
            admit(&StoreReport::default(), true, false)
                .unwrap()
                .is_empty()
        );
    }

    /// Evictions while a view is written fail it unless allowed; the policy is read again
    /// after the writes, so one changed during the run (CONFIG SET) counts.
    #[test]
    fn evictions_during_the_writes_fail_the_view_unless_allowed() {
        let after = redis("allkeys-lru", 1 << 20, 130);
        let err = judge_evictions("v", Some(30), &after, false, false).unwrap_err();
        assert!(!err.is_user_error());
        let text = err.to_string();
        assert!(
            text.contains("evicted 100 keys while `v` was written")
                && text.contains("not moved")
                && text.contains("maxmemory"),
            "{text}"
        );
        let (n, warning) = judge_evictions("v", Some(30), &after, false, true)
            .unwrap()
            .unwrap();
        assert_eq!(n, 100);
        assert!(warning.contains("may be missing"), "{warning}");
        // Nothing evicted, or not counted: nothing to say.
        assert_eq!(
            judge_evictions("v", Some(130), &after, false, false).unwrap(),
            None
        );
        assert_eq!(
            judge_evictions("v", None, &after, false, false).unwrap(),
            None
        );
        // Other keys evicted under a policy that cannot take Quiver's: a warning, not a failure.
        let volatile = redis("volatile-lru", 1 << 20, 130);
        let (_, warning) = judge_evictions("v", Some(30), &volatile, false, false)
            .unwrap()
            .unwrap();
        assert!(warning.contains("not Quiver's values"), "{warning}");
        // A policy that could not be read is not taken as safe.
        let mut unknown = after.clone();
        unknown.servers[0].eviction = None;
        assert!(judge_evictions("v", Some(30), &unknown, true, false).is_err());
    }
}
