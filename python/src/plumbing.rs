//! The `Store`'s plumbing: its repository and registry, the online store it opens once and
//! shares, the runtime it owns, and long calls that Python's Ctrl-C can interrupt.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;
use quiver_cli::commands::push::local_service;
use quiver_feature_server::{FeatureService, Snapshot};
use quiver_online_store::OnlineStore;
use quiver_registry::Repository;

use super::{Online, REGISTRY_CHECK, SIGNAL_POLL, Store, to_py};

impl Store {
    pub(super) fn repo(&self) -> anyhow::Result<Repository> {
        self.ctx.open()
    }

    /// The repository and its newest applied registry version.
    pub(super) fn applied(
        &self,
    ) -> anyhow::Result<(Repository, quiver_registry::store::RegistryVersion)> {
        let repo = self.repo()?;
        let store = repo.store()?;
        let version = self.ctx.current_version(&repo, store.as_ref())?;
        Ok((repo, version))
    }

    /// The serving core over the online store, on the newest applied registry version (checked
    /// at most every [`REGISTRY_CHECK`]).
    pub(super) fn online(&self) -> anyhow::Result<(Arc<dyn OnlineStore>, Arc<FeatureService>)> {
        let mut slot = self.online.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_mut() {
            Some(online) if online.checked.elapsed() < REGISTRY_CHECK => {}
            Some(online) => {
                // The version number first: the registry is read whole only when it changed.
                let serving = online.service.snapshot().version.version;
                let newest = self.repo()?.store()?.latest_version()?;
                if newest != Some(serving) {
                    let (_, version) = self.applied()?;
                    online.service.replace_snapshot(Snapshot::new(version));
                }
                online.checked = Instant::now();
            }
            None => {
                let (repo, version) = self.applied()?;
                let serving = repo.config.serving.clone();
                let service = self
                    .runtime()
                    .block_on(local_service(&repo, version, serving.max_entity_rows))?
                    .with_max_response_values(serving.max_response_values);
                *slot = Some(Online {
                    store: service.store().clone(),
                    service: Arc::new(service),
                    checked: Instant::now(),
                });
            }
        }
        let online = slot.as_ref().expect("set above");
        Ok((online.store.clone(), online.service.clone()))
    }

    /// Runs `work` on the runtime with the GIL released, waking every [`SIGNAL_POLL`] so that
    /// Ctrl-C (a `KeyboardInterrupt`) cancels it. The wait is a channel's, not a tokio timer's:
    /// timers fire late while every worker is busy with the work itself.
    pub(super) fn interruptible<T: Send + 'static>(
        &self,
        py: Python<'_>,
        work: impl Future<Output = anyhow::Result<T>> + Send + 'static,
    ) -> PyResult<T> {
        use std::sync::mpsc::{RecvTimeoutError, channel};
        let (done, mut result) = channel();
        let task = self.runtime().spawn(async move {
            // The receiver is gone only when the caller was interrupted.
            let _ = done.send(work.await);
        });
        loop {
            // The receiver is moved to the detached closure and back (it is `Send`, not `Sync`).
            let (receiver, received) = py.detach(move || {
                let received = result.recv_timeout(SIGNAL_POLL);
                (result, received)
            });
            result = receiver;
            match received {
                Ok(result) => return result.map_err(to_py),
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(interrupt) = py.check_signals() {
                        task.abort();
                        return Err(interrupt);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(to_py(anyhow::anyhow!(
                        "internal error: the work stopped without a result (a panic: see stderr)"
                    )));
                }
            }
        }
    }

    pub(super) fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime is taken only when the store is dropped")
    }
}

impl Drop for Store {
    /// Work left running (an interrupted retrieval's sorts) is not waited for: the process may
    /// be exiting on the user's Ctrl-C.
    fn drop(&mut self) {
        self.online
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(runtime) = self.runtime.take() {
            runtime.block_on(quiver_materializer::retrieve::remove_staged());
            runtime.shutdown_background();
        }
    }
}
