//! Partition pruning against an oracle: every partition that holds (or, with lateness, may
//! hold) a row of the range is kept, and the bounds are the tightest such partitions.

use proptest::prelude::*;
use quiver_registry::TimePartition;

use super::*;

fn tp(format: &str, hour_column: bool, lateness_ms: i64) -> TimePartition {
    TimePartition {
        column: "date".into(),
        format: format.into(),
        hour_column: hour_column.then(|| "hour".to_string()),
        lateness_ms,
    }
}

/// 2026-01-01T00:00:00Z in ns.
const BASE: i64 = 1_767_225_600_000_000_000;

proptest! {
    #[test]
    fn every_partition_a_row_of_the_range_can_be_in_is_kept(
        layout in 0usize..3,
        lateness_h in 0i64..5,
        start_off in 0i64..(10 * DAY_NS),
        len in 1i64..(3 * DAY_NS),
        unbounded_start in any::<bool>(),
        probes in proptest::collection::vec(0i64..i64::MAX, 40),
    ) {
        let t = match layout {
            0 => tp("%Y-%m-%d", false, lateness_h * 3_600_000),
            1 => tp("%Y-%m-%d", true, lateness_h * 3_600_000),
            _ => tp("%Y%m%d-%H", false, lateness_h * 3_600_000),
        };
        let grain = if layout == 0 { DAY_NS } else { HOUR_NS };
        let start = if unbounded_start { i64::MIN } else { BASE + start_off };
        let end = BASE + start_off + len;
        let (lo, hi) = partition_bounds(&t, start, end);
        prop_assert_eq!(lo.is_none(), unbounded_start);
        let hi = hi.expect("a finite end");
        let from = if unbounded_start { BASE - 2 * DAY_NS } else { start };
        for p in &probes {
            // An event in the range, filed under any partition from its own to `lateness` later.
            let event = from + p % (end - from);
            let delay = if t.lateness_ms == 0 { 0 } else { p % (t.lateness_ms * 1_000_000 + 1) };
            let key = PartitionKey::of(&t, event + delay);
            prop_assert!(key <= hi, "{key:?} after {hi:?}");
            if let Some(lo) = &lo {
                prop_assert!(&key >= lo, "{key:?} before {lo:?}");
            }
        }
        // Tight: the bounds are partitions a row of the range can be in.
        prop_assert_eq!(&hi, &PartitionKey::of(&t, end - 1 + t.lateness_ms * 1_000_000));
        if let Some(lo) = lo {
            prop_assert_eq!(lo, PartitionKey::of(&t, start));
            // The partition before the first cannot hold a row of the range.
            prop_assert!(PartitionKey::of(&t, start.div_euclid(grain) * grain - 1) < PartitionKey::of(&t, start));
        }
    }
}

/// The filter, evaluated by DataFusion over partition values, keeps exactly the partitions
/// between the bounds.
#[tokio::test]
async fn the_filter_keeps_exactly_the_partitions_between_the_bounds() {
    use arrow::array::{Int32Array, RecordBatch, StringArray};
    use arrow::datatypes::{Field, Schema};
    let t = tp("%Y-%m-%d", true, 2 * 3_600_000);
    let source = Source {
        partition_columns: vec![
            quiver_registry::PartitionColumn {
                name: "date".into(),
                value_type: ValueType::Scalar(ScalarType::String),
            },
            quiver_registry::PartitionColumn {
                name: "hour".into(),
                value_type: ValueType::Scalar(ScalarType::Int32),
            },
        ],
        ..Default::default()
    };
    let mut dates = Vec::new();
    let mut hours = Vec::new();
    for h in 0..(3 * 24) {
        let key = PartitionKey::of(&t, BASE + h * HOUR_NS);
        dates.push(key.date);
        hours.push(key.hour.unwrap() as i32);
    }
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("date", DataType::Utf8, false),
        Field::new("hour", DataType::Int32, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            std::sync::Arc::new(StringArray::from(dates)),
            std::sync::Arc::new(Int32Array::from(hours)),
        ],
    )
    .unwrap();
    let ctx = SessionContext::new();
    // [day 1 22:30, day 2 03:00) with 2 h lateness: day 1 22:00 ..= day 2 04:00.
    let (start, end) = (
        BASE + DAY_NS + 22 * HOUR_NS + HOUR_NS / 2,
        BASE + DAY_NS + 27 * HOUR_NS,
    );
    let filter = partition_filter(&t, &source, start, end).unwrap();
    let kept = ctx
        .read_batch(batch)
        .unwrap()
        .filter(filter)
        .unwrap()
        .count()
        .await
        .unwrap();
    assert_eq!(kept, 7, "hours 22, 23 of day 1 and 00..=04 of day 2");
}

#[test]
fn partition_values_must_be_written_exactly_as_the_format_writes_them() {
    assert!(time_value_matches("%Y-%m-%d", "2026-11-30"));
    assert!(time_value_matches("%Y%m%d-%H", "20261130-07"));
    assert!(!time_value_matches("%Y%m%d", "2026-11-30"));
    assert!(!time_value_matches("%Y-%m-%d", "2026-1-5"));
    assert!(!time_value_matches("%Y-%m-%d", "2026-11-30T"));
    assert!(!time_value_matches("%Y%m%d-%H", "20261130-7"));
    assert!(!time_value_matches("%Y-%m-%d", ""));
}
