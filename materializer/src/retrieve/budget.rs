//! The memory a retrieval may use: the limit's default, the DataFusion session whose sorts spill
//! beyond it, and each view's share for putting its join output back in input order.

use std::sync::Arc;

use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::Engine;
use crate::error::{Error, Result};

/// A quarter of physical memory, at least 1 GiB: the sorts share it in fair parts (each sort of
/// each partition gets its share), so a limit near the data size would make them spill early.
pub fn default_memory_limit() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<usize>().ok())
            .map(|kb| kb * 1024)
    });
    total.map_or(2 << 30, |t| t / 4).max(1 << 30)
}

/// A DataFusion session whose sorts spill to disk beyond `memory_limit`.
pub(super) fn session(engine: &Engine) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_target_partitions(engine.partitions.max(1))
        .with_batch_size(engine.batch_rows.max(1))
        .with_information_schema(false)
        // Each sort reserves this much for merging its spills; several sorts run at once.
        .with_sort_spill_reservation_bytes((engine.memory_limit / 64).clamp(256 << 10, 10 << 20))
        .with_sort_in_place_threshold_bytes((engine.memory_limit / 16).max(1 << 20));
    // Fair shares: sorts of both inputs and of the output run at once, each may spill.
    let pool = Arc::new(FairSpillPool::new(engine.memory_limit));
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(pool)
        .build_arc()
        .map_err(Error::engine("setting up the query engine"))?;
    Ok(crate::source::counting(
        |config| SessionContext::new_with_config_rt(config, runtime),
        config,
    ))
}

/// The bytes of its join output each of `views` views may keep in memory to restore input
/// order ([`Engine::gather_limit`], or an even part of half the memory limit).
pub(super) fn gather_share(engine: &Engine, views: usize) -> u64 {
    engine
        .gather_limit
        .unwrap_or(engine.memory_limit as u64 / (2 * views.max(1) as u64))
}
