//! A request planned on one registry snapshot: the features it resolves to, the views they are
//! read from, and each output column with its name and source. Everything that can be refused
//! from the request's shape alone is refused here, before anything proportional to the answer
//! (rows × features) is built.

use quiver_registry::Field;

use super::request::{output_names, row_count};
use super::{OnlineRequest, Selection};
use crate::error::{Result, ServiceError};
use crate::snapshot::{Resolved, Snapshot, ViewPlan};

/// What one request reads and answers.
pub(super) struct Plan<'s> {
    /// The views read, in order of first use.
    pub views: Vec<&'s ViewPlan>,
    /// Join keys (in order of first use by `views`), then features in request order.
    pub columns: Vec<OutputColumn<'s>>,
    /// Entity rows.
    pub rows: usize,
}

/// One column of the answer.
pub(super) struct OutputColumn<'s> {
    pub name: String,
    pub source: Source<'s>,
}

/// Where an output column's values come from.
pub(super) enum Source<'s> {
    /// A join key, echoed from the request (typed as the first view using it declares it).
    Key(&'s Field),
    /// Feature `index` of `Plan::views[view]`.
    Feature { view: usize, index: usize },
}

/// Request limits the plan is checked against.
pub(super) struct Bounds {
    pub max_entity_rows: usize,
    pub max_response_values: usize,
}

impl<'s> Plan<'s> {
    pub fn new(snap: &'s Snapshot, req: &OnlineRequest, bounds: Bounds) -> Result<Self> {
        let wanted = resolve(snap, &req.selection)?;
        // Views in order of first use; join keys in order of first use by those views.
        let mut views: Vec<&ViewPlan> = Vec::new();
        for (view, _) in &wanted {
            if !views.iter().any(|v| v.name == view.name) {
                views.push(view);
            }
        }
        let mut keys: Vec<&Field> = Vec::new();
        for k in views.iter().flat_map(|v| &v.join_keys) {
            if !keys.iter().any(|seen| seen.name == k.name) {
                keys.push(k);
            }
        }
        let key_names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        let names = output_names(&key_names, &wanted, req.full_feature_names)?;
        let rows = row_count(&req.entities)?;
        check_bounds(rows, wanted.len(), &bounds)?;
        let sources =
            keys.into_iter()
                .map(Source::Key)
                .chain(wanted.iter().map(|(view, index)| {
                    let view = views
                        .iter()
                        .position(|v| v.name == view.name)
                        .expect("listed above");
                    Source::Feature {
                        view,
                        index: *index,
                    }
                }));
        let columns = names
            .into_iter()
            .zip(sources)
            .map(|(name, source)| OutputColumn { name, source })
            .collect();
        Ok(Plan {
            views,
            columns,
            rows,
        })
    }
}

/// Refuses more entity rows, or more values (rows × features), than a request may have.
fn check_bounds(rows: usize, features: usize, bounds: &Bounds) -> Result<()> {
    if rows > bounds.max_entity_rows {
        return Err(ServiceError::too_large(format!(
            "{rows} entity rows exceed the limit of {} per request; send fewer rows per request or raise `serving.max_entity_rows` in quiver.yaml",
            bounds.max_entity_rows
        )));
    }
    let values = rows.saturating_mul(features);
    if values > bounds.max_response_values {
        return Err(ServiceError::too_large(format!(
            "the answer would hold {rows} entity rows × {features} features = {values} values, more than the limit of {} per request; ask for fewer rows or features per request or raise `serving.max_response_values` in quiver.yaml",
            bounds.max_response_values
        )));
    }
    Ok(())
}

/// Resolves the selection to (view, feature index) pairs, in request order.
fn resolve<'s>(snap: &'s Snapshot, selection: &Selection) -> Result<Vec<Resolved<'s>>> {
    match selection {
        Selection::Service(name) => snap.resolve_service(name),
        Selection::Refs(list) => {
            let refs = list
                .iter()
                .map(|r| {
                    r.split_once(':').ok_or_else(|| {
                        ServiceError::invalid(format!(
                            "feature reference `{r}` is not `view:feature`"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            snap.resolve_refs(refs.into_iter())
        }
    }
}
