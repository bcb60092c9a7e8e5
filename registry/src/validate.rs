//! Written definitions → the checked [`Registry`]. Every problem is collected, with file, line,
//! column and a hint, before anything is reported: users fix all of them in one pass.

use std::collections::{BTreeMap, HashMap};

use crate::config::check_name;
use crate::definitions::{DefinitionFile, FieldDef, Loc};
use crate::duration::Ttl;
use crate::error::{Diagnostic, Error, Result, Severity, Span};
use crate::hint::did_you_mean;
use crate::model::{Entity, FeatureRef, FeatureService, FeatureView, Field, Registry, Source};
use crate::source_schema::{SchemaResolver, check_view_columns};
use crate::value_type::{ValueType, is_nested_list, type_names};

/// The checked registry and the warnings found on the way.
#[derive(Debug)]
pub struct Validated {
    pub registry: Registry,
    pub warnings: Vec<Diagnostic>,
}

/// Checks every definition file together. Generations are left at 1: [`crate::plan`] assigns them
/// against the previous version.
pub fn validate(
    project: &str,
    files: &[(String, DefinitionFile)],
    resolver: &dyn SchemaResolver,
) -> Result<Validated> {
    let mut v = Validator {
        out: Vec::new(),
        registry: Registry {
            project: project.to_string(),
            ..Registry::default()
        },
        places: HashMap::new(),
    };
    for (file, defs) in files {
        v.entities(file, defs);
    }
    for (file, defs) in files {
        v.sources(file, defs);
    }
    for (file, defs) in files {
        v.views(file, defs);
    }
    for (file, defs) in files {
        v.services(file, defs);
    }
    v.source_schemas(resolver);
    let Validator { out, registry, .. } = v;
    if out.iter().any(|d| d.severity == Severity::Error) {
        return Err(Error::Invalid(out));
    }
    Ok(Validated {
        registry,
        warnings: out,
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Entity,
    Source,
    View,
    Service,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Entity => "entity",
            Kind::Source => "source",
            Kind::View => "feature view",
            Kind::Service => "feature service",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::Entity => "entities",
            Kind::Source => "sources",
            Kind::View => "feature views",
            Kind::Service => "feature services",
        }
    }

    /// The key of a definition file that lists them.
    fn section(self) -> &'static str {
        match self {
            Kind::Entity => "entities",
            Kind::Source => "sources",
            Kind::View => "feature_views",
            Kind::Service => "feature_services",
        }
    }
}

/// Everything a definition file names. They share one namespace: `quiver registry describe NAME`
/// and `--features NAME` look a name up among all of them.
const KINDS: [Kind; 4] = [Kind::Entity, Kind::Source, Kind::View, Kind::Service];

struct Validator {
    out: Vec<Diagnostic>,
    registry: Registry,
    /// Where each object was defined, for duplicate reports and schema errors.
    places: HashMap<(Kind, String), Place>,
}

#[derive(Clone)]
struct Place {
    file: String,
    at: Span,
    /// For sources: where the path is written; for views: where each feature is declared.
    detail: HashMap<String, Span>,
}

fn at<T>(loc: &Loc<T>) -> Span {
    loc.referenced.into()
}

impl Validator {
    fn error(&mut self, file: &str, at: Span, message: String, hint: Option<String>) {
        self.out
            .push(Diagnostic::error(file, at, message).with_hint_opt(hint));
    }

    /// Checks a name and records where it was defined; false when it cannot be used.
    fn declare(&mut self, kind: Kind, file: &str, name: &Loc<String>) -> bool {
        let label = kind.label();
        if let Err((message, hint)) = check_name(label, &name.value) {
            self.error(file, at(name), message, Some(hint));
            return false;
        }
        let key = (kind, name.value.clone());
        if let Some(first) = self.places.get(&key) {
            let message = format!(
                "duplicate {label} `{}` (first defined at {}:{}:{})",
                name.value, first.file, first.at.line, first.at.column
            );
            self.error(
                file,
                at(name),
                message,
                Some(format!("rename or remove one of the two {}", kind.plural())),
            );
            return false;
        }
        let clash = KINDS.into_iter().find_map(|other| {
            self.places
                .get(&(other, name.value.clone()))
                .map(|first| (other, first.clone()))
        });
        self.places.insert(
            key,
            Place {
                file: file.to_string(),
                at: at(name),
                detail: HashMap::new(),
            },
        );
        if let Some((other, first)) = clash {
            // Recorded all the same: references to it are not reported as unknown as well.
            let message = format!(
                "{label} `{}` has the name of {} `{}` (defined at {}:{}:{})",
                name.value,
                other.label(),
                name.value,
                first.file,
                first.at.line,
                first.at.column
            );
            self.error(
                file,
                at(name),
                message,
                Some(
                    "entities, sources, feature views and feature services share one namespace (`quiver registry describe NAME`, `--features NAME`): rename one of the two".into(),
                ),
            );
            return false;
        }
        true
    }

    fn fields(
        &mut self,
        file: &str,
        what: &str,
        defs: &[FieldDef],
        key_only: bool,
    ) -> Option<Vec<Field>> {
        let mut fields = Vec::with_capacity(defs.len());
        let mut ok = true;
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for def in defs {
            let name = &def.name.value;
            if let Err((message, hint)) = check_name(what, name) {
                self.error(file, at(&def.name), message, Some(hint));
                ok = false;
            } else if let Some(first) = seen.insert(name, at(&def.name)) {
                self.error(
                    file,
                    at(&def.name),
                    format!(
                        "duplicate {what} `{name}` (first declared at line {})",
                        first.line
                    ),
                    Some(format!("each {what} name must be unique here")),
                );
                ok = false;
            }
            match def.value_type.value.parse::<ValueType>() {
                Ok(t) if key_only && !is_key_type(t) => {
                    self.error(
                        file,
                        at(&def.value_type),
                        format!("join key `{name}` cannot have type `{t}`"),
                        Some("join keys are int32, int64, string or bytes".into()),
                    );
                    ok = false;
                }
                Ok(value_type) => fields.push(Field {
                    name: name.clone(),
                    value_type,
                    description: def.description.clone(),
                }),
                Err(message) => {
                    let names = type_names();
                    let hint = if is_nested_list(&def.value_type.value) {
                        "a feature is a scalar or a list of scalars (e.g. `list<int32>`); flatten the values, or encode them as `string` or `bytes`".to_string()
                    } else {
                        did_you_mean(&def.value_type.value, names.iter().map(String::as_str))
                            .unwrap_or_else(|| format!("valid types: {}", names.join(", ")))
                    };
                    self.error(file, at(&def.value_type), message, Some(hint));
                    ok = false;
                }
            }
        }
        ok.then_some(fields)
    }

    fn entities(&mut self, file: &str, defs: &DefinitionFile) {
        for def in &defs.entities {
            let declared = self.declare(Kind::Entity, file, &def.name);
            if def.join_keys.value.is_empty() {
                self.error(
                    file,
                    at(&def.join_keys),
                    format!("entity `{}` has no join keys", def.name.value),
                    Some(
                        "add at least one, e.g. `join_keys: [{name: driver_id, type: int64}]`"
                            .into(),
                    ),
                );
                continue;
            }
            let Some(join_keys) = self.fields(file, "join key", &def.join_keys.value, true) else {
                continue;
            };
            if declared {
                self.registry.entities.insert(
                    def.name.value.clone(),
                    Entity {
                        name: def.name.value.clone(),
                        join_keys,
                        description: def.description.clone(),
                        tags: def.tags.clone(),
                    },
                );
            }
        }
    }

    fn sources(&mut self, file: &str, defs: &DefinitionFile) {
        for def in &defs.sources {
            let declared = self.declare(Kind::Source, file, &def.name);
            let mut ok = true;
            if def.path.value.trim().is_empty() {
                self.error(file, at(&def.path), format!("source `{}` has an empty path", def.name.value),
                    Some("give a Parquet file, a directory or a glob, relative to the repository root".into()));
                ok = false;
            }
            for field in
                std::iter::once(&def.timestamp_field).chain(def.created_timestamp_field.as_ref())
            {
                if field.value.trim().is_empty() {
                    self.error(
                        file,
                        at(field),
                        "timestamp field name is empty".into(),
                        Some("name the column holding each row's event (or created) time".into()),
                    );
                    ok = false;
                }
            }
            if let Some(created) = &def.created_timestamp_field
                && created.value == def.timestamp_field.value
                && !created.value.trim().is_empty()
            {
                self.error(
                    file,
                    at(created),
                    format!(
                        "source `{}`: `created_timestamp_field` is the same column as `timestamp_field` (`{}`)",
                        def.name.value, created.value
                    ),
                    Some("remove `created_timestamp_field`, or name the column holding when each row was written".into()),
                );
                ok = false;
            }
            let mut targets: HashMap<&str, &str> = HashMap::new();
            for (from, to) in &def.field_mapping {
                if let Err((message, hint)) = check_name("mapped column", to) {
                    self.error(
                        file,
                        at(&def.name),
                        format!(
                            "field_mapping of source `{}` maps `{from}` to an {message}",
                            def.name.value
                        ),
                        Some(hint),
                    );
                    ok = false;
                } else if let Some(other) = targets.insert(to, from) {
                    self.error(file, at(&def.name), format!("field_mapping of source `{}` maps both `{other}` and `{from}` to `{to}`", def.name.value), None);
                    ok = false;
                }
            }
            if declared && ok {
                if let Some(place) = self.places.get_mut(&(Kind::Source, def.name.value.clone())) {
                    place.detail.insert("path".into(), at(&def.path));
                }
                self.registry.sources.insert(
                    def.name.value.clone(),
                    Source {
                        name: def.name.value.clone(),
                        path: def.path.value.clone(),
                        timestamp_field: def.timestamp_field.value.clone(),
                        created_timestamp_field: def
                            .created_timestamp_field
                            .as_ref()
                            .map(|f| f.value.clone()),
                        field_mapping: def.field_mapping.clone(),
                        description: def.description.clone(),
                        tags: def.tags.clone(),
                    },
                );
            }
        }
    }

    fn reference(
        &mut self,
        kind: Kind,
        file: &str,
        name: &Loc<String>,
        known: Vec<&str>,
        from: &str,
    ) -> bool {
        if known.contains(&name.value.as_str()) {
            return true;
        }
        if self.places.contains_key(&(kind, name.value.clone())) {
            // Defined, but invalid: that problem is already reported where it is.
            return false;
        }
        let hint = did_you_mean(&name.value, known.iter().copied())
            .or_else(|| {
                (!known.is_empty())
                    .then(|| format!("defined {}: {}", kind.plural(), known.join(", ")))
            })
            .or_else(|| Some(format!("define it under `{}:`", kind.section())));
        self.error(
            file,
            at(name),
            format!(
                "{from} references unknown {} `{}`",
                kind.label(),
                name.value
            ),
            hint,
        );
        false
    }

    fn views(&mut self, file: &str, defs: &DefinitionFile) {
        for def in &defs.feature_views {
            let declared = self.declare(Kind::View, file, &def.name);
            let from = format!("feature view `{}`", def.name.value);
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
                    &from,
                );
            }
            let source_names: Vec<String> = self.registry.sources.keys().cloned().collect();
            ok &= self.reference(
                Kind::Source,
                file,
                &def.source,
                source_names.iter().map(String::as_str).collect(),
                &from,
            );
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
            let ttl = match &def.ttl {
                None => Some(Ttl::default()),
                Some(t) => match t.value.parse::<Ttl>() {
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
                },
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
                continue;
            };
            if !ok {
                continue;
            }
            let entities: Vec<String> =
                def.entities.value.iter().map(|e| e.value.clone()).collect();
            // Join keys and features share the output row: a clash would be ambiguous.
            let mut columns: BTreeMap<String, &str> = BTreeMap::new();
            for e in &entities {
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
                            format!(
                                "{from}: entities `{other}` and `{e}` both have join key `{key}`"
                            ),
                        ));
                        ok = false;
                    }
                }
            }
            // So do the source's timestamps: the view's input is read as one row of them all.
            let source = self.registry.sources[&def.source.value].clone();
            let timestamps: Vec<(&str, &String)> =
                std::iter::once(("timestamp_field", &source.timestamp_field))
                    .chain(
                        source
                            .created_timestamp_field
                            .as_ref()
                            .map(|c| ("created_timestamp_field", c)),
                    )
                    .collect();
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
            if !(ok && declared) {
                continue;
            }
            if let Some(place) = self.places.get_mut(&(Kind::View, def.name.value.clone())) {
                for d in &def.features.value {
                    place.detail.insert(d.name.value.clone(), at(&d.name));
                }
                if let Some(q) = &def.query {
                    place.detail.insert("query".into(), at(q));
                }
            }
            self.registry.feature_views.insert(
                def.name.value.clone(),
                FeatureView {
                    name: def.name.value.clone(),
                    entities,
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

    fn services(&mut self, file: &str, defs: &DefinitionFile) {
        for def in &defs.feature_services {
            let declared = self.declare(Kind::Service, file, &def.name);
            let from = format!("feature service `{}`", def.name.value);
            if def.features.value.is_empty() {
                self.error(
                    file,
                    at(&def.features),
                    format!("{from} lists no features"),
                    Some("list `view:feature` references or whole views".into()),
                );
                continue;
            }
            let mut refs: Vec<FeatureRef> = Vec::new();
            let mut ok = true;
            for r in &def.features.value {
                let view = r.value.split(':').next().unwrap_or_default();
                if !self.registry.feature_views.contains_key(view)
                    && self.places.contains_key(&(Kind::View, view.to_string()))
                {
                    ok = false; // the view is invalid; reported at its definition
                    continue;
                }
                match self.registry.resolve_ref(&r.value) {
                    Ok(resolved) => {
                        for fr in resolved {
                            if refs.contains(&fr) {
                                self.error(
                                    file,
                                    at(r),
                                    format!("{from} lists `{fr}` twice"),
                                    Some("remove the repeated reference".into()),
                                );
                                ok = false;
                            } else {
                                refs.push(fr);
                            }
                        }
                    }
                    Err(message) => {
                        ok = false;
                        let hint = self.ref_hint(&r.value);
                        self.error(file, at(r), format!("{from}: {message}"), hint);
                    }
                }
            }
            if ok && declared {
                self.registry.feature_services.insert(
                    def.name.value.clone(),
                    FeatureService {
                        name: def.name.value.clone(),
                        features: refs,
                        description: def.description.clone(),
                        tags: def.tags.clone(),
                    },
                );
            }
        }
    }

    fn ref_hint(&self, text: &str) -> Option<String> {
        let (view, feature) = text.split_once(':').unwrap_or((text, ""));
        match self.registry.feature_views.get(view) {
            Some(v) => did_you_mean(feature, v.features.iter().map(|f| f.name.as_str())).map(|h| {
                h.replace('`', "")
                    .replace("did you mean ", &format!("did you mean `{view}:"))
                    .replace('?', "`?")
            }),
            None => {
                let views: Vec<&str> = self
                    .registry
                    .feature_views
                    .keys()
                    .map(String::as_str)
                    .collect();
                did_you_mean(view, views.iter().copied()).or_else(|| {
                    Some(if views.is_empty() {
                        "define it under `feature_views:`".to_string()
                    } else {
                        format!("defined feature views: {}", views.join(", "))
                    })
                })
            }
        }
    }

    fn source_schemas(&mut self, resolver: &dyn SchemaResolver) {
        let views: Vec<FeatureView> = self.registry.feature_views.values().cloned().collect();
        let mut cache = HashMap::new();
        for view in views {
            let Some(source) = self.registry.sources.get(&view.source).cloned() else {
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
                        .get("path")
                        .copied()
                        .unwrap_or(source_place.at);
                    let d = Diagnostic::error(&source_place.file, at, format!("source `{}`: {message}", source.name))
                        .with_hint("check the path (relative to the repository root) and that the files are Parquet");
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
                            .get("query")
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
            for problem in check_view_columns(&schema, &source, &input, &keys, &view.features) {
                let at = problem
                    .feature
                    .as_ref()
                    .and_then(|f| view_place.detail.get(f))
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

fn is_key_type(t: ValueType) -> bool {
    use crate::value_type::ScalarType as S;
    matches!(
        t,
        ValueType::Scalar(S::Int32 | S::Int64 | S::String | S::Bytes)
    )
}
