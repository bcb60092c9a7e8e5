//! The body of `POST /get-online-features`: Feast's request JSON, read in one pass straight into
//! an [`OnlineRequest`] (entity values typed as they are read; no intermediate tree).
//!
//! Reading never fails on a field of the wrong kind: such a field is parsed through (so a
//! syntax error anywhere in the body is what is reported first) and refused once the whole body
//! has parsed, in a fixed order of checks, with a message naming the field. Like any JSON object
//! read whole, a field given twice counts once, the last; entity columns are taken in name order.
//!
//! The fields are read by a hand-written visitor over typed readers ([`Shape`]), not
//! `#[derive(Deserialize)]`: derived code refuses a field given twice (which Feast, like any
//! JSON reader, takes as the last) and reads an absent field and `null` alike.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value as J};

use crate::error::ServiceError;
use crate::service::{EntityValue, OnlineRequest, Selection};

/// Feast's request JSON: `features` or `feature_service`, columnar `entities`, optional
/// `full_feature_names`, `include_feature_view_version_metadata` and `request_context`.
pub fn parse_request(body: &[u8]) -> Result<OnlineRequest, ServiceError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let fields = Seed(RequestBody)
        .deserialize(&mut de)
        .and_then(|fields| de.end().map(|()| fields))
        .map_err(|e| ServiceError::invalid(format!("request body is not valid JSON: {e}")))?;
    let Some(fields) = fields else {
        return Err(ServiceError::invalid("request body must be a JSON object"));
    };
    fields.check()
}

/// The fields of Feast's `GetOnlineFeaturesRequest` (its server's pydantic model, and the
/// protobuf's `request_context`), as read; `None` where absent.
#[derive(Debug, Default)]
struct Fields {
    /// `None` inside: not a list of strings.
    features: Option<Option<Vec<String>>>,
    /// `None` inside: not a string.
    feature_service: Option<Option<String>>,
    /// `None` inside: not an object.
    entities: Option<Option<EntityColumns>>,
    /// `None` inside: neither a boolean nor null.
    full_feature_names: Option<Option<bool>>,
    include_feature_view_version_metadata: Option<Option<bool>>,
    /// Whether it is an object or null. Request data for on-demand features: there are none
    /// here, so, as Feast does without them, it is ignored.
    request_context: Option<bool>,
}

/// Join key → its values, or `None` where the column is not a list.
type EntityColumns = BTreeMap<String, Option<Vec<EntityValue>>>;

impl Fields {
    /// The request, or the first problem found (in this order: `request_context`, the
    /// selection, `entities`, the flags).
    fn check(self) -> Result<OnlineRequest, ServiceError> {
        if self.request_context == Some(false) {
            return Err(ServiceError::invalid(
                "`request_context` must be an object of name → list of values",
            ));
        }
        let not_refs =
            || ServiceError::invalid("`features` must be a list of \"view:feature\" strings");
        let selection = match (self.features, self.feature_service) {
            (Some(_), Some(_)) => {
                return Err(ServiceError::invalid(
                    "give either `features` or `feature_service`, not both",
                ));
            }
            (Some(refs), None) => Selection::Refs(refs.ok_or_else(not_refs)?),
            (None, Some(Some(name))) => Selection::Service(name),
            (None, Some(None)) => {
                return Err(ServiceError::invalid("`feature_service` must be a string"));
            }
            (None, None) => {
                return Err(ServiceError::invalid(
                    "give `features` (a list of \"view:feature\") or `feature_service`",
                ));
            }
        };
        let Some(Some(columns)) = self.entities else {
            return Err(ServiceError::invalid(
                "`entities` must be an object of join key → list of values",
            ));
        };
        let entities = columns
            .into_iter()
            .map(|(name, values)| match values {
                Some(values) => Ok((name, values)),
                None => Err(ServiceError::invalid(format!(
                    "entities.{name} must be a list of values"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let flag = |name: &str, value: Option<Option<bool>>| match value {
            None => Ok(false),
            Some(Some(b)) => Ok(b),
            Some(None) => Err(ServiceError::invalid(format!(
                "`{name}` must be true or false"
            ))),
        };
        Ok(OnlineRequest {
            selection,
            entities,
            full_feature_names: flag("full_feature_names", self.full_feature_names)?,
            include_view_metadata: flag(
                "include_feature_view_version_metadata",
                self.include_feature_view_version_metadata,
            )?,
        })
    }
}

/// How to read one JSON value, whatever its kind: each kind the reader does not take is parsed
/// through (syntax checked as thoroughly as any value) and answered by [`Shape::other`].
trait Shape: Sized {
    type Value;
    fn other(self) -> Self::Value;
    fn null(self) -> Self::Value {
        self.other()
    }
    fn boolean(self, _: bool) -> Self::Value {
        self.other()
    }
    fn number(self, _: Number) -> Self::Value {
        self.other()
    }
    fn string(self, _: &str) -> Self::Value {
        self.other()
    }
    fn list<'de, A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element_seed(Seed(Skip))?.is_some() {}
        Ok(self.other())
    }
    fn object<'de, A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_key_seed(Seed(Skip))?.is_some() {
            map.next_value_seed(Seed(Skip))?;
        }
        Ok(self.other())
    }
}

/// A [`Shape`] as serde's seed and visitor.
struct Seed<S>(S);

impl<'de, S: Shape> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: Shape> Visitor<'de> for Seed<S> {
    type Value = S::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<S::Value, E> {
        Ok(self.0.null())
    }
    fn visit_bool<E>(self, b: bool) -> Result<S::Value, E> {
        Ok(self.0.boolean(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<S::Value, E> {
        Ok(self.0.number(i.into()))
    }
    fn visit_u64<E>(self, u: u64) -> Result<S::Value, E> {
        Ok(self.0.number(u.into()))
    }
    fn visit_f64<E>(self, f: f64) -> Result<S::Value, E> {
        Ok(match Number::from_f64(f) {
            Some(n) => self.0.number(n),
            None => self.0.other(),
        })
    }
    fn visit_str<E>(self, s: &str) -> Result<S::Value, E> {
        Ok(self.0.string(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<S::Value, A::Error> {
        self.0.list(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<S::Value, A::Error> {
        self.0.object(map)
    }
}

/// Any value, read and dropped.
struct Skip;

impl Shape for Skip {
    type Value = ();
    fn other(self) {}
}

/// The body: its [`Fields`] if it is an object.
struct RequestBody;

impl Shape for RequestBody {
    type Value = Option<Fields>;
    fn other(self) -> Option<Fields> {
        None
    }
    fn object<'de, A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Fields>, A::Error> {
        let mut f = Fields::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "features" => f.features = Some(map.next_value_seed(Seed(Strings))?),
                "feature_service" => f.feature_service = Some(map.next_value_seed(Seed(Text))?),
                "entities" => f.entities = Some(map.next_value_seed(Seed(Entities))?),
                "full_feature_names" => {
                    f.full_feature_names = Some(map.next_value_seed(Seed(Flag))?);
                }
                "include_feature_view_version_metadata" => {
                    f.include_feature_view_version_metadata =
                        Some(map.next_value_seed(Seed(Flag))?);
                }
                "request_context" => f.request_context = Some(map.next_value_seed(Seed(Context))?),
                _ => {
                    // Fields this server does not know are ignored, as Feast's server ignores
                    // them, so a newer Feast client keeps working; logged, as a typo would
                    // otherwise pass unseen.
                    tracing::debug!(field = %key, "unknown request field ignored");
                    map.next_value_seed(Seed(Skip))?;
                }
            }
        }
        Ok(Some(f))
    }
}

/// A string.
struct Text;

impl Shape for Text {
    type Value = Option<String>;
    fn other(self) -> Option<String> {
        None
    }
    fn string(self, s: &str) -> Option<String> {
        Some(s.to_owned())
    }
}

/// A list of strings.
struct Strings;

impl Shape for Strings {
    type Value = Option<Vec<String>>;
    fn other(self) -> Option<Vec<String>> {
        None
    }
    fn list<'de, A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Some(Vec::new());
        while let Some(item) = seq.next_element_seed(Seed(Text))? {
            match (&mut items, item) {
                (Some(items), Some(item)) => items.push(item),
                _ => items = None,
            }
        }
        Ok(items)
    }
}

/// `true`, `false`, or null (false).
struct Flag;

impl Shape for Flag {
    type Value = Option<bool>;
    fn other(self) -> Option<bool> {
        None
    }
    fn null(self) -> Option<bool> {
        Some(false)
    }
    fn boolean(self, b: bool) -> Option<bool> {
        Some(b)
    }
}

/// Whether the value is an object or null.
struct Context;

impl Shape for Context {
    type Value = bool;
    fn other(self) -> bool {
        false
    }
    fn null(self) -> bool {
        true
    }
    fn object<'de, A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        Skip.object(map).map(|()| true)
    }
}

/// `entities`: join key → list of values.
struct Entities;

impl Shape for Entities {
    type Value = Option<EntityColumns>;
    fn other(self) -> Option<EntityColumns> {
        None
    }
    fn object<'de, A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut columns = EntityColumns::new();
        while let Some(name) = map.next_key::<String>()? {
            let values = map.next_value_seed(Seed(EntityList { column: &name }))?;
            columns.insert(name, values);
        }
        Ok(Some(columns))
    }
}

/// The values of entity column `column`.
struct EntityList<'a> {
    column: &'a str,
}

impl Shape for EntityList<'_> {
    type Value = Option<Vec<EntityValue>>;
    fn other(self) -> Self::Value {
        None
    }
    fn list<'de, A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut values = Vec::new();
        while let Some(value) = seq.next_element_seed(Seed(EntityKey {
            column: self.column,
        }))? {
            values.push(value);
        }
        Ok(Some(values))
    }
}

/// One value of entity column `column`. A value that cannot be a key is kept as
/// [`EntityValue::Invalid`], refused only if a requested feature needs its column.
struct EntityKey<'a> {
    column: &'a str,
}

impl EntityKey<'_> {
    fn not_a_key(self, value: &J) -> EntityValue {
        EntityValue::Invalid(format!(
            "entities.{}: {value} cannot be an entity key",
            self.column
        ))
    }
}

impl Shape for EntityKey<'_> {
    type Value = EntityValue;
    /// Unreachable from JSON, whose numbers are all finite: every kind has its own method.
    fn other(self) -> EntityValue {
        EntityValue::Invalid(format!("entities.{}: not an entity key", self.column))
    }
    fn null(self) -> EntityValue {
        EntityValue::Null
    }
    fn string(self, s: &str) -> EntityValue {
        EntityValue::Str(s.to_owned())
    }
    /// Feast's leniency: `true` and `false` are 1 and 0.
    fn boolean(self, b: bool) -> EntityValue {
        EntityValue::Int(i64::from(b))
    }
    /// Feast's leniency: an integral float (`1.0`) is that integer; a fraction is refused
    /// (Feast would truncate it).
    fn number(self, n: Number) -> EntityValue {
        n.as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                    .map(|f| f as i64)
            })
            .map_or_else(
                || {
                    EntityValue::Invalid(format!(
                        "entities.{}: {n} is not an integer key",
                        self.column
                    ))
                },
                EntityValue::Int,
            )
    }
    fn list<'de, A: SeqAccess<'de>>(self, seq: A) -> Result<EntityValue, A::Error> {
        let value =
            serde::Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        Ok(self.not_a_key(&value))
    }
    fn object<'de, A: MapAccess<'de>>(self, map: A) -> Result<EntityValue, A::Error> {
        let value =
            serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(self.not_a_key(&value))
    }
}

#[cfg(test)]
mod tests;
