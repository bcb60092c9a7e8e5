//! Value blobs: one entity's values of one view generation, with their timestamps
//! (docs/online-format.md). Encoding is push-based so callers (the materializer) write straight
//! from their columns; decoding checks every length.

use quiver_registry::{ScalarType, ValueType};

use crate::error::{Error, Result};

/// The version written: blobs end with a CRC-32 of everything before it.
pub const FORMAT_VERSION: u8 = 2;
/// Blobs written before checksums (read, never written; nothing detects their corruption).
pub const UNCHECKED_VERSION: u8 = 1;
/// Bytes 1..17 of a blob: its `(event_ts, created_ts)` in an order-preserving form.
pub const ORDER_RANGE: std::ops::Range<usize> = 1..17;
const HEADER: usize = 21;
/// The trailing checksum of a version 2 blob: CRC-32 (IEEE), u32 little-endian.
const CHECKSUM: usize = 4;

/// Order-preserving big-endian form of an i64: byte comparison is numeric comparison.
pub fn ordered_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

fn from_ordered_i64(b: [u8; 8]) -> i64 {
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

/// Whether blob `new` orders after blob `old` (docs/online-format.md, "Write rule"): a newer
/// `(event_ts, created_ts)` (bytes 1..17); on a tie of both, a newer format version; then
/// greater bytes after the header — so the survivor of a full tie never depends on the order of
/// writes, and an identical blob is not rewritten. Both the materializer's choice of each
/// entity's latest row and the store's write rule use it.
pub fn should_replace(new: &[u8], old: &[u8]) -> bool {
    order_key(new) > order_key(old)
}

fn order_key(blob: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let split = |at: usize| at.min(blob.len());
    (
        &blob[split(ORDER_RANGE.start)..split(ORDER_RANGE.end)],
        &blob[..split(1)],
        &blob[split(ORDER_RANGE.end)..],
    )
}

/// The store's write rule: `new` is stored over `old` when it orders after it, or when `old`
/// is damaged (its checksum does not match) — so a corrupt value, whatever its timestamps say,
/// never blocks the next materialization from replacing it.
pub fn should_store(new: &[u8], old: &[u8]) -> bool {
    should_replace(new, old) || (new != old && !intact(old))
}

/// Whether a blob's checksum matches its bytes. Version 1 blobs carry none and count as intact;
/// a blob of an unknown version or too short to hold a checksum does not.
pub fn intact(blob: &[u8]) -> bool {
    match blob.first() {
        Some(&UNCHECKED_VERSION) => true,
        Some(&FORMAT_VERSION) if blob.len() >= HEADER + CHECKSUM => {
            let (body, sum) = blob.split_at(blob.len() - CHECKSUM);
            crc32fast::hash(body).to_le_bytes() == sum
        }
        _ => false,
    }
}

/// Builds one blob: `new`, then exactly `n` pushes of values (or nulls), then `finish`.
#[derive(Debug)]
pub struct ValueEncoder {
    buf: Vec<u8>,
    n: usize,
    next: usize,
}

impl ValueEncoder {
    /// `created_ns` is `None` when the source has no created timestamp.
    pub fn new(event_ns: i64, created_ns: Option<i64>, n: usize) -> Self {
        Self::with_buffer(
            Vec::with_capacity(HEADER + n.div_ceil(8) + 8 * n + CHECKSUM),
            event_ns,
            created_ns,
            n,
        )
    }

    /// Like `new`, reusing `buf`'s allocation.
    pub fn with_buffer(mut buf: Vec<u8>, event_ns: i64, created_ns: Option<i64>, n: usize) -> Self {
        buf.clear();
        buf.push(FORMAT_VERSION);
        buf.extend_from_slice(&ordered_i64(event_ns));
        buf.extend_from_slice(&ordered_i64(created_ns.unwrap_or(i64::MIN)));
        buf.extend_from_slice(&(n as u32).to_le_bytes());
        buf.resize(HEADER + n.div_ceil(8), 0);
        ValueEncoder { buf, n, next: 0 }
    }

    fn present(&mut self) {
        debug_assert!(self.next < self.n, "more values than declared");
        self.buf[HEADER + self.next / 8] |= 1 << (self.next % 8);
        self.next += 1;
    }

    pub fn null(&mut self) {
        self.next += 1;
    }
    pub fn bool(&mut self, v: bool) {
        self.present();
        self.buf.push(u8::from(v));
    }
    pub fn i32(&mut self, v: i32) {
        self.present();
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.present();
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f32(&mut self, v: f32) {
        self.present();
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f64(&mut self, v: f64) {
        self.present();
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A timestamp feature, nanoseconds since the epoch.
    pub fn timestamp(&mut self, ns: i64) {
        self.i64(ns);
    }
    /// A string or bytes value.
    pub fn bytes(&mut self, v: &[u8]) {
        self.present();
        self.buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(v);
    }
    /// A list value: `items` yields each element, `None` for a null element.
    pub fn list<'a>(
        &mut self,
        element: ScalarType,
        items: impl ExactSizeIterator<Item = Option<Scalar<'a>>>,
    ) {
        self.present();
        let m = items.len();
        self.buf.extend_from_slice(&(m as u32).to_le_bytes());
        let bitmap = self.buf.len();
        self.buf.resize(bitmap + m.div_ceil(8), 0);
        for (i, item) in items.enumerate() {
            let Some(item) = item else { continue };
            self.buf[bitmap + i / 8] |= 1 << (i % 8);
            item.write(element, &mut self.buf);
        }
    }

    /// Ends the blob with its checksum.
    pub fn finish(mut self) -> Vec<u8> {
        debug_assert_eq!(self.next, self.n, "fewer values than declared");
        let sum = crc32fast::hash(&self.buf);
        self.buf.extend_from_slice(&sum.to_le_bytes());
        self.buf
    }
}

/// A borrowed scalar, for list elements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(&'a [u8]),
}

impl Scalar<'_> {
    fn write(self, t: ScalarType, buf: &mut Vec<u8>) {
        match (t, self) {
            (ScalarType::Bool, Scalar::Bool(b)) => buf.push(u8::from(b)),
            (ScalarType::Int32, Scalar::Int(v)) => buf.extend_from_slice(&(v as i32).to_le_bytes()),
            (ScalarType::Int64 | ScalarType::Timestamp, Scalar::Int(v)) => {
                buf.extend_from_slice(&v.to_le_bytes())
            }
            (ScalarType::Float32, Scalar::Float(v)) => {
                buf.extend_from_slice(&(v as f32).to_le_bytes())
            }
            (ScalarType::Float64, Scalar::Float(v)) => buf.extend_from_slice(&v.to_le_bytes()),
            (ScalarType::String | ScalarType::Bytes, Scalar::Bytes(b)) => {
                buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
                buf.extend_from_slice(b);
            }
            (t, v) => panic!("list element {v:?} does not match its declared type {t:?}"),
        }
    }
}

/// A decoded feature value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    String(String),
    Bytes(Vec<u8>),
    /// Nanoseconds since the Unix epoch.
    Timestamp(i64),
    /// Elements of a list; `None` is a null element.
    List(Vec<Option<Value>>),
}

/// Values as users write them: `0.5`, `"Paris"`, `[1, null, 3]`, bytes in hex (`0xdead`),
/// timestamps as nanoseconds since the Unix epoch.
impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Bool(v) => write!(f, "{v}"),
            Value::Int32(v) => write!(f, "{v}"),
            Value::Int64(v) => write!(f, "{v}"),
            Value::Float32(v) => write!(f, "{v}"),
            Value::Float64(v) => write!(f, "{v}"),
            Value::String(v) => write!(f, "{v:?}"),
            Value::Bytes(v) => {
                f.write_str("0x")?;
                v.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            Value::Timestamp(ns) => write!(f, "{ns} ns since 1970-01-01T00:00:00Z"),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match item {
                        Some(v) => write!(f, "{v}")?,
                        None => f.write_str("null")?,
                    }
                }
                f.write_str("]")
            }
        }
    }
}

/// A decoded blob.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub event_ns: i64,
    pub created_ns: Option<i64>,
    /// One entry per stored value: `None` is a stored null. Features appended to the view after
    /// this blob was written have no entry.
    pub values: Vec<Option<Value>>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| {
                Error::Corrupt(format!(
                    "blob of {} bytes ends inside a value at offset {}",
                    self.buf.len(),
                    self.pos
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }
    fn u32(&mut self) -> Result<usize> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }
    fn scalar(&mut self, t: ScalarType) -> Result<Value> {
        Ok(match t {
            ScalarType::Bool => match self.take(1)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(Error::Corrupt(format!("bool byte {b}"))),
            },
            ScalarType::Int32 => Value::Int32(i32::from_le_bytes(self.array()?)),
            ScalarType::Int64 => Value::Int64(i64::from_le_bytes(self.array()?)),
            ScalarType::Float32 => Value::Float32(f32::from_le_bytes(self.array()?)),
            ScalarType::Float64 => Value::Float64(f64::from_le_bytes(self.array()?)),
            ScalarType::Timestamp => Value::Timestamp(i64::from_le_bytes(self.array()?)),
            ScalarType::String => {
                let len = self.u32()?;
                let bytes = self.take(len)?;
                Value::String(
                    std::str::from_utf8(bytes)
                        .map_err(|e| Error::Corrupt(format!("string value: {e}")))?
                        .to_string(),
                )
            }
            ScalarType::Bytes => {
                let len = self.u32()?;
                Value::Bytes(self.take(len)?.to_vec())
            }
        })
    }
}

fn bit(bitmap: &[u8], i: usize) -> bool {
    bitmap[i / 8] & (1 << (i % 8)) != 0
}

/// Decodes a blob written for features of the given types (the view's current declaration;
/// the blob may hold fewer values, never more). A version 2 blob whose checksum does not match
/// is refused before any of it is read.
pub fn decode(blob: &[u8], types: &[ValueType]) -> Result<Decoded> {
    let body = match blob.first() {
        None => return Err(Error::Corrupt("empty blob".into())),
        Some(&UNCHECKED_VERSION) => blob,
        Some(&FORMAT_VERSION) if intact(blob) => &blob[..blob.len() - CHECKSUM],
        Some(&FORMAT_VERSION) => {
            return Err(Error::Corrupt(
                "checksum mismatch: the stored value is damaged".into(),
            ));
        }
        Some(version) => {
            return Err(Error::Corrupt(format!("unknown format version {version}")));
        }
    };
    decode_body(body, types)
}

fn decode_body(blob: &[u8], types: &[ValueType]) -> Result<Decoded> {
    let mut r = Reader { buf: blob, pos: 1 };
    let event_ns = from_ordered_i64(r.array()?);
    let created = from_ordered_i64(r.array()?);
    let n = r.u32()?;
    if n > types.len() {
        return Err(Error::Corrupt(format!(
            "blob holds {n} values but the view declares {}",
            types.len()
        )));
    }
    let bitmap = r.take(n.div_ceil(8))?;
    let mut values = Vec::with_capacity(n);
    for (i, t) in types.iter().take(n).enumerate() {
        if !bit(bitmap, i) {
            values.push(None);
            continue;
        }
        values.push(Some(match *t {
            ValueType::Scalar(s) => r.scalar(s)?,
            ValueType::List(s) => {
                let m = r.u32()?;
                if m > blob.len() {
                    return Err(Error::Corrupt(format!(
                        "list of {m} elements in a {}-byte blob",
                        blob.len()
                    )));
                }
                let elements = r.take(m.div_ceil(8))?;
                let mut items = Vec::with_capacity(m);
                for j in 0..m {
                    items.push(if bit(elements, j) {
                        Some(r.scalar(s)?)
                    } else {
                        None
                    });
                }
                Value::List(items)
            }
        }));
    }
    if r.pos != blob.len() {
        return Err(Error::Corrupt(format!(
            "{} trailing bytes",
            blob.len() - r.pos
        )));
    }
    Ok(Decoded {
        event_ns,
        created_ns: (created != i64::MIN).then_some(created),
        values,
    })
}

/// Encodes decoded values back (tests and tools; the materializer pushes from columns).
pub fn encode(decoded: &Decoded, types: &[ValueType]) -> Vec<u8> {
    let mut enc = ValueEncoder::new(decoded.event_ns, decoded.created_ns, decoded.values.len());
    for (v, t) in decoded.values.iter().zip(types) {
        match (v, t) {
            (None, _) => enc.null(),
            (Some(Value::Bool(b)), _) => enc.bool(*b),
            (Some(Value::Int32(x)), _) => enc.i32(*x),
            (Some(Value::Int64(x)), _) => enc.i64(*x),
            (Some(Value::Float32(x)), _) => enc.f32(*x),
            (Some(Value::Float64(x)), _) => enc.f64(*x),
            (Some(Value::Timestamp(x)), _) => enc.timestamp(*x),
            (Some(Value::String(s)), _) => enc.bytes(s.as_bytes()),
            (Some(Value::Bytes(b)), _) => enc.bytes(b),
            (Some(Value::List(items)), ValueType::List(s)) => {
                enc.list(*s, items.iter().map(|i| i.as_ref().map(scalar_of)));
            }
            (Some(Value::List(_)), ValueType::Scalar(_)) => {
                panic!("a list value for a scalar feature")
            }
        }
    }
    enc.finish()
}

fn scalar_of(v: &Value) -> Scalar<'_> {
    match v {
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Int32(x) => Scalar::Int(i64::from(*x)),
        Value::Int64(x) | Value::Timestamp(x) => Scalar::Int(*x),
        Value::Float32(x) => Scalar::Float(f64::from(*x)),
        Value::Float64(x) => Scalar::Float(*x),
        Value::String(s) => Scalar::Bytes(s.as_bytes()),
        Value::Bytes(b) => Scalar::Bytes(b),
        Value::List(_) => panic!("lists do not nest"),
    }
}

#[cfg(test)]
mod tests;
