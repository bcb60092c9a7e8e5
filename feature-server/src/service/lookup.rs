//! The store keys a request reads: one per (view, distinct entity), each view's keys side by
//! side, so that all of them go to the store in one round trip; and the blobs read back, decoded
//! with their view's schema.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use quiver_online_store::key_codec::{entity_key, online_key};
use quiver_online_store::value_codec::Decoded;
use quiver_registry::did_you_mean;

use super::EntityValue;
use super::request::key_value;
use crate::error::{Result, ServiceError};
use crate::snapshot::ViewPlan;

/// Every key of a request, and which of them each view's rows read.
pub(super) struct Lookup {
    /// Deduplicated: rows with the same entity share a key.
    pub keys: Vec<String>,
    /// Per view of the plan, in its order.
    pub views: Vec<ViewKeys>,
}

/// One view's part of [`Lookup::keys`].
pub(super) struct ViewKeys {
    /// Where its keys are in [`Lookup::keys`].
    pub range: Range<usize>,
    /// Per entity row, the index in [`Lookup::keys`] of the key it reads.
    pub rows: Vec<usize>,
}

impl Lookup {
    /// The keys of `rows` entity rows in each of `views`. Columns the views do not need are
    /// accepted and ignored, as Feast does (request data for on-demand features, or passed
    /// along); a needed key that is missing is refused, with the closest column as a hint.
    pub fn new(
        views: &[&ViewPlan],
        entities: &[(String, Vec<EntityValue>)],
        rows: usize,
    ) -> Result<Self> {
        let mut keys: Vec<String> = Vec::new();
        let mut slot_of: HashMap<String, usize> = HashMap::new();
        let mut parts = Vec::new();
        let mut out = Vec::with_capacity(views.len());
        for view in views {
            let cols = view
                .join_keys
                .iter()
                .map(|k| entity_column(entities, &view.name, &k.name))
                .collect::<Result<Vec<_>>>()?;
            let start = keys.len();
            slot_of.clear();
            let mut slots = Vec::with_capacity(rows);
            for row in 0..rows {
                parts.clear();
                for (k, col) in view.join_keys.iter().zip(&cols) {
                    parts.push(key_value(&k.name, k.value_type, &col[row], row)?);
                }
                let key = online_key(&view.prefix, &entity_key(&parts));
                let next = keys.len();
                let slot = *slot_of.entry(key.clone()).or_insert_with(|| {
                    keys.push(key);
                    next
                });
                slots.push(slot);
            }
            out.push(ViewKeys {
                range: start..keys.len(),
                rows: slots,
            });
        }
        Ok(Lookup { keys, views: out })
    }

    /// The blobs read for [`Lookup::keys`], decoded with their views' schemas (`views` as given
    /// to [`Lookup::new`]). A value that does not decode is never served: it reads as
    /// NOT_FOUND (the caller's other features still answer) and is reported loudly.
    /// An aggregation view's tiles are answered here, at `now_ns`: each aggregate over its
    /// window (count 0 and nulls when no event is in it), the event time of the latest event in
    /// the longest window (0 when there is none).
    pub fn decode(
        &self,
        views: &[&ViewPlan],
        blobs: &[Option<Arc<Vec<u8>>>],
        now_ns: i64,
    ) -> Vec<Option<Decoded>> {
        let mut decoded = Vec::with_capacity(blobs.len());
        for (view, part) in views.iter().zip(&self.views) {
            for i in part.range.clone() {
                decoded.push(blobs[i].as_ref().and_then(|b| {
                    let value = view.decode(b, now_ns);
                    value
                        .inspect_err(|e| undecodable(view, &self.keys[i], e))
                        .ok()
                }));
            }
        }
        decoded
    }
}

/// The values of join key `key` (needed by view `view`) in the request's entity columns.
fn entity_column<'r>(
    entities: &'r [(String, Vec<EntityValue>)],
    view: &str,
    key: &str,
) -> Result<&'r [EntityValue]> {
    // A handful of join keys at most: a scan beats hashing.
    column(entities, key).ok_or_else(|| {
        let given = entities.iter().map(|(n, _)| n.as_str());
        let hint = did_you_mean(key, given)
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        ServiceError::invalid(format!(
            "feature view `{view}` needs entity key `{key}` in `entities`{hint}"
        ))
    })
}

/// The request's values of entity column `name`, if it has one.
pub(super) fn column<'r>(
    entities: &'r [(String, Vec<EntityValue>)],
    name: &str,
) -> Option<&'r [EntityValue]> {
    entities
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, values)| values.as_slice())
}

fn undecodable(view: &ViewPlan, key: &str, e: &quiver_online_store::Error) {
    let view = &view.name;
    tracing::error!(
        %view, %key, error = %e,
        "undecodable online value served as NOT_FOUND; re-materialize this view (the next run replaces it)"
    );
    metrics::counter!("quiver_undecodable_values_total", "view" => view.clone()).increment(1);
}
