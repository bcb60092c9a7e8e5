//! `GetOnlineFeaturesResponse` written straight from the core's [`OnlineResponse`] to protobuf
//! bytes, without building prost messages first.
//!
//! The prost path (prost messages built from the response, then `Message::encode`: kept as the
//! reference in `grpc_wire/reference.rs`, a test module) allocates a message
//! per cell (value, timestamp) and recomputes nested lengths at every level; for a single-row
//! vector that was a quarter of the server's work per gRPC call. This writer makes one pass: a
//! nested message's length byte is written after its body ([`nested`]; a body of 128 bytes or
//! more moves over to make room for a longer varint), strings are copied from the response as
//! they are. The bytes are exactly prost's (same field order, minimal varints, packed repeated
//! scalars, oneof values written even when zero, proto3 scalars omitted when zero) — a property
//! test holds it to that, so any client decodes the same message from either path.

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

/// Appends `response` to `buf`. A `Vec` and plain pushes: through `bytes::BufMut`, every byte
/// was a `memcpy` call.
pub fn encode(response: &OnlineResponse, buf: &mut Vec<u8>) {
    // metadata { feature_names { val: names } feature_view_metadata { name version }* }
    nested(buf, 1, |buf| {
        nested(buf, 1, |buf| {
            for name in &response.names {
                put_bytes(buf, 1, name.as_bytes());
            }
        });
        for (name, version) in &response.view_metadata {
            nested(buf, 2, |buf| {
                if !name.is_empty() {
                    put_bytes(buf, 1, name.as_bytes());
                }
                if *version != 0 {
                    put_key(buf, 2, VARINT);
                    put_varint(buf, i64::from(*version) as u64);
                }
            });
        }
    });
    for c in &response.columns {
        nested(buf, 2, |buf| encode_vector(c, buf));
    }
    put_key(buf, 3, VARINT);
    buf.push(1);
}

/// A capacity that holds most responses without growing: names, then per cell a value, a status
/// and a timestamp of typical size.
pub fn size_hint(response: &OnlineResponse) -> usize {
    let names: usize = response.names.iter().map(|n| n.len() + 2).sum();
    let cells: usize = response.columns.iter().map(|c| c.values.len()).sum();
    16 + names + 4 * response.columns.len() + 24 * cells
}

/// `FeatureVector { values = 1, statuses = 2 (packed), event_timestamps = 3 }`.
fn encode_vector(c: &Column, buf: &mut Vec<u8>) {
    for v in &c.values {
        nested(buf, 1, |buf| encode_value(v.as_ref(), c.value_type, buf));
    }
    if !c.statuses.is_empty() {
        nested(buf, 2, |buf| {
            buf.extend(c.statuses.iter().map(|s| status_number(*s)));
        });
    }
    for ns in &c.event_ns {
        nested(buf, 3, |buf| {
            let (seconds, nanos) = split_ns(*ns);
            if seconds != 0 {
                put_key(buf, 1, VARINT);
                put_varint(buf, seconds as u64);
            }
            if nanos != 0 {
                put_key(buf, 2, VARINT);
                put_varint(buf, i64::from(nanos) as u64);
            }
        });
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
                nested(buf, list_field(element), |buf| {
                    encode_list_body(element, items, buf);
                });
            }
            // A list where a scalar is declared cannot be shown: null_val.
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

/// One list element as Feast's gRPC lists carry it. Their `repeated` fields cannot hold a null,
/// and an element is never dropped (positions would shift): a null becomes what Feast itself
/// stores for one — NaN for floats, `""` for strings and bytes, `false` for bools, INT64_MIN
/// for timestamps — and, for int32/int64 (where Feast has no rule: its materialization fails),
/// the type's minimum. Timestamps are Unix seconds truncated toward zero, as Feast's list
/// conversion does (scalars are floored).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Element<'a> {
    Bool(bool),
    Int(i64),
    F32(f32),
    F64(f64),
    Bytes(&'a [u8]),
}

#[cfg(test)]
impl Element<'_> {
    /// The integer, 0 for another kind (the prost reference's reading).
    pub(crate) fn int(self) -> i64 {
        match self {
            Element::Int(x) => x,
            _ => 0,
        }
    }
}

/// The elements of a list of `element`s, nulls replaced (see [`Element`]).
pub(crate) fn list_elements(
    element: ScalarType,
    items: &[Option<Value>],
) -> impl Iterator<Item = Element<'_>> {
    items.iter().map(move |item| match (element, item) {
        (ScalarType::Bool, Some(Value::Bool(b))) => Element::Bool(*b),
        (ScalarType::Bool, _) => Element::Bool(false),
        (ScalarType::Int32, Some(Value::Int32(x))) => Element::Int(i64::from(*x)),
        (ScalarType::Int32, _) => Element::Int(i64::from(i32::MIN)),
        (ScalarType::Int64, Some(Value::Int64(x))) => Element::Int(*x),
        (ScalarType::Int64, _) => Element::Int(i64::MIN),
        (ScalarType::Float32, Some(Value::Float32(x))) => Element::F32(*x),
        (ScalarType::Float32, _) => Element::F32(f32::NAN),
        (ScalarType::Float64, Some(Value::Float64(x))) => Element::F64(*x),
        (ScalarType::Float64, _) => Element::F64(f64::NAN),
        (ScalarType::String, Some(Value::String(s))) => Element::Bytes(s.as_bytes()),
        (ScalarType::Bytes, Some(Value::Bytes(b))) => Element::Bytes(b),
        (ScalarType::String | ScalarType::Bytes, _) => Element::Bytes(b""),
        (ScalarType::Timestamp, Some(Value::Timestamp(ns))) => Element::Int(ns / 1_000_000_000),
        (ScalarType::Timestamp, _) => Element::Int(i64::MIN),
    })
}

/// The body of a `*List { repeated val = 1 }` message: strings and bytes one field each,
/// scalars packed (and the packed field left out when empty).
fn encode_list_body(element: ScalarType, items: &[Option<Value>], buf: &mut Vec<u8>) {
    if matches!(element, ScalarType::String | ScalarType::Bytes) {
        for e in list_elements(element, items) {
            if let Element::Bytes(b) = e {
                put_bytes(buf, 1, b);
            }
        }
        return;
    }
    if items.is_empty() {
        return;
    }
    nested(buf, 1, |buf| {
        for e in list_elements(element, items) {
            match e {
                Element::Bool(b) => buf.push(u8::from(b)),
                Element::Int(x) => put_varint(buf, x as u64),
                Element::F32(x) => buf.extend_from_slice(&x.to_le_bytes()),
                Element::F64(x) => buf.extend_from_slice(&x.to_le_bytes()),
                Element::Bytes(_) => unreachable!("strings and bytes are not packed"),
            }
        }
    });
}

/// A length-delimited field whose body `write` appends: the length byte is reserved before the
/// body and filled in after; a body of 128 bytes or more (rare below the top level) moves right
/// to make room for its longer varint.
fn nested(buf: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    put_key(buf, field, LEN);
    let at = buf.len();
    buf.push(0);
    write(buf);
    let len = buf.len() - at - 1;
    if len < 0x80 {
        buf[at] = len as u8;
    } else {
        let (bytes, n) = varint(len as u64);
        buf.splice(at..=at, bytes[..n].iter().copied());
    }
}

/// `v` as a protobuf varint: the bytes and how many of them are used.
fn varint(mut v: u64) -> ([u8; 10], usize) {
    let (mut bytes, mut n) = ([0u8; 10], 0);
    while v >= 0x80 {
        bytes[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    bytes[n] = v as u8;
    (bytes, n + 1)
}

fn put_varint(buf: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        // Keys, small lengths and statuses: the usual case, one byte.
        buf.push(v as u8);
        return;
    }
    let (bytes, n) = varint(v);
    buf.extend_from_slice(&bytes[..n]);
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
mod reference;
#[cfg(test)]
mod tests;
