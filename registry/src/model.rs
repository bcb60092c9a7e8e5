//! The checked registry: what `apply` stores and what every other crate reads.
//!
//! Field order and `BTreeMap`s make the JSON form canonical, so its hash identifies the content.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aggregation::Aggregations;
use crate::duration::Ttl;
use crate::value_type::ValueType;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    pub project: String,
    pub entities: BTreeMap<String, Entity>,
    pub sources: BTreeMap<String, Source>,
    /// Empty in registries without push sources, and then left out of the JSON (so their
    /// content hash is what it was before push sources existed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub push_sources: BTreeMap<String, PushSource>,
    pub feature_views: BTreeMap<String, FeatureView>,
    pub feature_services: BTreeMap<String, FeatureService>,
    /// Versions written when generations were counted (1, 2, …) kept here the last generation of
    /// every removed view. Generations are now derived from definitions and never repeat, so
    /// new versions leave this empty; it is read only so that old versions still load.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub retired_generations: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub value_type: ValueType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub name: String,
    pub join_keys: Vec<Field>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub name: String,
    /// As written: a path relative to the repository root (file, directory or glob) or a URL.
    pub path: String,
    pub timestamp_field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_timestamp_field: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub field_mapping: BTreeMap<String, String>,
    /// Object-store options for a URL path (`endpoint`, `region`, credentials…), as written:
    /// `${VAR}` references are kept and read from the environment of the process that opens
    /// the store, so no secret is ever kept in the registry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage: BTreeMap<String, String>,
    /// Hive partition columns (`date=2026-11-30/hour=07/…`), outermost first: read from the
    /// directory names as columns of the declared types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_columns: Vec<PartitionColumn>,
    /// Which partition columns hold time, so a time range reads only the partitions that can
    /// hold its rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_partition: Option<TimePartition>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// A Hive partition column: the `name=value` directory level above the files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionColumn {
    pub name: String,
    /// `string`, `int32` or `int64`.
    #[serde(rename = "type")]
    pub value_type: ValueType,
}

/// The partition columns that hold each row's event time (UTC): `column` formatted with
/// `format` (`%Y`, `%m`, `%d` and optionally `%H`, most significant first), optionally an
/// integer `hour_column` below it. Every row lies in the partition of its event time, or in a
/// later one at most `lateness_ms` after it (rows written to the partition of their arrival).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimePartition {
    pub column: String,
    pub format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour_column: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lateness_ms: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// Rows pushed as events happen. A view whose `source` is a push source is written by pushes
/// and, when the push source has a `batch_source`, materialized and retrieved from that.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushSource {
    pub name: String,
    /// Every column a push may carry, by name.
    pub schema: BTreeMap<String, ValueType>,
    pub timestamp_field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_timestamp_field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_source: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureView {
    pub name: String,
    pub entities: Vec<String>,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub features: Vec<Field>,
    pub ttl: Ttl,
    pub online: bool,
    /// Windowed aggregates over the source's events, when the view declares them: its
    /// `features` are then their outputs, in order (see [`crate::aggregation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregations: Option<Aggregations>,
    /// The identity of what this view stores online, derived from everything that decides it
    /// (`plan::generation_id`): online keys and watermarks belong to it, and any change to the
    /// view's keys, source, query or features gives a new one.
    pub generation: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureService {
    pub name: String,
    /// Expanded: a whole-view reference is stored as each of its features.
    pub features: Vec<FeatureRef>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// `view:feature`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FeatureRef {
    pub view: String,
    pub feature: String,
}

impl std::fmt::Display for FeatureRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.view, self.feature)
    }
}

impl Registry {
    /// The join keys of a view, in the order of its entities: the online key and the
    /// point-in-time join both use this order.
    pub fn join_keys(&self, view: &FeatureView) -> Vec<&Field> {
        view.entities
            .iter()
            .filter_map(|e| self.entities.get(e))
            .flat_map(|e| e.join_keys.iter())
            .collect()
    }

    /// The batch source a view reads its history from: its `source`, or the `batch_source` of
    /// the push source it names. `None` for a view fed only by pushes.
    pub fn batch_source(&self, view: &FeatureView) -> Option<&Source> {
        match self.sources.get(&view.source) {
            Some(source) => Some(source),
            None => self
                .push_sources
                .get(&view.source)?
                .batch_source
                .as_ref()
                .and_then(|b| self.sources.get(b)),
        }
    }

    /// [`Registry::batch_source`], or what to tell a user who asked for a view's history.
    pub fn history_source(&self, view: &FeatureView) -> Result<&Source, String> {
        if let Some(source) = self.batch_source(view) {
            return Ok(source);
        }
        Err(match self.push_sources.get(&view.source) {
            Some(push) => format!(
                "feature view `{}` is fed only by pushes (push source `{}` has no `batch_source`): it has no history to materialize, retrieve or verify",
                view.name, push.name
            ),
            None => format!(
                "feature view `{}` reads unknown source `{}`",
                view.name, view.source
            ),
        })
    }

    /// The push source feeding a view, if its `source` is one.
    pub fn push_source(&self, view: &FeatureView) -> Option<&PushSource> {
        self.push_sources.get(&view.source)
    }

    /// The views a push source feeds, by name.
    pub fn views_fed_by(&self, push: &str) -> impl Iterator<Item = &FeatureView> {
        let push = push.to_string();
        self.feature_views
            .values()
            .filter(move |v| v.source == push)
    }

    /// Resolves `view:feature` or `view` against this registry.
    pub fn resolve_ref(&self, text: &str) -> Result<Vec<FeatureRef>, String> {
        let (view_name, feature) = match text.split_once(':') {
            Some((v, f)) => (v, Some(f)),
            None => (text, None),
        };
        let view = self
            .feature_views
            .get(view_name)
            .ok_or_else(|| format!("unknown feature view `{view_name}`"))?;
        match feature {
            None => Ok(view
                .features
                .iter()
                .map(|f| FeatureRef {
                    view: view.name.clone(),
                    feature: f.name.clone(),
                })
                .collect()),
            Some(f) if view.features.iter().any(|x| x.name == f) => Ok(vec![FeatureRef {
                view: view.name.clone(),
                feature: f.to_string(),
            }]),
            Some(f) => Err(format!("feature view `{view_name}` has no feature `{f}`")),
        }
    }

    /// Canonical JSON: the bytes the content hash is computed over.
    pub fn canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the registry model always serializes")
    }

    /// SHA-256 of the canonical JSON, hex encoded.
    pub fn content_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(self.canonical_json()))
    }
}
