//! The answer of `/get-online-features` as Feast's JSON, serialized straight from the core's
//! response (no intermediate tree), and single values as the HTTP API shows them.

use std::collections::HashMap;

use base64::Engine;
use quiver_online_store::value_codec::Value;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value as J;

use super::rfc3339;
use crate::service::OnlineResponse;

/// Feast's response JSON: `metadata.feature_names` and one `results` entry per name, in Feast's
/// key order.
pub fn render(response: &OnlineResponse) -> Vec<u8> {
    serde_json::to_vec(&Rendered::new(response)).expect("responses always serialize")
}

/// The response serialized straight to JSON, without an intermediate tree. Each distinct event
/// time is formatted once per response (the features of one view share their rows' times).
struct Rendered<'a> {
    response: &'a OnlineResponse,
    times: HashMap<i64, String>,
}

impl<'a> Rendered<'a> {
    fn new(response: &'a OnlineResponse) -> Self {
        let mut times = HashMap::new();
        for c in &response.columns {
            for ns in &c.event_ns {
                times.entry(*ns).or_insert_with(|| rfc3339(*ns));
            }
        }
        Rendered { response, times }
    }
}

impl Serialize for Rendered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let results: Vec<RenderedColumn<'_>> = self
            .response
            .columns
            .iter()
            .map(|c| RenderedColumn {
                c,
                times: &self.times,
            })
            .collect();
        let mut map = s.serialize_map(Some(2))?;
        #[derive(serde::Serialize)]
        struct ViewMetadata<'a> {
            name: &'a str,
            version: i32,
        }
        #[derive(serde::Serialize)]
        struct Metadata<'a> {
            feature_names: &'a [String],
            #[serde(skip_serializing_if = "Vec::is_empty")]
            feature_view_metadata: Vec<ViewMetadata<'a>>,
        }
        map.serialize_entry(
            "metadata",
            &Metadata {
                feature_names: &self.response.names,
                feature_view_metadata: self
                    .response
                    .view_metadata
                    .iter()
                    .map(|(name, version)| ViewMetadata {
                        name,
                        version: *version,
                    })
                    .collect(),
            },
        )?;
        map.serialize_entry("results", &results)?;
        map.end()
    }
}

struct RenderedColumn<'a> {
    c: &'a crate::service::Column,
    times: &'a HashMap<i64, String>,
}

impl Serialize for RenderedColumn<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        let values: Vec<JsonValue<'_>> = self
            .c
            .values
            .iter()
            .map(|v| JsonValue(v.as_ref()))
            .collect();
        map.serialize_entry("values", &values)?;
        let statuses: Vec<&str> = self.c.statuses.iter().map(|st| st.name()).collect();
        map.serialize_entry("statuses", &statuses)?;
        let times: Vec<&str> = self
            .c
            .event_ns
            .iter()
            .map(|ns| self.times[ns].as_str())
            .collect();
        map.serialize_entry("event_timestamps", &times)?;
        map.end()
    }
}

/// `value` as the HTTP API shows it (see [`JsonValue`]).
pub fn value_json(value: &Value) -> J {
    serde_json::to_value(JsonValue(Some(value))).expect("values always serialize")
}

/// One value as Feast's JSON shows it: numbers, strings, booleans, lists; bytes as base64,
/// timestamps as Unix seconds (floored; list elements truncated toward zero, as Feast does),
/// non-finite floats as "NaN" / "Infinity" / "-Infinity"; float32 widened to float64. A null
/// list element is `null`.
struct JsonValue<'a>(Option<&'a Value>);

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let float = |f: f64, s: S| {
            if f.is_finite() {
                s.serialize_f64(f)
            } else if f.is_nan() {
                s.serialize_str("NaN")
            } else {
                s.serialize_str(if f > 0.0 { "Infinity" } else { "-Infinity" })
            }
        };
        match self.0 {
            None => s.serialize_none(),
            Some(Value::Bool(b)) => s.serialize_bool(*b),
            Some(Value::Int32(x)) => s.serialize_i32(*x),
            Some(Value::Int64(x)) => s.serialize_i64(*x),
            // The exact float64 widening, as Feast writes it (and as pyarrow/pandas widen the
            // same float32 column offline): `0.1f32` is 0.10000000149011612.
            Some(Value::Float32(x)) => float(f64::from(*x), s),
            Some(Value::Float64(x)) => float(*x, s),
            Some(Value::String(v)) => s.serialize_str(v),
            Some(Value::Bytes(b)) => {
                s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
            }
            Some(Value::Timestamp(ns)) => s.serialize_i64(ns.div_euclid(1_000_000_000)),
            Some(Value::List(items)) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    match i {
                        // Feast truncates list timestamps toward zero (scalars are floored).
                        Some(Value::Timestamp(ns)) => {
                            seq.serialize_element(&(ns / 1_000_000_000))?;
                        }
                        i => seq.serialize_element(&JsonValue(i.as_ref()))?,
                    }
                }
                seq.end()
            }
        }
    }
}
