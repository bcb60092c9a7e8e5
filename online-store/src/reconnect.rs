//! Opening a store that may not be reachable yet: a server must start (not ready) while its
//! store is down, and become ready when the store comes up, as it recovers from outages later.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use quiver_registry::OnlineStoreConfig;
use quiver_registry::config::redact_url;

use crate::error::{Error, Result};
use crate::open::open;
use crate::store::{OnlineStore, WriteEntry};

/// The first wait between connection attempts; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// Opens the configured store, waiting at most `wait` for it. A store that cannot be reached
/// (refused, or no answer within `wait`) is returned anyway, as a [`Reconnecting`] store that
/// answers `Unavailable` at once until a background task has connected it. A configuration that
/// cannot work (a bad URL, a missing CA file) is an error, as from [`open`].
///
/// Needs a tokio runtime (the retries run on it).
pub async fn open_or_retry(
    config: &OnlineStoreConfig,
    root: &Path,
    wait: Duration,
) -> Result<Arc<dyn OnlineStore>> {
    let mut first = {
        let (config, root) = (config.clone(), root.to_path_buf());
        tokio::spawn(async move { open(&config, &root).await })
    };
    let (pending, reason) = match tokio::time::timeout(wait, &mut first).await {
        Ok(Ok(Ok(store))) => return Ok(store),
        Ok(Ok(Err(Error::Unavailable(e)))) => (None, e),
        Ok(Ok(Err(other))) => return Err(other),
        Ok(Err(join)) => return Err(Error::Backend(format!("connecting: {join}"))),
        // The attempt goes on in the background. For an embedded store (one process at a
        // time: an attempt beside it would only be refused) the retry loop waits for it before
        // it makes its own; Redis attempts may race (the first to connect wins).
        Err(_) => match config {
            OnlineStoreConfig::Embedded { .. } => (
                Some(first),
                format!(
                    "still opening after {} ms (a store left by a crash is checked and repaired first)",
                    wait.as_millis()
                ),
            ),
            OnlineStoreConfig::Redis { .. } => {
                (None, format!("no answer within {} ms", wait.as_millis()))
            }
        },
    };
    let store = Arc::new(Reconnecting {
        shown: describe(config, root),
        inner: OnceLock::new(),
        problem: Mutex::new(reason),
    });
    if pending.is_some() {
        tracing::warn!(
            store = %store.shown, problem = %store.problem(),
            "the online store is not open yet; serving as not ready until it is"
        );
    } else {
        tracing::warn!(
            store = %store.shown, problem = %store.problem(),
            "the online store is unreachable; serving as not ready until it answers"
        );
    }
    tokio::spawn(retry(
        store.clone(),
        config.clone(),
        root.to_path_buf(),
        pending,
    ));
    Ok(store)
}

/// Connects `store` in the background, with growing waits between attempts (each attempt is
/// bounded by the backend's own connection timeout), and logs each failure.
/// `pending` is the first attempt, when it had not answered in time: it is waited for first.
async fn retry(
    store: Arc<Reconnecting>,
    config: OnlineStoreConfig,
    root: PathBuf,
    pending: Option<tokio::task::JoinHandle<Result<Arc<dyn OnlineStore>>>>,
) {
    if let Some(first) = pending {
        match first.await {
            Ok(Ok(connected)) => return store.connected_now(connected),
            Ok(Err(Error::Unavailable(e))) => store.failed(&e),
            // A damaged file or a bad configuration: another attempt would only fail the
            // same way (and repeat a long check). Not ready, saying why, until restarted.
            Ok(Err(e)) => return store.gave_up(&e.to_string()),
            Err(join) => return store.gave_up(&format!("connecting: {join}")),
        }
    }
    let mut pause = FIRST_RETRY;
    loop {
        tokio::time::sleep(pause).await;
        match open(&config, &root).await {
            Ok(connected) => return store.connected_now(connected),
            Err(e) => store.failed(&e.to_string()),
        }
        pause = (pause * 2).min(MAX_RETRY);
    }
}

/// Where a configured store is, for messages before it is open (no secrets).
fn describe(config: &OnlineStoreConfig, root: &Path) -> String {
    match config {
        OnlineStoreConfig::Embedded { path } => {
            format!("embedded store {}", root.join(path).display())
        }
        OnlineStoreConfig::Redis { url, cluster, .. } => format!(
            "Redis {}{}",
            redact_url(url),
            if *cluster { " (cluster)" } else { "" }
        ),
    }
}

/// A store being connected in the background: every call is `Unavailable` at once until it is,
/// then goes to the connected store.
pub struct Reconnecting {
    shown: String,
    inner: OnceLock<Arc<dyn OnlineStore>>,
    /// Why the last attempt failed.
    problem: Mutex<String>,
}

impl std::fmt::Debug for Reconnecting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconnecting")
            .field("at", &self.shown)
            .field("connected", &self.inner.get().is_some())
            .finish()
    }
}

impl Reconnecting {
    fn connected_now(&self, connected: Arc<dyn OnlineStore>) {
        let _ = self.inner.set(connected);
        tracing::warn!(store = %self.shown, "the online store is reachable again");
    }

    fn gave_up(&self, problem: &str) {
        tracing::error!(store = %self.shown, error = %problem, "the online store cannot be opened; not retrying (fix it and restart)");
        *self.problem.lock().unwrap_or_else(PoisonError::into_inner) = problem.to_string();
    }

    fn failed(&self, problem: &str) {
        tracing::warn!(store = %self.shown, error = %problem, "the online store is still unreachable; retrying");
        *self.problem.lock().unwrap_or_else(PoisonError::into_inner) = problem.to_string();
    }

    fn problem(&self) -> String {
        self.problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn connected(&self) -> Result<&Arc<dyn OnlineStore>> {
        self.inner.get().ok_or_else(|| {
            Error::Unavailable(format!(
                "{}: not connected yet ({})",
                self.shown,
                self.problem()
            ))
        })
    }
}

#[async_trait]
impl OnlineStore for Reconnecting {
    fn prefers_key_order(&self) -> bool {
        self.inner.get().is_some_and(|s| s.prefers_key_order())
    }

    async fn write(&self, entries: Vec<WriteEntry>) -> Result<u64> {
        self.connected()?.write(entries).await
    }

    async fn swap(&self, entries: Vec<crate::store::SwapEntry>) -> Result<Vec<bool>> {
        self.connected()?.swap(entries).await
    }

    async fn read(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        self.connected()?.read(keys).await
    }

    async fn read_for_update(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        self.connected()?.read_for_update(keys).await
    }

    async fn read_live(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        self.connected()?.read_live(keys).await
    }

    async fn swap_live(&self, entries: Vec<crate::store::LiveSwapEntry>) -> Result<Vec<bool>> {
        self.connected()?.swap_live(entries).await
    }

    async fn watermark(&self, project: &str, view: &str, generation: u64) -> Result<Option<i64>> {
        self.connected()?.watermark(project, view, generation).await
    }

    async fn advance_watermark(
        &self,
        project: &str,
        view: &str,
        generation: u64,
        end_ns: i64,
    ) -> Result<()> {
        self.connected()?
            .advance_watermark(project, view, generation, end_ns)
            .await
    }

    async fn ping(&self) -> Result<()> {
        self.connected()?.ping().await
    }

    async fn health_report(&self) -> Result<crate::health::StoreReport> {
        self.connected()?.health_report().await
    }

    fn location(&self) -> String {
        match self.inner.get() {
            Some(store) => store.location(),
            None => self.shown.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Redis nothing listens on: the store is returned at once, answers `Unavailable` (naming
    /// the address, not the password), and a bad configuration is still an error.
    #[tokio::test]
    async fn an_unreachable_store_is_returned_not_connected() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = |scheme: &str, extra: &str| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("quiver.yaml");
            std::fs::write(
                &path,
                format!("project: p\nonline_store:\n  type: redis\n  url: {scheme}://:secret@127.0.0.1:{port}\n{extra}"),
            )
            .unwrap();
            quiver_registry::config::ProjectConfig::load(&path, &|_| None)
                .unwrap()
                .online_store
        };
        let started = std::time::Instant::now();
        let store = open_or_retry(&config("redis", ""), Path::new("."), Duration::from_secs(2))
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        let err = store.ping().await.unwrap_err();
        assert!(matches!(err, Error::Unavailable(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&port.to_string()) && !text.contains("secret"),
            "{text}"
        );
        assert!(store.location().starts_with("Redis "));

        let bad = config("rediss", "  tls_ca_file: no-such-ca.pem\n");
        let err = open_or_retry(&bad, Path::new("."), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
    }
}
