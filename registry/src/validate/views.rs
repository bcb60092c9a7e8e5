//! Feature views: their entities and source, features, ttl and query, and the columns of the
//! row they read (join keys, timestamps and features must not share a name).

use std::collections::BTreeMap;

use super::{Detail, Kind, Validator, aggregations, at};
use crate::aggregation::Aggregations;
use crate::definitions::{DefinitionFile, FeatureViewDef};
use crate::duration::Ttl;
use crate::error::Diagnostic;
use crate::model::{FeatureView, Field};

impl Validator {
    pub(super) fn views(&mut self, file: &str, defs: &DefinitionFile) {
        for def in &defs.feature_views {
            self.view(file, def);
        }
    }

    fn view(&mut self, file: &str, def: &FeatureViewDef) {
        let declared = self.declare(Kind::View, file, &def.name);
        let from = format!("feature view `{}`", def.name.value);
        let mut ok = self.view_references(file, def, &from);
        let push = self.registry.push_sources.get(&def.source.value).cloned();
        // What it serves, and the columns it reads besides keys and timestamps.
        let (features, inputs, aggregations) = match &def.aggregations {
            Some(written) => {
                match self.view_aggregations(file, def, &from, written, push.as_ref()) {
                    Some(a) => {
                        let mut outputs = aggregations::outputs(&a);
                        for (f, w) in outputs.iter_mut().zip(&written.value) {
                            f.description = w.description.clone();
                        }
                        (Some(outputs), aggregations::input_columns(&a), Some(a))
                    }
                    None => return,
                }
            }
            None => {
                if def.feature_defs().is_empty() {
                    let place = def.features.as_ref().map(at).unwrap_or(at(&def.name));
                    self.error(
                        file,
                        place,
                        format!("{from} declares no features"),
                        Some("add e.g. `features: [{name: conv_rate, type: float32}]`, or `aggregations`".into()),
                    );
                    ok = false;
                }
                let features = self.fields(file, "feature", def.feature_defs(), false);
                let inputs = features.clone().unwrap_or_default();
                (features, inputs, None)
            }
        };
        let ttl = match aggregations {
            Some(_) => Some(Ttl::default()),
            None => self.view_ttl(file, def),
        };
        if let Some(q) = &def.query
            && q.value.trim().is_empty()
        {
            self.error(
                file,
                at(q),
                format!("{from} has an empty query"),
                Some("remove `query` or write SQL over the table `source`".into()),
            );
            ok = false;
        }
        let (Some(features), Some(ttl)) = (features, ttl) else {
            return;
        };
        if !ok || !self.view_columns(file, def, &from, &inputs) || !declared {
            return;
        }
        if aggregations.is_some() && !self.aggregate_names(file, def, &from, &features) {
            return;
        }
        if let Some(push) = push
            && !self.view_over_push(file, def, &from, &push, &inputs)
        {
            return;
        }
        self.record_view(def, features, ttl, aggregations);
    }

    /// Its entities and its source exist.
    fn view_references(&mut self, file: &str, def: &FeatureViewDef, from: &str) -> bool {
        let mut ok = true;
        if def.entities.value.is_empty() {
            self.error(file, at(&def.entities), format!("{from} has no entities"),
                Some("list the entities whose join keys identify its rows, e.g. `entities: [driver]`".into()));
            ok = false;
        }
        let entity_names: Vec<String> = self.registry.entities.keys().cloned().collect();
        for e in &def.entities.value {
            ok &= self.reference(
                Kind::Entity,
                file,
                e,
                entity_names.iter().map(String::as_str).collect(),
                from,
            );
        }
        if self.registry.push_sources.contains_key(&def.source.value) {
            return ok;
        }
        if self
            .places
            .contains_key(&(Kind::PushSource, def.source.value.clone()))
        {
            // A push source, but an invalid one: reported where it is.
            return false;
        }
        // Either kind of source; hints name both.
        let source_names: Vec<String> = self
            .registry
            .sources
            .keys()
            .chain(self.registry.push_sources.keys())
            .cloned()
            .collect();
        ok &= self.reference(
            Kind::Source,
            file,
            &def.source,
            source_names.iter().map(String::as_str).collect(),
            from,
        );
        ok
    }

    /// The view's ttl, the default when absent; `None` when it does not parse (reported).
    fn view_ttl(&mut self, file: &str, def: &FeatureViewDef) -> Option<Ttl> {
        let Some(t) = &def.ttl else {
            return Some(Ttl::default());
        };
        match t.value.parse::<Ttl>() {
            Ok(ttl) => Some(ttl),
            Err(message) => {
                self.error(
                    file,
                    at(t),
                    message,
                    Some("e.g. `ttl: 2h`, `ttl: 7d`, `ttl: 0` (unbounded)".into()),
                );
                None
            }
        }
    }

    /// Join keys, the source's timestamps and the features share the row the view reads: a
    /// name used twice would be ambiguous. Every clash is reported; false when there is one.
    fn view_columns(
        &mut self,
        file: &str,
        def: &FeatureViewDef,
        from: &str,
        features: &[Field],
    ) -> bool {
        let (columns, mut ok) = self.join_key_columns(file, def, from);
        // So do the source's timestamps: the view's input is read as one row of them all.
        let source = self.timestamp_columns(&def.source.value);
        let timestamps = source.timestamps();
        for key in columns.keys() {
            if let Some((field, _)) = timestamps.iter().find(|(_, t)| *t == key) {
                self.error(
                    file,
                    at(&def.entities),
                    format!(
                        "{from}: join key `{key}` is also the `{field}` of source `{}`",
                        source.name
                    ),
                    Some(format!(
                        "set the source's `{field}` to the column holding each row's time"
                    )),
                );
                ok = false;
            }
        }
        for f in features {
            let place = column_place(def, &f.name);
            if def.aggregations.is_some()
                && let Some(problem) =
                    aggregated_column_problem(&columns, &timestamps, &f.name, &source.name)
            {
                self.error(
                    file,
                    place,
                    format!("{from}: {}", problem.0),
                    Some(problem.1),
                );
                ok = false;
            } else if let Some(entity) = columns.get(f.name.as_str()) {
                self.error(
                    file,
                    place,
                    format!(
                        "{from}: feature `{}` has the name of a join key of entity `{entity}`",
                        f.name
                    ),
                    Some("rename the feature (e.g. with the source's field_mapping, or `AS` in the view's `query`)".into()),
                );
                ok = false;
            } else if let Some((field, _)) = timestamps.iter().find(|(_, t)| **t == f.name) {
                self.error(
                    file,
                    place,
                    format!(
                        "{from}: feature `{}` has the name of the `{field}` of source `{}`",
                        f.name, source.name
                    ),
                    Some(format!(
                        "rename the feature: to serve the time itself, add a renamed copy in the view's `query` (e.g. `SELECT *, {0} AS {0}_value FROM source`) and declare that",
                        f.name
                    )),
                );
                ok = false;
            }
        }
        ok
    }

    /// An aggregation view's outputs sit in rows next to the join keys and (in verify and
    /// with times) the source's timestamps: none may share their names.
    fn aggregate_names(
        &mut self,
        file: &str,
        def: &FeatureViewDef,
        from: &str,
        outputs: &[Field],
    ) -> bool {
        let (columns, mut ok) = self.join_key_columns(file, def, from);
        let source = self.timestamp_columns(&def.source.value);
        let timestamps: Vec<String> = source
            .timestamps()
            .into_iter()
            .map(|(_, t)| t.clone())
            .collect();
        for f in outputs {
            let clash = columns
                .get(f.name.as_str())
                .map(|e| format!("a join key of entity `{e}`"))
                .or_else(|| {
                    timestamps
                        .contains(&f.name)
                        .then(|| format!("a timestamp column of source `{}`", source.name))
                });
            if let Some(clash) = clash {
                let place = def
                    .aggregations
                    .iter()
                    .flat_map(|a| &a.value)
                    .find(|a| a.name.value == f.name)
                    .map(|a| at(&a.name))
                    .unwrap_or(at(&def.name));
                self.error(
                    file,
                    place,
                    format!("{from}: aggregate `{}` has the name of {clash}", f.name),
                    Some("name the aggregate after what it computes, e.g. `trips_1h`".into()),
                );
                ok = false;
            }
        }
        ok
    }

    /// Each join key of the view's entities and the entity it comes from; false when two
    /// entities have the same key (reported).
    fn join_key_columns<'d>(
        &mut self,
        file: &str,
        def: &'d FeatureViewDef,
        from: &str,
    ) -> (BTreeMap<String, &'d str>, bool) {
        let mut ok = true;
        let mut columns: BTreeMap<String, &str> = BTreeMap::new();
        for e in &def.entities.value {
            let e = e.value.as_str();
            let keys: Vec<String> = self.registry.entities[e]
                .join_keys
                .iter()
                .map(|k| k.name.clone())
                .collect();
            for key in keys {
                if let Some(other) = columns.insert(key.clone(), e) {
                    self.out.push(Diagnostic::error(
                        file,
                        at(&def.entities),
                        format!("{from}: entities `{other}` and `{e}` both have join key `{key}`"),
                    ));
                    ok = false;
                }
            }
        }
        (columns, ok)
    }

    /// Adds a valid view to the registry, and where its query and features are written.
    fn record_view(
        &mut self,
        def: &FeatureViewDef,
        features: Vec<Field>,
        ttl: Ttl,
        aggregations: Option<Aggregations>,
    ) {
        self.record_aggregation_places(def);
        if let Some(place) = self.places.get_mut(&(Kind::View, def.name.value.clone())) {
            for d in def.feature_defs() {
                place
                    .detail
                    .insert(Detail::Feature(d.name.value.clone()), at(&d.name));
            }
            if let Some(q) = &def.query {
                place.detail.insert(Detail::Query, at(q));
            }
        }
        self.registry.feature_views.insert(
            def.name.value.clone(),
            FeatureView {
                name: def.name.value.clone(),
                entities: def.entities.value.iter().map(|e| e.value.clone()).collect(),
                source: def.source.value.clone(),
                query: def.query.as_ref().map(|q| q.value.trim().to_string()),
                features,
                ttl,
                online: def.online,
                aggregations,
                generation: 1,
                description: def.description.clone(),
                owner: def.owner.clone(),
                tags: def.tags.clone(),
            },
        );
    }
}

/// What is wrong with an aggregate reading column `name`, when it is a join key or a timestamp
/// of the source: (message, hint).
fn aggregated_column_problem(
    keys: &BTreeMap<String, &str>,
    timestamps: &[(&'static str, &String)],
    name: &str,
    source: &str,
) -> Option<(String, String)> {
    if let Some(entity) = keys.get(name) {
        return Some((
            format!("an aggregate reads `{name}`, the join key of entity `{entity}`"),
            "aggregate another column: `count` needs none".into(),
        ));
    }
    timestamps.iter().find(|(_, t)| t.as_str() == name).map(|(field, _)| {
        (
            format!("an aggregate reads `{name}`, the `{field}` of source `{source}`"),
            format!("to aggregate the time itself, add a renamed copy in the view's `query` (e.g. `SELECT *, {name} AS {name}_value FROM source`)"),
        )
    })
}

/// Where a column the view reads is written: its feature, or the first aggregate reading it.
pub(super) fn column_place(def: &FeatureViewDef, name: &str) -> crate::error::Span {
    let feature = def
        .feature_defs()
        .iter()
        .find(|d| d.name.value == name)
        .map(|d| at(&d.name));
    let aggregate = def
        .aggregations
        .iter()
        .flat_map(|a| &a.value)
        .find_map(|a| a.column.as_ref().filter(|c| c.value == name).map(at));
    feature.or(aggregate).unwrap_or(at(&def.name))
}

/// The timestamp columns of a view's source (batch or push), each with the key that names it.
struct TimestampColumns {
    name: String,
    timestamp_field: String,
    created_timestamp_field: Option<String>,
}

impl TimestampColumns {
    fn timestamps(&self) -> Vec<(&'static str, &String)> {
        std::iter::once(("timestamp_field", &self.timestamp_field))
            .chain(
                self.created_timestamp_field
                    .as_ref()
                    .map(|c| ("created_timestamp_field", c)),
            )
            .collect()
    }
}

impl Validator {
    /// The timestamp columns of the source `name` (known to exist).
    fn timestamp_columns(&self, name: &str) -> TimestampColumns {
        match self.registry.sources.get(name) {
            Some(s) => TimestampColumns {
                name: s.name.clone(),
                timestamp_field: s.timestamp_field.clone(),
                created_timestamp_field: s.created_timestamp_field.clone(),
            },
            None => {
                let p = &self.registry.push_sources[name];
                TimestampColumns {
                    name: p.name.clone(),
                    timestamp_field: p.timestamp_field.clone(),
                    created_timestamp_field: p.created_timestamp_field.clone(),
                }
            }
        }
    }
}
