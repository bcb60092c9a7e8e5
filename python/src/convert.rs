//! Crossing between Python and Rust: Arrow tables through the C stream interface (no copy),
//! entity key values in, feature values out, and errors as the exceptions of `quiver.errors`.

use arrow::array::RecordBatchIterator;
use arrow::datatypes::SchemaRef;
use arrow::ffi_stream::{ArrowArrayStreamReader, FFI_ArrowArrayStream};
use arrow::record_batch::RecordBatch;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyList, PyString};
use quiver_cli::commands::retrieve::remote::Entities;
use quiver_cli::exit::{UserError, is_unavailable, is_user_error, message};
use quiver_feature_server::service::EntityValue;
use quiver_materializer::retrieve::EntityInput;
use quiver_online_store::value_codec::Value;

/// The batches of `reader`, a `pyarrow.RecordBatchReader`, through the Arrow C stream
/// interface: pyarrow fills a stream struct of ours, whose batches are then imported without
/// copying their buffers.
pub(crate) fn import_stream(reader: &Bound<'_, PyAny>) -> PyResult<ArrowArrayStreamReader> {
    let mut stream = FFI_ArrowArrayStream::empty();
    reader.call_method1("_export_to_c", (&raw mut stream as usize,))?;
    ArrowArrayStreamReader::try_new(stream)
        .map_err(|e| to_py(UserError(format!("reading the Arrow stream: {e}")).into()))
}

/// `batches` as a `pyarrow.Table`, through the Arrow C stream interface: pyarrow takes the
/// buffers over, nothing is copied.
pub(crate) fn export_table<'py>(
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
pub(crate) enum InputTable {
    Memory(EntityInput),
    File(Entities),
}

impl InputTable {
    pub(crate) fn get(&self) -> &EntityInput {
        match self {
            InputTable::Memory(input) => input,
            InputTable::File(entities) => &entities.input,
        }
    }
}

/// A join key value from Python: `int`, `str`, `bytes` or `None`; anything else is refused
/// by the request (with its column) if a requested feature needs it.
pub(crate) fn entity_value(v: &Bound<'_, PyAny>) -> EntityValue {
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
pub(crate) struct Timestamps<'py> {
    epoch: Bound<'py, PyAny>,
    delta: Bound<'py, PyAny>,
}

impl<'py> Timestamps<'py> {
    pub(crate) fn new(py: Python<'py>) -> PyResult<Self> {
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

    pub(crate) fn of(&self, ns: i64) -> PyResult<Bound<'py, PyAny>> {
        let kwargs = PyDict::new(self.epoch.py());
        kwargs.set_item("microseconds", ns.div_euclid(1_000))?;
        self.epoch.add(self.delta.call((), Some(&kwargs))?)
    }
}

pub(crate) fn py_value<'py>(
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
pub(crate) fn to_py(err: anyhow::Error) -> PyErr {
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
