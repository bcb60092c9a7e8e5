//! Written definitions → the checked [`Registry`]. Every problem is collected, with file, line,
//! column and a hint, before anything is reported: users fix all of them in one pass.
//!
//! One file per kind (entities here, then `sources`, `views`, `services`); `schemas`
//! checks each valid view's columns against its input last.

pub use source_storage::{SCHEMES, check_time_format, is_secret_key, redact, url_problem};
use std::collections::HashMap;

use crate::config::check_name;
use crate::definitions::{DefinitionFile, FieldDef, Loc};
use crate::error::{Diagnostic, Error, Result, Severity, Span};
use crate::hint::did_you_mean;
use crate::model::{Entity, Field, Registry};
use crate::source_schema::SchemaResolver;
use crate::value_type::{ValueType, is_nested_list, type_names};

mod aggregations;
mod push;
mod schemas;
mod services;
mod source_storage;
mod sources;
mod views;

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
        v.push_sources(file, defs);
    }
    for (file, defs) in files {
        v.views(file, defs);
    }
    for (file, defs) in files {
        v.services(file, defs);
    }
    v.source_schemas(resolver);
    v.push_source_schemas(resolver);
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
    PushSource,
    View,
    Service,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Entity => "entity",
            Kind::Source => "source",
            Kind::PushSource => "push source",
            Kind::View => "feature view",
            Kind::Service => "feature service",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::Entity => "entities",
            Kind::Source => "sources",
            Kind::PushSource => "push sources",
            Kind::View => "feature views",
            Kind::Service => "feature services",
        }
    }

    /// The key of a definition file that lists them.
    fn section(self) -> &'static str {
        match self {
            Kind::Entity => "entities",
            Kind::Source => "sources",
            Kind::PushSource => "push_sources",
            Kind::View => "feature_views",
            Kind::Service => "feature_services",
        }
    }
}

/// Everything a definition file names. They share one namespace: `quiver registry describe NAME`
/// and `--features NAME` look a name up among all of them.
const KINDS: [Kind; 5] = [
    Kind::Entity,
    Kind::Source,
    Kind::PushSource,
    Kind::View,
    Kind::Service,
];

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
    /// Where parts of the definition are written, for messages about them.
    detail: HashMap<Detail, Span>,
}

/// A part of a definition whose place is kept. Features are named by the user, so they have a
/// variant of their own: a feature called `query` is not the view's query.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Detail {
    /// A source's `path`.
    Path,
    /// A view's `query`.
    Query,
    /// A view's feature, by name.
    Feature(String),
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
                    "entities, sources, push sources, feature views and feature services share one namespace (`quiver registry describe NAME`, `--features NAME`): rename one of the two".into(),
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
}

fn is_key_type(t: ValueType) -> bool {
    use crate::value_type::ScalarType as S;
    matches!(
        t,
        ValueType::Scalar(S::Int32 | S::Int64 | S::String | S::Bytes)
    )
}
