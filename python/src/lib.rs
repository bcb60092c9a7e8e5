//! `quiver._quiver`: the native half of the `quiver` Python package (`python/quiver/` is the
//! other). It calls the functions the `quiver` CLI calls (`quiver_cli`), in-process: retrieval
//! runs on DataFusion and its table crosses to Python through the Arrow C stream interface (no
//! copy, no file); online reads and pushes go through the same serving core as `quiver serve`.
//! The GIL is released while Rust works. Errors become the exceptions of `quiver.errors`, by the
//! same classification as the CLI's exit codes.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{RecordBatchIterator, RecordBatchReader};
use arrow::datatypes::SchemaRef;
use arrow::ffi_stream::{ArrowArrayStreamReader, FFI_ArrowArrayStream};
use arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyList, PyString};
use quiver_cli::commands::materialize::{Target, run_views};
use quiver_cli::commands::push::{Totals, chunks_of, local_service, push_all};
use quiver_cli::commands::retrieve::remote::Entities;
use quiver_cli::context::Context;
use quiver_cli::exit::{UserError, is_unavailable, is_user_error, message};
use quiver_feature_server::FeatureService;
use quiver_feature_server::push::Destination;
use quiver_feature_server::service::{EntityValue, OnlineRequest, Selection};
use quiver_feature_server::{Snapshot, error::ErrorCode};
use quiver_materializer::retrieve::{
    Engine, EntityInput, Options, Request, resolve_selection, retrieve, stream_error,
};
use quiver_materializer::{Range, select_views};
use quiver_online_store::OnlineStore;
use quiver_online_store::value_codec::Value;
use quiver_registry::Repository;
use quiver_registry::store::MaterializationRun;

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

impl Store {
    fn repo(&self) -> anyhow::Result<Repository> {
        self.ctx.open()
    }

    /// The repository and its newest applied registry version.
    fn applied(&self) -> anyhow::Result<(Repository, quiver_registry::store::RegistryVersion)> {
        let repo = self.repo()?;
        let store = repo.store()?;
        let version = self.ctx.current_version(&repo, store.as_ref())?;
        Ok((repo, version))
    }

    /// The serving core over the online store, on the newest applied registry version (checked
    /// at most every [`REGISTRY_CHECK`]).
    fn online(&self) -> anyhow::Result<(Arc<dyn OnlineStore>, Arc<FeatureService>)> {
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
    fn interruptible<T: Send + 'static>(
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

    fn runtime(&self) -> &tokio::runtime::Runtime {
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

/// The batches of `reader`, a `pyarrow.RecordBatchReader`, through the Arrow C stream
/// interface: pyarrow fills a stream struct of ours, whose batches are then imported without
/// copying their buffers.
fn import_stream(reader: &Bound<'_, PyAny>) -> PyResult<ArrowArrayStreamReader> {
    let mut stream = FFI_ArrowArrayStream::empty();
    reader.call_method1("_export_to_c", (&raw mut stream as usize,))?;
    ArrowArrayStreamReader::try_new(stream)
        .map_err(|e| to_py(UserError(format!("reading the Arrow stream: {e}")).into()))
}

/// `batches` as a `pyarrow.Table`, through the Arrow C stream interface: pyarrow takes the
/// buffers over, nothing is copied.
fn export_table<'py>(
    py: Python<'py>,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> PyResult<Bound<'py, PyAny>> {
    let reader = RecordBatchIterator::new(batches.into_iter().map(Ok), schema);
    let stream = FFI_ArrowArrayStream::new(Box::new(reader));
    let reader = py
        .import("pyarrow")?
        .getattr("RecordBatchReader")?
        .call_method1("_import_from_c", (&raw const stream as usize,))?;
    reader.call_method0("read_all")
}

/// The entity table of a retrieval: in memory, or a file (a local copy of an object).
enum InputTable {
    Memory(EntityInput),
    File(Entities),
}

impl InputTable {
    fn get(&self) -> &EntityInput {
        match self {
            InputTable::Memory(input) => input,
            InputTable::File(entities) => &entities.input,
        }
    }
}

/// A join key value from Python: `int`, `str`, `bytes` or `None`; anything else is refused
/// by the request (with its column) if a requested feature needs it.
fn entity_value(v: &Bound<'_, PyAny>) -> EntityValue {
    if v.is_none() {
        return EntityValue::Null;
    }
    if v.is_instance_of::<PyBool>() {
        return EntityValue::Invalid(format!("{v} (a bool) is not a join key value"));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return match s.extract::<String>() {
            Ok(s) => EntityValue::Str(s),
            Err(e) => EntityValue::Invalid(e.to_string()),
        };
    }
    if let Ok(b) = v.cast::<PyBytes>() {
        return EntityValue::Bytes(b.as_bytes().to_vec());
    }
    // An integral float (`1001.0`: a pandas column with a missing key is float) is the integer,
    // as over HTTP.
    if let Ok(f) = v.cast::<PyFloat>() {
        let f = f.value();
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            return EntityValue::Int(f as i64);
        }
    }
    match v.extract::<i64>() {
        Ok(i) => EntityValue::Int(i),
        Err(_) => {
            let shown = v.repr().map(|r| r.to_string()).unwrap_or_default();
            EntityValue::Invalid(format!(
                "{shown} is not a join key value (give int, str or bytes)"
            ))
        }
    }
}

/// `datetime`s (UTC, microseconds) of nanoseconds since the epoch.
struct Timestamps<'py> {
    epoch: Bound<'py, PyAny>,
    delta: Bound<'py, PyAny>,
}

impl<'py> Timestamps<'py> {
    fn new(py: Python<'py>) -> PyResult<Self> {
        let datetime = py.import("datetime")?;
        let utc = datetime.getattr("timezone")?.getattr("utc")?;
        let epoch = datetime
            .getattr("datetime")?
            .call((1970, 1, 1, 0, 0, 0, 0, utc), None)?;
        Ok(Timestamps {
            epoch,
            delta: datetime.getattr("timedelta")?,
        })
    }

    fn of(&self, ns: i64) -> PyResult<Bound<'py, PyAny>> {
        let kwargs = PyDict::new(self.epoch.py());
        kwargs.set_item("microseconds", ns.div_euclid(1_000))?;
        self.epoch.add(self.delta.call((), Some(&kwargs))?)
    }
}

fn py_value<'py>(
    py: Python<'py>,
    v: Option<&Value>,
    time: &Timestamps<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let Some(v) = v else {
        return Ok(py.None().into_bound(py));
    };
    Ok(match v {
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int32(i) => i.into_pyobject(py)?.into_any(),
        Value::Int64(i) => i.into_pyobject(py)?.into_any(),
        Value::Float32(f) => f.into_pyobject(py)?.into_any(),
        Value::Float64(f) => f.into_pyobject(py)?.into_any(),
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Bytes(b) => PyBytes::new(py, b).into_any(),
        Value::Timestamp(ns) => time.of(*ns)?,
        Value::List(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(py_value(py, item.as_ref(), time)?)?;
            }
            list.into_any()
        }
    })
}

/// The exception of `quiver.errors` for `err`, with the CLI's message: `DefinitionError` for
/// invalid definitions (their file:line diagnostics), `StoreUnavailable` for a store that did
/// not answer, `InvalidArgument` for other mistakes the user can fix (the CLI's exit code 2),
/// `QuiverError` for the rest.
fn to_py(err: anyhow::Error) -> PyErr {
    let definitions = err.chain().any(|c| {
        matches!(
            c.downcast_ref::<quiver_registry::Error>(),
            Some(quiver_registry::Error::Invalid(_))
        )
    });
    let kind = if definitions {
        "DefinitionError"
    } else if is_unavailable(&err) {
        "StoreUnavailable"
    } else if is_user_error(&err) {
        "InvalidArgument"
    } else {
        "QuiverError"
    };
    let text = match err.downcast_ref::<quiver_registry::Error>() {
        Some(quiver_registry::Error::Invalid(_)) => err.to_string(),
        _ => message(&err),
    };
    Python::attach(|py| {
        match py
            .import("quiver.errors")
            .and_then(|m| m.getattr(kind))
            .and_then(|class| class.call1((text.clone(),)))
        {
            Ok(exception) => PyErr::from_value(exception),
            Err(e) => e,
        }
    })
}

#[pymodule]
fn _quiver(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Store>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
