//! Push sources: their schema, their timestamp columns (the batch source's, when they have one)
//! and the batch source itself; and what a view over one must agree with.

use std::collections::BTreeMap;

use super::{Kind, Validator, at};
use crate::config::check_name;
use crate::definitions::{FeatureViewDef, Loc, PushSourceDef};
use crate::hint::did_you_mean;
use crate::model::{Field, PushSource, Source};
use crate::value_type::{ScalarType, ValueType, type_names};

/// The event time column of a push source without a batch source that does not name one.
const DEFAULT_TIMESTAMP_FIELD: &str = "event_timestamp";

impl Validator {
    pub(super) fn push_sources(&mut self, file: &str, defs: &crate::definitions::DefinitionFile) {
        for def in &defs.push_sources {
            self.push_source(file, def);
        }
    }

    fn push_source(&mut self, file: &str, def: &PushSourceDef) {
        let declared = self.declare(Kind::PushSource, file, &def.name);
        let from = format!("push source `{}`", def.name.value);
        let schema = self.push_schema(file, def, &from);
        let (batch, mut ok) = match &def.batch_source {
            None => (None, true),
            Some(b) => {
                let known: Vec<String> = self.registry.sources.keys().cloned().collect();
                let found = self.reference(
                    Kind::Source,
                    file,
                    b,
                    known.iter().map(String::as_str).collect(),
                    &from,
                );
                (
                    found.then(|| self.registry.sources[&b.value].clone()),
                    found,
                )
            }
        };
        let Some(schema) = schema else {
            return;
        };
        let (timestamp_field, created_timestamp_field) =
            match self.push_timestamps(file, def, &from, batch.as_ref()) {
                Some(fields) => fields,
                None => return,
            };
        for (key, column) in std::iter::once(("timestamp_field", &timestamp_field)).chain(
            created_timestamp_field
                .as_ref()
                .map(|c| ("created_timestamp_field", c)),
        ) {
            match schema.get(column) {
                Some(ValueType::Scalar(ScalarType::Timestamp)) => {}
                Some(other) => {
                    let place = def
                        .schema
                        .value
                        .get(column)
                        .map(at)
                        .unwrap_or(at(&def.schema));
                    self.error(
                        file,
                        place,
                        format!("{from}: its {key} `{column}` has type `{other}`"),
                        Some(format!("declare `{column}: timestamp`")),
                    );
                    ok = false;
                }
                None => {
                    self.error(
                        file,
                        at(&def.schema),
                        format!("{from}: its {key} `{column}` is not in its schema"),
                        Some(format!("add `{column}: timestamp` to `schema`")),
                    );
                    ok = false;
                }
            }
        }
        if declared && ok {
            self.registry.push_sources.insert(
                def.name.value.clone(),
                PushSource {
                    name: def.name.value.clone(),
                    schema,
                    timestamp_field,
                    created_timestamp_field,
                    batch_source: batch.map(|b| b.name),
                    description: def.description.clone(),
                    tags: def.tags.clone(),
                },
            );
        }
    }

    /// Column → type, every problem reported; `None` when there was one.
    fn push_schema(
        &mut self,
        file: &str,
        def: &PushSourceDef,
        from: &str,
    ) -> Option<BTreeMap<String, ValueType>> {
        if def.schema.value.is_empty() {
            self.error(
                file,
                at(&def.schema),
                format!("{from} declares no columns"),
                Some("e.g. `schema: {driver_id: int64, event_timestamp: timestamp, conv_rate: float32}`".into()),
            );
            return None;
        }
        let mut schema = BTreeMap::new();
        let mut ok = true;
        for (column, written) in &def.schema.value {
            if let Err((message, hint)) = check_name("column", column) {
                self.error(file, at(written), format!("{from}: {message}"), Some(hint));
                ok = false;
                continue;
            }
            match written.value.parse::<ValueType>() {
                Ok(t) => {
                    schema.insert(column.clone(), t);
                }
                Err(message) => {
                    let names = type_names();
                    let hint = did_you_mean(&written.value, names.iter().map(String::as_str))
                        .unwrap_or_else(|| format!("valid types: {}", names.join(", ")));
                    self.error(
                        file,
                        at(written),
                        format!("{from}: column `{column}`: {message}"),
                        Some(hint),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(schema)
    }

    /// The event and created time columns: as written, else the batch source's, else
    /// `event_timestamp` and none. A push source's rows are its batch source's rows, so naming
    /// other columns than the batch source's is refused.
    fn push_timestamps(
        &mut self,
        file: &str,
        def: &PushSourceDef,
        from: &str,
        batch: Option<&Source>,
    ) -> Option<(String, Option<String>)> {
        let mut ok = true;
        let mut differs = |this: &mut Self,
                           written: &Loc<String>,
                           key: &str,
                           theirs: Option<&String>,
                           batch: &Source| {
            if theirs != Some(&written.value) {
                let theirs = theirs
                    .map(|t| format!("`{t}`"))
                    .unwrap_or_else(|| "none".into());
                this.error(
                    file,
                    at(written),
                    format!("{from}: {key} `{}` differs from the {key} of its batch source `{}` ({theirs})", written.value, batch.name),
                    Some(format!("pushed rows are appended to the batch source: remove `{key}` here, or make the two agree")),
                );
                ok = false;
            }
        };
        let timestamp_field = match (&def.timestamp_field, batch) {
            (Some(t), Some(b)) => {
                differs(self, t, "timestamp_field", Some(&b.timestamp_field), b);
                t.value.clone()
            }
            (Some(t), None) => t.value.clone(),
            (None, Some(b)) => b.timestamp_field.clone(),
            (None, None) => DEFAULT_TIMESTAMP_FIELD.to_string(),
        };
        let created = match (&def.created_timestamp_field, batch) {
            (Some(c), Some(b)) => {
                differs(
                    self,
                    c,
                    "created_timestamp_field",
                    b.created_timestamp_field.as_ref(),
                    b,
                );
                Some(c.value.clone())
            }
            (Some(c), None) => Some(c.value.clone()),
            (None, Some(b)) => b.created_timestamp_field.clone(),
            (None, None) => None,
        };
        if created.as_ref() == Some(&timestamp_field) {
            self.error(
                file,
                at(&def.name),
                format!("{from}: `created_timestamp_field` is the same column as `timestamp_field` (`{timestamp_field}`)"),
                None,
            );
            ok = false;
        }
        ok.then_some((timestamp_field, created))
    }

    /// A view over a push source: no `query` (pushed rows are written as they are), and each
    /// join key and feature is a column of the push source's schema, with the same type.
    pub(super) fn view_over_push(
        &mut self,
        file: &str,
        def: &FeatureViewDef,
        from: &str,
        push: &PushSource,
        features: &[Field],
    ) -> bool {
        let mut ok = true;
        if let Some(q) = &def.query {
            self.error(
                file,
                at(q),
                format!("{from} reads push source `{}` and has a `query`", push.name),
                Some(
                    "pushed rows are written as they are: remove `query`, or read a batch source"
                        .into(),
                ),
            );
            ok = false;
        }
        let keys: Vec<Field> = def
            .entities
            .value
            .iter()
            .filter_map(|e| self.registry.entities.get(&e.value))
            .flat_map(|e| e.join_keys.clone())
            .collect();
        let what = match def.aggregations {
            Some(_) => "aggregated column",
            None => "feature",
        };
        let places = keys
            .iter()
            .map(|k| (k, at(&def.entities), "join key"))
            .chain(
                features
                    .iter()
                    .map(|f| (f, super::views::column_place(def, &f.name), what)),
            );
        let mut problems = Vec::new();
        for (field, place, what) in places {
            let message = match push.schema.get(&field.name) {
                None => format!(
                    "{from}: {what} `{}` is not a column of push source `{}`",
                    field.name, push.name
                ),
                Some(t) if *t != field.value_type => format!(
                    "{from}: {what} `{}` is `{}` here but `{t}` in push source `{}`",
                    field.name, field.value_type, push.name
                ),
                Some(_) => continue,
            };
            problems.push((place, message));
        }
        for (place, message) in problems {
            let hint = format!(
                "declare it in the `schema` of push source `{}` with the same type",
                push.name
            );
            self.error(file, place, message, Some(hint));
            ok = false;
        }
        ok
    }
}
