//! Writing a view's winners to the online store: in chunks, a few in flight, each key
//! set-if-newer (the store decides with the one rule), expiring with the ttl when asked.

use futures::{StreamExt, TryStreamExt};
use quiver_online_store::WriteEntry;
use quiver_online_store::key_codec::{online_key, view_prefix};
use quiver_registry::FeatureView;

use super::{Job, Progress};
use crate::error::{Error, Result};

/// Keys handed to the store per write call.
const WRITE_CHUNK: usize = 16_384;
/// Write calls in flight at once.
const WRITES_IN_FLIGHT: usize = 2;

/// Writes `(entity key, event time, blob)` triples for a view; returns how many keys were stored.
pub async fn write(
    job: &Job<'_>,
    view: &FeatureView,
    entries: impl Iterator<Item = (String, i64, Vec<u8>)>,
    total: u64,
    progress: &dyn Progress,
) -> Result<u64> {
    let prefix = view_prefix(&job.registry.registry.project, &view.name, view.generation);
    let ttl_ms = (job.key_ttl && !view.ttl.is_unbounded()).then(|| view.ttl.millis());
    let mut entries: Vec<WriteEntry> = entries
        .map(|(key, event_ns, blob)| WriteEntry {
            key: online_key(&prefix, &key),
            blob,
            expire_at_ms: ttl_ms.map(|t| event_ns.div_euclid(1_000_000).saturating_add(t)),
        })
        .collect();
    if job.online.prefers_key_order() {
        // Seconds for millions of keys: off the async workers.
        entries = tokio::task::spawn_blocking(move || {
            entries.sort_unstable_by(|a, b| a.key.cmp(&b.key));
            entries
        })
        .await
        .map_err(|e| {
            quiver_online_store::Error::Backend(format!("sorting the keys to write: {e}"))
        })?;
    }
    let mut chunks = Vec::new();
    let mut it = entries.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(WRITE_CHUNK).collect::<Vec<_>>());
    }
    let done = std::sync::atomic::AtomicU64::new(0);
    let written: Vec<u64> = futures::stream::iter(chunks)
        .map(|chunk| {
            let n = chunk.len() as u64;
            let online = job.online.clone();
            let done = &done;
            async move {
                let w = online.write(chunk).await?;
                let sofar = done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
                progress.keys_written(sofar, total);
                Ok::<_, Error>(w)
            }
        })
        .buffer_unordered(WRITES_IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(written.into_iter().sum())
}
