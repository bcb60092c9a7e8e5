//! The entity table of a training retrieval: Parquet, CSV or Arrow IPC (file or stream),
//! recognised by content (magic bytes) with `.csv` for CSV. It is read as a stream of batches in
//! file order, as many times as the retrieval needs, and never held whole.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, RecordBatchReader, TimestampNanosecondArray};
use arrow::compute::{can_cast_types, cast};
use arrow::datatypes::{DataType, SchemaRef, TimestampNanosecondType};
use arrow::error::ArrowError;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::columns::utc_ns;
use crate::error::{Error, Result};

/// Rows per batch read from the entity table.
pub const BATCH_ROWS: usize = 8192;

/// The timestamp column's default name (Feast's).
pub const DEFAULT_TIMESTAMP_COLUMN: &str = "event_timestamp";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityFormat {
    Parquet,
    Csv,
    ArrowFile,
    ArrowStream,
}

/// An entity table on disk, checked: readable, with a usable timestamp column.
#[derive(Debug, Clone)]
pub struct EntityInput {
    pub path: PathBuf,
    pub format: EntityFormat,
    pub timestamp_column: String,
    schema: SchemaRef,
}

fn invalid(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("entity table {}: {e}", path.display()))
}

/// The format of `path`, from its first bytes (and `.csv` for CSV).
fn sniff(path: &Path) -> Result<EntityFormat> {
    let mut head = [0u8; 8];
    let mut file = File::open(path).map_err(|e| invalid(path, e))?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]).map_err(|e| invalid(path, e))? {
            0 => break,
            k => n += k,
        }
    }
    let head = &head[..n];
    let csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    Ok(if head.starts_with(b"PAR1") {
        EntityFormat::Parquet
    } else if head.starts_with(b"ARROW1") {
        EntityFormat::ArrowFile
    } else if csv {
        EntityFormat::Csv
    } else if head.starts_with(&[0xff, 0xff, 0xff, 0xff]) {
        EntityFormat::ArrowStream
    } else {
        return Err(invalid(
            path,
            "not Parquet, Arrow IPC or CSV (CSV: a `.csv` file, or `Content-Type: text/csv` over HTTP)",
        ));
    })
}

fn csv_schema(path: &Path) -> Result<SchemaRef> {
    let file = File::open(path).map_err(|e| invalid(path, e))?;
    let (schema, _) = arrow::csv::reader::Format::default()
        .with_header(true)
        .infer_schema(BufReader::new(file), None)
        .map_err(|e| invalid(path, e))?;
    Ok(Arc::new(schema))
}

impl EntityInput {
    /// Opens and checks `path`; the timestamp column defaults to `event_timestamp`.
    pub fn open(path: &Path, timestamp_column: Option<&str>) -> Result<Self> {
        let format = sniff(path)?;
        let mut input = EntityInput {
            path: path.to_path_buf(),
            format,
            timestamp_column: timestamp_column
                .unwrap_or(DEFAULT_TIMESTAMP_COLUMN)
                .to_string(),
            schema: Arc::new(arrow::datatypes::Schema::empty()),
        };
        input.schema = match format {
            EntityFormat::Csv => csv_schema(path)?,
            _ => input.reader()?.schema(),
        };
        let ts = &input.timestamp_column;
        let field = input.schema.field_with_name(ts).map_err(|_| {
            let names: Vec<_> = input.schema.fields().iter().map(|f| f.name()).collect();
            invalid(
                path,
                format!(
                    "no timestamp column `{ts}` (columns: {names:?}); name it `{DEFAULT_TIMESTAMP_COLUMN}` or pass --timestamp-column"
                ),
            )
        })?;
        let usable = matches!(
            field.data_type(),
            DataType::Timestamp(..)
                | DataType::Date32
                | DataType::Date64
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
        );
        if !usable || !can_cast_types(field.data_type(), &utc_ns()) {
            return Err(invalid(
                path,
                format!(
                    "timestamp column `{ts}` is {}; it must be a timestamp, a date or RFC 3339 text (numbers are ambiguous: which unit?)",
                    field.data_type()
                ),
            ));
        }
        Ok(input)
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The rows in file order, in batches of about [`BATCH_ROWS`].
    pub fn reader(&self) -> Result<Box<dyn RecordBatchReader + Send>> {
        self.reader_of(None)
    }

    /// Like [`Self::reader`]; from Parquet only `columns` are decoded (other formats yield
    /// every column).
    pub fn reader_of(&self, columns: Option<&[&str]>) -> Result<Box<dyn RecordBatchReader + Send>> {
        let path = &self.path;
        let file = File::open(path).map_err(|e| invalid(path, e))?;
        Ok(match self.format {
            EntityFormat::Parquet => {
                let mut builder = ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| invalid(path, e))?
                    .with_batch_size(BATCH_ROWS);
                if let Some(columns) = columns {
                    let mut indices = columns
                        .iter()
                        .map(|c| self.schema.index_of(c).map_err(|e| invalid(path, e)))
                        .collect::<Result<Vec<_>>>()?;
                    indices.sort_unstable();
                    indices.dedup();
                    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
                    builder = builder.with_projection(mask);
                }
                Box::new(builder.build().map_err(|e| invalid(path, e))?)
            }
            EntityFormat::Csv => Box::new(
                arrow::csv::ReaderBuilder::new(self.schema.clone())
                    .with_header(true)
                    .with_batch_size(BATCH_ROWS)
                    .build(BufReader::new(file))
                    .map_err(|e| invalid(path, e))?,
            ),
            EntityFormat::ArrowFile => Box::new(
                arrow::ipc::reader::FileReader::try_new(file, None)
                    .map_err(|e| invalid(path, e))?,
            ),
            EntityFormat::ArrowStream => Box::new(
                arrow::ipc::reader::StreamReader::try_new(BufReader::new(file), None)
                    .map_err(|e| invalid(path, e))?,
            ),
        })
    }

    /// Wraps a read error with the file it came from.
    pub fn read_error(&self, e: ArrowError) -> Error {
        invalid(&self.path, e)
    }

    /// The earliest and latest entity time (ns), or `None` when no row has one, and the number
    /// of rows. For Parquet only the timestamp column is read.
    pub fn time_bounds(&self) -> Result<(Option<(i64, i64)>, u64)> {
        let mut bounds: Option<(i64, i64)> = None;
        let mut rows = 0u64;
        let mut fold = |times: &TimestampNanosecondArray| {
            rows += times.len() as u64;
            if let (Some(lo), Some(hi)) = (arrow::compute::min(times), arrow::compute::max(times)) {
                bounds = Some(match bounds {
                    Some((a, b)) => (a.min(lo), b.max(hi)),
                    None => (lo, hi),
                });
            }
        };
        for batch in self.reader_of(Some(&[self.timestamp_column.as_str()]))? {
            let batch = batch.map_err(|e| invalid(&self.path, e))?;
            fold(&self.times(&batch)?);
        }
        Ok((bounds, rows))
    }

    /// The timestamp column of `batch` as UTC nanoseconds (naive times are UTC).
    pub fn times(&self, batch: &RecordBatch) -> Result<TimestampNanosecondArray> {
        let column = batch
            .column_by_name(&self.timestamp_column)
            .ok_or_else(|| invalid(&self.path, "a batch lacks the timestamp column"))?;
        self.cast_times(column)
    }

    fn cast_times(&self, column: &ArrayRef) -> Result<TimestampNanosecondArray> {
        let cast = cast(column, &utc_ns()).map_err(|e| {
            invalid(
                &self.path,
                format!(
                    "timestamp column `{}` cannot be read as UTC nanoseconds: {e}",
                    self.timestamp_column
                ),
            )
        })?;
        Ok(cast.as_primitive::<TimestampNanosecondType>().clone())
    }

    /// SHA-256 of the file's bytes, hex encoded.
    pub fn sha256(&self) -> Result<String> {
        sha256_file(&self.path)
    }
}

/// SHA-256 of a file's bytes, hex encoded, read in 1 MiB chunks.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = File::open(path).map_err(|e| invalid(path, e))?;
    file.rewind().map_err(|e| invalid(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf).map_err(|e| invalid(path, e))? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Ok(hex::encode(hasher.finalize()))
}
