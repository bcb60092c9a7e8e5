//! Page-header bounds of Parquet files built to be hard: repeated dictionary values, compressed
//! pages, damaged and truncated files.

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
    let mut w =
        ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), Some(props)).unwrap();
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
