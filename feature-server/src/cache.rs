//! An optional in-process cache of value blobs. An entry lives at most `max_staleness`, so a
//! served value is never older than that bound; a materialization commit seen by the reload loop
//! empties it at once.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use quiver_online_store::OnlineStore;

type Blob = Option<Arc<Vec<u8>>>;

#[derive(Debug, Clone)]
pub struct BlobCache {
    inner: Cache<String, Blob>,
}

impl BlobCache {
    pub fn new(max_staleness: Duration, max_entries: u64) -> Self {
        BlobCache {
            inner: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(max_staleness)
                .build(),
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
            let hit = self.inner.get(k).await;
            if hit.is_none() {
                missing.push(k.clone());
            }
            out.push(hit);
        }
        metrics::counter!("quiver_cache_hits_total").increment((keys.len() - missing.len()) as u64);
        metrics::counter!("quiver_cache_misses_total").increment(missing.len() as u64);
        if !missing.is_empty() {
            let fetched = store.read(&missing).await?;
            let mut fetched = missing.into_iter().zip(fetched);
            for slot in out.iter_mut().filter(|s| s.is_none()) {
                let (key, blob) = fetched.next().expect("one fetched blob per missing key");
                let blob = blob.map(Arc::new);
                self.inner.insert(key, blob.clone()).await;
                *slot = Some(blob);
            }
        }
        Ok(out
            .into_iter()
            .map(|b| b.expect("every slot filled"))
            .collect())
    }

    /// Drops every entry (a materialization committed new values).
    pub fn invalidate_all(&self) {
        self.inner.invalidate_all();
    }
}
