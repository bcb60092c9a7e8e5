//! What a write names and which columns it needs: its views (every online view of a push
//! source, or the one view written to), each column's type, and the time columns.

use std::collections::BTreeMap;

use quiver_registry::{FeatureView, Registry, ValueType};
use serde_json::Value as J;

use super::{Target, unknown_push_source};
use crate::error::{ErrorCode, Result, ServiceError};

/// The columns a write reads and their types, and what its time columns are called.
pub(super) struct Shape<'r> {
    /// Views written, in name order.
    pub(super) views: Vec<&'r FeatureView>,
    /// Column → type: every join key and feature of those views.
    pub(super) columns: BTreeMap<String, ValueType>,
    pub(super) timestamp: String,
    pub(super) created: Option<String>,
    /// The created column the target's source declares (whether or not the df has it).
    pub(super) created_in_source: Option<String>,
    /// Who names what, for messages (`push source `p``, `feature view `v``).
    pub(super) what: String,
}

/// What `target` writes and which columns that needs.
pub(super) fn shape<'r>(
    registry: &'r Registry,
    target: &Target,
    df: &[(String, Vec<J>)],
) -> Result<Shape<'r>> {
    let has = |c: &str| df.iter().any(|(name, _)| name == c);
    // The views, the push source's schema (if any), the time columns, who names them.
    type Resolved<'a> = (
        Vec<&'a FeatureView>,
        Option<&'a BTreeMap<String, ValueType>>,
        String,
        Option<String>,
        String,
    );
    let (views, types, timestamp, created, what): Resolved<'r> = match target {
        Target::PushSource(name) => {
            let push = registry
                .push_sources
                .get(name)
                .ok_or_else(|| unknown_push_source(registry, name))?;
            let views: Vec<&FeatureView> =
                registry.views_fed_by(name).filter(|v| v.online).collect();
            if views.is_empty() {
                return Err(ServiceError::invalid(format!(
                    "push source `{name}` feeds no online feature view: an online push would write nothing; push with `to: offline`, or add `online: true` to a view over it"
                )));
            }
            (
                views,
                Some(&push.schema),
                push.timestamp_field.clone(),
                push.created_timestamp_field.clone(),
                format!("push source `{name}`"),
            )
        }
        Target::View(name) => {
            let view = registry.feature_views.get(name).ok_or_else(|| {
                ServiceError::new(
                    ErrorCode::ViewNotFound,
                    format!("unknown feature view `{name}`"),
                )
            })?;
            if !view.online {
                return Err(ServiceError::invalid(format!(
                    "feature view `{name}` is offline only (`online: false`): it has no online values to write"
                )));
            }
            let (ts, created) = view_time_columns(registry, view);
            // Feast's remote client always names them `event_timestamp` and `created`.
            let ts = if !has(&ts) && has("event_timestamp") {
                "event_timestamp".to_string()
            } else {
                ts
            };
            let created = match created {
                Some(c) if has(&c) => Some(c),
                _ if has("created") => Some("created".to_string()),
                other => other,
            };
            (
                vec![view],
                None,
                ts,
                created,
                format!("feature view `{name}`"),
            )
        }
    };
    let mut columns = BTreeMap::new();
    for view in &views {
        for field in &written_columns(registry, view) {
            // A push source's schema decides the column's type (validation made the view agree).
            let t = types
                .and_then(|s| s.get(&field.name))
                .copied()
                .unwrap_or(field.value_type);
            columns.insert(field.name.clone(), t);
        }
    }
    for column in columns.keys() {
        if !has(column) {
            let users: Vec<&str> = views
                .iter()
                .filter(|v| {
                    written_columns(registry, v)
                        .iter()
                        .any(|f| &f.name == column)
                })
                .map(|v| v.name.as_str())
                .collect();
            return Err(ServiceError::invalid(format!(
                "{what}: the df has no column `{column}` (feature view `{}` needs it); a write carries every feature of a view, never part of a vector",
                users.join("`, `")
            )));
        }
    }
    if !has(&timestamp) {
        return Err(ServiceError::invalid(format!(
            "{what}: the df has no event time column `{timestamp}`"
        )));
    }
    let created_in_source = created.clone();
    let created = created.filter(|c| has(c));
    Ok(Shape {
        views,
        columns,
        timestamp,
        created,
        created_in_source,
        what,
    })
}

/// The columns a write to `view` carries besides times: its join keys and its features, or
/// for an aggregation view the columns its aggregates read (pushes are its raw events).
fn written_columns(registry: &Registry, view: &FeatureView) -> Vec<quiver_registry::Field> {
    let keys = registry.join_keys(view).into_iter().cloned();
    match &view.aggregations {
        None => keys.chain(view.features.iter().cloned()).collect(),
        Some(a) => keys.chain(a.input_fields()).collect(),
    }
}

/// The event and created time columns of a view's source (batch or push).
fn view_time_columns(registry: &Registry, view: &FeatureView) -> (String, Option<String>) {
    if let Some(push) = registry.push_source(view) {
        return (
            push.timestamp_field.clone(),
            push.created_timestamp_field.clone(),
        );
    }
    match registry.sources.get(&view.source) {
        Some(s) => (s.timestamp_field.clone(), s.created_timestamp_field.clone()),
        None => ("event_timestamp".into(), None),
    }
}
