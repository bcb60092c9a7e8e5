//! `quiver._quiver`: the native half of the `quiver` Python package (`python/quiver/` is the
//! other). It calls the functions the `quiver` CLI calls (`quiver_cli`), in-process: retrieval
//! runs on DataFusion and its table crosses to Python through the Arrow C stream interface (no
//! copy, no file); online reads and pushes go through the same serving core as `quiver serve`.
//! The GIL is released while Rust works. Errors become the exceptions of `quiver.errors`, by the
//! same classification as the CLI's exit codes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatchReader;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use quiver_cli::commands::materialize::{Target, run_views};
use quiver_cli::commands::push::{Totals, chunks_of, push_all};
use quiver_cli::commands::retrieve::remote::Entities;
use quiver_cli::context::Context;
use quiver_cli::exit::UserError;
use quiver_feature_server::FeatureService;
use quiver_feature_server::push::Destination;
use quiver_feature_server::service::{OnlineRequest, Selection};
use quiver_feature_server::{Snapshot, error::ErrorCode};
use quiver_materializer::retrieve::{
    Engine, EntityInput, Options, Request, resolve_selection, retrieve, stream_error,
};
use quiver_materializer::{Range, select_views};
use quiver_online_store::OnlineStore;
use quiver_registry::store::MaterializationRun;

mod convert;
mod plumbing;

use convert::{InputTable, Timestamps, entity_value, export_table, import_stream, py_value, to_py};

/// How often an in-process online read checks whether a newer registry version was applied.
const REGISTRY_CHECK: Duration = Duration::from_secs(1);

/// How often a long call wakes to let Python deliver a signal (Ctrl-C).
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// A feature repository opened in this process (`quiver.FeatureStore` wraps it).
#[pyclass(module = "quiver._quiver", frozen)]
struct Store {
    ctx: Context,
    /// Taken only by `Drop`.
    runtime: Option<tokio::runtime::Runtime>,
    /// The online store, opened on first use and shared by every read, push and
    /// materialization of this object (the embedded store admits one opener per process).
    online: Mutex<Option<Online>>,
}

struct Online {
    store: Arc<dyn OnlineStore>,
    service: Arc<FeatureService>,
    checked: Instant,
}

#[pymethods]
impl Store {
    #[new]
    #[pyo3(signature = (repo, config=None))]
    fn new(repo: PathBuf, config: Option<PathBuf>) -> PyResult<Self> {
        let ctx = Context {
            repo,
            config,
            output: quiver_cli::Output::Text,
        };
        // A bad path or configuration is said now, not at the first call.
        ctx.open().map_err(to_py)?;
        let runtime = ctx.runtime().map_err(to_py)?;
        Ok(Store {
            ctx,
            runtime: Some(runtime),
            online: Mutex::new(None),
        })
    }

    /// The repository root, as `quiver.yaml` resolves it.
    fn root(&self) -> PyResult<String> {
        Ok(self.repo().map_err(to_py)?.root.display().to_string())
    }

    /// `quiver plan`: (text, JSON of the plan).
    fn plan(&self, py: Python<'_>) -> PyResult<(String, String)> {
        py.detach(|| {
            let repo = self.repo()?;
            let (_, prepared) = self.ctx.prepare(&repo)?;
            Ok((
                prepared.plan.render(),
                serde_json::to_string(&prepared.plan)?,
            ))
        })
        .map_err(to_py)
    }

    /// `quiver apply`: JSON `{changed, version, hash, text}`.
    fn apply(&self, py: Python<'_>) -> PyResult<String> {
        let out = py
            .detach(|| -> anyhow::Result<String> {
                use quiver_registry::store::{Applied, apply};
                let repo = self.repo()?;
                let (store, prepared) = self.ctx.prepare(&repo)?;
                let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                let hash = prepared.next.content_hash();
                let value = match apply(store.as_ref(), &prepared, at)? {
                    Applied::Unchanged(version) => serde_json::json!({
                        "changed": false, "version": version, "hash": hash,
                        "text": format!("No changes: registry version {version} is current.\n"),
                    }),
                    Applied::Committed(v) => serde_json::json!({
                        "changed": true, "version": v.version, "hash": v.hash,
                        "text": prepared.plan.render_applied(v.version),
                    }),
                };
                Ok(value.to_string())
            })
            .map_err(to_py)?;
        // Reads in this process see the new version at once.
        if let Some(online) = self
            .online
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            online.checked = Instant::now() - REGISTRY_CHECK;
        }
        Ok(out)
    }

    /// The newest applied registry version as JSON `{version, hash, applied_at, registry}`.
    fn registry(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| {
            let (_, version) = self.applied()?;
            Ok(serde_json::json!({
                "version": version.version,
                "hash": version.hash,
                "applied_at": version.applied_at,
                "registry": version.registry,
            })
            .to_string())
        })
        .map_err(to_py)
    }

    /// Point-in-time-correct features for an entity table given as a `pyarrow.RecordBatchReader`
    /// or as a path/URL; returns a `pyarrow.Table`.
    #[pyo3(signature = (features, entities=None, path=None, timestamp_column=None, full_feature_names=false, created_cutoff=false, memory_limit=None))]
    #[allow(clippy::too_many_arguments)]
    fn get_historical_features<'py>(
        &self,
        py: Python<'py>,
        features: String,
        entities: Option<Bound<'py, PyAny>>,
        path: Option<String>,
        timestamp_column: Option<String>,
        full_feature_names: bool,
        created_cutoff: bool,
        memory_limit: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        // The entity table's batches are imported while Python is held (their producer may be
        // Python code); the import moves pointers, it copies no data.
        let table = match entities {
            Some(entities) => {
                let reader = import_stream(&entities)?;
                let schema = reader.schema();
                let batches = reader
                    .collect::<Result<Vec<RecordBatch>, _>>()
                    .map_err(|e| to_py(UserError(format!("entity table: {e}")).into()))?;
                Some((schema, batches))
            }
            None => None,
        };
        let (repo, version, input) = py
            .detach(|| -> anyhow::Result<_> {
                let (repo, version) = self.applied()?;
                let ts = timestamp_column.as_deref();
                let input =
                    match (table, &path) {
                        (Some((schema, batches)), _) => InputTable::Memory(
                            EntityInput::from_batches(schema, batches, ts, "entity_df")?,
                        ),
                        (None, Some(path)) => {
                            InputTable::File(Entities::open(std::path::Path::new(path), ts)?)
                        }
                        (None, None) => {
                            return Err(UserError("give an entity table or its path".into()).into());
                        }
                    };
                Ok((repo, version, input))
            })
            .map_err(to_py)?;
        let refs = resolve_selection(&version.registry, &features).map_err(|e| to_py(e.into()))?;
        let defaults = Engine::default();
        let engine = Engine {
            memory_limit: memory_limit.unwrap_or(defaults.memory_limit),
            cluster: quiver_materializer::cluster::Cluster::of(&repo.config.engine, &repo.root)
                .map_err(|e| to_py(e.into()))?,
            ..defaults
        };
        let options = Options {
            full_feature_names,
            created_cutoff,
        };
        let (schema, batches) = self.interruptible(py, async move {
            let request = Request {
                registry: &version.registry,
                root: &repo.root,
                features: &refs,
                entities: input.get(),
                options,
            };
            let retrieval = retrieve(&request, &engine).await?;
            let schema: SchemaRef = retrieval.schema.clone();
            let batches: Vec<RecordBatch> =
                retrieval.stream.try_collect().await.map_err(stream_error)?;
            anyhow::Ok((schema, batches))
        })?;
        export_table(py, schema, batches)
    }

    /// `quiver materialize START END` (`start` given) or `quiver materialize-incremental [END]`
    /// (END default: now); times are RFC 3339 or dates, as on the command line. JSON of the runs.
    #[pyo3(signature = (views, end=None, start=None, progress=true))]
    fn materialize(
        &self,
        py: Python<'_>,
        views: Vec<String>,
        end: Option<String>,
        start: Option<String>,
        progress: bool,
    ) -> PyResult<String> {
        use quiver_cli::commands::time::parse_time;
        let end_ns = match &end {
            Some(end) => parse_time(end).map_err(to_py)?,
            None if start.is_some() => {
                return Err(to_py(UserError("give the end of the range".into()).into()));
            }
            None => chrono::Utc::now()
                .timestamp_nanos_opt()
                .expect("now fits in i64 nanoseconds"),
        };
        let range = match &start {
            Some(start) => {
                let start_ns = parse_time(start).map_err(to_py)?;
                if start_ns >= end_ns {
                    return Err(to_py(
                        UserError(format!(
                            "start ({start}) must be before end ({})",
                            end.unwrap_or_default()
                        ))
                        .into(),
                    ));
                }
                Range::Fixed { start_ns, end_ns }
            }
            None => Range::Incremental { end_ns },
        };
        py.detach(|| -> anyhow::Result<String> {
            let repo = self.repo()?;
            let registry_store = repo.store()?;
            let version = self.ctx.current_version(&repo, registry_store.as_ref())?;
            select_views(&version, &views).map_err(|e| UserError(e.to_string()))?;
            let (online, _) = self.online()?;
            let target = Target {
                repo: &repo,
                version: &version,
                registry_store: registry_store.as_ref(),
                online,
            };
            let runs: Vec<MaterializationRun> = self
                .runtime()
                .block_on(run_views(&target, &views, range, progress))?;
            Ok(serde_json::to_string(&runs)?)
        })
        .map_err(to_py)
    }

    /// Online features, columnar: `(names, types, values, statuses, event_ns)`, one list per
    /// column (join keys first).
    #[pyo3(signature = (features, entities, full_feature_names=false))]
    fn get_online_features<'py>(
        &self,
        py: Python<'py>,
        features: &Bound<'py, PyAny>,
        entities: &Bound<'py, PyDict>,
        full_feature_names: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let selection = match features.cast::<PyString>() {
            Ok(service) => Selection::Service(service.extract::<String>()?),
            Err(_) => Selection::Refs(features.extract::<Vec<String>>()?),
        };
        let mut columns = Vec::with_capacity(entities.len());
        for (name, values) in entities.iter() {
            let name: String = name.extract()?;
            let values = values
                .try_iter()?
                .map(|v| v.map(|v| entity_value(&v)))
                .collect::<PyResult<Vec<_>>>()?;
            columns.push((name, values));
        }
        let request = OnlineRequest {
            selection,
            entities: columns,
            full_feature_names,
            include_view_metadata: false,
        };
        let response = py
            .detach(|| -> anyhow::Result<_> {
                let (_, service) = self.online()?;
                self.runtime()
                    .block_on(service.get_online_features(request))
                    .map_err(|e| match e.code {
                        ErrorCode::Unavailable => quiver_cli::exit::Unavailable(e.message).into(),
                        code if code.http_status() < 500 => UserError(e.message).into(),
                        _ => anyhow::anyhow!(e.message),
                    })
            })
            .map_err(to_py)?;
        let time = Timestamps::new(py)?;
        let out = PyDict::new(py);
        out.set_item("names", &response.names)?;
        let (types, values, statuses, times) = (
            PyList::empty(py),
            PyList::empty(py),
            PyList::empty(py),
            PyList::empty(py),
        );
        for column in &response.columns {
            types.append(column.value_type.to_string())?;
            let column_values = PyList::empty(py);
            for v in &column.values {
                column_values.append(py_value(py, v.as_ref(), &time)?)?;
            }
            values.append(column_values)?;
            statuses.append(column.statuses.iter().map(|s| s.name()).collect::<Vec<_>>())?;
            let column_times = PyList::empty(py);
            for &ns in &column.event_ns {
                column_times.append(match ns {
                    0 => py.None().into_bound(py),
                    ns => time.of(ns)?,
                })?;
            }
            times.append(column_times)?;
        }
        out.set_item("types", types)?;
        out.set_item("values", values)?;
        out.set_item("statuses", statuses)?;
        out.set_item("event_timestamps", times)?;
        Ok(out)
    }

    /// `quiver push`: rows (an Arrow stream) to a push source; `(rows, writes, values, stored)`.
    #[pyo3(signature = (source, rows, to="online", batch_rows=10_000))]
    fn push(
        &self,
        py: Python<'_>,
        source: String,
        rows: Bound<'_, PyAny>,
        to: &str,
        batch_rows: usize,
    ) -> PyResult<(usize, usize, u64, u64)> {
        let to = Destination::parse(to).map_err(|e| to_py(UserError(e.message).into()))?;
        if batch_rows == 0 {
            return Err(to_py(
                UserError("batch_rows must be at least 1".into()).into(),
            ));
        }
        let batches = import_stream(&rows)?
            .collect::<Result<Vec<RecordBatch>, _>>()
            .map_err(|e| to_py(UserError(format!("rows: {e}")).into()))?;
        let totals: Totals = py
            .detach(|| -> anyhow::Result<Totals> {
                let (repo, version) = self.applied()?;
                if !version.registry.push_sources.contains_key(&source) {
                    let names = version.registry.push_sources.keys().map(String::as_str);
                    let hint = quiver_registry::did_you_mean(&source, names)
                        .map(|h| format!("; {h}"))
                        .unwrap_or_default();
                    return Err(UserError(format!("unknown push source `{source}`{hint}")).into());
                }
                let (store, _) = self.online()?;
                let service = FeatureService::new(
                    Snapshot::new(version),
                    store,
                    None,
                    quiver_feature_server::Limits {
                        max_entity_rows: batch_rows,
                    },
                )
                .with_key_ttl(repo.config.online_store.key_ttl())
                .with_repository_root(repo.root.clone());
                let chunks = chunks_of("rows", batches.into_iter().map(Ok), batch_rows);
                self.runtime()
                    .block_on(push_all(&service, &source, to, chunks))
            })
            .map_err(to_py)?;
        Ok((totals.rows, totals.writes, totals.values, totals.stored))
    }

    /// Closes the online store (the embedded store's file is released for other processes).
    fn close(&self) {
        self.online.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

#[pymodule]
fn _quiver(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Store>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
