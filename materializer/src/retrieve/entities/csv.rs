//! CSV entity tables: the schema inferred from every record, records bounded in length, batches
//! bounded by the text they decode.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchReader};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;

use super::{BATCH_ROWS, EntityInput, too_large};
use crate::error::Result;

/// CSV text decoded into one batch, about (a batch ends at the end of a record).
const CSV_BATCH_INPUT_BYTES: u64 = 4 << 20;

impl EntityInput {
    /// The CSV file's schema, inferred from all of its records.
    pub(super) fn csv_schema(&self) -> Result<SchemaRef> {
        let file = File::open(&self.path).map_err(self.io())?;
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

    /// The CSV `file`'s records in batches.
    pub(super) fn csv_batches(&self, file: File) -> CsvBatches {
        CsvBatches {
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
        }
    }
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
pub(super) struct CsvBatches {
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
