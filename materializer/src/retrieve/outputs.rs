//! The output's columns: the entity table's, then each requested feature in request order
//! (named by [`crate::output_name`], every name unique), then, for `verify`, each view's
//! winning times.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use quiver_registry::{FeatureRef, FeatureView, Registry};

use super::Options;
use crate::columns::{canonical_type, utc_ns};
use crate::error::{Error, Result};
use crate::output_names::{Collision, OutputNames, output_name};

/// One view's part of the output.
#[derive(Debug)]
pub(super) struct ViewPart<'r> {
    pub(super) view: &'r FeatureView,
    /// (index of the feature in the view, output name), in request order.
    pub(super) outputs: Vec<(usize, String)>,
}

/// Output feature columns in request order, as (view part, output of that part).
pub(super) type OutputOrder = Vec<(usize, usize)>;

/// Groups the requested features by view (views in order of first mention) and names the output
/// columns; every name must be unique, entity columns included.
pub(super) fn plan_outputs<'r>(
    registry: &'r Registry,
    features: &[FeatureRef],
    entity_schema: &Schema,
    options: Options,
) -> Result<(Vec<ViewPart<'r>>, OutputOrder)> {
    if features.is_empty() {
        return Err(Error::Invalid("no features requested".into()));
    }
    let mut parts: Vec<ViewPart<'r>> = Vec::new();
    let mut order = Vec::new();
    let mut names = OutputNames::new(entity_schema.fields().iter().map(|f| f.name().as_str()));
    for r in features {
        let (view, index) = find_feature(registry, r)?;
        let name = output_name(&r.view, &r.feature, options.full_feature_names);
        if let Err(collision) = names.add(&name) {
            return Err(collision_error(&name, r, collision, options));
        }
        let p = match parts.iter().position(|p| p.view.name == r.view) {
            Some(p) => p,
            None => {
                parts.push(ViewPart {
                    view,
                    outputs: Vec::new(),
                });
                parts.len() - 1
            }
        };
        order.push((p, parts[p].outputs.len()));
        parts[p].outputs.push((index, name));
    }
    Ok((parts, order))
}

/// The view `r` names and the index of its feature there.
fn find_feature<'r>(registry: &'r Registry, r: &FeatureRef) -> Result<(&'r FeatureView, usize)> {
    let view = registry
        .feature_views
        .get(&r.view)
        .ok_or_else(|| Error::Invalid(format!("unknown feature view `{}`", r.view)))?;
    let index = view
        .features
        .iter()
        .position(|f| f.name == r.feature)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "feature view `{}` has no feature `{}`",
                r.view, r.feature
            ))
        })?;
    Ok((view, index))
}

/// The output name `name` of `r` is taken: what took it and what to do.
fn collision_error(name: &str, r: &FeatureRef, collision: Collision, options: Options) -> Error {
    let from_entities = collision == Collision::Column;
    let hint = match (from_entities, options.full_feature_names) {
        (true, true) => "rename the entity table's column",
        (true, false) => {
            "use full feature names (`view__feature`) or rename the entity table's column"
        }
        (false, true) => "request each feature once",
        (false, false) => "use full feature names (`view__feature`), or request each feature once",
    };
    let other = if from_entities {
        "a column of the entity table"
    } else {
        "another requested feature"
    };
    Error::Invalid(format!(
        "output column `{name}` (from `{r}`) collides with {other}; {hint}"
    ))
}

/// The output's schema: the entity columns, the features in request order, and with `with_times`
/// each view's `{view}__event_timestamp` and `{view}__created_timestamp`.
pub(super) fn output_schema(
    entity_schema: &Schema,
    parts: &[ViewPart<'_>],
    order: &OutputOrder,
    with_times: bool,
) -> SchemaRef {
    let mut fields: Vec<Field> = entity_schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for &(p, o) in order {
        let part = &parts[p];
        let (index, name) = &part.outputs[o];
        let t = canonical_type(part.view.features[*index].value_type);
        fields.push(Field::new(name, t, true));
    }
    if with_times {
        for part in parts {
            for what in ["event", "created"] {
                fields.push(Field::new(
                    format!("{}__{what}_timestamp", part.view.name),
                    utc_ns(),
                    true,
                ));
            }
        }
    }
    Arc::new(Schema::new(fields))
}

/// Where each output column after the entity columns comes from: (view part, column of that
/// view's join output, whose column 0 is `__row`), in the order of [`output_schema`].
pub(super) fn picks(
    parts: &[ViewPart<'_>],
    order: &OutputOrder,
    with_times: bool,
) -> Vec<(usize, usize)> {
    let mut picks: Vec<(usize, usize)> = order
        .iter()
        .map(|&(p, o)| (p, parts[p].outputs[o].0 + 1))
        .collect();
    if with_times {
        for (p, part) in parts.iter().enumerate() {
            let n = part.view.features.len();
            picks.push((p, n + 1));
            picks.push((p, n + 2));
        }
    }
    picks
}
