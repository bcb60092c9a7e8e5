//! Feature views: their entities and source, features, ttl and query, and the columns of the
//! row they read (join keys, timestamps and features must not share a name).

use std::collections::BTreeMap;

use super::{Detail, Kind, Validator, at};
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
        if def.features.value.is_empty() {
            self.error(
                file,
                at(&def.features),
                format!("{from} declares no features"),
                Some("add e.g. `features: [{name: conv_rate, type: float32}]`".into()),
            );
            ok = false;
        }
        let features = self.fields(file, "feature", &def.features.value, false);
        let ttl = self.view_ttl(file, def);
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
        if !ok || !self.view_columns(file, def, &from, &features) || !declared {
            return;
        }
        if let Some(push) = self.registry.push_sources.get(&def.source.value).cloned()
            && !self.view_over_push(file, def, &from, &push, &features)
        {
            return;
        }
        self.record_view(def, features, ttl);
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
        for (f, d) in features.iter().zip(&def.features.value) {
            if let Some(entity) = columns.get(f.name.as_str()) {
                self.error(
                    file,
                    at(&d.name),
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
                    at(&d.name),
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
    fn record_view(&mut self, def: &FeatureViewDef, features: Vec<Field>, ttl: Ttl) {
        if let Some(place) = self.places.get_mut(&(Kind::View, def.name.value.clone())) {
            for d in &def.features.value {
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
                generation: 1,
                description: def.description.clone(),
                owner: def.owner.clone(),
                tags: def.tags.clone(),
            },
        );
    }
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
