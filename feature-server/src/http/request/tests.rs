//! The one-pass reader against the reference: the body parsed whole into a `serde_json::Value`
//! and checked field by field (the reader it replaced). Both must agree on every body, request
//! or message.

use proptest::prelude::*;
use serde_json::{Map, Value as J};

use super::*;

/// The fields of Feast's `GetOnlineFeaturesRequest`.
const FIELDS: [&str; 6] = [
    "features",
    "feature_service",
    "entities",
    "full_feature_names",
    "request_context",
    "include_feature_view_version_metadata",
];

fn reference(body: &[u8]) -> Result<OnlineRequest, ServiceError> {
    let doc: J = serde_json::from_slice(body)
        .map_err(|e| ServiceError::invalid(format!("request body is not valid JSON: {e}")))?;
    let J::Object(map) = doc else {
        return Err(ServiceError::invalid("request body must be a JSON object"));
    };
    if map
        .get("request_context")
        .is_some_and(|c| !c.is_object() && !c.is_null())
    {
        return Err(ServiceError::invalid(
            "`request_context` must be an object of name → list of values",
        ));
    }
    let selection = reference_selection(&map)?;
    let Some(J::Object(entities)) = map.get("entities") else {
        return Err(ServiceError::invalid(
            "`entities` must be an object of join key → list of values",
        ));
    };
    let entities = entities
        .iter()
        .map(|(name, values)| {
            let J::Array(values) = values else {
                return Err(ServiceError::invalid(format!(
                    "entities.{name} must be a list of values"
                )));
            };
            Ok((
                name.clone(),
                values.iter().map(|v| reference_key(name, v)).collect(),
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let flag = |name: &str| match map.get(name) {
        None | Some(J::Null) => Ok(false),
        Some(J::Bool(b)) => Ok(*b),
        Some(_) => Err(ServiceError::invalid(format!(
            "`{name}` must be true or false"
        ))),
    };
    Ok(OnlineRequest {
        selection,
        entities,
        full_feature_names: flag("full_feature_names")?,
        include_view_metadata: flag("include_feature_view_version_metadata")?,
    })
}

fn reference_selection(map: &Map<String, J>) -> Result<Selection, ServiceError> {
    let not_refs =
        || ServiceError::invalid("`features` must be a list of \"view:feature\" strings");
    match (map.get("features"), map.get("feature_service")) {
        (Some(_), Some(_)) => Err(ServiceError::invalid(
            "give either `features` or `feature_service`, not both",
        )),
        (Some(J::Array(items)), None) => Ok(Selection::Refs(
            items
                .iter()
                .map(|i| i.as_str().map(str::to_string).ok_or_else(not_refs))
                .collect::<Result<_, _>>()?,
        )),
        (None, Some(J::String(s))) => Ok(Selection::Service(s.clone())),
        (Some(_), None) => Err(not_refs()),
        (None, Some(_)) => Err(ServiceError::invalid("`feature_service` must be a string")),
        (None, None) => Err(ServiceError::invalid(
            "give `features` (a list of \"view:feature\") or `feature_service`",
        )),
    }
}

fn reference_key(name: &str, v: &J) -> EntityValue {
    match v {
        J::Null => EntityValue::Null,
        J::String(s) => EntityValue::Str(s.clone()),
        J::Number(n) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                    .map(|f| f as i64)
            })
            .map_or_else(
                || EntityValue::Invalid(format!("entities.{name}: {n} is not an integer key")),
                EntityValue::Int,
            ),
        J::Bool(b) => EntityValue::Int(i64::from(*b)),
        other => EntityValue::Invalid(format!("entities.{name}: {other} cannot be an entity key")),
    }
}

fn outcome(r: Result<OnlineRequest, ServiceError>) -> Result<OnlineRequest, (String, String)> {
    r.map_err(|e| (format!("{:?}", e.code), e.message))
}

fn agree(body: &[u8]) {
    assert_eq!(
        outcome(parse_request(body)),
        outcome(reference(body)),
        "{}",
        String::from_utf8_lossy(body)
    );
}

#[test]
fn agrees_with_the_reference_on_known_bodies() {
    let bodies = [
        "",
        "{not json",
        "[1]",
        "null",
        "\"x\"",
        "{}",
        "{} x",
        "{}   ",
        r#"{"features": ["v:f"], "entities": {"id": [1, 2.0, "3", true, null, 1.5, [1, {"a": "b"}], {"x": [null]}, -0.0, 1e3, 18446744073709551615, -9223372036854775808, 9.3e18]}}"#,
        r#"{"features": ["v:f"], "features": 3, "entities": {"id": [1]}}"#,
        r#"{"features": 3, "features": ["v:f"], "entities": {"id": [1]}}"#,
        r#"{"features": null, "entities": {"id": [1]}}"#,
        r#"{"features": ["v:f", 1], "entities": {"id": [1]}}"#,
        r#"{"features": ["v:f"], "feature_service": null, "entities": {"id": [1]}}"#,
        r#"{"feature_service": "s", "entities": {"id": [1]}}"#,
        r#"{"feature_service": 1, "entities": {"id": [1]}}"#,
        r#"{"feature_service": "s", "entities": null}"#,
        r#"{"feature_service": "s", "entities": {"b": 1, "a": "x", "c": []}}"#,
        r#"{"feature_service": "s", "entities": {"b": [2], "a": [1], "b": [3]}}"#,
        r#"{"feature_service": "s", "entities": {"b": [2]}, "full_feature_names": 1}"#,
        r#"{"feature_service": "s", "entities": {"b": [2]}, "full_feature_names": null, "include_feature_view_version_metadata": true}"#,
        r#"{"feature_service": "s", "entities": {"b": [2]}, "include_feature_view_version_metadata": "yes", "full_feature_names": []}"#,
        r#"{"feature_service": "s", "entities": 1, "request_context": [1]}"#,
        r#"{"feature_service": "s", "entities": {"b": [2]}, "request_context": {"x": [1e400]}}"#,
        r#"{"feature_service": "s", "entities": {"b": [2]}, "colour": 1e400}"#,
        r#"{"feature_service": "s", "entities": {"b": [2]}, "colour": "\ud800"}"#,
        r#"{"feature_service": "s", "entities": {"b": [2]}, "colour": "\x"}"#,
        r#"{"feature_service": "s", "entities": {"b": ["é\u00e9\n"]}}"#,
        "{\"feature_service\": \"s\", \"entities\": {\"b\": [2]}, \"colour\": \"\t\"}",
        r#"{"feature_service": "s", "entities": {"b": [2]}, "colour": [1,]}"#,
        r#"{"feature_service": "s", "entities": {"b": [2]}, "colour": {"a": 1,}}"#,
        r#"{"feature_service": "s", "entities": {"b": [01]}}"#,
    ];
    for body in bodies {
        agree(body.as_bytes());
    }
    // Invalid UTF-8, in a field the reader skips and in one it keeps.
    agree(b"{\"feature_service\": \"s\", \"entities\": {\"b\": [2]}, \"colour\": \"\xff\"}");
    agree(b"{\"feature_service\": \"s\", \"entities\": {\"b\": [\"\xff\"]}}");
    // Nesting beyond serde_json's recursion limit, at the top and in a skipped field.
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    for n in [126, 127, 128, 129] {
        agree(
            format!(
                r#"{{"feature_service": "s", "entities": {{"b": [2]}}, "colour": {}}}"#,
                deep(n)
            )
            .as_bytes(),
        );
        agree(
            format!(
                r#"{{"feature_service": "s", "entities": {{"b": [{}]}}}}"#,
                deep(n)
            )
            .as_bytes(),
        );
        agree(deep(n).as_bytes());
    }
}

/// Any JSON value, weighted toward the request's own field names.
fn json() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        any::<i64>().prop_map(J::from),
        any::<u64>().prop_map(J::from),
        (-1e20f64..1e20).prop_map(J::from),
        (-5i32..5).prop_map(|i| J::from(f64::from(i))),
        "[a-z:]{0,6}".prop_map(J::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let key = prop_oneof![
            proptest::sample::select(FIELDS.to_vec()).prop_map(str::to_string),
            "[a-z_]{1,4}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(J::Array),
            proptest::collection::vec((key, inner), 0..6)
                .prop_map(|entries| J::Object(entries.into_iter().collect())),
        ]
    })
}

/// An object with some of the request's fields, each any value, written with duplicates.
fn request_text() -> impl Strategy<Value = String> {
    let field = (proptest::sample::select(FIELDS.to_vec()), json());
    proptest::collection::vec(field, 0..8).prop_map(|fields| {
        let parts: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}: {v}", J::from(*k)))
            .collect();
        format!("{{{}}}", parts.join(", "))
    })
}

proptest! {
    #[test]
    fn agrees_with_the_reference_on_any_request(body in request_text()) {
        agree(body.as_bytes());
    }

    #[test]
    fn agrees_with_the_reference_on_damaged_requests(
        body in request_text(),
        cut in any::<proptest::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = body.into_bytes();
        if !bytes.is_empty() {
            let at = cut.index(bytes.len());
            agree(&bytes[..at]);
            bytes[at] = byte;
            agree(&bytes);
        }
    }
}
