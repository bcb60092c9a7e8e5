//! An optional in-process cache of value blobs. An entry lives at most `max_staleness`, so a
//! served value is never older than that bound; a materialization commit seen by the reload loop
//! empties it at once.
//!
//! A write (push) must be read back by the next request: [`BlobCache::written`] marks its keys
//! with a new write epoch after the store took them, and a cached entry counts only if the store
//! read that filled it began at or after its key's last write epoch. So an entry filled by a
//! read that raced with the write — read the old value, inserted after the write — is never
//! served; no lock is shared between reads and writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;
use quiver_online_store::OnlineStore;

type Blob = Option<Arc<Vec<u8>>>;

/// A cached blob and the write epoch at which the store read that fetched it began.
#[derive(Debug, Clone)]
struct Entry {
    blob: Blob,
    read_from: u64,
}

#[derive(Debug, Clone)]
pub struct BlobCache {
    inner: Cache<String, Entry>,
    /// Keys written through this server in the last `max_staleness`, with their write epoch.
    written: Cache<String, u64>,
    epoch: Arc<AtomicU64>,
}

impl BlobCache {
    pub fn new(max_staleness: Duration, max_entries: u64) -> Self {
        BlobCache {
            inner: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(max_staleness)
                .build(),
            // Not bounded by count: a mark evicted early could let a stale entry count again.
            // It outlives every entry it guards: an entry lives max_staleness from its insert,
            // which follows its store read by at most a store timeout.
            written: Cache::builder()
                .time_to_live(max_staleness * 2 + Duration::from_secs(60))
                .build(),
            epoch: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The blobs under `keys`: cached ones from memory, the rest in one store round trip.
    pub async fn read_through(
        &self,
        store: &dyn OnlineStore,
        keys: &[String],
    ) -> quiver_online_store::Result<Vec<Blob>> {
        let mut out: Vec<Option<Blob>> = Vec::with_capacity(keys.len());
        let mut missing: Vec<String> = Vec::new();
        for k in keys {
            let hit = match self.inner.get(k).await {
                Some(entry) if self.fresh(k, &entry).await => Some(entry.blob),
                _ => None,
            };
            if hit.is_none() {
                missing.push(k.clone());
            }
            out.push(hit);
        }
        metrics::counter!("quiver_cache_hits_total").increment((keys.len() - missing.len()) as u64);
        metrics::counter!("quiver_cache_misses_total").increment(missing.len() as u64);
        if !missing.is_empty() {
            let read_from = self.epoch.load(Ordering::SeqCst);
            let fetched = store.read(&missing).await?;
            let mut fetched = missing.into_iter().zip(fetched);
            for slot in out.iter_mut().filter(|s| s.is_none()) {
                let (key, blob) = fetched.next().expect("one fetched blob per missing key");
                let blob = blob.map(Arc::new);
                let entry = Entry {
                    blob: blob.clone(),
                    read_from,
                };
                self.inner.insert(key, entry).await;
                *slot = Some(blob);
            }
        }
        Ok(out
            .into_iter()
            .map(|b| b.expect("every slot filled"))
            .collect())
    }

    /// Whether `entry` was read from the store no earlier than `key`'s last write.
    async fn fresh(&self, key: &String, entry: &Entry) -> bool {
        match self.written.get(key).await {
            Some(written_at) => entry.read_from >= written_at,
            None => true,
        }
    }

    /// `keys` were just written to the store: entries read before that stop counting.
    pub async fn written(&self, keys: &[String]) {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        for k in keys {
            self.written.insert(k.clone(), epoch).await;
        }
    }

    /// Drops every entry (a materialization committed new values).
    pub fn invalidate_all(&self) {
        self.inner.invalidate_all();
    }
}
