//! Checking a request's shape before anything proportional to its answer is built: the entity
//! columns (one value per row, checked against each join key's declared type, echoed as the
//! answer shows them) and the output columns' names.

use std::collections::HashSet;

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
    names.extend(wanted.iter().map(|(view, fi)| {
        let feature = &view.features[*fi].name;
        if full_feature_names {
            format!("{}__{feature}", view.name)
        } else {
            feature.clone()
        }
    }));
    let mut unique: HashSet<&str> = HashSet::with_capacity(names.len());
    if let Some(name) = names.iter().find(|n| !unique.insert(n.as_str())) {
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
