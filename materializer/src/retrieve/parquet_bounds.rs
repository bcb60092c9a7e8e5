//! What a Parquet entity table can decode to, from its page headers, before any page is decoded.
//!
//! A small file may decode to gigabytes: pages of repeated bytes compressed to almost nothing, a
//! dictionary value that every row references (a 1,224-byte file of one 200 KB string × 8,192
//! rows decodes to 1.6 GB), runs of one value. The footer's sizes are not to be trusted (nothing
//! checks them against the pages), so each column chunk's page headers are read — a few bytes
//! each, nothing decompressed — and the dictionaries of byte-array columns are decoded to learn
//! their longest value. From that:
//! - the bytes the pages hold uncompressed (each is decompressed once per read of the table) and
//!   what the rows need at least (values × their fixed width) are known, and checked against a
//!   limit by the caller;
//! - a value of a flat column can only be as long as its page (or its dictionary's longest
//!   value), so the rows per batch are chosen to keep a batch within [`super::entities::MAX_BATCH_BYTES`]
//!   whatever the values are;
//! - nested columns (lists) may hold any number of values per row, so what their dictionary and
//!   delta-encoded values can expand to is bounded for the whole table.

#[cfg(test)]
mod tests;
mod thrift;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::Type as PhysicalType;
use parquet::column::page::{Page, PageReader};
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData};
use parquet::file::serialized_reader::SerializedPageReader;

use thrift::page_headers;

/// The longest page header read (statistics included); longer is a corrupt file.
const MAX_HEADER_BYTES: u64 = 16 << 20;

/// Page types and encodings, as numbered by the Parquet format.
const DICTIONARY_PAGE: i64 = 2;
const PLAIN_DICTIONARY: i64 = 2;
const DELTA_BYTE_ARRAY: i64 = 7;
const RLE_DICTIONARY: i64 = 8;

/// What the page headers of a Parquet file say it decodes to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Bytes of all pages, uncompressed.
    pub page_bytes: u64,
    /// Bytes the values need at least: values × the width of their type (offsets for
    /// byte arrays), whatever the values are.
    pub fixed_bytes: u64,
    /// Most bytes the byte-array values of nested columns can expand to (dictionary and
    /// delta-encoded values repeat bytes their pages hold once).
    pub nested_expansion: u64,
    /// Rows per batch that keep a batch within the batch size, at most the batch rows asked for.
    pub batch_rows: usize,
}

/// Why a file is refused.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// A page or the pages together are larger than the limit: the message says which.
    TooLarge(String),
    /// The page headers cannot be read: a corrupt or truncated file.
    Corrupt(String),
}

/// One page header's fields that decide its size.
#[derive(Debug, Clone, Copy)]
struct PageHeader {
    kind: i64,
    uncompressed: i64,
    compressed: i64,
    num_values: i64,
    encoding: i64,
}

impl PageHeader {
    /// What the page occupies decompressed (an uncompressed page's declared size is not checked
    /// by the reader, its stored size is what it holds).
    fn bytes(&self) -> u64 {
        self.uncompressed.max(self.compressed).max(0) as u64
    }

    fn dictionary_encoded(&self) -> bool {
        matches!(self.encoding, PLAIN_DICTIONARY | RLE_DICTIONARY)
    }
}

/// Reads the page headers of every column chunk of `metadata` (the footer of the file at
/// `path`). `limit`: no page, and not all pages together, may hold more than this uncompressed;
pub(crate) fn bounds(
    path: &Path,
    metadata: &ParquetMetaData,
    limit: Option<u64>,
    batch_bytes: u64,
    batch_rows: usize,
) -> Result<Bounds, Refusal> {
    let mut scan = Scan::open(path, limit)?;
    let mut out = Bounds {
        batch_rows,
        ..Bounds::default()
    };
    for group in metadata.row_groups() {
        let rows = usize::try_from(group.num_rows().max(0)).unwrap_or(usize::MAX);
        // Per row of this row group: the most bytes one row's expanding values may take.
        let mut row_bytes = 0u64;
        for chunk in group.columns() {
            let expanding = scan.chunk(chunk, rows, &mut out)?;
            if let Some(limit) = limit
                && out.page_bytes > limit
            {
                return Err(Refusal::TooLarge(format!(
                    "its pages hold at least {} bytes uncompressed",
                    out.page_bytes
                )));
            }
            row_bytes = row_bytes.saturating_add(expanding);
        }
        if let Some(rows) = batch_bytes.checked_div(row_bytes) {
            let rows = usize::try_from(rows).unwrap_or(usize::MAX);
            out.batch_rows = out.batch_rows.min(rows.max(1));
        }
    }
    Ok(out)
}

fn corrupt(e: &dyn std::fmt::Display) -> Refusal {
    Refusal::Corrupt(format!("corrupt Parquet: {e}"))
}

/// The file whose page headers are read, and the limits they are read within.
struct Scan {
    reader: BufReader<File>,
    file_len: u64,
    /// The same file, for the page reader that decodes dictionaries.
    shared: Arc<File>,
    limit: Option<u64>,
    /// Dictionaries larger than this are not decoded (their size stands for their longest value).
    decode_up_to: u64,
}

impl Scan {
    fn open(path: &Path, limit: Option<u64>) -> Result<Self, Refusal> {
        let file = File::open(path).map_err(|e| corrupt(&e))?;
        let file_len = file.metadata().map_err(|e| corrupt(&e))?.len();
        let reader = BufReader::with_capacity(16 << 10, file.try_clone().map_err(|e| corrupt(&e))?);
        Ok(Scan {
            reader,
            file_len,
            shared: Arc::new(file),
            limit,
            decode_up_to: limit.unwrap_or(256 << 20).min(256 << 20),
        })
    }

    /// Adds one column chunk (of a row group of `rows` rows) to `out`; returns the most bytes
    /// one of its values can expand to, for a flat column (0 for a nested one, whose expansion
    /// is added to `out` whole).
    fn chunk(
        &mut self,
        chunk: &ColumnChunkMetaData,
        rows: usize,
        out: &mut Bounds,
    ) -> Result<u64, Refusal> {
        let pages =
            page_headers(&mut self.reader, self.file_len, chunk).map_err(|e| corrupt(&e))?;
        let descr = chunk.column_descr();
        let nested = descr.max_rep_level() > 0;
        let byte_array = chunk.column_type() == PhysicalType::BYTE_ARRAY;
        let width = match chunk.column_type() {
            PhysicalType::BOOLEAN => 0,
            PhysicalType::INT32 | PhysicalType::FLOAT | PhysicalType::BYTE_ARRAY => 4,
            PhysicalType::INT64 | PhysicalType::DOUBLE | PhysicalType::INT96 => 8,
            PhysicalType::FIXED_LEN_BYTE_ARRAY => descr.type_length().max(0) as u64,
        };
        let mut dictionary = Dictionary::default();
        // The longest value a page of this chunk can expand to, per value.
        let mut expanding = 0u64;
        for page in &pages {
            let bytes = page.bytes();
            if let Some(limit) = self.limit
                && bytes > limit
            {
                return Err(Refusal::TooLarge(format!(
                    "a page of column `{}` holds {bytes} bytes uncompressed",
                    descr.path().string()
                )));
            }
            out.page_bytes = out.page_bytes.saturating_add(bytes);
            if page.kind == DICTIONARY_PAGE {
                dictionary.header = Some(*page);
                continue;
            }
            let values = page.num_values.max(0) as u64;
            out.fixed_bytes = out.fixed_bytes.saturating_add(values.saturating_mul(width));
            if !byte_array {
                continue;
            }
            let longest = self.longest_value(page, &mut dictionary, chunk, rows);
            if nested {
                out.nested_expansion = out
                    .nested_expansion
                    .saturating_add(values.saturating_mul(longest));
            } else {
                expanding = expanding.max(longest);
            }
        }
        Ok(expanding)
    }

    /// The longest value a byte-array data page can expand to, beyond what the page holds.
    fn longest_value(
        &self,
        page: &PageHeader,
        dictionary: &mut Dictionary,
        chunk: &ColumnChunkMetaData,
        rows: usize,
    ) -> u64 {
        if page.dictionary_encoded() {
            match (dictionary.header, dictionary.longest) {
                (_, Some(longest)) => longest,
                (Some(d), None) => {
                    let longest =
                        longest_dictionary_value(&self.shared, chunk, rows, &d, self.decode_up_to)
                            .unwrap_or(d.bytes());
                    dictionary.longest = Some(longest);
                    longest
                }
                (None, None) => 0,
            }
        } else if page.encoding == DELTA_BYTE_ARRAY {
            // Each value is a prefix of the one before plus its own suffix: at most the page's
            // bytes.
            page.bytes()
        } else {
            // Plain and length-delta values are bytes of the page itself.
            0
        }
    }
}

/// A column chunk's dictionary page, once seen, and its longest value, once decoded.
#[derive(Debug, Default)]
struct Dictionary {
    header: Option<PageHeader>,
    longest: Option<u64>,
}

/// The longest value of a byte-array column chunk's dictionary (PLAIN: a 4-byte length, then
/// the bytes, per value); `None` when it cannot be read here (the reader will say why).
fn longest_dictionary_value(
    file: &Arc<File>,
    chunk: &ColumnChunkMetaData,
    rows: usize,
    header: &PageHeader,
    decode_up_to: u64,
) -> Option<u64> {
    if header.bytes() > decode_up_to {
        return None;
    }
    let mut pages = SerializedPageReader::new(file.clone(), chunk, rows, None).ok()?;
    let Some(Page::DictionaryPage {
        buf, num_values, ..
    }) = pages.get_next_page().ok()?
    else {
        return None;
    };
    let mut longest = 0u64;
    let mut at = 0usize;
    for _ in 0..num_values {
        let len = buf.get(at..at + 4)?;
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        at = at.checked_add(4 + len).filter(|end| *end <= buf.len())?;
        longest = longest.max(len as u64);
    }
    Some(longest)
}
