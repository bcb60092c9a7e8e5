//! A pushed `df` — Feast's columnar JSON, `{column: [value, …]}` — as an Arrow batch of the
//! declared types. Every cell is checked; the first bad one is refused with its column and row,
//! before anything is written.
//!
//! Values as Feast's clients send them: integers (also `1.0` and `"1"`), floats (also numeric
//! strings), booleans (also `"true"`/`"false"`: gRPC's string map), strings, bytes as base64, lists as arrays, `null` for a missing value.
//! Timestamps: RFC 3339 (`2026-11-30T07:00:00Z`, `…+02:00`), naive ISO (`2026-11-30T07:00:00`,
//! `2026-11-30 07:00:00.5`) read as UTC — what Feast's remote client sends —, a date
//! (`2026-11-30`, midnight UTC), `"NaT"` or `null` (none), or a number of seconds since the
//! epoch (a number of 10^11 or more is milliseconds).

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder as _, ArrayRef, BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder,
    Int32Builder, Int64Builder, ListBuilder, StringBuilder, TimestampNanosecondBuilder,
};
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use quiver_registry::{ScalarType, ValueType};
use serde_json::Value as J;

/// Epoch numbers at or above this are milliseconds, below it seconds (10^11 s is the year 5138;
/// 10^11 ms is 1973).
const MILLIS_FROM: f64 = 1e11;

/// A bad cell: what it is and where.
pub type CellError = String;

/// The column `name` of the `df`, its values as `t`.
pub fn column(name: &str, t: ValueType, values: &[J]) -> Result<ArrayRef, CellError> {
    let at = |row: usize, v: &J, what: &str| {
        format!("df column `{name}`, row {row}: {} is not {what}", shown(v))
    };
    match t {
        ValueType::Scalar(s) => scalar_column(s, values, &at),
        ValueType::List(s) => {
            let mut b = ListBuilder::new(ElementBuilder::new(s));
            for (row, v) in values.iter().enumerate() {
                match v {
                    J::Null => b.append(false),
                    J::Array(items) => {
                        for item in items {
                            b.values()
                                .append(item)
                                .map_err(|what| at(row, item, &what))?;
                        }
                        b.append(true);
                    }
                    other => return Err(at(row, other, &format!("a list ({t})"))),
                }
            }
            Ok(Arc::new(b.finish()))
        }
    }
}

fn scalar_column(
    s: ScalarType,
    values: &[J],
    at: &dyn Fn(usize, &J, &str) -> String,
) -> Result<ArrayRef, CellError> {
    let mut b = ElementBuilder::new(s);
    for (row, v) in values.iter().enumerate() {
        b.append(v).map_err(|what| at(row, v, &what))?;
    }
    Ok(b.finish())
}

/// A batch of `columns` (name, type, values), all of `rows` rows.
pub fn batch(columns: Vec<(String, ArrayRef)>) -> Result<RecordBatch, String> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a)| Field::new(name, a.data_type().clone(), true))
        .collect();
    let arrays = columns.into_iter().map(|(_, a)| a).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| e.to_string())
}

/// A short rendering of a cell for messages (long strings cut).
fn shown(v: &J) -> String {
    let text = v.to_string();
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

/// One builder per scalar type, taking JSON cells.
enum ElementBuilder {
    Bool(BooleanBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Str(StringBuilder),
    Bin(BinaryBuilder),
    Ts(TimestampNanosecondBuilder),
}

impl arrow::array::ArrayBuilder for ElementBuilder {
    fn len(&self) -> usize {
        self.inner().len()
    }
    fn finish(&mut self) -> ArrayRef {
        self.inner_mut().finish()
    }
    fn finish_cloned(&self) -> ArrayRef {
        self.inner().finish_cloned()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
    fn into_box_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

impl ElementBuilder {
    fn new(s: ScalarType) -> Self {
        match s {
            ScalarType::Bool => ElementBuilder::Bool(BooleanBuilder::new()),
            ScalarType::Int32 => ElementBuilder::I32(Int32Builder::new()),
            ScalarType::Int64 => ElementBuilder::I64(Int64Builder::new()),
            ScalarType::Float32 => ElementBuilder::F32(Float32Builder::new()),
            ScalarType::Float64 => ElementBuilder::F64(Float64Builder::new()),
            ScalarType::String => ElementBuilder::Str(StringBuilder::new()),
            ScalarType::Bytes => ElementBuilder::Bin(BinaryBuilder::new()),
            ScalarType::Timestamp => {
                ElementBuilder::Ts(TimestampNanosecondBuilder::new().with_timezone("UTC"))
            }
        }
    }

    fn inner(&self) -> &dyn arrow::array::ArrayBuilder {
        match self {
            ElementBuilder::Bool(b) => b,
            ElementBuilder::I32(b) => b,
            ElementBuilder::I64(b) => b,
            ElementBuilder::F32(b) => b,
            ElementBuilder::F64(b) => b,
            ElementBuilder::Str(b) => b,
            ElementBuilder::Bin(b) => b,
            ElementBuilder::Ts(b) => b,
        }
    }

    fn inner_mut(&mut self) -> &mut dyn arrow::array::ArrayBuilder {
        match self {
            ElementBuilder::Bool(b) => b,
            ElementBuilder::I32(b) => b,
            ElementBuilder::I64(b) => b,
            ElementBuilder::F32(b) => b,
            ElementBuilder::F64(b) => b,
            ElementBuilder::Str(b) => b,
            ElementBuilder::Bin(b) => b,
            ElementBuilder::Ts(b) => b,
        }
    }

    /// Appends one cell; on a bad one, what it should have been.
    fn append(&mut self, v: &J) -> Result<(), String> {
        match self {
            ElementBuilder::Bool(b) => match v {
                J::Null => b.append_null(),
                J::Bool(x) => b.append_value(*x),
                J::String(s) if s.eq_ignore_ascii_case("true") => b.append_value(true),
                J::String(s) if s.eq_ignore_ascii_case("false") => b.append_value(false),
                _ => return Err("a bool".into()),
            },
            ElementBuilder::I32(b) => match v {
                J::Null => b.append_null(),
                _ => {
                    let x = int(v).ok_or("an int32")?;
                    b.append_value(i32::try_from(x).map_err(|_| "an int32 (out of range)")?);
                }
            },
            ElementBuilder::I64(b) => match v {
                J::Null => b.append_null(),
                _ => b.append_value(int(v).ok_or("an int64")?),
            },
            ElementBuilder::F32(b) => match v {
                J::Null => b.append_null(),
                _ => {
                    let x = float(v).ok_or("a float32")?;
                    // A finite value too large for 32 bits would be stored as infinity.
                    if x.is_finite() && x.abs() > f64::from(f32::MAX) {
                        return Err("a float32 (out of range)".into());
                    }
                    b.append_value(x as f32)
                }
            },
            ElementBuilder::F64(b) => match v {
                J::Null => b.append_null(),
                _ => b.append_value(float(v).ok_or("a float64")?),
            },
            ElementBuilder::Str(b) => match v {
                J::Null => b.append_null(),
                J::String(s) => b.append_value(s),
                _ => return Err("a string".into()),
            },
            ElementBuilder::Bin(b) => match v {
                J::Null => b.append_null(),
                J::String(s) => b.append_value(
                    base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .map_err(|_| "bytes (base64)")?,
                ),
                _ => return Err("bytes (a base64 string)".into()),
            },
            ElementBuilder::Ts(b) => b.append_option(timestamp_ns(v)?),
        }
        Ok(())
    }
}

/// An integer: a JSON integer, a float without a fraction (`1.0`), or a string of one (`"1"`).
fn int(v: &J) -> Option<i64> {
    match v {
        J::Number(n) => n.as_i64().or_else(|| {
            let f = n.as_f64()?;
            (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
        }),
        J::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A float: a JSON number, or a string of one (`"0.5"`, `"NaN"`).
fn float(v: &J) -> Option<f64> {
    match v {
        J::Number(n) => n.as_f64(),
        J::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A timestamp cell as ns since the epoch (`None`: no time); see the module's rules.
pub fn timestamp_ns(v: &J) -> Result<Option<i64>, String> {
    const WHAT: &str =
        "a timestamp (RFC 3339, e.g. `2026-11-30T07:00:00Z`; naive ISO is UTC; or epoch seconds)";
    let ns = match v {
        J::Null => return Ok(None),
        J::String(s) if s == "NaT" || s.is_empty() => return Ok(None),
        J::String(s) => match parse_time(s.trim()) {
            Some(ns) => ns,
            // Epoch numbers written as text (a CSV column, gRPC's string map).
            None => match s.trim().parse::<serde_json::Number>() {
                Ok(n) => return timestamp_ns(&J::Number(n)),
                Err(_) => return Err(WHAT.into()),
            },
        },
        J::Number(n) => {
            let x = n.as_f64().ok_or(WHAT)?;
            let seconds = if x.abs() >= MILLIS_FROM { x / 1e3 } else { x };
            let ns = seconds * 1e9;
            if !ns.is_finite() || ns.abs() >= i64::MAX as f64 {
                return Err(WHAT.into());
            }
            match n.as_i64() {
                // Integers exactly (a float would round ns of large values).
                Some(i) if x.abs() >= MILLIS_FROM => i.checked_mul(1_000_000).ok_or(WHAT)?,
                Some(i) => i.checked_mul(1_000_000_000).ok_or(WHAT)?,
                None => ns.round() as i64,
            }
        }
        _ => return Err(WHAT.into()),
    };
    Ok(Some(ns))
}

fn parse_time(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return t.timestamp_nanos_opt();
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return t.and_utc().timestamp_nanos_opt();
        }
    }
    // `2026-11-30 07:00:00+02:00` (a space instead of `T`).
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return t.timestamp_nanos_opt();
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt()
}

/// The inverse of [`column`] for files pushed from the command line: an Arrow batch as a
/// `df`, each cell the JSON a client would send (times as RFC 3339 with nanoseconds, bytes as
/// base64, non-finite floats as `"NaN"`/`"inf"`/`"-inf"`).
pub fn from_batch(batch: &RecordBatch) -> Result<Vec<(String, Vec<J>)>, String> {
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, array)| Ok((field.name().clone(), cells(field.name(), array)?)))
        .collect()
}

fn cells(name: &str, array: &ArrayRef) -> Result<Vec<J>, String> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};
    let as_type =
        |t: &DataType| arrow::compute::cast(array, t).map_err(|e| format!("column `{name}`: {e}"));
    let nulls = |out: Vec<J>| -> Vec<J> {
        out.into_iter()
            .enumerate()
            .map(|(i, v)| if array.is_null(i) { J::Null } else { v })
            .collect()
    };
    Ok(match array.data_type() {
        DataType::Null => vec![J::Null; array.len()],
        DataType::Boolean => {
            let a = array.as_boolean();
            nulls((0..a.len()).map(|i| J::Bool(a.value(i))).collect())
        }
        t if t.is_integer() => {
            let a = as_type(&DataType::Int64)?;
            let a = a.as_primitive::<Int64Type>();
            nulls(a.values().iter().map(|x| J::from(*x)).collect())
        }
        t if t.is_floating() => {
            let a = as_type(&DataType::Float64)?;
            let a = a.as_primitive::<Float64Type>();
            nulls(
                a.values()
                    .iter()
                    .map(|x| {
                        serde_json::Number::from_f64(*x)
                            .map_or_else(|| J::String(x.to_string()), J::Number)
                    })
                    .collect(),
            )
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let a = as_type(&DataType::Utf8)?;
            let a = a.as_string::<i32>();
            nulls(
                (0..a.len())
                    .map(|i| J::String(a.value(i).to_string()))
                    .collect(),
            )
        }
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => {
            let a = as_type(&DataType::Binary)?;
            let a = a.as_binary::<i32>();
            nulls(
                (0..a.len())
                    .map(|i| {
                        J::String(base64::engine::general_purpose::STANDARD.encode(a.value(i)))
                    })
                    .collect(),
            )
        }
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
            let a = as_type(&DataType::Timestamp(
                TimeUnit::Nanosecond,
                Some("UTC".into()),
            ))?;
            let a = a.as_primitive::<arrow::datatypes::TimestampNanosecondType>();
            nulls(
                a.values()
                    .iter()
                    .map(|ns| {
                        J::String(
                            DateTime::from_timestamp_nanos(*ns)
                                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                        )
                    })
                    .collect(),
            )
        }
        DataType::List(_) | DataType::LargeList(_) => {
            let a = as_type(&DataType::List(Arc::new(Field::new(
                "item",
                list_item_type(array.data_type()),
                true,
            ))))?;
            let a = a.as_list::<i32>();
            let mut out = Vec::with_capacity(a.len());
            for i in 0..a.len() {
                out.push(if a.is_null(i) {
                    J::Null
                } else {
                    J::Array(cells(name, &a.value(i))?)
                });
            }
            out
        }
        other => {
            return Err(format!(
                "column `{name}` has type {other}, which a push cannot carry"
            ));
        }
    })
}

fn list_item_type(t: &arrow::datatypes::DataType) -> arrow::datatypes::DataType {
    match t {
        arrow::datatypes::DataType::List(f) | arrow::datatypes::DataType::LargeList(f) => {
            f.data_type().clone()
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests;
