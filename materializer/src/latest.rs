//! Each entity's latest row: the greatest `(event_ts, created_ts)`; a full tie goes to the
//! greatest value blob, so the winner never depends on file or partition order. Memory grows
//! with the number of entities, never with the number of rows.

use std::collections::HashMap;

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
    pub winners: HashMap<String, Winner>,
    pub rows_read: u64,
    /// Rows in the range without an entity key or event time: they identify nothing.
    pub rows_skipped: u64,
    pub stats: Vec<StatsAcc>,
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
            winners: HashMap::new(),
            rows_read: 0,
            rows_skipped: 0,
            stats: vec![StatsAcc::default(); features],
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
