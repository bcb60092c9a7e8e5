//! Offline work on an Apache DataFusion Ballista cluster (`engine: {type: ballista, url}`).
//!
//! The same DataFusion plans run locally or on the cluster. Materialization and verify plan
//! their scans, filters, sorts and the per-entity rank here, and the cluster session's
//! scheduler plans and runs them on the executors, whose results (about a row per entity)
//! stream back; the exact tie-break of a full tie, online writes and output files stay in this
//! process. Retrieval builds each view's whole join — scans, sorts and Quiver's own merge
//! operators — as a physical plan and submits it ([`crate::retrieve`]'s `on_cluster`); the
//! merges reach the scheduler and executors through [`QuiverPhysicalCodec`]. Both engines run
//! the same operators, so they give identical output by construction (ARCHITECTURE.md).
//!
//! Executors and the scheduler read sources by their URLs: object stores are opened from their
//! own environment and the sources' `storage:` maps, which travel with each job as written
//! (`${VAR}` references unresolved: each process resolves them from its own environment, so
//! secrets kept in variables never leave it) in the session option `quiver.storage`
//! ([`QuiverOptions`], [`Stores::for_job`]); local paths are read where the process runs (a
//! shared file system, or one machine).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ballista::prelude::SessionContextExt as _;
use datafusion::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::ObjectStore;
use quiver_registry::validate::redact;
use url::Url;

use crate::error::{Error, Result};

mod codec;
pub use codec::QuiverPhysicalCodec;

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
    /// Where retrieval stages entity keys for the executors (`engine.staging`; `None`: a
    /// directory in the system's temporary directory).
    pub staging: Option<String>,
    /// How the staging store is opened (`engine.staging_storage`, as written).
    pub staging_storage: BTreeMap<String, String>,
    /// Partitions of a view's join on the cluster (`engine.partitions`; `None`: this
    /// machine's CPUs).
    pub partitions: Option<usize>,
}

impl Cluster {
    /// The cluster `engine` names, or `None` for the local engine; a relative local
    /// `engine.staging` is taken relative to the repository's `root`, as quiver.yaml's other
    /// paths are.
    pub fn of(
        engine: &quiver_registry::config::EngineConfig,
        root: &std::path::Path,
    ) -> Result<Option<Cluster>> {
        use quiver_registry::config::EngineConfig;
        match engine {
            EngineConfig::Local {} => Ok(None),
            EngineConfig::Ballista {
                url,
                connect_timeout_ms,
                staging,
                staging_storage,
                partitions,
            } => {
                let (host, port) = EngineConfig::scheduler(url).map_err(Error::Invalid)?;
                Ok(Some(Cluster {
                    url: url.clone(),
                    host,
                    port,
                    connect_timeout: Duration::from_millis((*connect_timeout_ms).max(1)),
                    staging: staging.as_ref().map(|s| {
                        if quiver_registry::source_schema::is_url(s)
                            || std::path::Path::new(s).is_absolute()
                        {
                            s.clone()
                        } else {
                            root.join(s).display().to_string()
                        }
                    }),
                    staging_storage: staging_storage.clone(),
                    partitions: *partitions,
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
    // The executor holding a finished job's results is gone (Ballista's client fetches them
    // from it), or the scheduler is.
    if text.contains("GrpcConnectionError") {
        return Some(
            "a process of the Ballista cluster could not be reached (the scheduler, or the executor holding the job's results: was it lost?); check `quiver ballista scheduler` and its executors, then run it again".into(),
        );
    }
    // The scheduler's connection cut while a job streamed (the scheduler killed or restarted).
    if text.contains("h2 protocol error") || text.contains("error reading a body from connection") {
        return Some(
            "the connection to the Ballista scheduler broke during the job (was it stopped or restarted?); check `quiver ballista scheduler` at engine.url and its log, then run it again".into(),
        );
    }
    if text.trim_end().ends_with("failed: Cancelled") {
        return Some(
            "the Ballista scheduler cancelled the job: no executor was alive for its `--no-executor-timeout-seconds` (start `quiver ballista executor --scheduler …`), or no task ran for its `--stall-timeout-seconds` (Ballista stalls so after losing an executor mid-job: restart every executor, the surviving ones too), or an operator cancelled it; then run it again".into(),
        );
    }
    None
}

/// Quiver's session options, sent with every job to the cluster's processes: `quiver.storage`,
/// JSON of the `storage:` map of the sources read from each object store (`s3://bucket`), as
/// written (`${VAR}` references unresolved). Written out by hand rather than with DataFusion's
/// `extensions_options!`, whose entries lack the `quiver.` prefix, so Ballista (which sends a
/// session's entries to the processes as key-value pairs) would send keys no process accepts.
#[derive(Debug, Clone, Default)]
pub struct QuiverOptions {
    pub storage: String,
}

const STORAGE_OPTION: &str = "storage";

impl ExtensionOptions for QuiverOptions {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> datafusion::error::Result<()> {
        match key {
            STORAGE_OPTION => {
                self.storage = value.to_string();
                Ok(())
            }
            other => Err(datafusion::error::DataFusionError::Configuration(format!(
                "no session option `{}.{other}`",
                Self::PREFIX
            ))),
        }
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        vec![ConfigEntry {
            key: format!("{}.{STORAGE_OPTION}", Self::PREFIX),
            value: (!self.storage.is_empty()).then(|| self.storage.clone()),
            description: "per object store, the sources' storage: maps as written (JSON)",
        }]
    }
}

impl ConfigExtension for QuiverOptions {
    const PREFIX: &'static str = "quiver";
}

/// The per-store `storage:` maps in `options` (`quiver.storage`); none when unset.
fn storage_of(options: &QuiverOptions) -> datafusion::error::Result<StorageMaps> {
    if options.storage.is_empty() {
        return Ok(StorageMaps::new());
    }
    serde_json::from_str(&options.storage).map_err(|e| {
        datafusion::error::DataFusionError::Configuration(format!(
            "the session option quiver.storage is not a map of storage maps: {e}"
        ))
    })
}

/// Per object store (`s3://bucket`), the `storage:` map it is opened with.
type StorageMaps = BTreeMap<String, BTreeMap<String, String>>;

/// Records in `ctx`'s session options that the store at `root` is opened with `storage` (a
/// source's map, as written), so that a cluster's processes open it the same way. Nothing for
/// local files or an empty map.
pub fn forward_storage(
    ctx: &SessionContext,
    root: &Url,
    storage: &BTreeMap<String, String>,
) -> Result<()> {
    if storage.is_empty() || root.scheme() == "file" {
        return Ok(());
    }
    let state = ctx.state_ref();
    let mut state = state.write();
    let options = state.config_mut().options_mut();
    if options.extensions.get::<QuiverOptions>().is_none() {
        options.extensions.insert(QuiverOptions::default());
    }
    let quiver = options
        .extensions
        .get_mut::<QuiverOptions>()
        .expect("inserted above");
    let mut maps = storage_of(quiver).map_err(|e| Error::Invalid(e.to_string()))?;
    let key = Stores::key(root);
    // One map per store reaches the cluster: two different ones for the same bucket would
    // have one of them read with the other's settings.
    if maps.get(&key).is_some_and(|m| m != storage) {
        return Err(Error::Invalid(format!(
            "the store {} is opened with two different `storage:` maps in one job (two sources', or a source's and engine.staging_storage); give them the same map, or use another bucket",
            redact(&key)
        )));
    }
    maps.insert(key, storage.clone());
    quiver.storage = serde_json::to_string(&maps).expect("string maps serialize");
    Ok(())
}

/// A cluster process's session configuration: Ballista's, accepting Quiver's options.
pub fn cluster_config() -> SessionConfig {
    ballista_core::utils::default_config_producer().with_option_extension(QuiverOptions::default())
}

/// The object stores of a scheduler or executor process: a URL's store (`s3://bucket`,
/// `gs://…`, `az://…`, `http(s)://…`) is opened the first time a plan reads it, from this
/// process's environment (the standard `AWS_*`, `GOOGLE_*`, `AZURE_*` variables) and the job's
/// `storage:` map for it ([`Stores::for_job`]; its `${VAR}` references resolved from this
/// process's environment); local files directly. Stores are shared by the jobs whose maps for
/// them are the same.
#[derive(Debug, Default)]
pub struct Stores {
    /// Opened stores by (store, its storage map as JSON).
    opened: Arc<RwLock<HashMap<String, Arc<dyn ObjectStore>>>>,
    /// This job's storage maps.
    storage: StorageMaps,
}

impl Stores {
    fn key(url: &Url) -> String {
        format!(
            "{}://{}",
            url.scheme(),
            &url[url::Position::BeforeHost..url::Position::AfterPort]
        )
    }

    /// The stores of the job whose session configuration is `config`: its `quiver.storage`
    /// maps, and the stores already opened with the same maps.
    pub fn for_job(&self, config: &SessionConfig) -> datafusion::error::Result<Stores> {
        let storage = match config.options().extensions.get::<QuiverOptions>() {
            Some(options) => storage_of(options)?,
            None => StorageMaps::new(),
        };
        Ok(Stores {
            opened: self.opened.clone(),
            storage,
        })
    }

    /// The cache key of the store at `key` opened with this job's map for it.
    fn opened_key(&self, key: &str) -> String {
        match self.storage.get(key) {
            Some(map) => format!(
                "{key} {}",
                serde_json::to_string(map).expect("string maps serialize")
            ),
            None => key.to_string(),
        }
    }
}

impl ObjectStoreRegistry for Stores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        let key = self.opened_key(&Self::key(url));
        self.opened
            .write()
            .expect("the store map is never poisoned")
            .insert(key, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        let key = self.opened_key(&Self::key(url));
        self.opened
            .write()
            .expect("the store map is never poisoned")
            .remove(&key)
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Execution(format!("no store for {url}"))
            })
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        let key = Self::key(url);
        let opened_key = self.opened_key(&key);
        if let Some(store) = self
            .opened
            .read()
            .expect("the store map is never poisoned")
            .get(&opened_key)
        {
            return Ok(store.clone());
        }
        let store: Arc<dyn ObjectStore> = if url.scheme() == "file" {
            Arc::new(object_store::local::LocalFileSystem::new())
        } else {
            let external = |e| datafusion::error::DataFusionError::External(Box::new(e));
            let parsed = crate::storage::StoreUrl::parse(&key).map_err(external)?;
            let empty = BTreeMap::new();
            let storage = self.storage.get(&key).unwrap_or(&empty);
            crate::storage::open(&parsed, storage, &|name| std::env::var(name).ok())
                .map_err(external)?
        };
        Ok(self
            .opened
            .write()
            .expect("the store map is never poisoned")
            .entry(opened_key)
            .or_insert(store)
            .clone())
    }
}

#[cfg(test)]
mod tests;
