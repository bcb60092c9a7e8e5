//! Definition files as written: the YAML shapes, with the source location of every name and
//! reference so that validation can point at them. Nothing here is checked beyond its shape.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::error::Result;
use crate::yaml::parse_yaml;

pub type Loc<T> = Spanned<T>;

/// One definition file. Every section is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefinitionFile {
    #[serde(default)]
    pub entities: Vec<EntityDef>,
    #[serde(default)]
    pub sources: Vec<SourceDef>,
    #[serde(default)]
    pub push_sources: Vec<PushSourceDef>,
    #[serde(default)]
    pub feature_views: Vec<FeatureViewDef>,
    #[serde(default)]
    pub feature_services: Vec<FeatureServiceDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityDef {
    pub name: Loc<String>,
    pub join_keys: Loc<Vec<FieldDef>>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A typed column: an entity join key or a feature.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    pub name: Loc<String>,
    #[serde(rename = "type")]
    pub value_type: Loc<String>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceDef {
    pub name: Loc<String>,
    /// A Parquet file, a directory of them, or a glob; relative to the repository root.
    pub path: Loc<String>,
    pub timestamp_field: Loc<String>,
    #[serde(default)]
    pub created_timestamp_field: Option<Loc<String>>,
    /// Source column → name used by views.
    #[serde(default)]
    pub field_mapping: BTreeMap<String, String>,
    /// Object-store options (`endpoint`, `region`, credentials as `${VAR}`).
    #[serde(default)]
    pub storage: Option<Loc<BTreeMap<String, String>>>,
    /// Hive partition columns, outermost first: `[{name: date, type: string}, …]`.
    #[serde(default)]
    pub partition_columns: Vec<FieldDef>,
    #[serde(default)]
    pub time_partition: Option<Loc<TimePartitionDef>>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// `time_partition: {column: date, format: "%Y-%m-%d", hour_column: hour, lateness: 2h}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimePartitionDef {
    pub column: String,
    pub format: String,
    #[serde(default)]
    pub hour_column: Option<String>,
    #[serde(default)]
    pub lateness: Option<String>,
}

/// Rows written to Quiver as events happen (`POST /push`, `quiver push`) instead of read from
/// files: their columns, and optionally the batch source that holds their history.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushSourceDef {
    pub name: Loc<String>,
    /// Column → type (`int64`, `timestamp`, `list<string>`, …): join keys, the event time,
    /// the created time if any, and features.
    pub schema: Loc<BTreeMap<String, Loc<String>>>,
    /// The batch source offline pushes append to, and that views read for history.
    #[serde(default)]
    pub batch_source: Option<Loc<String>>,
    /// Defaults to the batch source's, else `event_timestamp`.
    #[serde(default)]
    pub timestamp_field: Option<Loc<String>>,
    /// Defaults to the batch source's, if it has one.
    #[serde(default)]
    pub created_timestamp_field: Option<Loc<String>>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureViewDef {
    pub name: Loc<String>,
    pub entities: Loc<Vec<Loc<String>>>,
    pub source: Loc<String>,
    /// SQL over the source (available as the table `source`), evaluated by DataFusion.
    #[serde(default)]
    pub query: Option<Loc<String>>,
    /// Plain features; a view of aggregations declares `aggregations` instead.
    #[serde(default)]
    pub features: Option<Loc<Vec<FieldDef>>>,
    /// Tile width of the aggregations (default 5m).
    #[serde(default)]
    pub hop: Option<Loc<String>>,
    #[serde(default)]
    pub aggregations: Option<Loc<Vec<AggregationDef>>>,
    #[serde(default)]
    pub ttl: Option<Loc<String>>,
    #[serde(default = "yes")]
    pub online: bool,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// One windowed aggregate: `{name, function, column, window}`; `type` is the input column's,
/// needed only where it cannot be read (a source on object storage behind a query, say).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregationDef {
    pub name: Loc<String>,
    pub function: Loc<String>,
    #[serde(default)]
    pub column: Option<Loc<String>>,
    pub window: Loc<String>,
    #[serde(default, rename = "type")]
    pub value_type: Option<Loc<String>>,
    #[serde(default)]
    pub description: String,
}

impl FeatureViewDef {
    /// Its plain features as written (none for a view of aggregations).
    pub fn feature_defs(&self) -> &[FieldDef] {
        self.features
            .as_ref()
            .map(|f| f.value.as_slice())
            .unwrap_or_default()
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureServiceDef {
    pub name: Loc<String>,
    /// `view:feature` or a whole `view`.
    pub features: Loc<Vec<Loc<String>>>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl DefinitionFile {
    /// Parses one definition file; `file` names it in messages.
    pub fn parse(file: &str, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        if is_blank(text) {
            return Ok(DefinitionFile::default());
        }
        let mut parsed: DefinitionFile = parse_yaml(file, text, env)?;
        // Object-store options keep their `${VAR}` references as written: they are read where
        // the store is opened, so the registry never holds a secret.
        if parsed.sources.iter().any(|s| s.storage.is_some()) {
            let raw: DefinitionFile = crate::yaml::parse_yaml_raw(file, text)?;
            for (source, raw) in parsed.sources.iter_mut().zip(raw.sources) {
                if let (Some(storage), Some(raw)) = (&mut source.storage, raw.storage) {
                    storage.value = raw.value;
                }
            }
        }
        Ok(parsed)
    }
}

/// A file with nothing but comments and whitespace declares nothing.
fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    })
}
