//! What `apply` would change: view generations, and a readable diff between two registries.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use crate::model::{FeatureView, Registry};

/// Gives every view of `next` its generation: an identity derived from everything that decides
/// what the view stores online (see [`generation_id`]). Any change to one of those gives a new
/// generation; the same definition gets the same generation in any registry — reset, moved to
/// another path or migrated to Redis — so an identity never names two meanings, and values and
/// watermarks written under it stay valid exactly as long as the definition does.
pub fn assign_generations(next: &mut Registry) {
    let ids: Vec<(String, u64)> = next
        .feature_views
        .values()
        .map(|v| (v.name.clone(), generation_id(next, v)))
        .collect();
    for (name, id) in ids {
        next.feature_views
            .get_mut(&name)
            .expect("listed above")
            .generation = id;
    }
    // Identities never repeat by construction; this list only mattered for counted ones.
    next.retired_generations.clear();
}

/// A view's generation: 48 bits of the SHA-256 of the canonical JSON of what its stored values
/// depend on — the view's name; its join keys (names and types, in order); its source's path,
/// timestamp fields and field mapping; its query; its features (names and types, in order).
/// Descriptions, tags, owner, ttl and `online` do not change stored bytes and are left out.
/// (48 bits: decimal in keys, exact as a JSON number anywhere; never 0.)
pub fn generation_id(registry: &Registry, view: &FeatureView) -> u64 {
    use sha2::{Digest, Sha256};
    // A view's history comes from its batch source (its own, or its push source's): moving a
    // view onto a push source over the same batch source keeps its generation and its values.
    let source = match (registry.batch_source(view), registry.push_source(view)) {
        (Some(s), _) => {
            let mut identity = serde_json::json!({
                "path": s.path,
                "timestamp_field": s.timestamp_field,
                "created_timestamp_field": s.created_timestamp_field,
                "field_mapping": s.field_mapping,
            });
            // Partition columns are columns a view may read; where the store is (`storage`)
            // and which partitions hold time (`time_partition`) change no value. Only written
            // when declared, so sources without them keep their generations.
            if !s.partition_columns.is_empty() {
                identity["partition_columns"] = serde_json::json!(s.partition_columns);
            }
            Some(identity)
        }
        (None, Some(p)) => Some(serde_json::json!({
            "push_timestamp_field": p.timestamp_field,
            "push_created_timestamp_field": p.created_timestamp_field,
        })),
        (None, None) => None,
    };
    let identity = serde_json::json!({
        "view": view.name,
        "join_keys": key_signature(registry, view),
        "source": source,
        "query": view.query,
        "features": view
            .features
            .iter()
            .map(|f| (f.name.as_str(), f.value_type.to_string()))
            .collect::<Vec<_>>(),
    });
    // Aggregations (functions, windows, hop, input types) decide every stored tile; written
    // only when declared, so plain views keep their generations.
    let mut identity = identity;
    if let Some(a) = &view.aggregations {
        identity["aggregations"] = serde_json::json!(a);
    }
    let digest = Sha256::digest(identity.to_string().as_bytes());
    let mut bytes = [0u8; 8];
    bytes[2..].copy_from_slice(&digest[..6]);
    u64::from_be_bytes(bytes).max(1)
}

fn key_signature(registry: &Registry, view: &FeatureView) -> Vec<(String, String)> {
    registry
        .join_keys(view)
        .into_iter()
        .map(|k| (k.name.clone(), k.value_type.to_string()))
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Add,
    Change,
    Remove,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub action: Action,
    /// `entity`, `source`, `feature_view` or `feature_service`.
    pub kind: &'static str,
    pub name: String,
    /// One line per changed attribute, e.g. `ttl: 2h → 1d`.
    pub details: Vec<String>,
    /// Set when stored online values can no longer be read: the view must be materialized again.
    pub rematerialize: Option<String>,
}

/// The difference between the current registry version and the definitions on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub project: String,
    pub current_version: Option<u64>,
    pub changes: Vec<Change>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Compares two registries whose generations are already assigned.
    pub fn between(prev: Option<(u64, &Registry)>, next: &Registry) -> Plan {
        let empty = Registry::default();
        let (current_version, old) = match prev {
            Some((v, r)) => (Some(v), r),
            None => (None, &empty),
        };
        let mut changes = Vec::new();
        diff_maps("entity", &old.entities, &next.entities, &mut changes);
        diff_maps("source", &old.sources, &next.sources, &mut changes);
        diff_maps(
            "push_source",
            &old.push_sources,
            &next.push_sources,
            &mut changes,
        );
        diff_maps(
            "feature_view",
            &old.feature_views,
            &next.feature_views,
            &mut changes,
        );
        diff_maps(
            "feature_service",
            &old.feature_services,
            &next.feature_services,
            &mut changes,
        );
        // A view whose own definition is unchanged still gets a new generation when its source
        // or an entity's join key changed: it must be listed, or the plan would hide that its
        // stored values are no longer read.
        for (name, b) in &next.feature_views {
            let listed = changes
                .iter()
                .any(|c| c.kind == "feature_view" && &c.name == name);
            if let Some(a) = old.feature_views.get(name)
                && a.generation != b.generation
                && !listed
            {
                changes.push(Change {
                    action: Action::Change,
                    kind: "feature_view",
                    name: name.clone(),
                    details: vec![format!(
                        "reads a changed source (`{}`) or entity join key",
                        b.source
                    )],
                    rematerialize: None,
                });
            }
        }
        let rank = |kind: &str| {
            [
                "entity",
                "source",
                "push_source",
                "feature_view",
                "feature_service",
            ]
            .iter()
            .position(|k| *k == kind)
        };
        changes.sort_by(|x, y| (rank(x.kind), &x.name).cmp(&(rank(y.kind), &y.name)));
        for change in &mut changes {
            if change.kind != "feature_view" || change.action != Action::Change {
                continue;
            }
            let (a, b) = (
                &old.feature_views[&change.name],
                &next.feature_views[&change.name],
            );
            if a.generation != b.generation {
                let refill = if next.batch_source(b).is_some() {
                    "run `quiver materialize` for this view"
                } else {
                    "it is fed only by pushes (no batch source to materialize from): its values are empty until clients push again"
                };
                change.rematerialize = Some(format!(
                    "new generation {} (was {}): stored values no longer match the definition; {refill}",
                    b.generation, a.generation
                ));
            }
        }
        Plan {
            project: next.project.clone(),
            current_version,
            changes,
        }
    }

    /// The human-readable form `quiver plan` prints.
    pub fn render(&self) -> String {
        let next = self.current_version.map_or(1, |v| v + 1);
        self.render_with(&format!("`quiver apply` will write version {next}."))
    }

    /// The same changes, as `quiver apply` reports them once `version` is written.
    pub fn render_applied(&self, version: u64) -> String {
        self.render_with(&format!("Wrote version {version}."))
    }

    fn render_with(&self, outcome: &str) -> String {
        let mut out = String::new();
        match self.current_version {
            Some(v) => out.push_str(&format!(
                "Project `{}`: registry version {v}\n",
                self.project
            )),
            None => out.push_str(&format!(
                "Project `{}`: no registry version yet\n",
                self.project
            )),
        }
        if self.changes.is_empty() {
            out.push_str("\nNo changes. The registry is up to date.\n");
            return out;
        }
        out.push('\n');
        for c in &self.changes {
            let sign = match c.action {
                Action::Add => '+',
                Action::Change => '~',
                Action::Remove => '-',
            };
            out.push_str(&format!("  {sign} {} {}\n", c.kind, c.name));
            for d in &c.details {
                out.push_str(&format!("      {d}\n"));
            }
            if let Some(r) = &c.rematerialize {
                out.push_str(&format!("      ! {r}\n"));
            }
        }
        let count = |a: Action| self.changes.iter().filter(|c| c.action == a).count();
        out.push_str(&format!(
            "\nPlan: {} to add, {} to change, {} to remove. {outcome}\n",
            count(Action::Add),
            count(Action::Change),
            count(Action::Remove)
        ));
        out
    }
}

fn diff_maps<T: Serialize>(
    kind: &'static str,
    old: &std::collections::BTreeMap<String, T>,
    new: &std::collections::BTreeMap<String, T>,
    out: &mut Vec<Change>,
) {
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for name in names {
        let change = |action, details| Change {
            action,
            kind,
            name: name.clone(),
            details,
            rematerialize: None,
        };
        match (old.get(name), new.get(name)) {
            (None, Some(_)) => out.push(change(Action::Add, vec![])),
            (Some(_), None) => out.push(change(Action::Remove, vec![])),
            (Some(a), Some(b)) => {
                let details = diff_values(&to_value(a), &to_value(b));
                if !details.is_empty() {
                    out.push(change(Action::Change, details));
                }
            }
            (None, None) => {}
        }
    }
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("registry objects always serialize")
}

/// Attribute-level differences; lists of named objects (features, join keys) per name.
fn diff_values(a: &Value, b: &Value) -> Vec<String> {
    let (Value::Object(a), Value::Object(b)) = (a, b) else {
        return vec![format!("{} → {}", show(a), show(b))];
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        let (x, y) = (
            a.get(key).unwrap_or(&Value::Null),
            b.get(key).unwrap_or(&Value::Null),
        );
        if x == y || key == "generation" {
            continue;
        }
        match (named_list(x), named_list(y)) {
            (Some(xs), Some(ys)) => {
                let singular = key.trim_end_matches('s');
                for (name, item) in &ys {
                    match xs.iter().find(|(n, _)| n == name) {
                        None => out.push(format!("+ {singular} {name} ({})", describe(item))),
                        Some((_, old)) if old != item => out.push(format!(
                            "~ {singular} {name}: {}",
                            changed_attributes(old, item)
                        )),
                        Some(_) => {}
                    }
                }
                for (name, item) in &xs {
                    if !ys.iter().any(|(n, _)| n == name) {
                        out.push(format!("- {singular} {name} ({})", describe(item)));
                    }
                }
                let order =
                    |l: &[(String, &Value)]| l.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
                let (ox, oy): (Vec<_>, Vec<_>) = (order(&xs), order(&ys));
                let common_x: Vec<_> = ox.iter().filter(|n| oy.contains(n)).collect();
                let common_y: Vec<_> = oy.iter().filter(|n| ox.contains(n)).collect();
                if common_x != common_y {
                    out.push(format!("~ {key} reordered"));
                }
            }
            _ => out.push(format!("{key}: {} → {}", show(x), show(y))),
        }
    }
    out
}

fn named_list(v: &Value) -> Option<Vec<(String, &Value)>> {
    let Value::Array(items) = v else { return None };
    items
        .iter()
        .map(|i| Some((i.get("name")?.as_str()?.to_string(), i)))
        .collect()
}

/// `float32 → float64` for a type change, `description: a → b` for others; `; `-separated.
fn changed_attributes(old: &Value, new: &Value) -> String {
    let (Value::Object(a), Value::Object(b)) = (old, new) else {
        return format!("{} → {}", show(old), show(new));
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (
                a.get(k).unwrap_or(&Value::Null),
                b.get(k).unwrap_or(&Value::Null),
            );
            (x != y).then(|| match k.as_str() {
                "type" => format!("{} → {}", show(x), show(y)),
                _ => format!("{k}: {} → {}", show(x), show(y)),
            })
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn describe(item: &Value) -> String {
    let Value::Object(map) = item else {
        return show(item);
    };
    map.iter()
        .filter(|(k, _)| k.as_str() != "name")
        .map(|(k, v)| {
            if k == "type" {
                show(v)
            } else {
                format!("{k}: {}", show(v))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(show).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => match (m.get("view"), m.get("feature")) {
            (Some(Value::String(v)), Some(Value::String(f))) => format!("{v}:{f}"),
            _ => v.to_string(),
        },
        other => other.to_string(),
    }
}
