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

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use parquet::basic::Type as PhysicalType;
use parquet::column::page::{Page, PageReader};
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData};
use parquet::file::serialized_reader::SerializedPageReader;

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
/// dictionaries are decoded only within it. `batch_bytes` and `batch_rows`: the batch size.
pub(crate) fn bounds(
    path: &Path,
    metadata: &ParquetMetaData,
    limit: Option<u64>,
    batch_bytes: u64,
    batch_rows: usize,
) -> Result<Bounds, Refusal> {
    let corrupt = |e: &dyn std::fmt::Display| Refusal::Corrupt(format!("corrupt Parquet: {e}"));
    let file = File::open(path).map_err(|e| corrupt(&e))?;
    let file_len = file.metadata().map_err(|e| corrupt(&e))?.len();
    let mut reader = BufReader::with_capacity(16 << 10, file.try_clone().map_err(|e| corrupt(&e))?);
    let shared = Arc::new(file);
    // Dictionaries larger than this are not decoded (their size stands for their longest value).
    let decode_up_to = limit.unwrap_or(256 << 20).min(256 << 20);
    let mut out = Bounds {
        batch_rows,
        ..Bounds::default()
    };
    for group in metadata.row_groups() {
        let rows = usize::try_from(group.num_rows().max(0)).unwrap_or(usize::MAX);
        // Per row of this row group: the most bytes one row's expanding values may take.
        let mut row_bytes = 0u64;
        for chunk in group.columns() {
            let pages = page_headers(&mut reader, file_len, chunk).map_err(|e| corrupt(&e))?;
            let descr = chunk.column_descr();
            let nested = descr.max_rep_level() > 0;
            let byte_array = chunk.column_type() == PhysicalType::BYTE_ARRAY;
            let width = match chunk.column_type() {
                PhysicalType::BOOLEAN => 0,
                PhysicalType::INT32 | PhysicalType::FLOAT | PhysicalType::BYTE_ARRAY => 4,
                PhysicalType::INT64 | PhysicalType::DOUBLE | PhysicalType::INT96 => 8,
                PhysicalType::FIXED_LEN_BYTE_ARRAY => descr.type_length().max(0) as u64,
            };
            let mut dictionary: Option<PageHeader> = None;
            let mut dictionary_longest: Option<u64> = None;
            // The longest value a page of this chunk can expand to, per value.
            let mut expanding = 0u64;
            for page in &pages {
                let bytes = page.bytes();
                if let Some(limit) = limit
                    && bytes > limit
                {
                    return Err(Refusal::TooLarge(format!(
                        "a page of column `{}` holds {bytes} bytes uncompressed",
                        descr.path().string()
                    )));
                }
                out.page_bytes = out.page_bytes.saturating_add(bytes);
                if page.kind == DICTIONARY_PAGE {
                    dictionary = Some(*page);
                    continue;
                }
                let values = page.num_values.max(0) as u64;
                out.fixed_bytes = out.fixed_bytes.saturating_add(values.saturating_mul(width));
                if !byte_array {
                    continue;
                }
                let longest = if page.dictionary_encoded() {
                    match (dictionary, dictionary_longest) {
                        (_, Some(longest)) => longest,
                        (Some(d), None) => {
                            let longest =
                                longest_dictionary_value(&shared, chunk, rows, &d, decode_up_to)
                                    .unwrap_or(d.bytes());
                            dictionary_longest = Some(longest);
                            longest
                        }
                        (None, None) => 0,
                    }
                } else if page.encoding == DELTA_BYTE_ARRAY {
                    // Each value is a prefix of the one before plus its own suffix: at most
                    // the page's bytes.
                    bytes
                } else {
                    // Plain and length-delta values are bytes of the page itself.
                    0
                };
                if nested {
                    out.nested_expansion = out
                        .nested_expansion
                        .saturating_add(values.saturating_mul(longest));
                } else {
                    expanding = expanding.max(longest);
                }
            }
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

/// The page headers of one column chunk, each read where the one before it ends.
fn page_headers(
    reader: &mut BufReader<File>,
    file_len: u64,
    chunk: &ColumnChunkMetaData,
) -> io::Result<Vec<PageHeader>> {
    let start = chunk
        .dictionary_page_offset()
        .unwrap_or(chunk.data_page_offset());
    let len = chunk.compressed_size();
    let (Ok(start), Ok(len)) = (u64::try_from(start), u64::try_from(len)) else {
        return Err(bad("a column chunk has a negative offset or size"));
    };
    let end = start
        .checked_add(len)
        .filter(|end| *end <= file_len)
        .ok_or_else(|| bad("a column chunk ends past the end of the file"))?;
    let mut pages = Vec::new();
    let mut pos = start;
    while pos < end {
        reader.seek(SeekFrom::Start(pos))?;
        let mut thrift = Thrift {
            reader: &mut *reader,
            read: 0,
        };
        let header = page_header(&mut thrift)?;
        if header.compressed < 0 || header.uncompressed < 0 {
            return Err(bad("a page header declares a negative size"));
        }
        pos = pos
            .saturating_add(thrift.read)
            .saturating_add(header.compressed as u64);
        if pos > end {
            return Err(bad("a page ends past the end of its column chunk"));
        }
        pages.push(header);
    }
    Ok(pages)
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

fn bad(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

/// A reader of Thrift's compact protocol, enough to find a few fields and skip the rest
/// without allocating for them.
struct Thrift<'a, R: Read> {
    reader: &'a mut R,
    read: u64,
}

impl<R: Read> Thrift<'_, R> {
    fn count(&mut self, n: u64) -> io::Result<()> {
        self.read = self.read.saturating_add(n);
        if self.read > MAX_HEADER_BYTES {
            return Err(bad("a page header is implausibly long"));
        }
        Ok(())
    }

    fn byte(&mut self) -> io::Result<u8> {
        self.count(1)?;
        let mut b = [0u8; 1];
        self.reader.read_exact(&mut b)?;
        Ok(b[0])
    }

    fn varint(&mut self) -> io::Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad("a page header has an overlong number"))
    }

    /// An i16/i32/i64 (zigzag varint).
    fn int(&mut self) -> io::Result<i64> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn skip_bytes(&mut self, n: u64) -> io::Result<()> {
        self.count(n)?;
        let copied = io::copy(&mut (&mut *self.reader).take(n), &mut io::sink())?;
        if copied != n {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// Skips a value of compact type `ty` (a field's: booleans are in the type itself).
    fn skip(&mut self, ty: u8, depth: u32) -> io::Result<()> {
        if depth > 32 {
            return Err(bad("a page header is nested too deeply"));
        }
        match ty {
            1 | 2 => Ok(()),
            3 => self.byte().map(drop),
            4..=6 => self.varint().map(drop),
            7 => self.skip_bytes(8),
            8 => {
                let n = self.varint()?;
                self.skip_bytes(n)
            }
            9 | 10 => {
                let head = self.byte()?;
                let mut n = u64::from(head >> 4);
                if n == 15 {
                    n = self.varint()?;
                }
                for _ in 0..n {
                    self.skip_element(head & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                if n > 0 {
                    let types = self.byte()?;
                    for _ in 0..n {
                        self.skip_element(types >> 4, depth + 1)?;
                        self.skip_element(types & 0x0f, depth + 1)?;
                    }
                }
                Ok(())
            }
            12 => self.fields(depth + 1, |_, _, _| Ok(false)),
            _ => Err(bad("a page header has an unknown field type")),
        }
    }

    /// Skips an element of a list, set or map (booleans take a byte there).
    fn skip_element(&mut self, ty: u8, depth: u32) -> io::Result<()> {
        if matches!(ty, 1 | 2) {
            self.byte().map(drop)
        } else {
            self.skip(ty, depth)
        }
    }

    /// Reads a struct's fields: `field` reads the ones it knows (returning true), the others are
    /// skipped.
    fn fields(
        &mut self,
        depth: u32,
        mut field: impl FnMut(&mut Self, i16, u8) -> io::Result<bool>,
    ) -> io::Result<()> {
        let mut last = 0i16;
        loop {
            let head = self.byte()?;
            if head == 0 {
                return Ok(());
            }
            let ty = head & 0x0f;
            let id = match head >> 4 {
                0 => self.int()? as i16,
                delta => last.wrapping_add(i16::from(delta)),
            };
            last = id;
            if !field(self, id, ty)? {
                self.skip(ty, depth)?;
            }
        }
    }
}

/// A `PageHeader`: type (1), sizes (2, 3), and the value count and encoding of its data page
/// (5), dictionary page (7) or data page v2 (8) header.
fn page_header<R: Read>(thrift: &mut Thrift<'_, R>) -> io::Result<PageHeader> {
    let mut h = PageHeader {
        kind: -1,
        uncompressed: -1,
        compressed: -1,
        num_values: 0,
        encoding: 0,
    };
    thrift.fields(0, |t, id, ty| {
        Ok(match (id, ty) {
            (1, 5) => {
                h.kind = t.int()?;
                true
            }
            (2, 5) => {
                h.uncompressed = t.int()?;
                true
            }
            (3, 5) => {
                h.compressed = t.int()?;
                true
            }
            (5 | 7 | 8, 12) => {
                let encoding_field = if id == 8 { 4 } else { 2 };
                t.fields(1, |t, inner, ty| {
                    Ok(match (inner, ty) {
                        (1, 5) => {
                            h.num_values = t.int()?;
                            true
                        }
                        (f, 5) if f == encoding_field => {
                            h.encoding = t.int()?;
                            true
                        }
                        _ => false,
                    })
                })?;
                true
            }
            _ => false,
        })
    })?;
    if h.kind < 0 || h.uncompressed < 0 || h.compressed < 0 {
        return Err(bad("a page header lacks its type or sizes"));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::basic::Compression;
    use parquet::file::properties::WriterProperties;

    fn write(
        dir: &Path,
        name: &str,
        batch: &RecordBatch,
        props: WriterProperties,
    ) -> std::path::PathBuf {
        let path = dir.join(name);
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), Some(props))
            .unwrap();
        w.write(batch).unwrap();
        w.close().unwrap();
        path
    }

    fn scan(path: &Path, limit: Option<u64>) -> Result<Bounds, Refusal> {
        let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&File::open(path).unwrap())
            .unwrap();
        bounds(path, &metadata, limit, 32 << 20, 8192)
    }

    /// One long dictionary value referenced by every row: a tiny file whose rows would decode
    /// to 8,192 × 200 KB. Its batches are cut to the batch size, and its pages are small.
    #[test]
    fn a_dictionary_value_repeated_by_every_row_makes_small_batches() {
        let dir = tempfile::tempdir().unwrap();
        let value = "x".repeat(200_000);
        let rows = 8192;
        let batch = RecordBatch::try_from_iter([
            (
                "big",
                Arc::new(StringArray::from(vec![value.as_str(); rows])) as ArrayRef,
            ),
            (
                "id",
                Arc::new(Int64Array::from_iter_values(0..rows as i64)) as ArrayRef,
            ),
        ])
        .unwrap();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(Default::default()))
            .build();
        let path = write(dir.path(), "bomb.parquet", &batch, props);
        assert!(std::fs::metadata(&path).unwrap().len() < 100_000);
        let b = scan(&path, None).unwrap();
        assert_eq!(b.batch_rows, (32 << 20) / 200_000, "{b:?}");
        assert!(b.page_bytes < 1 << 20, "{b:?}");
        assert_eq!(b.fixed_bytes, rows as u64 * 12, "{b:?}");
        assert_eq!(b.nested_expansion, 0);

        // Plain strings of ordinary length keep full batches.
        let names: Vec<String> = (0..rows).map(|i| format!("driver-{i}")).collect();
        let batch =
            RecordBatch::try_from_iter([("name", Arc::new(StringArray::from(names)) as ArrayRef)])
                .unwrap();
        let path = write(
            dir.path(),
            "names.parquet",
            &batch,
            WriterProperties::default(),
        );
        assert_eq!(scan(&path, None).unwrap().batch_rows, 8192);
    }

    /// Pages of one repeated byte compress to almost nothing; what they hold uncompressed is
    /// read from their headers and refused over the limit, before anything is decompressed.
    #[test]
    fn compressed_pages_are_refused_by_their_uncompressed_size() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<String> = (0..64)
            .map(|i| format!("{i}{}", "0".repeat(100_000)))
            .collect();
        let batch =
            RecordBatch::try_from_iter([("s", Arc::new(StringArray::from(values)) as ArrayRef)])
                .unwrap();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(Default::default()))
            .set_dictionary_enabled(false)
            .build();
        let path = write(dir.path(), "zeros.parquet", &batch, props);
        assert!(std::fs::metadata(&path).unwrap().len() < 100_000);
        let b = scan(&path, None).unwrap();
        assert!(b.page_bytes > 6_400_000, "{b:?}");
        assert!(matches!(
            scan(&path, Some(1 << 20)),
            Err(Refusal::TooLarge(_))
        ));
        assert!(scan(&path, Some(16 << 20)).is_ok());
    }

    /// Damaged page headers (any byte of the file changed) are an answer or an error, never a
    /// panic, an endless loop or a large allocation.
    #[test]
    fn damaged_files_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let words: Vec<String> = (0..3000).map(|i| format!("w{}", i % 40)).collect();
        let batch = RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int64Array::from_iter_values(0..3000)) as ArrayRef,
            ),
            ("word", Arc::new(StringArray::from(words)) as ArrayRef),
        ])
        .unwrap();
        let props = WriterProperties::builder()
            .set_data_page_row_count_limit(500)
            .set_write_batch_size(500)
            .build();
        let path = write(dir.path(), "ok.parquet", &batch, props);
        let bytes = std::fs::read(&path).unwrap();
        let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&File::open(&path).unwrap())
            .unwrap();
        let damaged = dir.path().join("damaged.parquet");
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let mut copy = bytes.clone();
            for _ in 0..1 + next() % 4 {
                let at = 4 + (next() as usize) % (copy.len() - 12);
                copy[at] = next() as u8;
            }
            std::fs::write(&damaged, &copy).unwrap();
            let _ = bounds(&damaged, &metadata, Some(1 << 20), 32 << 20, 8192);
        }
    }

    /// A truncated file or one whose chunks point outside it is corrupt, not a panic.
    #[test]
    fn chunks_outside_the_file_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let batch = RecordBatch::try_from_iter([(
            "id",
            Arc::new(Int64Array::from_iter_values(0..1000)) as ArrayRef,
        )])
        .unwrap();
        let path = write(
            dir.path(),
            "ids.parquet",
            &batch,
            WriterProperties::default(),
        );
        let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&File::open(&path).unwrap())
            .unwrap();
        // The same footer over a file cut short.
        let bytes = std::fs::read(&path).unwrap();
        let cut = dir.path().join("cut.parquet");
        std::fs::write(&cut, &bytes[..40]).unwrap();
        assert!(matches!(
            bounds(&cut, &metadata, None, 32 << 20, 8192),
            Err(Refusal::Corrupt(_))
        ));
        // Garbage where the page headers are.
        let mut garbage = bytes.clone();
        for b in &mut garbage[4..200] {
            *b = 0xff;
        }
        let bad = dir.path().join("bad.parquet");
        std::fs::write(&bad, &garbage).unwrap();
        assert!(matches!(
            bounds(&bad, &metadata, None, 32 << 20, 8192),
            Err(Refusal::Corrupt(_))
        ));
    }
}
