//! Offline pushes: the pushed rows become a new Parquet file in the push source's batch source,
//! so retrieval and materialization read them with the rest of its history.
//!
//! The batch source must be a directory or a glob of Parquet files (a single file cannot grow
//! without being rewritten). The new file has exactly the schema of the source's files (the
//! first one, in name order; the push source's declared types when there is none yet), so every
//! file keeps reading as one table; a column of the source the push lacks is refused (as by
//! Feast), except the created time, which is the receive time then. It is written under a
//! hidden name (`.push-….tmp`, which readers skip), fsynced, renamed into place and its
//! directory fsynced before the answer: an acknowledged offline push survives a crash, and a
//! half-written file is never read. On object storage the file is one `PUT` of the whole
//! object (atomic: readers see all of it or nothing), answered once the store has it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, TimestampNanosecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use quiver_materializer::source::Dataset;
use quiver_registry::{PushSource, Source, source_schema::resolve_source_files};
use serde_json::Value as J;

use super::df;
use crate::error::{ErrorCode, Result, ServiceError};

/// Files written by this process, for unique names within one nanosecond.
static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Where an offline push's new file goes: a local directory, or a directory on object storage.
#[derive(Debug)]
pub enum Place {
    Dir(PathBuf),
    Store(Dataset),
}

/// The pushed rows checked and typed as a new file of `batch_source`, and where it goes; written
/// by [`write`].
pub async fn prepare(
    root: &Path,
    push: &PushSource,
    batch_source: &Source,
    rows: &[(String, Vec<J>)],
    received_ns: i64,
) -> Result<(Place, RecordBatch)> {
    if !batch_source.field_mapping.is_empty() {
        return Err(ServiceError::invalid(format!(
            "push source `{}`: its batch source `{}` renames columns (`field_mapping`); offline pushes need a batch source whose columns are the push source's",
            push.name, batch_source.name
        )));
    }
    let place = directory(root, batch_source)?;
    let schema = match &place {
        Place::Dir(_) => file_schema(root, push, batch_source)?,
        Place::Store(dataset) => match dataset.first_file_schema().await {
            Ok(Some(schema)) => schema,
            Ok(None) => declared_schema(push),
            Err(e) => return Err(store_error(batch_source, e)),
        },
    };
    let batch = rows_as(&schema, push, rows, received_ns)?;
    Ok((place, batch))
}

/// Writes the prepared file: see the module's documentation.
pub async fn write(place: Place, batch: RecordBatch) -> Result<()> {
    match place {
        Place::Dir(dir) => tokio::task::spawn_blocking(move || write_whole(&dir, &batch))
            .await
            .map_err(|e| ServiceError::new(ErrorCode::Internal, e.to_string()))?
            .map(|_| ()),
        Place::Store(dataset) => {
            let mut bytes = Vec::new();
            let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None)
                .map_err(|e| ServiceError::new(ErrorCode::Internal, e.to_string()))?;
            writer
                .write(&batch)
                .and_then(|_| writer.close().map(|_| ()))
                .map_err(|e| ServiceError::new(ErrorCode::Internal, e.to_string()))?;
            dataset.put_new(&file_name(), bytes).await.map_err(|e| {
                let code = match e.is_user_error() {
                    true => ErrorCode::InvalidArgument,
                    false => ErrorCode::Unavailable,
                };
                ServiceError::new(code, format!("offline push: {e}"))
            })
        }
    }
}

/// The name of a new pushed file: unique across processes and within one nanosecond.
fn file_name() -> String {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let n = WRITTEN.fetch_add(1, Ordering::Relaxed);
    format!("push-{now}-{}-{n}.parquet", std::process::id())
}

/// A failure reading the batch source's store: the user's to fix (a missing bucket, refused
/// credentials: 400) or the store's (503).
fn store_error(source: &Source, e: quiver_materializer::error::Error) -> ServiceError {
    let code = match e.is_user_error() {
        true => ErrorCode::InvalidArgument,
        false => ErrorCode::Unavailable,
    };
    ServiceError::new(
        code,
        format!("offline push: batch source `{}`: {e}", source.name),
    )
}

/// Where new files of `source` go: its directory, or the directory of its glob.
fn directory(root: &Path, source: &Source) -> Result<Place> {
    let path = source.path.as_str();
    if !source.partition_columns.is_empty() {
        return Err(ServiceError::invalid(format!(
            "batch source `{}` is partitioned (`partition_columns`): a pushed file would lie outside its partition directories and never be read; push with `to: online`",
            source.name
        )));
    }
    if quiver_registry::source_schema::is_url(path) {
        let dataset = Dataset::of(root, source)
            .map_err(|e| ServiceError::invalid(format!("batch source `{}`: {e}", source.name)))?;
        let single = dataset.glob.is_none() && dataset.url.path.as_ref().ends_with(".parquet");
        let readable = dataset.glob.as_deref().is_none_or(|g| {
            !g.contains('/') && glob::Pattern::new(g).is_ok_and(|p| p.matches("push-0.parquet"))
        });
        if single || !readable {
            return Err(ServiceError::invalid(format!(
                "batch source `{}` ({}) would not read a new object `push-….parquet` in its directory; offline pushes need a directory, or a glob like `dir/*.parquet`",
                source.name, dataset.url.shown
            )));
        }
        return Ok(Place::Store(dataset));
    }
    let full = root.join(path);
    if path.contains(['*', '?', '[']) {
        let (dir, pattern) = path.rsplit_once('/').unwrap_or((".", path));
        if dir.contains(['*', '?', '['])
            || !glob::Pattern::new(pattern).is_ok_and(|p| p.matches("push-0.parquet"))
        {
            return Err(ServiceError::invalid(format!(
                "batch source `{}`: its glob `{path}` would not read a new file `push-….parquet` in one directory; offline pushes need a directory, or a glob like `dir/*.parquet`",
                source.name
            )));
        }
        return Ok(Place::Dir(root.join(dir)));
    }
    if full.is_dir() {
        return Ok(Place::Dir(full));
    }
    let as_directory = Path::new(path).with_extension("");
    Err(ServiceError::invalid(format!(
        "batch source `{}` reads one file (`{path}`): offline pushes add files, so its path must be a directory or a glob (e.g. move the file into `{}/` and make that the path)",
        source.name,
        as_directory.display()
    )))
}

/// The schema of the source's files, or the push source's declared types if it has none.
fn file_schema(root: &Path, push: &PushSource, source: &Source) -> Result<SchemaRef> {
    if let Some(first) = resolve_source_files(root, &source.path)
        .ok()
        .and_then(|f| f.into_iter().next())
    {
        let file = std::fs::File::open(&first).map_err(|e| io_error(&first, &e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
            ServiceError::new(ErrorCode::Internal, format!("{}: {e}", first.display()))
        })?;
        return Ok(builder.schema().clone());
    }
    Ok(declared_schema(push))
}

/// A batch source without files yet: the push source's declared types.
fn declared_schema(push: &PushSource) -> SchemaRef {
    let fields: Vec<Field> = push
        .schema
        .iter()
        .map(|(name, t)| {
            let array = df::column(name, *t, &[]).expect("an empty column always builds");
            Field::new(name, array.data_type().clone(), true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The pushed rows as a batch of `schema`: each column cast to the file's type, no value lost.
fn rows_as(
    schema: &SchemaRef,
    push: &PushSource,
    rows: &[(String, Vec<J>)],
    received_ns: i64,
) -> Result<RecordBatch> {
    let count = rows.first().map_or(0, |(_, v)| v.len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name();
        let given = rows.iter().find(|(n, _)| n == name);
        let is_created = push.created_timestamp_field.as_deref() == Some(name.as_str());
        let array: ArrayRef = match (given, push.schema.get(name)) {
            // Created times: the receive time where a row has none.
            (Some((_, values)), Some(t)) if is_created => {
                let mut b = arrow::array::TimestampNanosecondBuilder::with_capacity(count)
                    .with_timezone("UTC");
                // Validation made the created column a `timestamp`: built as ns.
                let given = df::column(name, *t, values).map_err(ServiceError::invalid)?;
                let given = given
                    .as_any()
                    .downcast_ref::<TimestampNanosecondArray>()
                    .expect("timestamps are built as ns");
                for i in 0..count {
                    b.append_value(if given.is_null(i) {
                        received_ns
                    } else {
                        given.value(i)
                    });
                }
                Arc::new(b.finish())
            }
            (Some((_, values)), Some(t)) => {
                df::column(name, *t, values).map_err(ServiceError::invalid)?
            }
            (None, _) if is_created => Arc::new(
                TimestampNanosecondArray::from(vec![received_ns; count]).with_timezone("UTC"),
            ),
            (_, None) => {
                // A row of the files needs every column: filling one with nulls would change
                // what other views over the batch source read.
                return Err(ServiceError::invalid(format!(
                    "offline push to `{}`: its batch source's files have column `{name}`, which the push source does not declare; offline pushes carry every column of the files: declare it in `schema` and send it",
                    push.name
                )));
            }
            (None, Some(_)) => {
                return Err(ServiceError::invalid(format!(
                    "offline push to `{}`: the df has no column `{name}`, which its batch source's files have",
                    push.name
                )));
            }
        };
        if !field.is_nullable() && array.null_count() > 0 {
            let row = (0..array.len()).find(|&i| array.is_null(i)).unwrap_or(0);
            return Err(ServiceError::invalid(format!(
                "offline push to `{}`: row {row}: column `{name}` is null, which the batch source's files do not allow",
                push.name
            )));
        }
        columns.push(cast_exactly(name, array, field.data_type())?);
    }
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| ServiceError::invalid(format!("offline push to `{}`: {e}", push.name)))
}

/// `array` as `to`, refusing a value the cast would turn into null (e.g. a time outside the
/// file's unit's range).
fn cast_exactly(name: &str, array: ArrayRef, to: &DataType) -> Result<ArrayRef> {
    if array.data_type() == to {
        return Ok(array);
    }
    // Timestamps keep their instant, whatever unit or zone the file uses.
    let out = cast(&array, to).map_err(|e| {
        ServiceError::invalid(format!("column `{name}`: cannot be written as {to}: {e}"))
    })?;
    if out.null_count() > array.null_count() {
        return Err(ServiceError::invalid(format!(
            "column `{name}`: a value cannot be written as {to} (the batch source's type)"
        )));
    }
    Ok(out)
}

/// Writes `batch` as a new file in `dir`: hidden temporary name, fsync, rename, fsync the
/// directory.
pub fn write_whole(dir: &Path, batch: &RecordBatch) -> Result<PathBuf> {
    let name = file_name();
    let tmp = dir.join(format!(".{name}.tmp"));
    let done = dir.join(&name);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp).map_err(|e| io_error(&tmp, &e))?;
        let mut writer = ArrowWriter::try_new(&mut file, batch.schema(), None)
            .map_err(|e| ServiceError::new(ErrorCode::Internal, e.to_string()))?;
        writer
            .write(batch)
            .and_then(|_| writer.close().map(|_| ()))
            .map_err(|e| {
                ServiceError::new(ErrorCode::Internal, format!("{}: {e}", tmp.display()))
            })?;
        file.flush().map_err(|e| io_error(&tmp, &e))?;
        file.sync_all().map_err(|e| io_error(&tmp, &e))?;
        std::fs::rename(&tmp, &done).map_err(|e| io_error(&done, &e))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(dir, &e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| done)
}

/// A failure of the machine (disk full, permissions): 500, the details in the log.
fn io_error(path: &Path, e: &std::io::Error) -> ServiceError {
    ServiceError::new(
        ErrorCode::Internal,
        format!("offline push: {}: {e}", path.display()),
    )
}
