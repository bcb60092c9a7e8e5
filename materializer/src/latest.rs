//! Each entity's latest row: the greatest `(event_ts, created_ts)`; a full tie goes to the
//! greatest value blob, so the winner never depends on file or partition order. Memory grows
//! with the number of entities, never with the number of rows.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use quiver_online_store::value_codec::{ordered_i64, should_replace};

use crate::columns::{Rows, StatsAcc};

#[derive(Debug)]
pub struct Winner {
    /// Ordered `(event_ts, created_ts)`: byte order is time order.
    order: [u8; 16],
    pub event_ns: i64,
    pub blob: Vec<u8>,
}

/// Winners so far, and what was read on the way.
#[derive(Debug)]
pub struct Latest {
    pub winners: HashMap<String, Winner, RandomState>,
    pub rows_read: u64,
    /// Rows in the range without an entity key or event time: they identify nothing.
    pub rows_skipped: u64,
    pub stats: Vec<StatsAcc>,
    /// Distinct files and bytes the scan read (set once the scan is done).
    pub files_read: u64,
    pub bytes_read: u64,
    range: (i64, i64),
}

fn order(event: i64, created: Option<i64>) -> [u8; 16] {
    let mut o = [0u8; 16];
    o[..8].copy_from_slice(&ordered_i64(event));
    o[8..].copy_from_slice(&ordered_i64(created.unwrap_or(i64::MIN)));
    o
}

impl Latest {
    /// Keeps rows with `start <= event_ts < end` (nanoseconds).
    pub fn new(features: usize, start: i64, end: i64) -> Self {
        Latest {
            winners: HashMap::default(),
            rows_read: 0,
            rows_skipped: 0,
            stats: vec![StatsAcc::default(); features],
            files_read: 0,
            bytes_read: 0,
            range: (start, end),
        }
    }

    pub fn add(&mut self, rows: &Rows) {
        let mut key = String::new();
        rows.stats(&mut self.stats);
        for row in 0..rows.num_rows() {
            let Some((event, created)) = rows.times(row) else {
                self.rows_skipped += 1;
                continue;
            };
            if event < self.range.0 || event >= self.range.1 {
                continue;
            }
            self.rows_read += 1;
            if !rows.entity_key(row, &mut key) {
                self.rows_skipped += 1;
                continue;
            }
            let o = order(event, created);
            match self.winners.get_mut(key.as_str()) {
                Some(w) if o > w.order => {
                    w.blob = rows.encode(row, event, created, std::mem::take(&mut w.blob));
                    w.order = o;
                    w.event_ns = event;
                }
                Some(w) if o == w.order => {
                    let blob = rows.encode(row, event, created, Vec::new());
                    if should_replace(&blob, &w.blob) {
                        w.blob = blob;
                    }
                }
                Some(_) => {}
                None => {
                    let blob = rows.encode(row, event, created, Vec::new());
                    self.winners.insert(
                        key.clone(),
                        Winner {
                            order: o,
                            event_ns: event,
                            blob,
                        },
                    );
                }
            }
        }
    }

    /// Folds another partition's winners in, with the same rule.
    pub fn merge(&mut self, other: Latest) {
        self.rows_read += other.rows_read;
        self.rows_skipped += other.rows_skipped;
        for (a, b) in self.stats.iter_mut().zip(&other.stats) {
            a.merge(b);
        }
        for (key, w) in other.winners {
            match self.winners.get_mut(&key) {
                Some(mine) if should_replace(&w.blob, &mine.blob) => *mine = w,
                Some(_) => {}
                None => {
                    self.winners.insert(key, w);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, TimestampNanosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use arrow::record_batch::RecordBatch;
    use proptest::prelude::*;
    use quiver_online_store::value_codec::ValueEncoder;
    use quiver_registry::{Field as Declared, ScalarType, ValueType};

    use super::*;
    use crate::columns::Layout;

    fn layout() -> Layout {
        let int = |name: &str| Declared {
            name: name.into(),
            value_type: ValueType::Scalar(ScalarType::Int64),
            description: String::new(),
        };
        Layout {
            join_keys: vec![int("id")],
            timestamp: "ts".into(),
            created: Some("created".into()),
            features: vec![int("v")],
        }
    }

    /// (id, event, created, value) rows as one batch; `created` -1 is null.
    fn batch(rows: &[(i64, i64, i64, i64)]) -> RecordBatch {
        let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("ts", ts.clone(), false),
            Field::new("created", ts, true),
            Field::new("v", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(TimestampNanosecondArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
                Arc::new(TimestampNanosecondArray::from_iter(
                    rows.iter().map(|r| (r.2 >= 0).then_some(r.2)),
                )),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
            ],
        )
        .unwrap()
    }

    fn winners(
        parts: &[Vec<(i64, i64, i64, i64)>],
        start: i64,
        end: i64,
    ) -> HashMap<String, Vec<u8>> {
        let mut total = Latest::new(1, start, end);
        for part in parts {
            let mut l = Latest::new(1, start, end);
            l.add(&Rows::new(&batch(part), &layout()).unwrap());
            total.merge(l);
        }
        total
            .winners
            .into_iter()
            .map(|(k, w)| (k, w.blob))
            .collect()
    }

    /// Plainly: among rows in range, per id, the one whose blob `should_replace` all others.
    fn oracle(rows: &[(i64, i64, i64, i64)], start: i64, end: i64) -> HashMap<String, Vec<u8>> {
        let mut best: HashMap<String, Vec<u8>> = HashMap::new();
        for &(id, ev, cr, v) in rows.iter().filter(|r| r.1 >= start && r.1 < end) {
            let mut enc = ValueEncoder::new(ev, (cr >= 0).then_some(cr), 1);
            enc.i64(v);
            let blob = enc.finish();
            let slot = best.entry(format!("i{id}")).or_insert_with(|| blob.clone());
            if should_replace(&blob, slot) {
                *slot = blob;
            }
        }
        best
    }

    proptest! {
        #[test]
        fn latest_rows_match_the_oracle_whatever_the_order_and_partitioning(
            rows in proptest::collection::vec((0..6i64, 0..4i64, -1..3i64, 0..4i64), 0..60),
            split in 0..60usize,
            start in 0..2i64,
        ) {
            let expected = oracle(&rows, start, 3);
            prop_assert_eq!(winners(std::slice::from_ref(&rows), start, 3), expected.clone());
            let mut reversed = rows.clone();
            reversed.reverse();
            let split = split.min(reversed.len());
            let parts = vec![reversed[..split].to_vec(), reversed[split..].to_vec()];
            prop_assert_eq!(winners(&parts, start, 3), expected);
        }
    }
}
