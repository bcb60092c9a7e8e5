//! Value types of entity keys and features, and which Arrow column types can feed them.

use std::fmt;
use std::str::FromStr;

use arrow::datatypes::DataType;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The scalar types a feature or join key can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScalarType {
    Bool,
    Int32,
    Int64,
    Float32,
    Float64,
    String,
    Bytes,
    Timestamp,
}

/// A feature's declared type: a scalar or a list of scalars.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ValueType {
    Scalar(ScalarType),
    List(ScalarType),
}

const SCALARS: [(&str, ScalarType); 8] = [
    ("bool", ScalarType::Bool),
    ("int32", ScalarType::Int32),
    ("int64", ScalarType::Int64),
    ("float32", ScalarType::Float32),
    ("float64", ScalarType::Float64),
    ("string", ScalarType::String),
    ("bytes", ScalarType::Bytes),
    ("timestamp", ScalarType::Timestamp),
];

/// Every spelling `ValueType::from_str` accepts, for "did you mean" hints.
pub fn type_names() -> Vec<String> {
    SCALARS
        .iter()
        .flat_map(|(n, _)| [n.to_string(), format!("list<{n}>")])
        .collect()
}

/// Whether `written` is a list of lists (`list<list<…>>`), which no feature can be.
pub fn is_nested_list(written: &str) -> bool {
    let t = written.trim().to_ascii_lowercase();
    t.strip_prefix("list<")
        .is_some_and(|inner| inner.trim_start().starts_with("list<"))
}

impl ScalarType {
    pub fn name(self) -> &'static str {
        SCALARS
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .expect("every scalar type has a name")
    }

    /// Whether a column of Arrow type `dt` can be read as this type without loss.
    pub fn accepts(self, dt: &DataType) -> bool {
        use DataType as D;
        match self {
            ScalarType::Bool => matches!(dt, D::Boolean),
            ScalarType::Int32 => matches!(dt, D::Int8 | D::Int16 | D::Int32 | D::UInt8 | D::UInt16),
            ScalarType::Int64 => matches!(
                dt,
                D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32
            ),
            ScalarType::Float32 => matches!(dt, D::Float16 | D::Float32),
            ScalarType::Float64 => matches!(dt, D::Float16 | D::Float32 | D::Float64),
            ScalarType::String => matches!(dt, D::Utf8 | D::LargeUtf8 | D::Utf8View),
            ScalarType::Bytes => matches!(
                dt,
                D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_)
            ),
            ScalarType::Timestamp => matches!(dt, D::Timestamp(_, _) | D::Date32 | D::Date64),
        }
    }
}

impl ValueType {
    /// Whether a column of Arrow type `dt` can be read as this type without loss.
    pub fn accepts(self, dt: &DataType) -> bool {
        match (self, dt) {
            (ValueType::Scalar(s), dt) => s.accepts(dt),
            (
                ValueType::List(s),
                DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _),
            ) => s.accepts(f.data_type()),
            (ValueType::List(_), _) => false,
        }
    }
}

impl ValueType {
    /// The type a column of Arrow type `dt` would naturally be declared as, if any.
    pub fn from_arrow(dt: &DataType) -> Option<ValueType> {
        let scalar = |dt: &DataType| SCALARS.iter().map(|(_, t)| *t).find(|t| t.accepts(dt));
        match dt {
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                scalar(f.data_type()).map(ValueType::List)
            }
            other => scalar(other).map(ValueType::Scalar),
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueType::Scalar(s) => f.write_str(s.name()),
            ValueType::List(s) => write!(f, "list<{}>", s.name()),
        }
    }
}

impl FromStr for ValueType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        let scalar = |name: &str| SCALARS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
        if is_nested_list(&t) {
            return Err(format!(
                "nested lists are not supported: `{}` is a list of lists",
                s.trim()
            ));
        }
        if let Some(inner) = t.strip_prefix("list<").and_then(|r| r.strip_suffix('>')) {
            return scalar(inner.trim())
                .map(ValueType::List)
                .ok_or_else(|| format!("unknown list element type `{}`", inner.trim()));
        }
        scalar(&t)
            .map(ValueType::Scalar)
            .ok_or_else(|| format!("unknown value type `{s}`"))
    }
}

impl Serialize for ValueType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for ScalarType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ScalarType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match ValueType::deserialize(d)? {
            ValueType::Scalar(s) => Ok(s),
            ValueType::List(_) => Err(serde::de::Error::custom("expected a scalar type")),
        }
    }
}

impl<'de> Deserialize<'de> for ValueType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, TimeUnit};
    use std::sync::Arc;

    #[test]
    fn every_type_name_round_trips() {
        for name in type_names() {
            let t: ValueType = name.parse().unwrap();
            assert_eq!(t.to_string(), name);
        }
        assert_eq!(
            "INT64".parse::<ValueType>(),
            Ok(ValueType::Scalar(ScalarType::Int64))
        );
        assert!("int65".parse::<ValueType>().is_err());
        assert!("list<map>".parse::<ValueType>().is_err());
        let err = "list<list<int32>>".parse::<ValueType>().unwrap_err();
        assert!(err.contains("nested lists are not supported"), "{err}");
    }

    #[test]
    fn arrow_compatibility_widens_but_never_narrows() {
        let i64t = ValueType::Scalar(ScalarType::Int64);
        assert!(i64t.accepts(&DataType::Int32));
        assert!(!i64t.accepts(&DataType::UInt64));
        assert!(!ValueType::Scalar(ScalarType::Int32).accepts(&DataType::Int64));
        assert!(!ValueType::Scalar(ScalarType::Float32).accepts(&DataType::Float64));
        assert!(
            ValueType::Scalar(ScalarType::Timestamp).accepts(&DataType::Timestamp(
                TimeUnit::Nanosecond,
                Some("UTC".into())
            ))
        );
        let list = DataType::List(Arc::new(Field::new("item", DataType::Float32, true)));
        assert!(ValueType::List(ScalarType::Float64).accepts(&list));
        assert!(!ValueType::Scalar(ScalarType::Float64).accepts(&list));
    }
}
