//! Offline work on an Apache DataFusion Ballista cluster (`engine: {type: ballista, url}`).
//!
//! The same DataFusion plans run locally or on the cluster: a job's scans, filters, projections
//! and sorts are planned here as usual, and with a cluster session its scheduler plans and runs
//! them on the executors, whose results stream back. What Quiver adds on top (the as-of merge,
//! the per-entity reduction's exact tie-break, online writes, output files) stays in this
//! process, so both engines give identical output by construction (ARCHITECTURE.md).
//!
//! Executors and the scheduler read sources by their URLs: object stores are opened from their
//! own environment ([`Stores`]), local paths are read where the process runs (a shared file
//! system, or one machine).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ballista::prelude::SessionContextExt as _;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::prelude::SessionContext;
use object_store::ObjectStore;
use url::Url;

use crate::error::{Error, Result};

/// Ballista's switch for its adaptive query planner (off: see [`Cluster::session`]).
const ADAPTIVE_PLANNER: &str = "ballista.planner.adaptive.enabled";

/// Where a cluster's scheduler is, from `engine:` in `quiver.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// `df://host:port`.
    pub url: String,
    pub host: String,
    pub port: u16,
    /// How long the scheduler may take to accept a connection.
    pub connect_timeout: Duration,
}

impl Cluster {
    /// The cluster `engine` names, or `None` for the local engine.
    pub fn of(engine: &quiver_registry::config::EngineConfig) -> Result<Option<Cluster>> {
        use quiver_registry::config::EngineConfig;
        match engine {
            EngineConfig::Local {} => Ok(None),
            EngineConfig::Ballista {
                url,
                connect_timeout_ms,
            } => {
                let (host, port) = EngineConfig::scheduler(url).map_err(Error::Invalid)?;
                Ok(Some(Cluster {
                    url: url.clone(),
                    host,
                    port,
                    connect_timeout: Duration::from_millis((*connect_timeout_ms).max(1)),
                }))
            }
        }
    }

    /// A session whose plans run on the cluster, with `local`'s settings, object stores and
    /// read counters (what this process reads to plan: schemas, footers). Fails within the
    /// connect timeout, with a message saying what to check, when the scheduler does not
    /// accept connections.
    pub async fn session(&self, local: &SessionContext) -> Result<SessionContext> {
        self.check_reachable().await?;
        let state = local.state();
        let ctx =
            SessionContext::remote_with_state(&format!("df://{}:{}", self.host, self.port), state)
                .await
                .map_err(|e| {
                    Error::Invalid(format!("the Ballista scheduler at {}: {e}", self.url))
                })?;
        // Ballista 55's adaptive planner re-plans a stage whose input is empty (a range without
        // rows) forever, the scheduler at full CPU; its static planner runs the same plans.
        ctx.state_ref()
            .write()
            .config_mut()
            .options_mut()
            .set(ADAPTIVE_PLANNER, "false")
            .map_err(|e| Error::Invalid(format!("configuring the cluster session: {e}")))?;
        Ok(ctx)
    }

    async fn check_reachable(&self) -> Result<()> {
        let address = format!("{}:{}", self.host, self.port);
        let why = match tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(&address),
        )
        .await
        {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "no answer within {} ms (`engine.connect_timeout_ms`)",
                self.connect_timeout.as_millis()
            ),
        };
        Err(Error::Unavailable(format!(
            "the Ballista scheduler at {} cannot be reached on {}:{} ({why}); start it with `quiver ballista scheduler`, or check `engine.url` in quiver.yaml{}",
            self.url,
            self.host,
            self.port,
            if self.url.ends_with(&format!(":{}", self.port)) {
                ""
            } else {
                " (no port given: the default, 50050)"
            }
        )))
    }
}

/// What a failure of the cluster means to the user, in one line: a gRPC status from Ballista's
/// client (the scheduler or an executor not answering, timing out, or not speaking Ballista's
/// protocol), or a job the scheduler cancelled. `None`: not the cluster's (a query error).
pub fn cluster_failure(e: &datafusion::error::DataFusionError) -> Option<String> {
    let text = e.to_string();
    if let Some(at) = text.find("Status { code: ") {
        let rest = &text[at + "Status { code: ".len()..];
        let code: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect();
        let message = rest
            .find("message: \"")
            .map(|i| {
                let m = &rest[i + "message: \"".len()..];
                m[..m.find('"').unwrap_or(m.len())].to_string()
            })
            .unwrap_or_default();
        return Some(format!(
            "the Ballista cluster did not answer ({code}: {message}); check that `quiver ballista scheduler` runs at engine.url in quiver.yaml, that its executors run, and their logs"
        ));
    }
    if text.trim_end().ends_with("failed: Cancelled") {
        return Some(
            "the Ballista scheduler cancelled the job: no executor was alive for its `--no-executor-timeout-seconds`, or an operator cancelled it; start `quiver ballista executor --scheduler …` and run it again".into(),
        );
    }
    None
}

/// The object stores of a scheduler or executor process: a URL's store (`s3://bucket`,
/// `gs://…`, `az://…`, `http(s)://…`) is opened from this process's environment the first time
/// a plan reads it (the standard `AWS_*`, `GOOGLE_*`, `AZURE_*` variables), local files
/// directly.
#[derive(Debug, Default)]
pub struct Stores {
    stores: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl Stores {
    fn key(url: &Url) -> String {
        format!(
            "{}://{}",
            url.scheme(),
            &url[url::Position::BeforeHost..url::Position::AfterPort]
        )
    }
}

impl ObjectStoreRegistry for Stores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.stores
            .write()
            .expect("the store map is never poisoned")
            .insert(Self::key(url), store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        self.stores
            .write()
            .expect("the store map is never poisoned")
            .remove(&Self::key(url))
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Execution(format!("no store for {url}"))
            })
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        let key = Self::key(url);
        if let Some(store) = self
            .stores
            .read()
            .expect("the store map is never poisoned")
            .get(&key)
        {
            return Ok(store.clone());
        }
        let store: Arc<dyn ObjectStore> = if url.scheme() == "file" {
            Arc::new(object_store::local::LocalFileSystem::new())
        } else {
            let (store, _) = crate::storage::open_url(&key)
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
            store
        };
        Ok(self
            .stores
            .write()
            .expect("the store map is never poisoned")
            .entry(key)
            .or_insert(store)
            .clone())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::error::DataFusionError;

    use super::cluster_failure;

    #[test]
    fn failures_of_the_cluster_are_told_apart_from_query_errors() {
        let timeout = DataFusionError::Execution(
            r#"Status { code: Cancelled, message: "Timeout expired", source: None }"#.into(),
        );
        let why = cluster_failure(&timeout).unwrap();
        assert!(
            why.contains("(Cancelled: Timeout expired)") && why.contains("engine.url"),
            "{why}"
        );
        let cancelled = DataFusionError::Execution("Job 038HH failed: Cancelled".into());
        assert!(
            cluster_failure(&cancelled)
                .unwrap()
                .contains("quiver ballista executor")
        );
        let query = DataFusionError::Plan("No field named fare".into());
        assert_eq!(cluster_failure(&query), None);
    }
}
