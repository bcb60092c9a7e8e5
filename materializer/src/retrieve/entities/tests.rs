//! The entity table read within its bounds: CSV batches and records, dictionary values counted
//! per row, Parquet batches of long values.

use super::*;

use arrow::array::{
    ArrayRef, AsArray, DictionaryArray, Int64Array, StringArray, TimestampNanosecondArray,
};
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
    let mut w =
        parquet::arrow::ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None)
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
