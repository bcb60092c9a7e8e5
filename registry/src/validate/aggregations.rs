//! Views of windowed aggregates: functions, windows against the hop, input columns and their
//! types. An input's type comes from the push source's schema, a declared `type`, or (later,
//! in [`Validator::aggregation_inputs`]) the source's schema read at `apply`.

use std::collections::HashMap;

use arrow::datatypes::Schema;

use super::{Detail, Kind, Validator, at};
use crate::aggregation::{Aggregate, Aggregations, DEFAULT_HOP, FUNCTIONS, Function};
use crate::config::check_name;
use crate::definitions::{AggregationDef, FeatureViewDef, Loc};
use crate::duration::Ttl;
use crate::error::{Diagnostic, Span};
use crate::hint::did_you_mean;
use crate::model::{FeatureView, Field, PushSource};
use crate::value_type::{ScalarType, ValueType};

impl Validator {
    /// The aggregations of `def` (which declares them), checked; `None` when any is invalid
    /// (reported). Inputs whose type is not known yet have `input: None`.
    pub(super) fn view_aggregations(
        &mut self,
        file: &str,
        def: &FeatureViewDef,
        from: &str,
        written: &Loc<Vec<AggregationDef>>,
        push: Option<&PushSource>,
    ) -> Option<Aggregations> {
        let mut ok = true;
        if let Some(f) = &def.features {
            self.error(
                file,
                at(f),
                format!("{from} declares both `features` and `aggregations`"),
                Some("a view serves either plain features or aggregates: move one of them to another view".into()),
            );
            ok = false;
        }
        if let Some(t) = &def.ttl {
            self.error(
                file,
                at(t),
                format!("{from} declares aggregations and a `ttl`"),
                Some("each aggregate's `window` bounds the events it holds: remove `ttl`".into()),
            );
            ok = false;
        }
        if written.value.is_empty() {
            self.error(
                file,
                at(written),
                format!("{from} declares no aggregations"),
                Some(
                    "add e.g. `aggregations: [{name: trips_1h, function: count, window: 1h}]`"
                        .into(),
                ),
            );
            ok = false;
        }
        let hop = self.hop(file, def, from)?;
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut items = Vec::new();
        for a in &written.value {
            let name = &a.name.value;
            if let Err((message, hint)) = check_name("aggregate", name) {
                self.error(file, at(&a.name), message, Some(hint));
                ok = false;
            } else if let Some(first) = seen.insert(name, at(&a.name)) {
                self.error(
                    file,
                    at(&a.name),
                    format!(
                        "{from}: duplicate aggregate `{name}` (first declared at line {})",
                        first.line
                    ),
                    Some("each aggregate name must be unique in its view".into()),
                );
                ok = false;
            }
            match self.aggregate(file, a, from, hop, push) {
                Some(item) => items.push(item),
                None => ok = false,
            }
        }
        ok.then_some(Aggregations { hop, items })
    }

    fn hop(&mut self, file: &str, def: &FeatureViewDef, from: &str) -> Option<Ttl> {
        let Some(h) = &def.hop else {
            return Some(DEFAULT_HOP);
        };
        match h.value.parse::<Ttl>() {
            Ok(hop) if hop.seconds > MAX_WINDOW.seconds => {
                self.error(
                    file,
                    at(h),
                    format!("{from}: `hop` is longer than {MAX_WINDOW}"),
                    Some("the tile width, e.g. `hop: 5m`".into()),
                );
                None
            }
            Ok(hop) if hop.seconds > 0 => Some(hop),
            Ok(_) => {
                self.error(
                    file,
                    at(h),
                    format!("{from}: `hop` must be longer than 0"),
                    Some("the tile width, e.g. `hop: 5m`".into()),
                );
                None
            }
            Err(message) => {
                self.error(
                    file,
                    at(h),
                    message,
                    Some("e.g. `hop: 5m`, `hop: 1h`".into()),
                );
                None
            }
        }
    }

    /// One aggregate, checked as far as its input type is known.
    fn aggregate(
        &mut self,
        file: &str,
        a: &AggregationDef,
        from: &str,
        hop: Ttl,
        push: Option<&PushSource>,
    ) -> Option<Aggregate> {
        let name = &a.name.value;
        let mut ok = true;
        let function = match a.function.value.parse::<Function>() {
            Ok(f) => Some(f),
            Err(message) => {
                let hint = did_you_mean(&a.function.value, FUNCTIONS.iter().map(|(n, _)| *n))
                    .unwrap_or_else(|| {
                        let names: Vec<&str> = FUNCTIONS.iter().map(|(n, _)| *n).collect();
                        format!("the functions are: {}", names.join(", "))
                    });
                self.error(
                    file,
                    at(&a.function),
                    format!("{from}: aggregate `{name}`: {message}"),
                    Some(hint),
                );
                None
            }
        };
        let window = match a.window.value.parse::<Ttl>() {
            Ok(w) if w.seconds == 0 => {
                self.error(
                    file,
                    at(&a.window),
                    format!("{from}: aggregate `{name}` has a window of 0"),
                    Some(format!(
                        "a window is a multiple of the hop ({hop}), e.g. `1h`"
                    )),
                );
                None
            }
            Ok(w) if w.seconds % hop.seconds != 0 => {
                self.error(
                    file,
                    at(&a.window),
                    format!(
                        "{from}: the window {w} of aggregate `{name}` is not a multiple of the view's hop {hop}"
                    ),
                    Some(format!(
                        "use a multiple of {hop} (e.g. {}), or change `hop`",
                        Ttl {
                            seconds: w.seconds.div_ceil(hop.seconds) * hop.seconds
                        }
                    )),
                );
                None
            }
            Ok(w) if w.seconds > MAX_WINDOW.seconds => {
                self.error(
                    file,
                    at(&a.window),
                    format!(
                        "{from}: the window {w} of aggregate `{name}` is longer than {MAX_WINDOW}"
                    ),
                    Some(format!(
                        "windows are at most {MAX_WINDOW} (about a century)"
                    )),
                );
                None
            }
            Ok(w) if w.seconds / hop.seconds > MAX_TILES => {
                self.error(
                    file,
                    at(&a.window),
                    format!(
                        "{from}: the window {w} of aggregate `{name}` spans {} tiles of {hop}; at most {MAX_TILES}",
                        w.seconds / hop.seconds
                    ),
                    Some(format!(
                        "every entity keeps a tile per hop of its longest window online: use a longer `hop` (at least {})",
                        Ttl {
                            seconds: w.seconds.div_ceil(MAX_TILES)
                        }
                    )),
                );
                None
            }
            Ok(w) => Some(w),
            Err(message) => {
                self.error(
                    file,
                    at(&a.window),
                    message,
                    Some("e.g. `window: 1h`, `window: 7d`".into()),
                );
                None
            }
        };
        let declared = match &a.value_type {
            None => None,
            Some(t) => match t.value.parse::<ValueType>() {
                Ok(ValueType::Scalar(s)) => Some(s),
                Ok(ValueType::List(_)) => {
                    self.error(
                        file,
                        at(t),
                        format!("{from}: aggregate `{name}` reads a list column"),
                        Some("aggregates read scalar columns".into()),
                    );
                    ok = false;
                    None
                }
                Err(message) => {
                    self.error(
                        file,
                        at(t),
                        message,
                        Some("the input column's type, e.g. `type: float64`".into()),
                    );
                    ok = false;
                    None
                }
            },
        };
        let column = a.column.as_ref().map(|c| c.value.clone());
        if let (Some(Function::Count), None) = (function, &column)
            && let Some(t) = &a.value_type
        {
            self.error(
                file,
                at(t),
                format!("{from}: aggregate `{name}` has a `type` but no `column`"),
                Some("`type` is the input column's: remove it, or name the `column`".into()),
            );
            ok = false;
        }
        let (function, window) = (function?, window?);
        if function.needs_column() && column.is_none() {
            self.error(
                file,
                at(&a.name),
                format!("{from}: aggregate `{name}` ({function}) has no `column`"),
                Some(format!("name the column it reads, e.g. `{{name: {name}, function: {function}, column: fare, window: {}}}`", a.window.value)),
            );
            return None;
        }
        // The input's type: the push source's, else the declared one; else read at `apply`.
        let pushed = column
            .as_ref()
            .and_then(|c| push.and_then(|p| p.schema.get(c)).copied());
        let input = match (pushed, declared) {
            (Some(ValueType::Scalar(p)), Some(d)) if p != d => {
                self.error(file, at(a.value_type.as_ref().expect("declared")),
                    format!("{from}: aggregate `{name}` declares column `{}` as {} but push source `{}` has {}",
                        column.as_deref().unwrap_or_default(), d.name(), push.map(|p| p.name.as_str()).unwrap_or_default(), p.name()),
                    Some("remove `type`: a push source's schema gives it".into()));
                return None;
            }
            (Some(ValueType::Scalar(p)), _) => Some(p),
            (Some(ValueType::List(_)), _) => {
                self.error(
                    file,
                    at(a.column.as_ref().expect("pushed")),
                    format!(
                        "{from}: aggregate `{name}` reads list column `{}`",
                        column.as_deref().unwrap_or_default()
                    ),
                    Some("aggregates read scalar columns".into()),
                );
                return None;
            }
            (None, d) => d,
        };
        if column.is_some()
            && let Some(t) = input
            && let Err(message) = function.output(Some(t))
        {
            self.error(
                file,
                at(&a.function),
                format!("{from}: aggregate `{name}`: {message}"),
                Some("choose a function that suits the column, or another column".into()),
            );
            return None;
        }
        ok.then(|| Aggregate {
            name: name.clone(),
            function,
            column,
            input,
            window,
        })
    }

    /// Where each aggregate is written: errors about its output point at its name, errors
    /// about its column at the column.
    pub(super) fn record_aggregation_places(&mut self, def: &FeatureViewDef) {
        let Some(written) = &def.aggregations else {
            return;
        };
        if let Some(place) = self.places.get_mut(&(Kind::View, def.name.value.clone())) {
            for a in &written.value {
                place
                    .detail
                    .insert(Detail::Feature(a.name.value.clone()), at(&a.name));
                if let Some(c) = &a.column {
                    place
                        .detail
                        .entry(Detail::Feature(c.value.clone()))
                        .or_insert(at(c));
                }
            }
        }
    }
}

/// The longest window (and hop): 5,200 weeks, about a century — far inside the nanosecond
/// range of timestamps.
const MAX_WINDOW: Ttl = Ttl {
    seconds: 5_200 * 7 * 86_400,
};

/// Tiles one window may span: each entity's online value keeps a tile per hop of the longest
/// window (a 7-day window of 1-second tiles would be tens of megabytes per entity).
const MAX_TILES: u64 = 20_000;

/// The view's output features: each aggregate's name and output type (placeholder `int64` for
/// an input whose type is read later).
pub(super) fn outputs(aggregations: &Aggregations) -> Vec<Field> {
    aggregations
        .items
        .iter()
        .map(|a| Field {
            name: a.name.clone(),
            value_type: ValueType::Scalar(a.function.output(a.input).unwrap_or(ScalarType::Int64)),
            description: String::new(),
        })
        .collect()
}

/// The columns the aggregations read, each once, with the type known so far (int64 when not
/// yet known: only its name is used then).
pub(super) fn input_columns(aggregations: &Aggregations) -> Vec<Field> {
    let mut columns: Vec<Field> = Vec::new();
    for a in &aggregations.items {
        if let Some(c) = &a.column
            && !columns.iter().any(|f| &f.name == c)
        {
            columns.push(Field {
                name: c.clone(),
                value_type: ValueType::Scalar(a.input.unwrap_or(ScalarType::Int64)),
                description: String::new(),
            });
        }
    }
    columns
}

impl Validator {
    /// Fills in the input types of `view`'s aggregates that only the source's `schema` gives
    /// (when it could be read), checks each against its function, and sets the view's output
    /// features; reports what cannot be known. Returns the input columns to check against the
    /// schema.
    pub(super) fn aggregation_inputs(
        &mut self,
        view: &FeatureView,
        schema: Option<&Schema>,
    ) -> Option<Vec<Field>> {
        let mut aggregations = view.aggregations.clone()?;
        let place = self.places[&(Kind::View, view.name.clone())].clone();
        let from = format!("feature view `{}`", view.name);
        let mut ok = true;
        for a in &mut aggregations.items {
            let (Some(column), None) = (&a.column, a.input) else {
                continue;
            };
            let at = place
                .detail
                .get(&Detail::Feature(column.clone()))
                .copied()
                .unwrap_or(place.at);
            let found = schema.and_then(|s| s.field_with_name(column).ok());
            match (schema, found) {
                (None, _) => {
                    self.out.push(Diagnostic::error(&place.file, at,
                        format!("{from}: the type of column `{column}` (aggregate `{}`) cannot be read here", a.name))
                        .with_hint("declare it on the aggregate, e.g. `type: float64`"));
                    ok = false;
                }
                // Reported by the column check as a missing column.
                (Some(_), None) => ok = false,
                (Some(_), Some(f)) => {
                    match ValueType::from_arrow(f.data_type()) {
                        Some(ValueType::Scalar(t)) => match a.function.output(Some(t)) {
                            Ok(_) => a.input = Some(t),
                            Err(message) => {
                                let at = place
                                    .detail
                                    .get(&Detail::Feature(a.name.clone()))
                                    .copied()
                                    .unwrap_or(place.at);
                                self.out.push(Diagnostic::error(&place.file, at, format!("{from}: aggregate `{}`: {message} (column `{column}`)", a.name))
                                .with_hint("choose a function that suits the column, or another column"));
                                ok = false;
                            }
                        },
                        _ => {
                            self.out.push(Diagnostic::error(&place.file, at,
                            format!("{from}: column `{column}` has type {}, which cannot be aggregated", f.data_type()))
                            .with_hint("aggregates read scalar columns: convert it in a `query`"));
                            ok = false;
                        }
                    }
                }
            }
        }
        // Checked against the schema: each column of a known type, and the missing ones (so
        // that they are reported as missing); a column refused above is not reported again.
        let columns = input_columns(&aggregations)
            .into_iter()
            .filter(|f| {
                let typed = aggregations
                    .items
                    .iter()
                    .any(|a| a.column.as_ref() == Some(&f.name) && a.input.is_some());
                typed || schema.is_some_and(|s| s.field_with_name(&f.name).is_err())
            })
            .collect();
        if ok {
            let v = self
                .registry
                .feature_views
                .get_mut(&view.name)
                .expect("recorded");
            let descriptions: Vec<String> =
                v.features.iter().map(|f| f.description.clone()).collect();
            v.features = outputs(&aggregations);
            for (f, d) in v.features.iter_mut().zip(descriptions) {
                f.description = d;
            }
            v.aggregations = Some(aggregations);
        }
        Some(columns)
    }
}
