//! The answer's columns, filled from the request (echoed join keys) and the decoded blobs
//! (features, with statuses and event times).

use quiver_online_store::value_codec::Decoded;
use quiver_registry::Field;

use super::lookup::{Lookup, column};
use super::plan::{Plan, Source};
use super::request::echo;
use super::{Column, EntityValue, Status, feature_status};
use crate::snapshot::ViewPlan;

impl Plan<'_> {
    /// The output columns' names and values, in the plan's order; `decoded` is
    /// [`Lookup::decode`]'s, statuses as of `now_ns`.
    pub fn answer(
        self,
        entities: &[(String, Vec<EntityValue>)],
        lookup: &Lookup,
        decoded: &[Option<Decoded>],
        now_ns: i64,
    ) -> (Vec<String>, Vec<Column>) {
        let mut names = Vec::with_capacity(self.columns.len());
        let mut columns = Vec::with_capacity(self.columns.len());
        for c in self.columns {
            columns.push(match c.source {
                Source::Key(field) => {
                    key_column(field, column(entities, &field.name).unwrap_or_default())
                }
                Source::Feature { view, index } => {
                    let rows = lookup.views[view].rows.iter().map(|&i| &decoded[i]);
                    feature_column(self.views[view], index, rows, now_ns)
                }
            });
            names.push(c.name);
        }
        (names, columns)
    }
}

/// A join key's column: the request's values, echoed as present.
fn key_column(field: &Field, values: &[EntityValue]) -> Column {
    Column {
        value_type: field.value_type,
        values: values.iter().map(|v| echo(v, field.value_type)).collect(),
        statuses: vec![Status::Present; values.len()],
        event_ns: vec![0; values.len()],
    }
}

/// Feature `index` of `view`, one cell per row's blob (`None`: not in the store).
fn feature_column<'a>(
    view: &ViewPlan,
    index: usize,
    rows: impl ExactSizeIterator<Item = &'a Option<Decoded>>,
    now_ns: i64,
) -> Column {
    let mut col = Column {
        value_type: view.features[index].value_type,
        values: Vec::with_capacity(rows.len()),
        statuses: Vec::with_capacity(rows.len()),
        event_ns: Vec::with_capacity(rows.len()),
    };
    for blob in rows {
        let (value, status, ts) = match blob {
            None => (None, Status::NotFound, 0),
            Some(d) => match feature_status(d, index, view.ttl_ns, now_ns) {
                Status::Present => (d.values[index].clone(), Status::Present, d.event_ns),
                Status::NotFound => (None, Status::NotFound, 0),
                other => (None, other, d.event_ns),
            },
        };
        col.values.push(value);
        col.statuses.push(status);
        col.event_ns.push(ts);
    }
    col
}
