//! Immutable, numbered registry versions. A version is committed whole or not at all, on top of
//! the version it was planned against: of two concurrent applies, exactly one wins.

mod local;
mod redis_store;
mod runs;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use local::LocalStore;
pub use redis_store::RedisStore;
pub use runs::{FeatureStats, MaterializationRun};

use crate::config::RegistryConfig;
use crate::error::{Error, Result};
use crate::model::Registry;
use crate::plan::{Plan, assign_generations};

/// Run records read besides the index by [`RegistryStore::latest_runs`]: records from before
/// the index existed are found only among these.
pub const UNINDEXED_RUNS: usize = 2_000;

/// One applied version: its number, content hash and the registry itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegistryVersion {
    pub version: u64,
    /// SHA-256 of the registry's canonical JSON.
    pub hash: String,
    /// RFC 3339, UTC.
    pub applied_at: String,
    pub quiver_version: String,
    pub registry: Registry,
}

/// What `registry history` lists for each version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionSummary {
    pub version: u64,
    pub hash: String,
    pub applied_at: String,
    pub feature_views: usize,
    pub feature_services: usize,
}

impl From<&RegistryVersion> for VersionSummary {
    fn from(v: &RegistryVersion) -> Self {
        VersionSummary {
            version: v.version,
            hash: v.hash.clone(),
            applied_at: v.applied_at.clone(),
            feature_views: v.registry.feature_views.len(),
            feature_services: v.registry.feature_services.len(),
        }
    }
}

/// Where versions live. Implementations never modify a committed version.
pub trait RegistryStore: Send + Sync + std::fmt::Debug {
    /// The newest version number, cheaply (servers poll it to pick up new versions).
    fn latest_version(&self) -> Result<Option<u64>>;
    /// One version; `NotFound` when it does not exist.
    fn get(&self, version: u64) -> Result<RegistryVersion>;
    /// Every version, oldest first.
    fn history(&self) -> Result<Vec<VersionSummary>>;
    /// Publishes `next` (numbered `base + 1`) if the newest version is still `base`;
    /// `Conflict` otherwise. Nothing is changed on any error.
    fn commit(&self, base: Option<u64>, next: &RegistryVersion) -> Result<()>;
    /// Where the store is, for messages.
    fn location(&self) -> String;
    /// Appends the record of a finished materialization run.
    fn record_run(&self, run: &MaterializationRun) -> Result<()>;
    /// The newest `limit` run records, oldest first.
    fn runs(&self, limit: usize) -> Result<Vec<MaterializationRun>>;
    /// The newest record of each (view, generation) as `record_run` indexed it (only records
    /// that are [`MaterializationRun::indexed`], and only over an older one), in any order;
    /// records written before the index existed are not in it: see [`Self::latest_runs`].
    fn indexed_latest_runs(&self) -> Result<Vec<MaterializationRun>>;
    /// The newest `limit` records of one view, oldest first, and how many records the view has
    /// (`None` when counting them would mean reading every record of every view).
    fn view_runs(&self, view: &str, limit: usize)
    -> Result<(Vec<MaterializationRun>, Option<u64>)>;

    /// The newest record of each (view, generation) that says how far it was materialized
    /// ([`MaterializationRun::indexed`]), however long ago it ran and however many runs of other
    /// views came since: the index, completed by the newest [`UNINDEXED_RUNS`] records (those
    /// written before the index existed, or whose index entry could not be written).
    fn latest_runs(&self) -> Result<BTreeMap<(String, u64), MaterializationRun>> {
        let mut out: BTreeMap<(String, u64), MaterializationRun> = BTreeMap::new();
        let scanned = self.runs(UNINDEXED_RUNS)?;
        let all = scanned.into_iter().chain(self.indexed_latest_runs()?);
        for run in all.filter(MaterializationRun::indexed) {
            let key = (run.view.clone(), run.generation);
            // Later wins a tie: records come oldest first, then the index.
            if out
                .get(&key)
                .is_none_or(|old| run.finished_at >= old.finished_at)
            {
                out.insert(key, run);
            }
        }
        Ok(out)
    }

    fn latest(&self) -> Result<Option<RegistryVersion>> {
        match self.latest_version()? {
            Some(v) => self.get(v).map(Some),
            None => Ok(None),
        }
    }
}

/// Opens the configured store; a local path is relative to the repository `root`.
pub fn open_store(
    config: &RegistryConfig,
    project: &str,
    root: &Path,
) -> Result<Box<dyn RegistryStore>> {
    Ok(match config {
        RegistryConfig::Local { path } => Box::new(LocalStore::new(root.join(path))),
        RegistryConfig::Redis {
            url,
            key_prefix,
            tls_ca_file,
        } => {
            let ca = match tls_ca_file {
                Some(f) => {
                    let path = root.join(f);
                    Some(std::fs::read(&path).map_err(|e| Error::io(path, e))?)
                }
                None => None,
            };
            Box::new(RedisStore::open(url, key_prefix, project, ca)?)
        }
    })
}

/// The next version as `apply` would write it, and the plan that leads there.
#[derive(Debug)]
pub struct Prepared {
    pub base: Option<RegistryVersion>,
    pub next: Registry,
    pub plan: Plan,
}

impl Prepared {
    /// Whether applying would write nothing (same content as the newest version).
    pub fn is_unchanged(&self) -> bool {
        self.base
            .as_ref()
            .is_some_and(|b| b.hash == self.next.content_hash())
    }
}

/// Plans `registry` against the store's newest version (assigning view generations).
pub fn prepare(store: &dyn RegistryStore, mut registry: Registry) -> Result<Prepared> {
    let base = store.latest()?;
    if let Some(b) = &base
        && b.registry.project != registry.project
    {
        return Err(Error::NotFound(format!(
            "{} holds project `{}`, but quiver.yaml names project `{}`; point `registry` in quiver.yaml at this project's registry (or a new location), or restore `project: {}`",
            store.location(),
            b.registry.project,
            registry.project,
            b.registry.project
        )));
    }
    assign_generations(&mut registry);
    let plan = Plan::between(base.as_ref().map(|b| (b.version, &b.registry)), &registry);
    Ok(Prepared {
        base,
        next: registry,
        plan,
    })
}

/// Outcome of [`apply`].
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// Nothing changed; the newest version stays current.
    Unchanged(u64),
    /// A new version was committed.
    Committed(Box<RegistryVersion>),
}

/// Commits a prepared registry as the next version, unless nothing changed.
pub fn apply(
    store: &dyn RegistryStore,
    prepared: &Prepared,
    applied_at: String,
) -> Result<Applied> {
    if prepared.is_unchanged() {
        let version = prepared.base.as_ref().map_or(0, |b| b.version);
        return Ok(Applied::Unchanged(version));
    }
    let base = prepared.base.as_ref().map(|b| b.version);
    let next = RegistryVersion {
        version: base.unwrap_or(0) + 1,
        hash: prepared.next.content_hash(),
        applied_at,
        quiver_version: env!("CARGO_PKG_VERSION").to_string(),
        registry: prepared.next.clone(),
    };
    store.commit(base, &next)?;
    Ok(Applied::Committed(Box::new(next)))
}
