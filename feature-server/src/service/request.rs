//! Checking a request's shape before anything proportional to its answer is built: the entity
//! columns (one value per row, checked against each join key's declared type, echoed as the
//! answer shows them) and the output columns' names.

use std::collections::HashSet;

use quiver_materializer::{OutputNames, output_name};
use quiver_online_store::key_codec::KeyValue;
use quiver_online_store::value_codec::Value;
use quiver_registry::{ScalarType, ValueType};

use crate::error::{ErrorCode, Result, ServiceError};
use crate::snapshot::Resolved;

/// One entity key value as a client sent it, before it is checked against the declared type.
#[derive(Debug, Clone, PartialEq)]
pub enum EntityValue {
    Int(i64),
    Str(String),
    Bytes(Vec<u8>),
    Null,
    /// A value that cannot be a key (`1.5`, an object, a double): refused with this message
    /// only if a requested feature needs its column — unused columns are ignored, as by Feast.
    Invalid(String),
}

/// The output columns' names (join keys, then features in request order). A feature asked for
/// twice, or two columns with one name, is refused: neither can be answered as Feast's columns.
pub(super) fn output_names(
    key_names: &[&str],
    wanted: &[Resolved<'_>],
    full_feature_names: bool,
) -> Result<Vec<String>> {
    let mut seen: HashSet<(&str, usize)> = HashSet::with_capacity(wanted.len());
    for (view, fi) in wanted {
        if !seen.insert((view.name.as_str(), *fi)) {
            return Err(ServiceError::new(
                ErrorCode::NameCollision,
                format!(
                    "feature `{}:{}` is requested more than once; list each feature once",
                    view.name, view.features[*fi].name
                ),
            ));
        }
    }
    let mut names: Vec<String> = Vec::with_capacity(key_names.len() + wanted.len());
    names.extend(key_names.iter().map(|k| k.to_string()));
    names.extend(
        wanted.iter().map(|(view, fi)| {
            output_name(&view.name, &view.features[*fi].name, full_feature_names)
        }),
    );
    // The same names and the same rule as a training table's columns.
    let mut unique = OutputNames::default();
    if let Some(name) = names.iter().find(|n| unique.add(n).is_err()) {
        return Err(ServiceError::new(
            ErrorCode::NameCollision,
            format!(
                "two output columns are named `{name}`; set full_feature_names to get `view__feature` names"
            ),
        ));
    }
    Ok(names)
}

pub(super) fn row_count(entities: &[(String, Vec<EntityValue>)]) -> Result<usize> {
    let Some((_, first)) = entities.first() else {
        return Err(ServiceError::invalid(
            "no entity rows: give `entities` with one list of values per join key",
        ));
    };
    for (name, col) in entities {
        if col.len() != first.len() {
            return Err(ServiceError::invalid(format!(
                "entity columns have different lengths: `{}` has {}, `{name}` has {}",
                entities[0].0,
                first.len(),
                col.len()
            )));
        }
    }
    Ok(first.len())
}

/// Checks an entity value against its join key's declared type.
pub(super) fn key_value(name: &str, t: ValueType, v: &EntityValue, row: usize) -> Result<KeyValue> {
    let wrong = |what: &str| {
        ServiceError::invalid(format!(
            "entity key `{name}` row {row}: expected {t}, got {what}"
        ))
    };
    match (t, v) {
        (_, EntityValue::Null) => Err(wrong("null")),
        (_, EntityValue::Invalid(message)) => Err(ServiceError::invalid(message.clone())),
        (ValueType::Scalar(ScalarType::Int32), EntityValue::Int(i)) => i32::try_from(*i)
            .map(|_| KeyValue::Int(*i))
            .map_err(|_| wrong("an integer outside int32")),
        (ValueType::Scalar(ScalarType::Int64), EntityValue::Int(i)) => Ok(KeyValue::Int(*i)),
        // Feast reads a numeric string as the integer it spells.
        (ValueType::Scalar(ScalarType::Int32 | ScalarType::Int64), EntityValue::Str(s)) => {
            match s.trim().parse::<i64>() {
                Ok(i) => key_value(name, t, &EntityValue::Int(i), row),
                Err(_) => Err(wrong(&format!("the string {s:?}, which is not an integer"))),
            }
        }
        (ValueType::Scalar(ScalarType::String), EntityValue::Str(s)) => {
            Ok(KeyValue::Str(s.clone()))
        }
        (ValueType::Scalar(ScalarType::Bytes), EntityValue::Bytes(b)) => {
            Ok(KeyValue::Bytes(b.clone()))
        }
        // JSON has no bytes: like protobuf's JSON mapping, bytes travel as base64.
        (ValueType::Scalar(ScalarType::Bytes), EntityValue::Str(s)) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(KeyValue::Bytes)
                .map_err(|_| wrong("a string that is not base64"))
        }
        (_, EntityValue::Int(_)) => Err(wrong("an integer")),
        (_, EntityValue::Str(_)) => Err(wrong("a string")),
        (_, EntityValue::Bytes(_)) => Err(wrong("bytes")),
    }
}

/// A join key's value as the answer echoes it: integers as int64, a numeric string sent for an
/// integer key as the integer it was read as (Feast's echo of converted keys).
pub(super) fn echo(v: &EntityValue, t: ValueType) -> Option<Value> {
    match v {
        EntityValue::Str(s)
            if matches!(t, ValueType::Scalar(ScalarType::Int32 | ScalarType::Int64)) =>
        {
            s.trim().parse::<i64>().ok().map(Value::Int64)
        }
        EntityValue::Int(i) => Some(Value::Int64(*i)),
        EntityValue::Str(s) => Some(Value::String(s.clone())),
        EntityValue::Bytes(b) => Some(Value::Bytes(b.clone())),
        EntityValue::Null | EntityValue::Invalid(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::ViewPlan;
    use quiver_registry::Field;

    fn view(name: &str, features: &[&str]) -> ViewPlan {
        let field = |n: &str| Field {
            name: n.into(),
            value_type: ValueType::Scalar(ScalarType::Int64),
            description: String::new(),
        };
        ViewPlan {
            name: name.into(),
            generation: 1,
            online: true,
            prefix: String::new(),
            join_keys: vec![field("id")],
            features: features.iter().map(|f| field(f)).collect(),
            types: vec![ValueType::Scalar(ScalarType::Int64); features.len()],
            ttl_ns: 0,
            aggregations: None,
        }
    }

    /// Duplicates and name collisions are refused from the request's shape alone, with a message
    /// that says which; distinct features get join keys first, then features in order.
    #[test]
    fn output_names_refuse_duplicates_and_collisions() {
        let (a, b) = (view("a", &["x", "y", "id"]), view("b", &["x"]));
        let names = |wanted: &[Resolved<'_>], full| {
            output_names(&["id"], wanted, full).map_err(|e| (e.code, e.message))
        };
        assert_eq!(names(&[(&a, 0), (&a, 1)], false).unwrap(), ["id", "x", "y"]);
        assert_eq!(
            names(&[(&a, 0), (&b, 0)], true).unwrap(),
            ["id", "a__x", "b__x"]
        );
        let many: Vec<Resolved<'_>> = vec![(&a, 1); 40_000];
        for full in [false, true] {
            let (code, message) = names(&many, full).unwrap_err();
            assert_eq!(code, crate::error::ErrorCode::NameCollision);
            assert_eq!(code.http_status(), 400);
            assert!(
                message.contains("feature `a:y` is requested more than once"),
                "{message}"
            );
        }
        let (_, message) = names(&[(&a, 0), (&b, 0)], false).unwrap_err();
        assert!(
            message.contains("two output columns are named `x`"),
            "{message}"
        );
        // A feature named like a join key collides with the echoed key column.
        let (_, message) = names(&[(&a, 2)], false).unwrap_err();
        assert!(
            message.contains("two output columns are named `id`"),
            "{message}"
        );
        assert_eq!(names(&[(&a, 2)], true).unwrap(), ["id", "a__id"]);
    }
}
