//! The serving core, free of any transport: resolve features against the current registry
//! snapshot, read every (entity, view) blob in one round trip, and assemble columnar results
//! with statuses and event timestamps. HTTP and gRPC only convert to and from these types.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use quiver_online_store::OnlineStore;
use quiver_online_store::key_codec::{entity_key, online_key};
use quiver_online_store::value_codec::{Decoded, Value, decode};
use quiver_registry::config::DEFAULT_MAX_RESPONSE_VALUES;
use quiver_registry::did_you_mean;
use quiver_registry::{ScalarType, ValueType};

use crate::cache::BlobCache;
use crate::error::{Result, ServiceError};

mod request;
use crate::snapshot::{Resolved, Snapshot, ViewPlan};
pub use request::EntityValue;
use request::{echo, key_value, output_names, row_count};

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
        }
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

    pub async fn get_online_features(&self, req: OnlineRequest) -> Result<OnlineResponse> {
        let snap = self.snapshot();
        if !snap.loaded() {
            return Err(ServiceError::registry_not_loaded());
        }
        let wanted = resolve(&snap, &req.selection)?;
        // Views in order of first use; join keys in order of first use by those views.
        let mut views: Vec<&ViewPlan> = Vec::new();
        for (view, _) in &wanted {
            if !views.iter().any(|v| v.name == view.name) {
                views.push(view);
            }
        }
        let mut key_names: Vec<&str> = Vec::new();
        for v in &views {
            for k in &v.join_keys {
                if !key_names.contains(&k.name.as_str()) {
                    key_names.push(&k.name);
                }
            }
        }
        // Everything that can be refused from the request's shape alone is refused here, before
        // anything proportional to the answer (rows × features) is built.
        let names = output_names(&key_names, &wanted, req.full_feature_names)?;
        let rows = row_count(&req.entities)?;
        if rows > self.limits.max_entity_rows {
            return Err(ServiceError::too_large(format!(
                "{rows} entity rows exceed the limit of {} per request; send fewer rows per request or raise `serving.max_entity_rows` in quiver.yaml",
                self.limits.max_entity_rows
            )));
        }
        let values = rows.saturating_mul(wanted.len());
        if values > self.max_response_values {
            return Err(ServiceError::too_large(format!(
                "the answer would hold {rows} entity rows × {} features = {values} values, more than the limit of {} per request; ask for fewer rows or features per request or raise `serving.max_response_values` in quiver.yaml",
                wanted.len(),
                self.max_response_values
            )));
        }
        // A handful of join keys at most: a scan beats hashing.
        let column = |name: &str| {
            req.entities
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, values)| values.as_slice())
        };
        // Columns the requested features do not need are accepted and ignored, as Feast does
        // (request data for on-demand features, or passed along); not echoed. A needed key
        // that is missing is refused below, with the closest column given as a hint.
        // One key per (view, row), deduplicated across rows and views.
        let mut keys: Vec<String> = Vec::new();
        let mut slot_of: HashMap<String, usize> = HashMap::new();
        let mut view_slots: Vec<Vec<usize>> = Vec::with_capacity(views.len());
        let mut slot_view: Vec<usize> = Vec::new();
        let mut parts = Vec::new();
        for (vi, view) in views.iter().enumerate() {
            let cols = view
                .join_keys
                .iter()
                .map(|k| {
                    column(&k.name).ok_or_else(|| {
                        let given = req.entities.iter().map(|(n, _)| n.as_str());
                        let hint = did_you_mean(&k.name, given)
                            .map(|h| format!(" ({h})"))
                            .unwrap_or_default();
                        ServiceError::invalid(format!(
                            "feature view `{}` needs entity key `{}` in `entities`{hint}",
                            view.name, k.name
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let mut slots = Vec::with_capacity(rows);
            for row in 0..rows {
                parts.clear();
                for (k, col) in view.join_keys.iter().zip(&cols) {
                    parts.push(key_value(&k.name, k.value_type, &col[row], row)?);
                }
                let key = online_key(&view.prefix, &entity_key(&parts));
                let next = keys.len();
                let slot = *slot_of.entry(key.clone()).or_insert_with(|| {
                    keys.push(key);
                    slot_view.push(vi);
                    next
                });
                slots.push(slot);
            }
            view_slots.push(slots);
        }
        let blobs = self.read(&keys).await?;
        // A value that does not decode with its view's schema is never served: it reads as
        // NOT_FOUND (the caller's other features still answer) and is reported loudly.
        let decoded: Vec<Option<Decoded>> = blobs
            .iter()
            .zip(&slot_view)
            .zip(&keys)
            .map(|((blob, vi), key)| {
                let b = blob.as_ref()?;
                decode(b, &views[*vi].types)
                    .inspect_err(|e| {
                        let view = &views[*vi].name;
                        tracing::error!(
                            %view, %key, error = %e,
                            "undecodable online value served as NOT_FOUND; re-materialize this view (the next run replaces it)"
                        );
                        metrics::counter!("quiver_undecodable_values_total", "view" => view.clone())
                            .increment(1);
                    })
                    .ok()
            })
            .collect();

        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let key_type = |name: &str| {
            views
                .iter()
                .flat_map(|v| v.join_keys.iter())
                .find(|k| k.name == name)
                .map_or(ValueType::Scalar(ScalarType::Int64), |k| k.value_type)
        };
        let mut out: Vec<Column> = key_names
            .iter()
            .map(|k| {
                let col = column(k).unwrap_or_default();
                let value_type = key_type(k);
                Column {
                    value_type,
                    values: col.iter().map(|v| echo(v, value_type)).collect(),
                    statuses: vec![Status::Present; rows],
                    event_ns: vec![0; rows],
                }
            })
            .collect();
        for (view, fi) in &wanted {
            let vi = views
                .iter()
                .position(|v| v.name == view.name)
                .expect("listed above");
            let feature = &view.features[*fi];
            let mut col = Column {
                value_type: feature.value_type,
                values: Vec::with_capacity(rows),
                statuses: Vec::with_capacity(rows),
                event_ns: Vec::with_capacity(rows),
            };
            for &slot in &view_slots[vi] {
                let (value, status, ts) = match &decoded[slot] {
                    None => (None, Status::NotFound, 0),
                    Some(d) => match feature_status(d, *fi, view.ttl_ns, now) {
                        Status::Present => (d.values[*fi].clone(), Status::Present, d.event_ns),
                        Status::NotFound => (None, Status::NotFound, 0),
                        other => (None, other, d.event_ns),
                    },
                };
                col.values.push(value);
                col.statuses.push(status);
                col.event_ns.push(ts);
            }
            out.push(col);
        }
        let view_metadata = if req.include_view_metadata {
            let version = i32::try_from(snap.version.version).unwrap_or(i32::MAX);
            views.iter().map(|v| (v.name.clone(), version)).collect()
        } else {
            Vec::new()
        };
        Ok(OnlineResponse {
            names,
            columns: out,
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

/// Resolves the selection to (view, feature index) pairs, in request order.
fn resolve<'s>(snap: &'s Snapshot, selection: &Selection) -> Result<Vec<Resolved<'s>>> {
    match selection {
        Selection::Service(name) => snap.resolve_service(name),
        Selection::Refs(list) => {
            let refs = list
                .iter()
                .map(|r| {
                    r.split_once(':').ok_or_else(|| {
                        ServiceError::invalid(format!(
                            "feature reference `{r}` is not `view:feature`"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            snap.resolve_refs(refs.into_iter())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_registry::Field;

    fn view(name: &str, features: &[&str]) -> ViewPlan {
        let field = |n: &str| Field {
            name: n.into(),
            value_type: ValueType::Scalar(ScalarType::Int64),
            description: String::new(),
        };
        ViewPlan {
            name: name.into(),
            generation: 1,
            online: true,
            prefix: String::new(),
            join_keys: vec![field("id")],
            features: features.iter().map(|f| field(f)).collect(),
            types: vec![ValueType::Scalar(ScalarType::Int64); features.len()],
            ttl_ns: 0,
        }
    }

    /// Duplicates and name collisions are refused from the request's shape alone, with a message
    /// that says which; distinct features get join keys first, then features in order.
    #[test]
    fn output_names_refuse_duplicates_and_collisions() {
        let (a, b) = (view("a", &["x", "y", "id"]), view("b", &["x"]));
        let names = |wanted: &[Resolved<'_>], full| {
            output_names(&["id"], wanted, full).map_err(|e| (e.code, e.message))
        };
        assert_eq!(names(&[(&a, 0), (&a, 1)], false).unwrap(), ["id", "x", "y"]);
        assert_eq!(
            names(&[(&a, 0), (&b, 0)], true).unwrap(),
            ["id", "a__x", "b__x"]
        );
        let many: Vec<Resolved<'_>> = vec![(&a, 1); 40_000];
        for full in [false, true] {
            let (code, message) = names(&many, full).unwrap_err();
            assert_eq!(code, crate::error::ErrorCode::NameCollision);
            assert_eq!(code.http_status(), 400);
            assert!(
                message.contains("feature `a:y` is requested more than once"),
                "{message}"
            );
        }
        let (_, message) = names(&[(&a, 0), (&b, 0)], false).unwrap_err();
        assert!(
            message.contains("two output columns are named `x`"),
            "{message}"
        );
        // A feature named like a join key collides with the echoed key column.
        let (_, message) = names(&[(&a, 2)], false).unwrap_err();
        assert!(
            message.contains("two output columns are named `id`"),
            "{message}"
        );
        assert_eq!(names(&[(&a, 2)], true).unwrap(), ["id", "a__id"]);
    }
}
