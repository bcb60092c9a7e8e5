//! `GetOnlineFeaturesResponse` written straight from the core's [`OnlineResponse`] to protobuf
//! bytes, without building prost messages first.
//!
//! The prost path ([`crate::grpc::convert_response`] then `Message::encode`) allocates a message
//! per cell (value, timestamp) and recomputes nested lengths at every level; for a single-row
//! vector that was a quarter of the server's work per gRPC call. This writer computes each
//! length once and copies strings from the response as they are. The bytes are exactly prost's
//! (same field order, packed repeated scalars, oneof values written even when zero, proto3
//! scalars omitted when zero) — a property test holds it to that, so any client decodes the same
//! message from either path.

use quiver_online_store::value_codec::Value;
use quiver_registry::{ScalarType, ValueType};

use crate::service::{Column, OnlineResponse, Status};

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// A response for the gRPC wire: tonic hands it to [`WireEncoder`](crate::grpc::WireEncoder).
#[derive(Debug)]
pub struct WireResponse(pub OnlineResponse);

/// The encoded size of `response`, in bytes.
pub fn encoded_len(response: &OnlineResponse) -> usize {
    let mut len = delimited_len(1, metadata_len(response));
    for c in &response.columns {
        len += delimited_len(2, vector_len(c));
    }
    len + 2 // status = true
}

/// Appends `response` to `buf`. A `Vec` and plain pushes: through `bytes::BufMut`, every byte
/// was a `memcpy` call.
pub fn encode(response: &OnlineResponse, buf: &mut Vec<u8>) {
    // metadata { feature_names { val: names } }
    put_key(buf, 1, LEN);
    put_varint(buf, metadata_len(response) as u64);
    put_key(buf, 1, LEN);
    put_varint(buf, names_len(response) as u64);
    for name in &response.names {
        put_bytes(buf, 1, name.as_bytes());
    }
    for c in &response.columns {
        put_key(buf, 2, LEN);
        put_varint(buf, vector_len(c) as u64);
        encode_vector(c, buf);
    }
    put_key(buf, 3, VARINT);
    buf.push(1);
}

fn names_len(r: &OnlineResponse) -> usize {
    r.names.iter().map(|n| delimited_len(1, n.len())).sum()
}

fn metadata_len(r: &OnlineResponse) -> usize {
    delimited_len(1, names_len(r))
}

/// `FeatureVector { values = 1, statuses = 2 (packed), event_timestamps = 3 }`.
fn vector_len(c: &Column) -> usize {
    let values: usize = c
        .values
        .iter()
        .map(|v| delimited_len(1, value_len(v.as_ref(), c.value_type)))
        .sum();
    let statuses = if c.statuses.is_empty() {
        0
    } else {
        // Each status is one byte (1..=4).
        delimited_len(2, c.statuses.len())
    };
    let times: usize = c
        .event_ns
        .iter()
        .map(|ns| delimited_len(3, timestamp_len(*ns)))
        .sum();
    values + statuses + times
}

fn encode_vector(c: &Column, buf: &mut Vec<u8>) {
    for v in &c.values {
        put_key(buf, 1, LEN);
        put_varint(buf, value_len(v.as_ref(), c.value_type) as u64);
        encode_value(v.as_ref(), c.value_type, buf);
    }
    if !c.statuses.is_empty() {
        put_key(buf, 2, LEN);
        put_varint(buf, c.statuses.len() as u64);
        for s in &c.statuses {
            buf.push(status_number(*s));
        }
    }
    for ns in &c.event_ns {
        put_key(buf, 3, LEN);
        put_varint(buf, timestamp_len(*ns) as u64);
        let (seconds, nanos) = split_ns(*ns);
        if seconds != 0 {
            put_key(buf, 1, VARINT);
            put_varint(buf, seconds as u64);
        }
        if nanos != 0 {
            put_key(buf, 2, VARINT);
            put_varint(buf, i64::from(nanos) as u64);
        }
    }
}

/// Feast's `FieldStatus` numbers.
fn status_number(s: Status) -> u8 {
    match s {
        Status::Present => 1,
        Status::NullValue => 2,
        Status::NotFound => 3,
        Status::OutsideMaxAge => 4,
    }
}

/// `google.protobuf.Timestamp` parts (nanos always in 0..1e9).
fn split_ns(ns: i64) -> (i64, i32) {
    (
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as i32,
    )
}

fn timestamp_len(ns: i64) -> usize {
    let (seconds, nanos) = split_ns(ns);
    let mut len = 0;
    if seconds != 0 {
        len += 1 + varint_len(seconds as u64);
    }
    if nanos != 0 {
        len += 1 + varint_len(i64::from(nanos) as u64);
    }
    len
}

/// `feast.types.Value` field numbers of the `val` oneof.
mod field {
    pub const BYTES: u32 = 1;
    pub const STRING: u32 = 2;
    pub const INT32: u32 = 3;
    pub const INT64: u32 = 4;
    pub const DOUBLE: u32 = 5;
    pub const FLOAT: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const UNIX_TIMESTAMP: u32 = 8;
    pub const BYTES_LIST: u32 = 11;
    pub const STRING_LIST: u32 = 12;
    pub const INT32_LIST: u32 = 13;
    pub const INT64_LIST: u32 = 14;
    pub const DOUBLE_LIST: u32 = 15;
    pub const FLOAT_LIST: u32 = 16;
    pub const BOOL_LIST: u32 = 17;
    pub const UNIX_TIMESTAMP_LIST: u32 = 18;
    pub const NULL: u32 = 19;
}

fn seconds(ns: i64) -> i64 {
    ns.div_euclid(1_000_000_000)
}

/// The body of a `Value` message; an absent value is the empty message.
fn value_len(v: Option<&Value>, t: ValueType) -> usize {
    let Some(v) = v else { return 0 };
    match v {
        Value::Bool(_) => 2,
        Value::Int32(x) => 1 + varint_len(i64::from(*x) as u64),
        Value::Int64(x) => 1 + varint_len(*x as u64),
        Value::Float32(_) => 1 + 4,
        Value::Float64(_) => 1 + 8,
        Value::String(s) => delimited_len(field::STRING, s.len()),
        Value::Bytes(b) => delimited_len(field::BYTES, b.len()),
        Value::Timestamp(ns) => 1 + varint_len(seconds(*ns) as u64),
        Value::List(items) => match t {
            ValueType::List(element) => {
                delimited_len(list_field(element), list_body_len(element, items))
            }
            // A list where a scalar is declared cannot be shown: null_val.
            ValueType::Scalar(_) => key_len(field::NULL) + 1,
        },
    }
}

fn encode_value(v: Option<&Value>, t: ValueType, buf: &mut Vec<u8>) {
    let Some(v) = v else { return };
    match v {
        Value::Bool(b) => {
            put_key(buf, field::BOOL, VARINT);
            buf.push(u8::from(*b));
        }
        Value::Int32(x) => {
            put_key(buf, field::INT32, VARINT);
            put_varint(buf, i64::from(*x) as u64);
        }
        Value::Int64(x) => {
            put_key(buf, field::INT64, VARINT);
            put_varint(buf, *x as u64);
        }
        Value::Float32(x) => {
            put_key(buf, field::FLOAT, FIXED32);
            buf.extend_from_slice(&x.to_le_bytes());
        }
        Value::Float64(x) => {
            put_key(buf, field::DOUBLE, FIXED64);
            buf.extend_from_slice(&x.to_le_bytes());
        }
        Value::String(s) => put_bytes(buf, field::STRING, s.as_bytes()),
        Value::Bytes(b) => put_bytes(buf, field::BYTES, b),
        Value::Timestamp(ns) => {
            put_key(buf, field::UNIX_TIMESTAMP, VARINT);
            put_varint(buf, seconds(*ns) as u64);
        }
        Value::List(items) => match t {
            ValueType::List(element) => {
                put_key(buf, list_field(element), LEN);
                put_varint(buf, list_body_len(element, items) as u64);
                encode_list_body(element, items, buf);
            }
            ValueType::Scalar(_) => {
                put_key(buf, field::NULL, VARINT);
                buf.push(0);
            }
        },
    }
}

fn list_field(element: ScalarType) -> u32 {
    match element {
        ScalarType::Bool => field::BOOL_LIST,
        ScalarType::Int32 => field::INT32_LIST,
        ScalarType::Int64 => field::INT64_LIST,
        ScalarType::Float32 => field::FLOAT_LIST,
        ScalarType::Float64 => field::DOUBLE_LIST,
        ScalarType::String => field::STRING_LIST,
        ScalarType::Bytes => field::BYTES_LIST,
        ScalarType::Timestamp => field::UNIX_TIMESTAMP_LIST,
    }
}

/// The list's elements that Feast's typed list can hold: nulls (and any element of another
/// type) are dropped, as the prost path does.
fn elements(element: ScalarType, items: &[Option<Value>]) -> impl Iterator<Item = &Value> {
    items.iter().flatten().filter(move |v| {
        matches!(
            (element, v),
            (ScalarType::Bool, Value::Bool(_))
                | (ScalarType::Int32, Value::Int32(_))
                | (ScalarType::Int64, Value::Int64(_))
                | (ScalarType::Float32, Value::Float32(_))
                | (ScalarType::Float64, Value::Float64(_))
                | (ScalarType::String, Value::String(_))
                | (ScalarType::Bytes, Value::Bytes(_))
                | (ScalarType::Timestamp, Value::Timestamp(_))
        )
    })
}

/// A scalar element's packed bytes; `None` for strings and bytes (not packable).
fn packed_len(v: &Value) -> Option<usize> {
    Some(match v {
        Value::Bool(_) => 1,
        Value::Int32(x) => varint_len(i64::from(*x) as u64),
        Value::Int64(x) => varint_len(*x as u64),
        Value::Float32(_) => 4,
        Value::Float64(_) => 8,
        Value::Timestamp(ns) => varint_len(seconds(*ns) as u64),
        Value::String(_) | Value::Bytes(_) | Value::List(_) => return None,
    })
}

/// The body of a `*List { repeated val = 1 }` message.
fn list_body_len(element: ScalarType, items: &[Option<Value>]) -> usize {
    match element {
        ScalarType::String | ScalarType::Bytes => elements(element, items)
            .map(|v| match v {
                Value::String(s) => delimited_len(1, s.len()),
                Value::Bytes(b) => delimited_len(1, b.len()),
                _ => unreachable!("filtered by type"),
            })
            .sum(),
        _ => {
            let packed: usize = elements(element, items).filter_map(packed_len).sum();
            if packed == 0 {
                0
            } else {
                delimited_len(1, packed)
            }
        }
    }
}

fn encode_list_body(element: ScalarType, items: &[Option<Value>], buf: &mut Vec<u8>) {
    if matches!(element, ScalarType::String | ScalarType::Bytes) {
        for v in elements(element, items) {
            match v {
                Value::String(s) => put_bytes(buf, 1, s.as_bytes()),
                Value::Bytes(b) => put_bytes(buf, 1, b),
                _ => unreachable!("filtered by type"),
            }
        }
        return;
    }
    let packed: usize = elements(element, items).filter_map(packed_len).sum();
    if packed == 0 {
        return;
    }
    put_key(buf, 1, LEN);
    put_varint(buf, packed as u64);
    for v in elements(element, items) {
        match v {
            Value::Bool(b) => buf.push(u8::from(*b)),
            Value::Int32(x) => put_varint(buf, i64::from(*x) as u64),
            Value::Int64(x) => put_varint(buf, *x as u64),
            Value::Float32(x) => buf.extend_from_slice(&x.to_le_bytes()),
            Value::Float64(x) => buf.extend_from_slice(&x.to_le_bytes()),
            Value::Timestamp(ns) => put_varint(buf, seconds(*ns) as u64),
            Value::String(_) | Value::Bytes(_) | Value::List(_) => unreachable!("filtered by type"),
        }
    }
}

fn varint_len(v: u64) -> usize {
    // 7 bits per byte; 0 takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn key_len(field: u32) -> usize {
    varint_len(u64::from(field << 3))
}

/// A length-delimited field: key, length, `len` bytes.
fn delimited_len(field: u32, len: usize) -> usize {
    key_len(field) + varint_len(len as u64) + len
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_key(buf: &mut Vec<u8>, field: u32, wire_type: u32) {
    put_varint(buf, u64::from((field << 3) | wire_type));
}

fn put_bytes(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(buf, field, LEN);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::convert_response;
    use proptest::prelude::*;
    use prost::Message;

    fn scalar_type() -> impl Strategy<Value = ScalarType> {
        prop_oneof![
            Just(ScalarType::Bool),
            Just(ScalarType::Int32),
            Just(ScalarType::Int64),
            Just(ScalarType::Float32),
            Just(ScalarType::Float64),
            Just(ScalarType::String),
            Just(ScalarType::Bytes),
            Just(ScalarType::Timestamp),
        ]
    }

    fn scalar(t: ScalarType) -> BoxedStrategy<Value> {
        match t {
            ScalarType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
            ScalarType::Int32 => any::<i32>().prop_map(Value::Int32).boxed(),
            ScalarType::Int64 => prop_oneof![Just(0i64), any::<i64>()]
                .prop_map(Value::Int64)
                .boxed(),
            ScalarType::Float32 => any::<f32>().prop_map(Value::Float32).boxed(),
            ScalarType::Float64 => any::<f64>().prop_map(Value::Float64).boxed(),
            ScalarType::String => ".{0,20}".prop_map(Value::String).boxed(),
            ScalarType::Bytes => proptest::collection::vec(any::<u8>(), 0..200)
                .prop_map(Value::Bytes)
                .boxed(),
            ScalarType::Timestamp => prop_oneof![Just(0i64), any::<i64>()]
                .prop_map(Value::Timestamp)
                .boxed(),
        }
    }

    /// A cell of a column of type `t`: usually of that type, sometimes absent, sometimes a value
    /// of another shape (a list where a scalar is declared, a stray element type in a list).
    fn cell(t: ValueType) -> BoxedStrategy<Option<Value>> {
        let typed = match t {
            ValueType::Scalar(s) => scalar(s),
            ValueType::List(e) => proptest::collection::vec(
                prop_oneof![
                    6 => scalar(e).prop_map(Some),
                    1 => Just(None),
                    1 => scalar_type().prop_flat_map(scalar).prop_map(Some),
                ],
                0..6,
            )
            .prop_map(Value::List)
            .boxed(),
        };
        prop_oneof![
            8 => typed.prop_map(Some),
            2 => Just(None),
            1 => Just(Some(Value::List(vec![Some(Value::Int64(1)), None]))),
        ]
        .boxed()
    }

    fn status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Status::Present),
            Just(Status::NullValue),
            Just(Status::NotFound),
            Just(Status::OutsideMaxAge),
        ]
    }

    fn column(rows: usize) -> impl Strategy<Value = Column> {
        (scalar_type(), any::<bool>()).prop_flat_map(move |(s, is_list)| {
            let t = if is_list {
                ValueType::List(s)
            } else {
                ValueType::Scalar(s)
            };
            (
                proptest::collection::vec(cell(t), rows),
                proptest::collection::vec(status(), rows),
                proptest::collection::vec(
                    prop_oneof![Just(0i64), any::<i64>(), 0i64..4_000_000_000_000_000_000],
                    rows,
                ),
            )
                .prop_map(move |(values, statuses, event_ns)| Column {
                    value_type: t,
                    values,
                    statuses,
                    event_ns,
                })
        })
    }

    fn response() -> impl Strategy<Value = OnlineResponse> {
        (0usize..5, 0usize..6).prop_flat_map(|(rows, columns)| {
            (
                proptest::collection::vec(column(rows), columns),
                proptest::collection::vec("[a-z_]{0,12}", columns),
            )
                .prop_map(|(columns, names)| OnlineResponse { names, columns })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The oracle is prost: the same response through the message structs must give the
        /// very same bytes.
        #[test]
        fn writes_exactly_what_prost_writes(r in response()) {
            let want = convert_response(r.clone()).encode_to_vec();
            let mut got = Vec::new();
            encode(&r, &mut got);
            prop_assert_eq!(got.len(), encoded_len(&r));
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn varint_lengths_match_the_encoding() {
        for v in [
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), varint_len(v), "{v}");
        }
    }
}
