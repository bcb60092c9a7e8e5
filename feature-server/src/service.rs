//! The serving core, free of any transport: resolve features against the current registry
//! snapshot, read every (entity, view) blob in one round trip, and assemble columnar results
//! with statuses and event timestamps. HTTP and gRPC only convert to and from these types.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use quiver_online_store::OnlineStore;
use quiver_online_store::value_codec::{Decoded, Value};
use quiver_registry::ValueType;
use quiver_registry::config::DEFAULT_MAX_RESPONSE_VALUES;

use crate::cache::BlobCache;
use crate::error::{Result, ServiceError};
use crate::snapshot::Snapshot;

mod answer;
mod lookup;
mod plan;
mod request;
use lookup::Lookup;
use plan::{Bounds, Plan};
pub use request::EntityValue;

/// Which features a request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// `view:feature` references.
    Refs(Vec<String>),
    /// A feature service by name.
    Service(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct OnlineRequest {
    pub selection: Selection,
    /// Columnar entity rows: join key name → one value per row.
    pub entities: Vec<(String, Vec<EntityValue>)>,
    pub full_feature_names: bool,
    /// Feast's `include_feature_view_version_metadata`: name each view read, with a version.
    pub include_view_metadata: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Present,
    NullValue,
    NotFound,
    OutsideMaxAge,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Present => "PRESENT",
            Status::NullValue => "NULL_VALUE",
            Status::NotFound => "NOT_FOUND",
            Status::OutsideMaxAge => "OUTSIDE_MAX_AGE",
        }
    }
}

/// One output column: a join key (echoed) or a feature.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The declared type of the join key or feature.
    pub value_type: ValueType,
    pub values: Vec<Option<Value>>,
    pub statuses: Vec<Status>,
    /// Nanoseconds since the epoch; 0 where there is no value.
    pub event_ns: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OnlineResponse {
    /// Join keys first, then features in request order.
    pub names: Vec<String>,
    pub columns: Vec<Column>,
    /// With `include_view_metadata`: each view read, in order of first use, with the registry
    /// version served (Feast's `metadata.feature_view_metadata`; its `version` is an int32, too
    /// small for a generation, and the registry version names the definitions answered from).
    pub view_metadata: Vec<(String, i32)>,
}

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entity_rows: usize,
}

/// The serving core. Cheap to share: clone the `Arc`.
#[derive(Debug)]
pub struct FeatureService {
    snapshot: RwLock<Arc<Snapshot>>,
    /// Why the last registry reload failed, while it keeps failing (the last good version
    /// serves meanwhile).
    registry_problem: RwLock<Option<String>>,
    /// Views whose materialized data the online store has lost (`reload::watch`), each with why.
    lost_data: RwLock<Vec<(String, String)>>,
    /// Whether that has been checked since the server started (`reload::watch`).
    data_checked: std::sync::atomic::AtomicBool,
    store: Arc<dyn OnlineStore>,
    cache: Option<BlobCache>,
    limits: Limits,
    max_response_values: usize,
    /// Whether written values expire with their view's ttl (`online_store.key_ttl`), for
    /// pushes as for materialization.
    key_ttl: bool,
    /// The repository, where offline pushes append to batch sources; none: refused.
    repository_root: Option<std::path::PathBuf>,
    /// Fixes "now" (ns) for tests of time-dependent answers; `None`: the system clock.
    clock: Option<i64>,
}

impl FeatureService {
    pub fn new(
        snapshot: Snapshot,
        store: Arc<dyn OnlineStore>,
        cache: Option<BlobCache>,
        limits: Limits,
    ) -> Self {
        FeatureService {
            snapshot: RwLock::new(Arc::new(snapshot)),
            registry_problem: RwLock::new(None),
            lost_data: RwLock::new(Vec::new()),
            data_checked: std::sync::atomic::AtomicBool::new(true),
            store,
            cache,
            limits,
            max_response_values: DEFAULT_MAX_RESPONSE_VALUES,
            key_ttl: false,
            repository_root: None,
            clock: None,
        }
    }

    /// Answers as of `now_ns` instead of the system clock (tests of windows and ttls).
    pub fn with_clock(mut self, now_ns: i64) -> Self {
        self.clock = Some(now_ns);
        self
    }

    /// The time requests are answered at: the system clock, unless fixed.
    pub fn now_ns(&self) -> i64 {
        self.clock
            .unwrap_or_else(|| chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX))
    }

    /// The registry snapshot requests use now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Swaps in a new registry version; requests in flight finish on the old one.
    pub fn replace_snapshot(&self, snapshot: Snapshot) {
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
    }

    /// Records the outcome of a registry reload: `None` when the registry reads fine.
    pub fn set_registry_problem(&self, problem: Option<String>) {
        metrics::gauge!("quiver_registry_healthy").set(if problem.is_some() { 0.0 } else { 1.0 });
        *self
            .registry_problem
            .write()
            .unwrap_or_else(|e| e.into_inner()) = problem;
    }

    pub fn registry_problem(&self) -> Option<String> {
        self.registry_problem
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the views (name, reason) whose materialized data the online store no longer has;
    /// empty when it has all it should. Each view's `quiver_view_data_lost` gauge follows.
    pub fn set_lost_data(&self, lost: Vec<(String, String)>) {
        let mut current = self.lost_data.write().unwrap_or_else(|e| e.into_inner());
        for (view, _) in current.iter() {
            if !lost.iter().any(|(v, _)| v == view) {
                metrics::gauge!("quiver_view_data_lost", "view" => view.clone()).set(0.0);
            }
        }
        for (view, _) in &lost {
            metrics::gauge!("quiver_view_data_lost", "view" => view.clone()).set(1.0);
        }
        *current = lost;
    }

    /// Records whether the store's data has been checked for losses since the server started.
    pub fn set_data_checked(&self, checked: bool) {
        self.data_checked
            .store(checked, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn data_checked(&self) -> bool {
        self.data_checked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Views (name, reason) whose materialized data the online store has lost.
    pub fn lost_data(&self) -> Vec<(String, String)> {
        self.lost_data
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn store(&self) -> &Arc<dyn OnlineStore> {
        &self.store
    }

    pub fn cache(&self) -> Option<&BlobCache> {
        self.cache.as_ref()
    }

    /// Bounds the answer: at most `n` values (entity rows × requested features) per request;
    /// `serving.max_response_values`, [`DEFAULT_MAX_RESPONSE_VALUES`] unless set.
    pub fn with_max_response_values(mut self, n: usize) -> Self {
        self.max_response_values = n;
        self
    }

    /// Pushed values expire with their view's ttl, as materialized ones do with
    /// `online_store.key_ttl`.
    pub fn with_key_ttl(mut self, key_ttl: bool) -> Self {
        self.key_ttl = key_ttl;
        self
    }

    /// The repository whose batch sources offline pushes append to.
    pub fn with_repository_root(mut self, root: std::path::PathBuf) -> Self {
        self.repository_root = Some(root);
        self
    }

    pub(crate) fn repository_root(&self) -> Option<&std::path::Path> {
        self.repository_root.as_deref()
    }

    pub(crate) fn key_ttl(&self) -> bool {
        self.key_ttl
    }

    /// Most entity rows (or pushed rows) per request.
    pub(crate) fn max_entity_rows(&self) -> usize {
        self.limits.max_entity_rows
    }

    /// The features `req` asks for, for each of its entity rows, read on one registry
    /// snapshot in one store round trip.
    pub async fn get_online_features(&self, req: OnlineRequest) -> Result<OnlineResponse> {
        let snap = self.snapshot();
        if !snap.loaded() {
            return Err(ServiceError::registry_not_loaded());
        }
        let bounds = Bounds {
            max_entity_rows: self.limits.max_entity_rows,
            max_response_values: self.max_response_values,
        };
        let plan = Plan::new(&snap, &req, bounds)?;
        let lookup = Lookup::new(&plan.views, &req.entities, plan.rows)?;
        let blobs = self.read(&lookup.keys).await?;
        let now = self.now_ns();
        let decoded = lookup.decode(&plan.views, &blobs, now);
        let view_metadata = if req.include_view_metadata {
            let version = i32::try_from(snap.version.version).unwrap_or(i32::MAX);
            plan.views
                .iter()
                .map(|v| (v.name.clone(), version))
                .collect()
        } else {
            Vec::new()
        };
        let (names, columns) = plan.answer(&req.entities, &lookup, &decoded, now);
        Ok(OnlineResponse {
            names,
            columns,
            view_metadata,
        })
    }

    /// All keys in one store round trip (cached keys are not asked for).
    async fn read(&self, keys: &[String]) -> Result<Vec<Option<Arc<Vec<u8>>>>> {
        let started = Instant::now();
        let result = match &self.cache {
            None => self
                .store
                .read(keys)
                .await
                .map(|b| b.into_iter().map(|x| x.map(Arc::new)).collect()),
            Some(cache) => cache.read_through(self.store.as_ref(), keys).await,
        };
        metrics::histogram!("quiver_store_read_seconds").record(started.elapsed().as_secs_f64());
        if result.is_err() {
            metrics::counter!("quiver_store_errors_total").increment(1);
        }
        Ok(result?)
    }
}

/// Whether a value with event time `event_ns` is older than the view's ttl (`0` = unbounded).
pub fn is_outside_max_age(event_ns: i64, ttl_ns: i64, now_ns: i64) -> bool {
    ttl_ns > 0 && now_ns.saturating_sub(event_ns) > ttl_ns
}

/// What serving answers for feature `index` of a stored blob read at `now_ns`; the one rule
/// behind every status (the CLI's `online get` uses it too).
pub fn feature_status(decoded: &Decoded, index: usize, ttl_ns: i64, now_ns: i64) -> Status {
    if is_outside_max_age(decoded.event_ns, ttl_ns, now_ns) {
        return Status::OutsideMaxAge;
    }
    match decoded.values.get(index) {
        None => Status::NotFound,
        Some(None) => Status::NullValue,
        Some(Some(_)) => Status::Present,
    }
}
