//! Writes: Feast's `push` (rows of a push source, to every online view it feeds) and
//! `write-to-online-store` (rows of one view), transport-free.
//!
//! A request is checked whole before anything is written: the target exists, every column a
//! view needs is there (a missing feature is refused by name: no half vectors), every cell has
//! its declared type, the rows are within `max_entity_rows`. Then each view's rows become its
//! online values exactly as materialization makes them (`quiver_materializer::push`), and all
//! views' values go to the store in one write (one pipelined round trip, write-if-newer per
//! key). A row without a created time gets the server's receive time. The cache drops the
//! written keys before the answer, so an acknowledged push is read back by the next request.

use std::collections::BTreeMap;
use std::time::Instant;

use quiver_materializer::aggregates::{Update, events_by_entity};
use quiver_materializer::push::{PushedColumns, entries};
use quiver_online_store::key_codec::{online_key, view_prefix};
use quiver_registry::{FeatureView, Registry, ValueType};
use serde_json::Value as J;

use crate::error::{ErrorCode, Result, ServiceError};
use crate::service::FeatureService;

pub mod df;
mod offline;
mod shape;

use shape::{Shape, shape};

/// The column receive times are written to (not a column a user can name: `__` is reserved).
const RECEIVED: &str = "__quiver_created";

/// What a write names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A push source: every online view it feeds.
    PushSource(String),
    /// One feature view (`write-to-online-store`).
    View(String),
}

/// Where a push goes (Feast's `to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Online,
    Offline,
    OnlineAndOffline,
}

impl Destination {
    pub fn parse(to: &str) -> Result<Self> {
        match to {
            "online" => Ok(Destination::Online),
            "offline" => Ok(Destination::Offline),
            "online_and_offline" => Ok(Destination::OnlineAndOffline),
            other => Err(ServiceError::invalid(format!(
                "`to` is `{other}`; give one of online, offline, online_and_offline"
            ))),
        }
    }

    pub fn online(self) -> bool {
        self != Destination::Offline
    }

    pub fn offline(self) -> bool {
        self != Destination::Online
    }
}

/// A write: its target and its rows, Feast's columnar `df`.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub target: Target,
    pub to: Destination,
    pub df: Vec<(String, Vec<J>)>,
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Rows in the request.
    pub rows: usize,
    /// The views written, in name order.
    pub views: Vec<String>,
    /// Values offered to the store: one per entity and view.
    pub entities: u64,
    /// Values stored; the others had a newer (or the same) value already.
    pub stored: u64,
}

impl FeatureService {
    /// Checks `req` whole, then writes it; see the module's documentation.
    pub async fn write(&self, req: WriteRequest) -> Result<WriteOutcome> {
        let started = Instant::now();
        let received_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let snapshot = self.snapshot();
        if !snapshot.loaded() {
            return Err(ServiceError::registry_not_loaded());
        }
        let registry = &snapshot.version.registry;
        let rows = row_count(&req.df, self.max_entity_rows())?;
        // Everything is checked before anything is written. Rows that also go to the batch
        // source are written online exactly as the file holds them (its time units, its
        // created column), so a later materialization and `verify` agree with the push.
        let offline = match req.to.offline() {
            true => Some(self.offline_file(registry, &req, received_ns).await?),
            false => None,
        };
        let online = match (req.to.online(), &offline) {
            (false, _) => None,
            (true, Some((_, file))) => {
                Some(self.online_entries(registry, &req, Rows::File(file))?)
            }
            (true, None) => Some(self.online_entries(registry, &req, Rows::Df(received_ns))?),
        };
        // The history first: a crash between the two leaves the file, and the retry writes the
        // online value (a replayed row is harmless offline: same values, the newer created time).
        let mut outcome = WriteOutcome {
            rows,
            ..WriteOutcome::default()
        };
        if let Some((place, batch)) = offline {
            if batch.num_rows() > 0 {
                offline::write(place, batch).await?;
            }
            if let Target::PushSource(name) = &req.target {
                metrics::counter!("quiver_push_rows_total", "source" => name.clone(), "destination" => "offline")
                    .increment(rows as u64);
            }
        }
        if let Some(OnlineWrite {
            entries: all,
            per_view,
            aggregates,
        }) = online
        {
            // Only a cache needs the keys afterwards.
            let keys: Vec<String> = match self.cache() {
                Some(_) => all
                    .iter()
                    .map(|e| e.key.clone())
                    .chain(
                        aggregates
                            .iter()
                            .flat_map(|(_, u)| u.iter().map(|(k, _)| k.clone())),
                    )
                    .collect(),
                None => Vec::new(),
            };
            let offered =
                all.len() as u64 + aggregates.iter().map(|(_, u)| u.len() as u64).sum::<u64>();
            let written = match self.store().write(all).await {
                Ok(mut stored) => {
                    let mut result = Ok(stored);
                    for (view, updates) in aggregates {
                        match quiver_materializer::aggregates::apply(
                            self.store().as_ref(),
                            &snapshot.version.registry.project,
                            view,
                            updates,
                            self.key_ttl(),
                            self.now_ns(),
                        )
                        .await
                        {
                            Ok(applied) => {
                                stored += applied.written;
                                if applied.late_events > 0 {
                                    metrics::counter!("quiver_push_late_events_total", "view" => view.name.clone())
                                        .increment(applied.late_events);
                                    tracing::info!(view = %view.name, events = applied.late_events,
                                        "pushed events older than the view's last materialization cutoff: counted online by the next materialization");
                                }
                                result = Ok(stored);
                            }
                            Err(quiver_materializer::Error::Store(e)) => {
                                result = Err(ServiceError::from(e));
                                break;
                            }
                            Err(e) => {
                                result = Err(ServiceError::from(
                                    quiver_online_store::Error::Backend(e.to_string()),
                                ));
                                break;
                            }
                        }
                    }
                    result
                }
                Err(e) => Err(ServiceError::from(e)),
            };
            if written.is_err() {
                metrics::counter!("quiver_store_errors_total").increment(1);
            }
            let stored = written?;
            if let Some(cache) = self.cache() {
                cache.written(&keys).await;
            }
            record_metrics(&per_view, rows, offered, stored);
            outcome.views = per_view.into_iter().map(|(view, ..)| view).collect();
            outcome.entities = offered;
            outcome.stored = stored;
        }
        metrics::histogram!("quiver_push_duration_seconds").record(started.elapsed().as_secs_f64());
        Ok(outcome)
    }

    /// Every online view's entries for the request (checked: columns, types, keys, times).
    fn online_entries<'r>(
        &self,
        registry: &'r Registry,
        req: &WriteRequest,
        rows: Rows<'_>,
    ) -> Result<OnlineWrite<'r>> {
        let shape = shape(registry, &req.target, &req.df)?;
        let (batch, columns) = match rows {
            Rows::Df(received_ns) => (
                build_batch(&shape, &req.df, received_ns)?,
                PushedColumns {
                    timestamp: shape.timestamp.clone(),
                    created: Some(RECEIVED.to_string()),
                },
            ),
            Rows::File(file) => (
                file.clone(),
                PushedColumns {
                    timestamp: shape.timestamp.clone(),
                    created: shape.created_in_source.clone(),
                },
            ),
        };
        let mut all = Vec::new();
        let mut per_view = Vec::new();
        let mut aggregates = Vec::new();
        for view in &shape.views {
            if view.aggregations.is_some() {
                let events = events_by_entity(
                    registry,
                    view,
                    &batch,
                    &columns.timestamp,
                    columns.created.as_deref(),
                )
                .map_err(|e| ServiceError::invalid(format!("{}: {e}", shape.what)))?;
                let newest = events.values().flatten().map(|e| e.event_ns).max();
                let prefix = view_prefix(&registry.project, &view.name, view.generation);
                let updates: Vec<_> = events
                    .into_iter()
                    .map(|(k, e)| (online_key(&prefix, &k), Update::Events(e)))
                    .collect();
                per_view.push((view.name.clone(), view.generation, updates.len(), newest));
                aggregates.push((*view, updates));
                continue;
            }
            let (entries, newest) = entries(registry, view, &batch, &columns, self.key_ttl())
                .map_err(|e| ServiceError::invalid(format!("{}: {e}", shape.what)))?;
            per_view.push((view.name.clone(), view.generation, entries.len(), newest));
            all.extend(entries);
        }
        Ok(OnlineWrite {
            entries: all,
            per_view,
            aggregates,
        })
    }

    /// The new file of the push source's batch source (checked, not written yet).
    async fn offline_file(
        &self,
        registry: &Registry,
        req: &WriteRequest,
        received_ns: i64,
    ) -> Result<(offline::Place, arrow::record_batch::RecordBatch)> {
        let Target::PushSource(name) = &req.target else {
            return Err(ServiceError::invalid(
                "only pushes to a push source can go offline",
            ));
        };
        let push = registry
            .push_sources
            .get(name)
            .ok_or_else(|| unknown_push_source(registry, name))?;
        let Some(batch_source) = push
            .batch_source
            .as_ref()
            .and_then(|b| registry.sources.get(b))
        else {
            return Err(ServiceError::invalid(format!(
                "push source `{name}` has no `batch_source`: there is no history to append an offline push to; push with `to: online`"
            )));
        };
        let Some(root) = self.repository_root() else {
            return Err(ServiceError::invalid(
                "this server was started without its repository, so it cannot write offline pushes",
            ));
        };
        offline::prepare(root, push, batch_source, &req.df, received_ns).await
    }
}

/// Where a write's online rows come from: the `df` (online only; the receive time as created
/// where none is given), or the new file of the batch source (online and offline).
enum Rows<'a> {
    Df(i64),
    File(&'a arrow::record_batch::RecordBatch),
}

/// What a write stores online.
struct OnlineWrite<'r> {
    /// Plain views' values for the store.
    entries: Vec<quiver_online_store::WriteEntry>,
    /// Per view: (name, entities, newest event time).
    /// (view, generation, values, newest event time) of each view written.
    per_view: Vec<(String, u64, usize, Option<i64>)>,
    /// Aggregation views' events per entity key.
    aggregates: Vec<(&'r FeatureView, Vec<(String, Update)>)>,
}

fn unknown_push_source(registry: &Registry, name: &str) -> ServiceError {
    let hint =
        quiver_registry::did_you_mean(name, registry.push_sources.keys().map(String::as_str))
            .map(|h| format!("; {h}"))
            .unwrap_or_default();
    ServiceError::new(
        ErrorCode::PushSourceNotFound,
        format!("unknown push source `{name}`{hint}"),
    )
}

/// Rows of the df: every column as long as the first, at most `max` of them.
fn row_count(df: &[(String, Vec<J>)], max: usize) -> Result<usize> {
    let Some((first, values)) = df.first() else {
        return Ok(0);
    };
    for (name, col) in df {
        if col.len() != values.len() {
            return Err(ServiceError::invalid(format!(
                "df columns differ in length: `{first}` has {} values, `{name}` has {}",
                values.len(),
                col.len()
            )));
        }
    }
    if values.len() > max {
        return Err(ServiceError::too_large(format!(
            "the df has {} rows; at most {max} per request (`serving.max_entity_rows`)",
            values.len()
        )));
    }
    Ok(values.len())
}

/// The columns the views need, typed, plus the event time and the created time (the receive
/// time where the df gives none).
fn build_batch(
    shape: &Shape<'_>,
    df: &[(String, Vec<J>)],
    received_ns: i64,
) -> Result<arrow::record_batch::RecordBatch> {
    let values = |name: &str| {
        &df.iter()
            .find(|(n, _)| n == name)
            .expect("checked by shape")
            .1
    };
    let mut columns = Vec::with_capacity(shape.columns.len() + 2);
    for (name, t) in &shape.columns {
        let array = df::column(name, *t, values(name)).map_err(ServiceError::invalid)?;
        columns.push((name.clone(), array));
    }
    let ts = ValueType::Scalar(quiver_registry::ScalarType::Timestamp);
    if !shape.columns.contains_key(&shape.timestamp) {
        let array = df::column(&shape.timestamp, ts, values(&shape.timestamp))
            .map_err(ServiceError::invalid)?;
        columns.push((shape.timestamp.clone(), array));
    }
    let rows = df.first().map_or(0, |(_, v)| v.len());
    let mut created =
        arrow::array::TimestampNanosecondBuilder::with_capacity(rows).with_timezone("UTC");
    match &shape.created {
        Some(c) => {
            for (row, v) in values(c).iter().enumerate() {
                let ns = df::timestamp_ns(v).map_err(|what| {
                    ServiceError::invalid(format!("df column `{c}`, row {row}: {v} is not {what}"))
                })?;
                created.append_value(ns.unwrap_or(received_ns));
            }
        }
        None => (0..rows).for_each(|_| created.append_value(received_ns)),
    }
    columns.push((RECEIVED.to_string(), std::sync::Arc::new(created.finish())));
    df::batch(columns).map_err(|e| ServiceError::new(ErrorCode::Internal, e))
}

/// The newest event time pushed to each (view, generation) so far: the freshness gauge's
/// reference, so a late (older) push does not make a view look stale, and a new generation
/// starts with none.
static NEWEST: std::sync::Mutex<BTreeMap<(String, u64), i64>> =
    std::sync::Mutex::new(BTreeMap::new());

/// The newest event time pushed through this server to each (view, generation) (ns since the
/// epoch).
pub fn newest_pushed() -> BTreeMap<(String, u64), i64> {
    NEWEST.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn record_metrics(
    per_view: &[(String, u64, usize, Option<i64>)],
    rows: usize,
    offered: u64,
    stored: u64,
) {
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let mut newest_seen = NEWEST.lock().unwrap_or_else(|e| e.into_inner());
    for (view, generation, _, newest) in per_view {
        metrics::counter!("quiver_push_rows_total", "view" => view.clone(), "destination" => "online")
            .increment(rows as u64);
        if let Some(newest) = newest {
            let seen = newest_seen
                .entry((view.clone(), *generation))
                .or_insert(i64::MIN);
            *seen = (*seen).max(*newest);
            // Now − the newest event time pushed (0 for events dated in the future).
            let age = now_ns.saturating_sub(*seen).max(0);
            metrics::gauge!("quiver_push_freshness_seconds", "view" => view.clone())
                .set(age as f64 / 1e9);
        }
    }
    metrics::counter!("quiver_push_write_conflicts_total")
        .increment(offered.saturating_sub(stored));
}
