//! The entity table of a training retrieval: Parquet, CSV or Arrow IPC (file or stream),
//! recognised by content (magic bytes) with `.csv` for CSV. It is read as a stream of batches in
//! file order, as many times as the retrieval needs, and never held whole.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, RecordBatchReader, TimestampNanosecondArray};
use arrow::compute::{can_cast_types, cast};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampNanosecondType};
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
        for batch in self.reader_of(Some(&[self.timestamp_column.as_str()]))? {
            let batch = batch.map_err(|e| invalid(&self.path, e))?;
            let times = self.times(&batch, rows)?;
            rows += times.len() as u64;
            if let (Some(lo), Some(hi)) = (arrow::compute::min(&times), arrow::compute::max(&times))
            {
                bounds = Some(match bounds {
                    Some((a, b)) => (a.min(lo), b.max(hi)),
                    None => (lo, hi),
                });
            }
        }
        Ok((bounds, rows))
    }

    /// The timestamp column of `batch` (whose first row is row `first_row` of the table) as UTC
    /// nanoseconds (naive times are UTC). A value that cannot be read — text that is no time,
    /// a time outside 1677..2262 — is an error naming its row, never a silent null.
    pub fn times(&self, batch: &RecordBatch, first_row: u64) -> Result<TimestampNanosecondArray> {
        let column = batch
            .column_by_name(&self.timestamp_column)
            .ok_or_else(|| invalid(&self.path, "a batch lacks the timestamp column"))?;
        let cast = self.cast_column(&self.timestamp_column, column, &utc_ns(), first_row)?;
        Ok(cast.as_primitive::<TimestampNanosecondType>().clone())
    }

    /// `column` (named `name`, first row `first_row`) cast to `to`, every value kept: a
    /// non-null value that would become null (unparseable text, a number or time out of range)
    /// is an error naming the row (1-based, as a spreadsheet or `head -n` shows it), the column
    /// and the value.
    pub fn cast_column(
        &self,
        name: &str,
        column: &ArrayRef,
        to: &DataType,
        first_row: u64,
    ) -> Result<ArrayRef> {
        let out = cast(column, to).map_err(|e| {
            invalid(
                &self.path,
                format!(
                    "column `{name}` ({}) cannot be read as {to}: {e}",
                    column.data_type()
                ),
            )
        })?;
        // A float key is read as an integer only when it is one: 1001.7 is not driver 1001.
        let mut changed = None;
        if column.data_type().is_floating() && to.is_integer() {
            let back = cast(&out, column.data_type()).map_err(|e| invalid(&self.path, e))?;
            let same = arrow::compute::kernels::cmp::eq(&back, column)
                .map_err(|e| invalid(&self.path, e))?;
            changed = (0..same.len())
                .find(|&i| arrow::array::Array::is_valid(&same, i) && !same.value(i));
        }
        let lost = (out.null_count() > column.null_count())
            .then(|| (0..out.len()).find(|&i| out.is_null(i) && column.is_valid(i)))
            .flatten();
        if let Some(i) = lost.into_iter().chain(changed).min() {
            let value = arrow::util::display::array_value_to_string(column, i)
                .unwrap_or_else(|_| "?".into());
            let hint = if matches!(to, DataType::Timestamp(..)) {
                "; write times as RFC 3339 (e.g. 2026-01-01T00:00:00Z or 2026-01-01 00:00:00), between 1677-09-22 and 2262-04-11"
            } else {
                ""
            };
            return Err(invalid(
                &self.path,
                format!(
                    "row {}, column `{name}`: `{value}` cannot be read as {}{hint}",
                    first_row + i as u64 + 1,
                    type_name(to)
                ),
            ));
        }
        Ok(out)
    }

    /// The schema of the output's entity columns: the input's, with the timestamp column as a
    /// UTC timestamp whatever the input format (text, dates, naive or zoned times; seconds
    /// become milliseconds, which Parquet can hold as a timestamp).
    pub fn output_schema(&self) -> SchemaRef {
        let fields: Vec<_> = self
            .schema
            .fields()
            .iter()
            .map(|f| {
                if f.name() == &self.timestamp_column {
                    Arc::new(f.as_ref().clone().with_data_type(self.output_time_type()))
                } else {
                    f.clone()
                }
            })
            .collect();
        Arc::new(arrow::datatypes::Schema::new_with_metadata(
            fields,
            self.schema.metadata().clone(),
        ))
    }

    fn output_time_type(&self) -> DataType {
        let unit = match self.schema.field_with_name(&self.timestamp_column) {
            Ok(f) => match f.data_type() {
                DataType::Timestamp(TimeUnit::Second, _) | DataType::Date32 | DataType::Date64 => {
                    TimeUnit::Millisecond
                }
                DataType::Timestamp(unit, _) => *unit,
                _ => TimeUnit::Nanosecond,
            },
            Err(_) => TimeUnit::Nanosecond,
        };
        DataType::Timestamp(unit, Some("UTC".into()))
    }

    /// `batch` (first row `first_row`) with its timestamp column as [`Self::output_schema`] says.
    pub fn for_output(&self, batch: &RecordBatch, first_row: u64) -> Result<RecordBatch> {
        let schema = self.output_schema();
        let mut columns = batch.columns().to_vec();
        let i = schema
            .index_of(&self.timestamp_column)
            .map_err(|e| invalid(&self.path, e))?;
        let to = schema.field(i).data_type().clone();
        columns[i] = self.cast_column(&self.timestamp_column, &columns[i], &to, first_row)?;
        RecordBatch::try_new(schema, columns).map_err(|e| invalid(&self.path, e))
    }

    /// SHA-256 of the file's bytes, hex encoded.
    pub fn sha256(&self) -> Result<String> {
        sha256_file(&self.path)
    }
}

/// How a type is named to users: `int64`, `timestamp`, … (Arrow's names otherwise).
fn type_name(t: &DataType) -> String {
    match t {
        DataType::Timestamp(..) => "a timestamp".into(),
        DataType::Int64 => "int64".into(),
        DataType::Int32 => "int32".into(),
        DataType::Utf8 | DataType::LargeUtf8 => "string".into(),
        other => other.to_string(),
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
