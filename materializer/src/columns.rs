//! One record batch, cast once to the canonical Arrow type of each declared column, so rows can
//! be turned into entity keys, `(event_ts, created_ts)` and value blobs without per-row dispatch
//! on Arrow types.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float32Array, Float64Array, Int32Array,
    Int64Array, ListArray, StringArray, TimestampNanosecondArray,
};
use arrow::compute::{cast, max, min, sum};
use arrow::datatypes::{DataType, Field, Float64Type, TimeUnit};
use arrow::record_batch::RecordBatch;
use quiver_online_store::key_codec::{push_bytes_component, push_str_component};
use quiver_online_store::value_codec::{Scalar, Value, ValueEncoder};
use quiver_registry::store::FeatureStats;
use quiver_registry::{Field as Declared, ScalarType, ValueType};

/// Which columns of the input hold what.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    pub join_keys: Vec<Declared>,
    pub timestamp: String,
    pub created: Option<String>,
    pub features: Vec<Declared>,
}

pub(crate) fn utc_ns() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn canonical(t: ScalarType) -> DataType {
    match t {
        ScalarType::Bool => DataType::Boolean,
        ScalarType::Int32 => DataType::Int32,
        ScalarType::Int64 => DataType::Int64,
        ScalarType::Float32 => DataType::Float32,
        ScalarType::Float64 => DataType::Float64,
        ScalarType::String => DataType::Utf8,
        ScalarType::Bytes => DataType::Binary,
        ScalarType::Timestamp => utc_ns(),
    }
}

pub(crate) fn canonical_type(t: ValueType) -> DataType {
    match t {
        ValueType::Scalar(s) => canonical(s),
        ValueType::List(s) => DataType::List(Arc::new(Field::new("item", canonical(s), true))),
    }
}

/// The Arrow type join key values are compared as: integers as int64, strings, bytes.
pub(crate) fn key_type(k: &Declared) -> Result<DataType, String> {
    match k.value_type {
        ValueType::Scalar(ScalarType::Int32 | ScalarType::Int64) => Ok(DataType::Int64),
        ValueType::Scalar(ScalarType::String) => Ok(DataType::Utf8),
        ValueType::Scalar(ScalarType::Bytes) => Ok(DataType::Binary),
        other => Err(format!(
            "join key `{}` is {other}; join keys are int32, int64, string or bytes",
            k.name
        )),
    }
}

#[derive(Debug)]
enum Column {
    Bool(BooleanArray),
    I32(Int32Array),
    I64(Int64Array),
    F32(Float32Array),
    F64(Float64Array),
    Str(StringArray),
    Bin(BinaryArray),
    Ts(TimestampNanosecondArray),
    List(ListArray, ScalarType),
}

impl Column {
    fn new(array: &ArrayRef, t: ValueType) -> Self {
        match t {
            ValueType::Scalar(s) => Self::scalar(array, s),
            ValueType::List(s) => Column::List(array.as_list::<i32>().clone(), s),
        }
    }

    fn scalar(array: &ArrayRef, s: ScalarType) -> Self {
        match s {
            ScalarType::Bool => Column::Bool(array.as_boolean().clone()),
            ScalarType::Int32 => Column::I32(array.as_primitive().clone()),
            ScalarType::Int64 => Column::I64(array.as_primitive().clone()),
            ScalarType::Float32 => Column::F32(array.as_primitive().clone()),
            ScalarType::Float64 => Column::F64(array.as_primitive().clone()),
            ScalarType::String => Column::Str(array.as_string::<i32>().clone()),
            ScalarType::Bytes => Column::Bin(array.as_binary::<i32>().clone()),
            ScalarType::Timestamp => Column::Ts(array.as_primitive().clone()),
        }
    }

    fn is_null(&self, row: usize) -> bool {
        match self {
            Column::Bool(a) => a.is_null(row),
            Column::I32(a) => a.is_null(row),
            Column::I64(a) => a.is_null(row),
            Column::F32(a) => a.is_null(row),
            Column::F64(a) => a.is_null(row),
            Column::Str(a) => a.is_null(row),
            Column::Bin(a) => a.is_null(row),
            Column::Ts(a) => a.is_null(row),
            Column::List(a, _) => a.is_null(row),
        }
    }

    /// The element at `row` as a borrowed scalar (not for lists).
    fn scalar_at(&self, row: usize) -> Scalar<'_> {
        match self {
            Column::Bool(a) => Scalar::Bool(a.value(row)),
            Column::I32(a) => Scalar::Int(i64::from(a.value(row))),
            Column::I64(a) => Scalar::Int(a.value(row)),
            Column::Ts(a) => Scalar::Int(a.value(row)),
            Column::F32(a) => Scalar::Float(f64::from(a.value(row))),
            Column::F64(a) => Scalar::Float(a.value(row)),
            Column::Str(a) => Scalar::Bytes(a.value(row).as_bytes()),
            Column::Bin(a) => Scalar::Bytes(a.value(row)),
            Column::List(..) => unreachable!("lists do not nest"),
        }
    }

    fn push(&self, enc: &mut ValueEncoder, row: usize) {
        if self.is_null(row) {
            enc.null();
            return;
        }
        match self {
            Column::Bool(a) => enc.bool(a.value(row)),
            Column::I32(a) => enc.i32(a.value(row)),
            Column::I64(a) => enc.i64(a.value(row)),
            Column::F32(a) => enc.f32(a.value(row)),
            Column::F64(a) => enc.f64(a.value(row)),
            Column::Str(a) => enc.bytes(a.value(row).as_bytes()),
            Column::Bin(a) => enc.bytes(a.value(row)),
            Column::Ts(a) => enc.timestamp(a.value(row)),
            Column::List(a, s) => {
                let items = Column::scalar(&a.value(row), *s);
                let len = a.value_length(row) as usize;
                enc.list(
                    *s,
                    (0..len).map(|i| (!items.is_null(i)).then(|| items.scalar_at(i))),
                );
            }
        }
    }

    /// Folds this column into `acc`: null count for every type; min, max and mean (as f64) for
    /// numbers and booleans (a boolean's mean is its share of `true`).
    fn stats(&self, acc: &mut StatsAcc) {
        acc.nulls += self.null_count() as u64;
        let as_f64 = |a: &dyn Array| {
            cast(a, &DataType::Float64)
                .ok()
                .map(|c| c.as_primitive::<Float64Type>().clone())
        };
        let values = match self {
            Column::I32(a) => as_f64(a),
            Column::I64(a) => as_f64(a),
            Column::F32(a) => as_f64(a),
            Column::Bool(a) => as_f64(a),
            Column::F64(a) => Some(a.clone()),
            _ => None,
        };
        if let Some(v) = values {
            acc.numeric = true;
            acc.min = opt_fold(acc.min, min(&v), f64::min);
            acc.max = opt_fold(acc.max, max(&v), f64::max);
            acc.sum += sum(&v).unwrap_or(0.0);
            acc.count += (v.len() - v.null_count()) as u64;
        }
    }

    fn null_count(&self) -> usize {
        match self {
            Column::Bool(a) => a.null_count(),
            Column::I32(a) => a.null_count(),
            Column::I64(a) => a.null_count(),
            Column::F32(a) => a.null_count(),
            Column::F64(a) => a.null_count(),
            Column::Str(a) => a.null_count(),
            Column::Bin(a) => a.null_count(),
            Column::Ts(a) => a.null_count(),
            Column::List(a, _) => a.null_count(),
        }
    }
}

fn opt_fold(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(f(x, y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Running statistics of one feature.
#[derive(Debug, Default, Clone)]
pub struct StatsAcc {
    nulls: u64,
    numeric: bool,
    min: Option<f64>,
    max: Option<f64>,
    sum: f64,
    count: u64,
}

impl StatsAcc {
    /// Statistics computed elsewhere (a cluster's aggregate): `nulls`, and for a numeric
    /// feature its minimum, maximum, sum and count of values.
    pub(crate) fn of(nulls: u64, numeric: Option<(Option<f64>, Option<f64>, f64, u64)>) -> Self {
        match numeric {
            None => StatsAcc {
                nulls,
                ..StatsAcc::default()
            },
            Some((min, max, sum, count)) => StatsAcc {
                nulls,
                numeric: true,
                min,
                max,
                sum,
                count,
            },
        }
    }

    pub fn merge(&mut self, other: &StatsAcc) {
        self.nulls += other.nulls;
        self.numeric |= other.numeric;
        self.min = opt_fold(self.min, other.min, f64::min);
        self.max = opt_fold(self.max, other.max, f64::max);
        self.sum += other.sum;
        self.count += other.count;
    }

    pub fn finish(&self) -> FeatureStats {
        FeatureStats {
            null_count: self.nulls,
            min: self.min,
            max: self.max,
            mean: (self.numeric && self.count > 0).then(|| self.sum / self.count as f64),
        }
    }
}

/// A batch ready for row access.
#[derive(Debug)]
pub struct Rows {
    keys: Vec<Column>,
    event: TimestampNanosecondArray,
    created: Option<TimestampNanosecondArray>,
    features: Vec<Column>,
    len: usize,
}

fn cast_column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<ArrayRef, String> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| format!("column `{name}` is missing from the view's input"))?;
    if column.data_type() == to {
        return Ok(column.clone());
    }
    let out = cast(column, to).map_err(|e| {
        format!(
            "column `{name}` ({}) cannot be read as {to}: {e}",
            column.data_type()
        )
    })?;
    // A cast turns what it cannot represent into null; a value is never lost silently.
    if out.null_count() > column.null_count() {
        let i = (0..out.len())
            .find(|&i| out.is_null(i) && column.is_valid(i))
            .expect("a value turned null");
        let value =
            arrow::util::display::array_value_to_string(column, i).unwrap_or_else(|_| "?".into());
        let hint = if matches!(to, DataType::Timestamp(..)) {
            "; timestamps are kept in nanoseconds, 1677-09-21T00:12:44Z to 2262-04-11T23:47:16Z: \
             turn values outside that (e.g. a 9999-12-31 sentinel) into null in the view's `query`"
        } else {
            ""
        };
        return Err(format!(
            "column `{name}`: the value `{value}` cannot be read as {to}{hint}"
        ));
    }
    Ok(out)
}

impl Rows {
    pub fn new(batch: &RecordBatch, layout: &Layout) -> Result<Self, String> {
        let keys = layout
            .join_keys
            .iter()
            .map(|k| {
                let s = match k.value_type {
                    ValueType::Scalar(ScalarType::Int32 | ScalarType::Int64) => ScalarType::Int64,
                    ValueType::Scalar(s) => s,
                    ValueType::List(_) => {
                        return Err(format!("join key `{}` cannot be a list", k.name));
                    }
                };
                Ok(Column::scalar(
                    &cast_column(batch, &k.name, &canonical(s))?,
                    s,
                ))
            })
            .collect::<Result<_, String>>()?;
        let event = cast_column(batch, &layout.timestamp, &utc_ns())?
            .as_primitive()
            .clone();
        let created = match &layout.created {
            Some(c) => Some(cast_column(batch, c, &utc_ns())?.as_primitive().clone()),
            None => None,
        };
        let features = layout
            .features
            .iter()
            .map(|f| {
                Ok(Column::new(
                    &cast_column(batch, &f.name, &canonical_type(f.value_type))?,
                    f.value_type,
                ))
            })
            .collect::<Result<_, String>>()?;
        Ok(Rows {
            keys,
            event,
            created,
            features,
            len: batch.num_rows(),
        })
    }

    pub fn num_rows(&self) -> usize {
        self.len
    }

    /// Writes the entity key of `row` into `out`; false when a join key is null (no entity).
    pub fn entity_key(&self, row: usize, out: &mut String) -> bool {
        out.clear();
        for (i, k) in self.keys.iter().enumerate() {
            if k.is_null(row) {
                return false;
            }
            if i > 0 {
                out.push(',');
            }
            match k {
                Column::I64(a) => {
                    out.push('i');
                    out.push_str(itoa::Buffer::new().format(a.value(row)));
                }
                Column::Str(a) => push_str_component(out, a.value(row).as_bytes()),
                Column::Bin(a) => push_bytes_component(out, a.value(row)),
                _ => unreachable!("join keys are cast to int64, string or bytes"),
            }
        }
        true
    }

    /// A pushed row's entity key (into `key`) and times; a null join key or event time is
    /// refused with the row's number (pushed rows must each identify an entity at a time).
    pub fn identity(
        &self,
        row: usize,
        key: &mut String,
        view: &str,
        timestamp: &str,
    ) -> Result<(i64, Option<i64>), String> {
        if !self.entity_key(row, key) {
            return Err(format!(
                "row {row}: a join key of feature view `{view}` is null"
            ));
        }
        self.times(row)
            .ok_or_else(|| format!("row {row}: the event time `{timestamp}` is null"))
    }

    /// `(event_ns, created_ns)`; `None` when the event time is null (the row has no time).
    pub fn times(&self, row: usize) -> Option<(i64, Option<i64>)> {
        if self.event.is_null(row) {
            return None;
        }
        let created = self
            .created
            .as_ref()
            .and_then(|c| (!c.is_null(row)).then(|| c.value(row)));
        Some((self.event.value(row), created))
    }

    /// The value blob of `row`, reusing `buf`'s allocation.
    pub fn encode(&self, row: usize, event: i64, created: Option<i64>, buf: Vec<u8>) -> Vec<u8> {
        let mut enc = ValueEncoder::with_buffer(buf, event, created, self.features.len());
        for f in &self.features {
            f.push(&mut enc, row);
        }
        enc.finish()
    }

    /// Feature `index`'s value at `row` (scalars only; `None` for a null).
    pub fn value(&self, index: usize, row: usize) -> Option<Value> {
        let c = &self.features[index];
        if c.is_null(row) {
            return None;
        }
        Some(match c {
            Column::Bool(a) => Value::Bool(a.value(row)),
            Column::I32(a) => Value::Int32(a.value(row)),
            Column::I64(a) => Value::Int64(a.value(row)),
            Column::F32(a) => Value::Float32(a.value(row)),
            Column::F64(a) => Value::Float64(a.value(row)),
            Column::Str(a) => Value::String(a.value(row).to_string()),
            Column::Bin(a) => Value::Bytes(a.value(row).to_vec()),
            Column::Ts(a) => Value::Timestamp(a.value(row)),
            Column::List(..) => unreachable!("aggregates read scalar columns"),
        })
    }

    pub fn stats(&self, accs: &mut [StatsAcc]) {
        for (f, acc) in self.features.iter().zip(accs) {
            f.stats(acc);
        }
    }
}
