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
//!
//! An entity table may also be record batches in memory ([`EntityInput::from_batches`]), read
//! the same way (the batches are cloned, their buffers shared).

mod bounded;
mod cast;
mod csv;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchIterator, RecordBatchReader};
use arrow::compute::can_cast_types;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::error::ArrowError;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::columns::utc_ns;
use crate::error::{Error, Result};
use bounded::Bounded;
pub use bounded::decoded_bytes;

/// Rows per batch read from the entity table.
pub const BATCH_ROWS: usize = 8192;

/// Most bytes one batch read from the entity table decodes to (about: Parquet batches are sized
/// from what their values can be, larger batches of other formats are cut).
pub const MAX_BATCH_BYTES: u64 = 16 << 20;

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
    /// Record batches in memory ([`EntityInput::from_batches`]): no file.
    Batches,
}

/// An entity table, checked: readable, with a usable timestamp column.
#[derive(Debug, Clone)]
pub struct EntityInput {
    /// The file; empty for batches in memory.
    pub path: PathBuf,
    pub format: EntityFormat,
    pub timestamp_column: String,
    schema: SchemaRef,
    /// How messages name the table: `entity table PATH`, or e.g. `the uploaded entity table`.
    name: String,
    limits: EntityLimits,
    /// Rows per Parquet batch (fewer than [`BATCH_ROWS`] when values may be long).
    batch_rows: usize,
    /// The table's batches, for [`EntityFormat::Batches`] (else none).
    batches: Arc<[RecordBatch]>,
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
            schema: Arc::new(Schema::empty()),
            name: name.to_string(),
            limits,
            batch_rows: BATCH_ROWS,
            batches: Arc::new([]),
        };
        if format == EntityFormat::Parquet {
            input.batch_rows = input.parquet_batch_rows()?;
        }
        input.schema = match format {
            EntityFormat::Csv => input.csv_schema()?,
            _ => input.reader()?.schema(),
        };
        input.check_timestamp_column()?;
        Ok(input)
    }

    /// A table of `batches` (each of `schema`) in memory, named `name` in messages, checked like
    /// a file; the timestamp column defaults to `event_timestamp`. It has no file, so no
    /// fingerprint ([`Self::sha256`] fails).
    pub fn from_batches(
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        timestamp_column: Option<&str>,
        name: &str,
    ) -> Result<Self> {
        let input = EntityInput {
            path: PathBuf::new(),
            format: EntityFormat::Batches,
            timestamp_column: timestamp_column
                .unwrap_or(DEFAULT_TIMESTAMP_COLUMN)
                .to_string(),
            schema,
            name: name.to_string(),
            limits: EntityLimits::default(),
            batch_rows: BATCH_ROWS,
            batches: batches.into(),
        };
        input.check_timestamp_column()?;
        Ok(input)
    }

    /// The timestamp column must exist and hold timestamps, dates or RFC 3339 text.
    fn check_timestamp_column(&self) -> Result<()> {
        let ts = &self.timestamp_column;
        let field = self.schema.field_with_name(ts).map_err(|_| {
            let names: Vec<_> = self.schema.fields().iter().map(|f| f.name()).collect();
            self.invalid(format!(
                "no timestamp column `{ts}` (columns: {names:?}); name it `{DEFAULT_TIMESTAMP_COLUMN}` or say which column holds the times (`--timestamp-column`; `timestamp_column` over HTTP and in Python)"
            ))
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
            return Err(self.invalid(format!(
                "timestamp column `{ts}` is {}; it must be a timestamp, a date or RFC 3339 text (numbers are ambiguous: which unit?)",
                field.data_type()
            )));
        }
        Ok(())
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

    /// The machine failed reading a table that was readable (it vanished, a disk error): not
    /// the user's mistake. Named like every other message about the table.
    fn io(&self) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: self.name.clone(),
            source,
        }
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
        let file = File::open(&self.path).map_err(self.io())?;
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

    /// The rows in file order, in batches of about [`BATCH_ROWS`].
    pub fn reader(&self) -> Result<Box<dyn RecordBatchReader + Send>> {
        self.reader_of(None)
    }

    /// Like [`Self::reader`]; from Parquet only `columns` are decoded (other formats yield
    /// every column). Batches hold at most about [`MAX_BATCH_BYTES`]; past the decoded-bytes
    /// limit the reader fails with [`Error::TooLarge`] (see [`Self::read_error`]).
    pub fn reader_of(&self, columns: Option<&[&str]>) -> Result<Box<dyn RecordBatchReader + Send>> {
        // Batches of no rows (an empty DataFrame exports one; a file may hold them) carry
        // nothing, and the engine's takes and slices assume rows: they are skipped here.
        let inner = self.format_reader(columns)?;
        let schema = inner.schema();
        let inner = Box::new(RecordBatchIterator::new(
            inner.filter(|batch| !matches!(batch, Ok(b) if b.num_rows() == 0)),
            schema,
        ));
        let limit = self.limits.max_decoded_bytes.map(|max| {
            let what = format!("it decodes to more than the limit of {max} bytes");
            (max, self.too_large(what).to_string())
        });
        Ok(Box::new(Bounded::new(inner, limit)))
    }

    /// The batches as the table's format holds them.
    fn format_reader(&self, columns: Option<&[&str]>) -> Result<Box<dyn RecordBatchReader + Send>> {
        let open = || File::open(&self.path).map_err(self.io());
        Ok(match self.format {
            EntityFormat::Batches => {
                // Clones of the batches (their buffers shared), as often as the table is read.
                let batches = self.batches.clone();
                let batches = (0..batches.len()).map(move |i| Ok(batches[i].clone()));
                Box::new(RecordBatchIterator::new(batches, self.schema.clone()))
            }
            EntityFormat::Parquet => {
                let mut builder = ParquetRecordBatchReaderBuilder::try_new(open()?)
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
            EntityFormat::Csv => Box::new(self.csv_batches(open()?)),
            EntityFormat::ArrowFile => Box::new(
                arrow::ipc::reader::FileReader::try_new(open()?, None)
                    .map_err(|e| self.invalid(e))?,
            ),
            EntityFormat::ArrowStream => Box::new(
                arrow::ipc::reader::StreamReader::try_new(BufReader::new(open()?), None)
                    .map_err(|e| self.invalid(e))?,
            ),
        })
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

    /// SHA-256 of the file's bytes, hex encoded.
    pub fn sha256(&self) -> Result<String> {
        sha256_file(&self.path)
    }
}

/// SHA-256 of a file's bytes, hex encoded, read in 1 MiB chunks.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let name = format!("entity table {}", path.display());
    let io = |source| Error::Io {
        path: name.clone(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    file.rewind().map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf).map_err(io)? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Ok(hex::encode(hasher.finalize()))
}
