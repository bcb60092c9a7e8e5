//! Opening the configured backend: the one place that knows every backend, so the trait
//! ([`crate::store`]) knows none.

use std::path::Path;
use std::sync::Arc;

use quiver_registry::OnlineStoreConfig;

use crate::embedded::EmbeddedStore;
use crate::error::Result;
use crate::redis_backend::RedisStore;
use crate::store::OnlineStore;

/// Opens the configured store; an embedded path is relative to the repository `root`.
pub async fn open(config: &OnlineStoreConfig, root: &Path) -> Result<Arc<dyn OnlineStore>> {
    Ok(match config {
        // Opening may check and repair a file a crash left (seconds for a large one): off the
        // async workers.
        OnlineStoreConfig::Embedded { path } => {
            let path = root.join(path);
            let opened = tokio::task::spawn_blocking(move || EmbeddedStore::open(&path))
                .await
                .map_err(|e| crate::Error::Backend(format!("opening the embedded store: {e}")))?;
            Arc::new(opened?)
        }
        OnlineStoreConfig::Redis { .. } => Arc::new(RedisStore::connect(config, root).await?),
    })
}
