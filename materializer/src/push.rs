//! Pushed rows → a view's online values: encoded exactly as materialization encodes them
//! ([`Rows`]), reduced to one winner per entity by the one rule
//! ([`value_codec::should_replace`]), and written with the store's write-if-newer. So a late or
//! replayed push never replaces a newer value, and a push and a materialization of the same
//! entity agree on the winner whatever their order.

use std::collections::HashMap;

use arrow::record_batch::RecordBatch;
use quiver_online_store::WriteEntry;
use quiver_online_store::key_codec::{online_key, view_prefix};
use quiver_online_store::value_codec::should_replace;
use quiver_registry::{FeatureView, Registry};

use crate::columns::{Layout, Rows};
use crate::error::{Error, Result};

/// Where a pushed batch keeps what each view needs: the event time column and the created
/// time column, if any (for online-only pushes it is filled for every row, the receive time
/// where none was given; for rows also written to the batch source it is the file's column, so
/// online and offline hold the same times).
#[derive(Debug, Clone)]
pub struct PushedColumns {
    pub timestamp: String,
    pub created: Option<String>,
}

/// The store entries for `view` from `batch`: one per entity, its winning row's blob.
/// `batch` holds the view's join keys and features (by name, any castable type) and the
/// columns `columns` names. A null join key or event time is refused with its row number.
pub fn entries(
    registry: &Registry,
    view: &FeatureView,
    batch: &RecordBatch,
    columns: &PushedColumns,
    key_ttl: bool,
) -> Result<(Vec<WriteEntry>, Option<i64>)> {
    let layout = Layout {
        join_keys: registry.join_keys(view).into_iter().cloned().collect(),
        timestamp: columns.timestamp.clone(),
        created: columns.created.clone(),
        features: view.features.clone(),
    };
    let rows = Rows::new(batch, &layout).map_err(Error::Invalid)?;
    let mut winners: HashMap<String, (i64, Vec<u8>)> = HashMap::with_capacity(rows.num_rows());
    let mut key = String::new();
    for row in 0..rows.num_rows() {
        let (event, created) = rows
            .identity(row, &mut key, &view.name, &columns.timestamp)
            .map_err(Error::Invalid)?;
        let blob = rows.encode(row, event, created, Vec::new());
        match winners.get_mut(key.as_str()) {
            Some(old) if !should_replace(&blob, &old.1) => {}
            Some(old) => *old = (event, blob),
            None => {
                winners.insert(key.clone(), (event, blob));
            }
        }
    }
    let prefix = view_prefix(&registry.project, &view.name, view.generation);
    let ttl_ms = (key_ttl && !view.ttl.is_unbounded()).then(|| view.ttl.millis());
    let newest = winners.values().map(|(event, _)| *event).max();
    let entries = winners
        .into_iter()
        .map(|(key, (event_ns, blob))| WriteEntry {
            key: online_key(&prefix, &key),
            blob,
            expire_at_ms: ttl_ms.map(|t| event_ns.div_euclid(1_000_000).saturating_add(t)),
        })
        .collect();
    Ok((entries, newest))
}
