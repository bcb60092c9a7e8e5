//! Cells as Feast's clients send them, and files read back as a `df`.

use super::*;
use serde_json::json;

#[test]
fn timestamps_as_feast_clients_send_them() {
    let t = |v: J| timestamp_ns(&v);
    let seven = 1_796_022_000_000_000_000i64; // 2026-11-30T07:00:00Z
    assert_eq!(t(json!("2026-11-30T07:00:00Z")), Ok(Some(seven)));
    assert_eq!(t(json!("2026-11-30T09:00:00+02:00")), Ok(Some(seven)));
    assert_eq!(t(json!("2026-11-30T07:00:00")), Ok(Some(seven)));
    assert_eq!(t(json!("2026-11-30 07:00:00")), Ok(Some(seven)));
    assert_eq!(
        t(json!("2026-11-30T07:00:00.123456")),
        Ok(Some(seven + 123_456_000))
    );
    assert_eq!(
        t(json!("2026-11-30")),
        Ok(Some(seven - 7 * 3_600_000_000_000))
    );
    assert_eq!(t(json!(1_796_022_000)), Ok(Some(seven)));
    assert_eq!(t(json!(1_796_022_000_000i64)), Ok(Some(seven)));
    assert_eq!(t(json!(1_796_022_000.5)), Ok(Some(seven + 500_000_000)));
    assert_eq!(
        t(json!("1796022000")),
        Ok(Some(seven)),
        "epoch seconds as text"
    );
    assert_eq!(t(json!("NaT")), Ok(None));
    assert_eq!(t(J::Null), Ok(None));
    for bad in [
        json!("yesterday-ish"),
        json!(true),
        json!([1]),
        json!(1e300),
    ] {
        assert!(t(bad.clone()).is_err(), "{bad}");
    }
}

#[test]
fn a_batch_read_back_as_a_df_builds_the_same_columns() {
    let columns = vec![
        (
            "id".to_string(),
            column(
                "id",
                ValueType::Scalar(ScalarType::Int64),
                &[json!(1), J::Null],
            )
            .unwrap(),
        ),
        (
            "rate".to_string(),
            column(
                "rate",
                ValueType::Scalar(ScalarType::Float64),
                &[json!("NaN"), json!(0.5)],
            )
            .unwrap(),
        ),
        (
            "at".to_string(),
            column(
                "at",
                ValueType::Scalar(ScalarType::Timestamp),
                &[json!("2026-11-30T07:00:00.123456789Z"), J::Null],
            )
            .unwrap(),
        ),
        (
            "tags".to_string(),
            column(
                "tags",
                ValueType::List(ScalarType::String),
                &[json!(["a"]), J::Null],
            )
            .unwrap(),
        ),
        (
            "raw".to_string(),
            column(
                "raw",
                ValueType::Scalar(ScalarType::Bytes),
                &[json!("AAE="), J::Null],
            )
            .unwrap(),
        ),
    ];
    let types = [
        ValueType::Scalar(ScalarType::Int64),
        ValueType::Scalar(ScalarType::Float64),
        ValueType::Scalar(ScalarType::Timestamp),
        ValueType::List(ScalarType::String),
        ValueType::Scalar(ScalarType::Bytes),
    ];
    let original = batch(columns).unwrap();
    let df = from_batch(&original).unwrap();
    let again = batch(
        df.iter()
            .zip(types)
            .map(|((name, values), t)| (name.clone(), column(name, t, values).unwrap()))
            .collect(),
    )
    .unwrap();
    // NaN != NaN: compare the debug forms.
    assert_eq!(format!("{original:?}"), format!("{again:?}"));
}

#[test]
fn cells_are_checked_with_their_row() {
    let ints = column(
        "trips",
        ValueType::Scalar(ScalarType::Int64),
        &[json!(1), json!(2.0), json!("3"), J::Null],
    )
    .unwrap();
    assert_eq!(ints.len(), 4);
    assert_eq!(ints.null_count(), 1);
    let err = column(
        "trips",
        ValueType::Scalar(ScalarType::Int64),
        &[json!(1), json!(1.5)],
    )
    .unwrap_err();
    assert_eq!(err, "df column `trips`, row 1: 1.5 is not an int64");
    let err = column("label", ValueType::Scalar(ScalarType::String), &[json!(5)]).unwrap_err();
    assert!(err.contains("row 0: 5 is not a string"), "{err}");
    let list = column(
        "tags",
        ValueType::List(ScalarType::String),
        &[json!(["a", "b"]), J::Null, json!([])],
    )
    .unwrap();
    assert_eq!((list.len(), list.null_count()), (3, 1));
    let err = column(
        "tags",
        ValueType::List(ScalarType::Int64),
        &[json!([1, "x"])],
    )
    .unwrap_err();
    assert!(err.contains("row 0: \"x\" is not an int64"), "{err}");
    let err = column(
        "n",
        ValueType::Scalar(ScalarType::Int32),
        &[json!(1i64 << 40)],
    )
    .unwrap_err();
    assert!(err.contains("out of range"), "{err}");
}
