//! The entity table of a training retrieval: Parquet, CSV or Arrow IPC (file or stream),
//! recognised by content (magic bytes) with `.csv` for CSV. It is read as a stream of batches in
//! file order, as many times as the retrieval needs, and never held whole.
//!
//! What it decodes to is bounded, whatever the file says: a batch holds at most about
//! [`MAX_BATCH_BYTES`] (Parquet batches have fewer rows when values may be long, CSV batches end
//! after a few MiB of text, larger batches are cut), and with [`EntityLimits`] the whole table
//! (`max_decoded_bytes`, checked from a Parquet file's page headers before anything is decoded,
//! then batch by batch) and each CSV record (`max_csv_record_bytes`) are too. A small upload
//! cannot make the server decode gigabytes.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, RecordBatchReader, TimestampNanosecondArray,
};
use arrow::compute::{can_cast_types, cast};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampNanosecondType};
use arrow::error::ArrowError;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::columns::utc_ns;
use crate::error::{Error, Result};

/// Rows per batch read from the entity table.
pub const BATCH_ROWS: usize = 8192;

/// Most bytes one batch read from the entity table decodes to (about: Parquet batches are sized
/// from what their values can be, larger batches of other formats are cut).
pub const MAX_BATCH_BYTES: u64 = 16 << 20;

/// CSV text decoded into one batch, about (a batch ends at the end of a record).
const CSV_BATCH_INPUT_BYTES: u64 = 4 << 20;

/// Bounds on what an entity table may decode to; none by default (the CLI reads the user's own
/// files), set by the server for uploads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntityLimits {
    /// Most bytes the table may decode to: its columns in memory, a dictionary value counted
    /// each time a row uses it; also what a Parquet file's pages may hold uncompressed.
    pub max_decoded_bytes: Option<u64>,
    /// Longest CSV record (a line, or several inside a quoted field), in bytes.
    pub max_csv_record_bytes: Option<u64>,
    /// What a refused user can do, appended to the message (e.g. the setting that raises it).
    pub hint: String,
}

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
    /// How messages name the table: `entity table PATH`, or e.g. `the uploaded entity table`.
    name: String,
    limits: EntityLimits,
    /// Rows per Parquet batch (fewer than [`BATCH_ROWS`] when values may be long).
    batch_rows: usize,
}

fn invalid(name: &str, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{name}: {e}"))
}

fn too_large(name: &str, what: impl std::fmt::Display, hint: &str) -> Error {
    let hint = if hint.is_empty() {
        String::new()
    } else {
        format!("; {hint}")
    };
    Error::TooLarge(format!("{name}: {what}{hint}"))
}

/// The format of `path`, from its first bytes (and `.csv` for CSV).
fn sniff(path: &Path, name: &str) -> Result<EntityFormat> {
    let mut head = [0u8; 8];
    let mut file = File::open(path).map_err(|e| invalid(name, e))?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]).map_err(|e| invalid(name, e))? {
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
            name,
            "not Parquet, Arrow IPC or CSV (CSV: a `.csv` file, or `Content-Type: text/csv` over HTTP)",
        ));
    })
}

impl EntityInput {
    /// Opens and checks `path`; the timestamp column defaults to `event_timestamp`.
    pub fn open(path: &Path, timestamp_column: Option<&str>) -> Result<Self> {
        let name = format!("entity table {}", path.display());
        Self::open_with(path, timestamp_column, &name, EntityLimits::default())
    }

    /// Like [`Self::open`], naming the table `name` in every message (instead of its path) and
    /// reading it within `limits`. A Parquet file whose pages hold more than the decoded-bytes
    /// limit, or whose values need more than it, is refused here, before anything is decoded.
    pub fn open_with(
        path: &Path,
        timestamp_column: Option<&str>,
        name: &str,
        limits: EntityLimits,
    ) -> Result<Self> {
        let format = sniff(path, name)?;
        let mut input = EntityInput {
            path: path.to_path_buf(),
            format,
            timestamp_column: timestamp_column
                .unwrap_or(DEFAULT_TIMESTAMP_COLUMN)
                .to_string(),
            schema: Arc::new(arrow::datatypes::Schema::empty()),
            name: name.to_string(),
            limits,
            batch_rows: BATCH_ROWS,
        };
        if format == EntityFormat::Parquet {
            input.batch_rows = input.parquet_batch_rows()?;
        }
        input.schema = match format {
            EntityFormat::Csv => input.csv_schema()?,
            _ => input.reader()?.schema(),
        };
        let ts = &input.timestamp_column;
        let field = input.schema.field_with_name(ts).map_err(|_| {
            let names: Vec<_> = input.schema.fields().iter().map(|f| f.name()).collect();
            invalid(
                name,
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
                name,
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

    /// How messages name the table.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn invalid(&self, e: impl std::fmt::Display) -> Error {
        invalid(&self.name, e)
    }

    /// The table is larger than a limit allows: a user error saying `what` (with the limit)
    /// and what to do.
    fn too_large(&self, what: impl std::fmt::Display) -> Error {
        too_large(&self.name, what, &self.limits.hint)
    }

    /// Reads the Parquet file's page headers: refuses a file that cannot stay within the
    /// decoded-bytes limit, and returns the rows per batch that keep a batch within
    /// [`MAX_BATCH_BYTES`].
    fn parquet_batch_rows(&self) -> Result<usize> {
        use super::parquet_bounds::{Refusal, bounds};
        let file = File::open(&self.path).map_err(|e| self.invalid(e))?;
        let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&file)
            .map_err(|e| self.invalid(e))?;
        let limit = self.limits.max_decoded_bytes;
        let b = match bounds(&self.path, &metadata, limit, MAX_BATCH_BYTES, BATCH_ROWS) {
            Ok(b) => b,
            Err(Refusal::Corrupt(e)) => return Err(self.invalid(e)),
            Err(Refusal::TooLarge(what)) => {
                let limit = limit.unwrap_or_default();
                return Err(self.too_large(format!("{what}, more than the limit of {limit} bytes")));
            }
        };
        if let Some(limit) = limit {
            let needed = b.fixed_bytes.saturating_add(b.nested_expansion);
            if b.fixed_bytes > limit {
                let rows = metadata.file_metadata().num_rows();
                return Err(self.too_large(format!(
                    "its {rows} rows decode to at least {} bytes, more than the limit of {limit} bytes",
                    b.fixed_bytes
                )));
            }
            if needed > limit {
                return Err(self.too_large(format!(
                    "its list columns may decode to {needed} bytes, more than the limit of {limit} bytes"
                )));
            }
        }
        Ok(b.batch_rows)
    }

    /// The CSV file's schema, inferred from all of its records.
    fn csv_schema(&self) -> Result<SchemaRef> {
        let file = File::open(&self.path).map_err(|e| self.invalid(e))?;
        let mut limited = RecordLimit::new(file, self.limits.max_csv_record_bytes);
        let inferred = arrow::csv::reader::Format::default()
            .with_header(true)
            .infer_schema(BufReader::new(&mut limited), None);
        match (inferred, limited.exceeded) {
            (_, Some(what)) => Err(self.too_large(what)),
            (Ok((schema, _)), None) => Ok(Arc::new(schema)),
            (Err(e), None) => Err(self.invalid(e)),
        }
    }

    /// The rows in file order, in batches of about [`BATCH_ROWS`].
    pub fn reader(&self) -> Result<Box<dyn RecordBatchReader + Send>> {
        self.reader_of(None)
    }

    /// Like [`Self::reader`]; from Parquet only `columns` are decoded (other formats yield
    /// every column). Batches hold at most about [`MAX_BATCH_BYTES`]; past the decoded-bytes
    /// limit the reader fails with [`Error::TooLarge`] (see [`Self::read_error`]).
    pub fn reader_of(&self, columns: Option<&[&str]>) -> Result<Box<dyn RecordBatchReader + Send>> {
        let file = File::open(&self.path).map_err(|e| self.invalid(e))?;
        let inner: Box<dyn RecordBatchReader + Send> = match self.format {
            EntityFormat::Parquet => {
                let mut builder = ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| self.invalid(e))?
                    .with_batch_size(self.batch_rows);
                if let Some(columns) = columns {
                    let mut indices = columns
                        .iter()
                        .map(|c| self.schema.index_of(c).map_err(|e| self.invalid(e)))
                        .collect::<Result<Vec<_>>>()?;
                    indices.sort_unstable();
                    indices.dedup();
                    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
                    builder = builder.with_projection(mask);
                }
                Box::new(builder.build().map_err(|e| self.invalid(e))?)
            }
            EntityFormat::Csv => Box::new(CsvBatches {
                decoder: arrow::csv::ReaderBuilder::new(self.schema.clone())
                    .with_header(true)
                    .with_batch_size(BATCH_ROWS)
                    .build_decoder(),
                reader: BufReader::with_capacity(
                    64 << 10,
                    RecordLimit::new(file, self.limits.max_csv_record_bytes),
                ),
                schema: self.schema.clone(),
                done: false,
                name: self.name.clone(),
                hint: self.limits.hint.clone(),
            }),
            EntityFormat::ArrowFile => Box::new(
                arrow::ipc::reader::FileReader::try_new(file, None).map_err(|e| self.invalid(e))?,
            ),
            EntityFormat::ArrowStream => Box::new(
                arrow::ipc::reader::StreamReader::try_new(BufReader::new(file), None)
                    .map_err(|e| self.invalid(e))?,
            ),
        };
        Ok(Box::new(Bounded {
            schema: inner.schema(),
            inner,
            limit: self.limits.max_decoded_bytes.map(|max| {
                let what = format!("it decodes to more than the limit of {max} bytes");
                (max, self.too_large(what).to_string())
            }),
            decoded: 0,
            pending: VecDeque::new(),
            done: false,
        }))
    }

    /// Wraps a read error with the table it came from; a limit the reader ran into is returned
    /// as it was raised ([`Error::TooLarge`]).
    pub fn read_error(&self, e: ArrowError) -> Error {
        match e {
            ArrowError::ExternalError(b) => match b.downcast::<Error>() {
                Ok(e) => *e,
                Err(b) => self.invalid(ArrowError::ExternalError(b)),
            },
            e => self.invalid(e),
        }
    }

    /// The earliest and latest entity time (ns), or `None` when no row has one, and the number
    /// of rows. For Parquet only the timestamp column is read — unless the table's decoded
    /// size is limited: then every column is, so a table over the limit is refused here,
    /// before the retrieval's output starts.
    pub fn time_bounds(&self) -> Result<(Option<(i64, i64)>, u64)> {
        let mut bounds: Option<(i64, i64)> = None;
        let mut rows = 0u64;
        let projection = [self.timestamp_column.as_str()];
        let columns = match self.limits.max_decoded_bytes {
            Some(_) => None,
            None => Some(&projection[..]),
        };
        for batch in self.reader_of(columns)? {
            let batch = batch.map_err(|e| self.read_error(e))?;
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
            .ok_or_else(|| self.invalid("a batch lacks the timestamp column"))?;
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
            self.invalid(format!(
                "column `{name}` ({}) cannot be read as {to}: {e}",
                column.data_type()
            ))
        })?;
        // A float key is read as an integer only when it is one: 1001.7 is not driver 1001.
        let mut changed = None;
        if column.data_type().is_floating() && to.is_integer() {
            let back = cast(&out, column.data_type()).map_err(|e| self.invalid(e))?;
            let same =
                arrow::compute::kernels::cmp::eq(&back, column).map_err(|e| self.invalid(e))?;
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
            return Err(self.invalid(format!(
                "row {}, column `{name}`: `{value}` cannot be read as {}{hint}",
                first_row + i as u64 + 1,
                type_name(to)
            )));
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
            .map_err(|e| self.invalid(e))?;
        let to = schema.field(i).data_type().clone();
        columns[i] = self.cast_column(&self.timestamp_column, &columns[i], &to, first_row)?;
        RecordBatch::try_new(schema, columns).map_err(|e| self.invalid(e))
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
    let name = format!("entity table {}", path.display());
    let mut file = File::open(path).map_err(|e| invalid(&name, e))?;
    file.rewind().map_err(|e| invalid(&name, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf).map_err(|e| invalid(&name, e))? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A reader that fails once a CSV record (text up to a newline outside quotes) is longer than
/// `max` bytes; without `max`, it only passes bytes through.
struct RecordLimit<R> {
    inner: R,
    max: Option<u64>,
    in_quotes: bool,
    /// Bytes of the current record so far, the line it starts on, the line being read.
    current: u64,
    record_line: u64,
    line: u64,
    /// What was too long, once a record was.
    exceeded: Option<String>,
}

impl<R> RecordLimit<R> {
    fn new(inner: R, max: Option<u64>) -> Self {
        RecordLimit {
            inner,
            max,
            in_quotes: false,
            current: 0,
            record_line: 1,
            line: 1,
            exceeded: None,
        }
    }
}

impl<R: Read> Read for RecordLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(what) = &self.exceeded {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                what.clone(),
            ));
        }
        let n = self.inner.read(buf)?;
        let Some(max) = self.max else {
            return Ok(n);
        };
        for &b in &buf[..n] {
            match b {
                b'"' => self.in_quotes = !self.in_quotes,
                b'\n' => {
                    self.line += 1;
                    if !self.in_quotes {
                        self.current = 0;
                        self.record_line = self.line;
                        continue;
                    }
                }
                _ => {}
            }
            self.current += 1;
            if self.current > max {
                let what = format!(
                    "the CSV record at line {} is longer than the limit of {max} bytes",
                    self.record_line
                );
                self.exceeded = Some(what.clone());
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, what));
            }
        }
        Ok(n)
    }
}

/// CSV batches that end after about [`CSV_BATCH_INPUT_BYTES`] of text (at the end of a record)
/// or [`BATCH_ROWS`] records, whichever comes first: a batch of long lines stays small.
struct CsvBatches {
    reader: BufReader<RecordLimit<File>>,
    decoder: arrow::csv::reader::Decoder,
    schema: SchemaRef,
    done: bool,
    name: String,
    hint: String,
}

impl CsvBatches {
    fn fail(&mut self, e: ArrowError) -> Option<std::result::Result<RecordBatch, ArrowError>> {
        self.done = true;
        if let Some(what) = &self.reader.get_ref().exceeded {
            let e = too_large(&self.name, what, &self.hint);
            return Some(Err(ArrowError::ExternalError(Box::new(e))));
        }
        Some(Err(e))
    }

    fn next_batch(&mut self) -> std::result::Result<Option<RecordBatch>, ArrowError> {
        let mut fed = 0u64;
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                // The end: the last record may lack its newline.
                self.decoder.decode(&[])?;
                break;
            }
            let mut take = buf.len();
            if fed >= CSV_BATCH_INPUT_BYTES {
                // Enough text for this batch: a line at a time until a record ends.
                take = buf.iter().position(|b| *b == b'\n').map_or(take, |i| i + 1);
            }
            let before = self.decoder.capacity();
            let n = self.decoder.decode(&buf[..take])?;
            let ended_line = n == take && buf[take - 1] == b'\n';
            self.reader.consume(n);
            fed += n as u64;
            let capacity = self.decoder.capacity();
            if n == 0 || capacity == 0 {
                break;
            }
            if fed >= CSV_BATCH_INPUT_BYTES && ended_line && capacity < before {
                break;
            }
        }
        self.decoder.flush()
    }
}

impl Iterator for CsvBatches {
    type Item = std::result::Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_batch() {
            Ok(Some(batch)) => Some(Ok(batch)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => self.fail(e),
        }
    }
}

impl RecordBatchReader for CsvBatches {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// Batches of another reader, counted and cut: each batch's decoded size (see
/// [`decoded_bytes`]) adds to a total that may not pass the limit (then the reader fails with
/// the limit's message), and a batch larger than [`MAX_BATCH_BYTES`] is passed on in slices.
struct Bounded {
    inner: Box<dyn RecordBatchReader + Send>,
    schema: SchemaRef,
    /// The limit and the message of going past it.
    limit: Option<(u64, String)>,
    decoded: u64,
    pending: VecDeque<RecordBatch>,
    done: bool,
}

impl Iterator for Bounded {
    type Item = std::result::Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(batch) = self.pending.pop_front() {
            return Some(Ok(batch));
        }
        if self.done {
            return None;
        }
        let batch = match self.inner.next()? {
            Ok(batch) => batch,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        let size = decoded_bytes(&batch);
        self.decoded = self.decoded.saturating_add(size);
        if let Some((max, message)) = &self.limit
            && self.decoded > *max
        {
            self.done = true;
            let e = Error::TooLarge(message.clone());
            return Some(Err(ArrowError::ExternalError(Box::new(e))));
        }
        let rows = batch.num_rows();
        if size <= MAX_BATCH_BYTES || rows < 2 {
            return Some(Ok(batch));
        }
        let pieces = usize::try_from(size.div_ceil(MAX_BATCH_BYTES))
            .unwrap_or(rows)
            .min(rows);
        let step = rows.div_ceil(pieces);
        let mut at = 0;
        while at < rows {
            let n = step.min(rows - at);
            self.pending.push_back(batch.slice(at, n));
            at += n;
        }
        self.pending.pop_front().map(Ok)
    }
}

impl RecordBatchReader for Bounded {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// What `batch` holds decoded, in bytes: its columns' buffers (the part of them it uses), a
/// dictionary's value counted once for every row that uses it — what casting it (a join key,
/// the timestamp) would make of it.
pub fn decoded_bytes(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|c| array_bytes(c.as_ref()))
        .sum()
}

fn array_bytes(array: &dyn Array) -> u64 {
    let plain = |a: &dyn Array| {
        a.to_data()
            .get_slice_memory_size()
            .unwrap_or_else(|_| a.get_array_memory_size()) as u64
    };
    let Some(dictionary) = array.as_any_dictionary_opt() else {
        return plain(array);
    };
    let keys = dictionary.keys();
    let values = dictionary.values();
    if values.is_empty() {
        return plain(keys);
    }
    let lengths: Vec<u64> = match values.data_type() {
        DataType::Utf8 => lengths(values.as_string::<i32>().offsets()),
        DataType::LargeUtf8 => lengths(values.as_string::<i64>().offsets()),
        DataType::Binary => lengths(values.as_binary::<i32>().offsets()),
        DataType::LargeBinary => lengths(values.as_binary::<i64>().offsets()),
        _ => {
            let each = plain(values.as_ref()) / values.len() as u64;
            vec![each; values.len()]
        }
    };
    let used: u64 = dictionary
        .normalized_keys()
        .iter()
        .map(|k| lengths[*k] + 8)
        .sum();
    plain(keys) + used
}

fn lengths<O: arrow::array::OffsetSizeTrait>(offsets: &[O]) -> Vec<u64> {
    offsets
        .windows(2)
        .map(|w| (w[1] - w[0]).as_usize() as u64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow::array::{DictionaryArray, Int64Array, StringArray};
    use arrow::datatypes::Int32Type;

    fn limited(max: u64) -> EntityLimits {
        EntityLimits {
            max_decoded_bytes: Some(max),
            max_csv_record_bytes: Some(1 << 20),
            hint: "raise it".into(),
        }
    }

    fn batches(input: &EntityInput) -> Vec<RecordBatch> {
        input.reader().unwrap().map(Result::unwrap).collect()
    }

    /// CSV batches end after a few MiB of text, at the end of a record (also one with a
    /// newline inside quotes); a record over the limit is refused when the schema is read.
    #[test]
    fn csv_batches_follow_the_text_and_long_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.csv");
        let mut text = String::from("id,event_timestamp,note\n");
        let pad = "p".repeat(1000);
        for i in 0..10_000 {
            text.push_str(&format!("{i},2026-01-01T00:00:00Z,\"{pad}\n{i}\"\n"));
        }
        std::fs::write(&path, &text).unwrap();
        let input = EntityInput::open_with(&path, None, "t", limited(1 << 30)).unwrap();
        let got = batches(&input);
        assert!(got.len() >= 2, "{} batches", got.len());
        assert!(
            got.iter().all(|b| b.num_rows() < 5000),
            "batches follow the text size"
        );
        let ids: Vec<i64> = got
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(ids, (0..10_000).collect::<Vec<_>>());
        let notes = got[1].column(2).as_string::<i32>();
        assert!(
            notes
                .value(0)
                .ends_with(&format!("\n{}", ids[got[0].num_rows()]))
        );

        let long = dir.path().join("long.csv");
        let mut text = String::from("id,event_timestamp,note\n1,2026-01-01T00:00:00Z,a\n");
        text.push_str(&format!("2,2026-01-01T00:00:00Z,{}\n", "y".repeat(2 << 20)));
        std::fs::write(&long, &text).unwrap();
        let e = EntityInput::open_with(&long, None, "the upload", limited(1 << 30)).unwrap_err();
        assert!(matches!(e, Error::TooLarge(_)), "{e}");
        assert_eq!(
            e.to_string(),
            "the upload: the CSV record at line 3 is longer than the limit of 1048576 bytes; raise it"
        );
        // Without limits (the CLI) it is read.
        let input = EntityInput::open(&long, None).unwrap();
        assert_eq!(
            batches(&input).iter().map(|b| b.num_rows()).sum::<usize>(),
            2
        );

        // No newline at the end.
        let path = dir.path().join("edge.csv");
        std::fs::write(
            &path,
            "id,event_timestamp\n1,2026-01-01T00:00:00Z\n2,2026-01-01T00:00:00Z",
        )
        .unwrap();
        let input = EntityInput::open_with(&path, None, "t", limited(1 << 30)).unwrap();
        assert_eq!(
            batches(&input).iter().map(|b| b.num_rows()).sum::<usize>(),
            2
        );
    }

    /// A dictionary value that every row uses counts once per row: an Arrow IPC batch of one
    /// 1 MB value × 100 rows is 100 MB decoded, passed on in slices of at most the batch size,
    /// and over a limit the reader fails with it.
    #[test]
    fn dictionary_batches_are_counted_per_row_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.arrow");
        let values = StringArray::from(vec!["v".repeat(1 << 20)]);
        let keys = arrow::array::Int32Array::from(vec![0; 100]);
        let note = DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values)).unwrap();
        let times = TimestampNanosecondArray::from(vec![0; 100]).with_timezone("UTC");
        let batch = RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int64Array::from_iter_values(0..100)) as ArrayRef,
            ),
            ("event_timestamp", Arc::new(times) as ArrayRef),
            ("note", Arc::new(note) as ArrayRef),
        ])
        .unwrap();
        assert!(decoded_bytes(&batch) > 100 << 20);
        let mut w =
            arrow::ipc::writer::FileWriter::try_new(File::create(&path).unwrap(), &batch.schema())
                .unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        drop(w);

        let input = EntityInput::open(&path, None).unwrap();
        let got = batches(&input);
        assert!(got.len() >= 7, "{} slices", got.len());
        assert!(
            got.iter()
                .all(|b| decoded_bytes(b) <= MAX_BATCH_BYTES + (1 << 20))
        );
        assert_eq!(got.iter().map(|b| b.num_rows()).sum::<usize>(), 100);

        let input = EntityInput::open_with(&path, None, "the upload", limited(50 << 20)).unwrap();
        let e = input.time_bounds().unwrap_err();
        assert!(matches!(e, Error::TooLarge(_)), "{e}");
        assert!(
            e.to_string()
                .starts_with("the upload: it decodes to more than the limit of 52428800 bytes"),
            "{e}"
        );
    }

    /// Parquet batches of long dictionary values have fewer rows, so each stays within the
    /// batch size; without a limit the whole table is still read.
    #[test]
    fn parquet_batches_of_long_values_stay_small() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.parquet");
        let rows = 2000;
        let value = "x".repeat(50_000);
        let times = TimestampNanosecondArray::from(vec![0; rows]).with_timezone("UTC");
        let batch = RecordBatch::try_from_iter([
            ("event_timestamp", Arc::new(times) as ArrayRef),
            (
                "note",
                Arc::new(StringArray::from(vec![value.as_str(); rows])) as ArrayRef,
            ),
        ])
        .unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(
            File::create(&path).unwrap(),
            batch.schema(),
            None,
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();

        let input = EntityInput::open(&path, None).unwrap();
        let got = batches(&input);
        assert_eq!(got.iter().map(|b| b.num_rows()).sum::<usize>(), rows);
        assert!(
            got.iter()
                .all(|b| b.num_rows() <= (MAX_BATCH_BYTES / 50_000) as usize)
        );
        let e = EntityInput::open_with(&path, None, "the upload", limited(10 << 20))
            .unwrap()
            .time_bounds()
            .unwrap_err();
        assert!(matches!(e, Error::TooLarge(_)), "{e}");
    }
}
