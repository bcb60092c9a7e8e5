//! Each view's input columns, checked against what it declares: through the
//! [`SchemaResolver`], once every definition is otherwise valid.

use std::collections::HashMap;

use super::{Detail, Kind, Validator};
use crate::error::Diagnostic;
use crate::model::{FeatureView, Field};
use crate::source_schema::{SchemaResolver, check_view_columns};

impl Validator {
    pub(super) fn source_schemas(&mut self, resolver: &dyn SchemaResolver) {
        let views: Vec<FeatureView> = self.registry.feature_views.values().cloned().collect();
        let mut cache = HashMap::new();
        for view in views {
            let Some(source) = self.registry.batch_source(&view).cloned() else {
                continue;
            };
            let source_place = self.places[&(Kind::Source, source.name.clone())].clone();
            let view_place = self.places[&(Kind::View, view.name.clone())].clone();
            let mut resolve = |query: Option<String>| {
                cache
                    .entry((source.name.clone(), query.clone()))
                    .or_insert_with(|| resolver.view_input_schema(&source, query.as_deref()))
                    .clone()
            };
            // The source itself first: its problems belong to the source, not to each view.
            let plain = resolve(None);
            let schema = match (&view.query, plain) {
                (_, Err(message)) => {
                    let at = source_place
                        .detail
                        .get(&Detail::Path)
                        .copied()
                        .unwrap_or(source_place.at);
                    let d = Diagnostic::error(&source_place.file, at, format!("source `{}`: {message}", source.name))
                        .with_hint(if crate::source_schema::is_url(&source.path) {
                            "check the URL, the credentials (the environment or the source's `storage:`) and that the objects are Parquet"
                        } else {
                            "check the path (relative to the repository root) and that the files are Parquet"
                        });
                    if !self.out.contains(&d) {
                        self.out.push(d);
                    }
                    continue;
                }
                (None, Ok(schema)) => schema,
                (Some(query), Ok(_)) => match resolve(Some(query.clone())) {
                    Ok(schema) => schema,
                    Err(message) => {
                        let at = view_place
                            .detail
                            .get(&Detail::Query)
                            .copied()
                            .unwrap_or(view_place.at);
                        self.out.push(
                            Diagnostic::error(&view_place.file, at, format!("feature view `{}`: {message}", view.name))
                                .with_hint(format!("fix the SQL; the source is the table `source`, with the columns of `{}`", source.name)),
                        );
                        continue;
                    }
                },
            };
            // The columns read besides keys and timestamps: the features, or what the
            // aggregates read (their types completed from the schema).
            let (columns, what) = match view.aggregations {
                Some(_) => match self.aggregation_inputs(&view, schema.as_deref()) {
                    Some(columns) => (columns, "aggregated column"),
                    None => continue,
                },
                None => (view.features.clone(), "feature"),
            };
            let Some(schema) = schema else { continue };
            let input = match view.query {
                Some(_) => "the view's query".to_string(),
                None => format!("source `{}`", source.name),
            };
            let keys: Vec<Field> = self
                .registry
                .join_keys(&view)
                .into_iter()
                .cloned()
                .collect();
            for problem in check_view_columns(&schema, &source, &input, &keys, &columns, what) {
                let at = problem
                    .feature
                    .as_ref()
                    .and_then(|f| view_place.detail.get(&Detail::Feature(f.clone())))
                    .copied()
                    .unwrap_or(view_place.at);
                self.out.push(
                    Diagnostic::error(
                        &view_place.file,
                        at,
                        format!("feature view `{}`: {}", view.name, problem.message),
                    )
                    .with_hint_opt(problem.hint),
                );
            }
        }
    }
}

impl Validator {
    /// Each push source's columns are columns of its batch source: offline pushes append rows
    /// to it, and views read them from it.
    pub(super) fn push_source_schemas(&mut self, resolver: &dyn SchemaResolver) {
        let pushes: Vec<_> = self.registry.push_sources.values().cloned().collect();
        for push in pushes {
            let Some(source) = push
                .batch_source
                .as_ref()
                .and_then(|b| self.registry.sources.get(b))
                .cloned()
            else {
                continue;
            };
            // A source that cannot be read is reported for the source already.
            let Ok(Some(schema)) = resolver.view_input_schema(&source, None) else {
                continue;
            };
            let place = self.places[&(Kind::PushSource, push.name.clone())].clone();
            for (column, declared) in &push.schema {
                if let Ok(field) = schema.field_with_name(column) {
                    if !declared.accepts(field.data_type()) {
                        self.out.push(
                            Diagnostic::error(
                                &place.file,
                                place.at,
                                format!(
                                    "push source `{}`: column `{column}` is declared `{declared}` but its batch source `{}` has type {}",
                                    push.name,
                                    source.name,
                                    field.data_type()
                                ),
                            )
                            .with_hint(match crate::value_type::ValueType::from_arrow(field.data_type()) {
                                Some(t) => format!("declare it as `{t}`, the batch source's type"),
                                None => "declare a type the batch source's column can hold".to_string(),
                            }),
                        );
                    }
                    continue;
                }
                self.out.push(
                    Diagnostic::error(
                        &place.file,
                        place.at,
                        format!(
                            "push source `{}`: column `{column}` is not a column of its batch source `{}`",
                            push.name, source.name
                        ),
                    )
                    .with_hint(format!(
                        "pushed rows are rows of `{}`: declare only its columns, or add `{column}` to its files",
                        source.name
                    )),
                );
            }
        }
    }
}
