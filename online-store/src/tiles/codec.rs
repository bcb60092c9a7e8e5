//! The bytes of a tiles value's parts: varints, values and partials (docs/online-format.md,
//! "Aggregation tiles"). Counts are unsigned LEB128 varints; times are zigzag varints of their
//! difference to a base the reader knows (a tile's start, an event's time); floats and values
//! are fixed-width little-endian.

use quiver_registry::ScalarType;

use crate::aggregate::{Latest, Partial};
use crate::error::{Error, Result};
use crate::value_codec::Value;

/// Flags of a `last` partial: an event, its created time, its value.
const LAST_EVENT: u8 = 1;
const LAST_CREATED: u8 = 2;
const LAST_VALUE: u8 = 4;

pub(super) fn put_uvarint(buf: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub(super) fn put_ivarint(buf: &mut Vec<u8>, v: i128) {
    put_uvarint(buf, ((v << 1) ^ (v >> 127)) as u128);
}

/// `t` as a zigzag varint of its (wrapping) difference to `base`.
pub(super) fn put_time(buf: &mut Vec<u8>, t: i64, base: i64) {
    put_ivarint(buf, i128::from(t.wrapping_sub(base)));
}

fn put_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Bool(x) => buf.push(u8::from(*x)),
        Value::Int32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::Int64(x) | Value::Timestamp(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::Float32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::Float64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::String(s) => {
            put_uvarint(buf, s.len() as u128);
            buf.extend_from_slice(s.as_bytes());
        }
        Value::Bytes(b) => {
            put_uvarint(buf, b.len() as u128);
            buf.extend_from_slice(b);
        }
        Value::List(_) => unreachable!("aggregates read scalar columns"),
    }
}

fn put_opt_value(buf: &mut Vec<u8>, v: &Option<Value>) {
    match v {
        None => buf.push(0),
        Some(v) => {
            buf.push(1);
            put_value(buf, v);
        }
    }
}

/// A partial; `base` is the start of the tile it belongs to (times are written relative to it).
pub(super) fn put_partial(buf: &mut Vec<u8>, p: &Partial, base: i64) {
    match p {
        Partial::Count(n) => put_uvarint(buf, *n as u64 as u128),
        Partial::IntSum { n, sum } => {
            put_uvarint(buf, *n as u64 as u128);
            put_ivarint(buf, *sum);
        }
        Partial::FloatSum { n, sum } => {
            put_uvarint(buf, *n as u64 as u128);
            if *n != 0 {
                buf.extend_from_slice(&sum.to_le_bytes());
            }
        }
        Partial::Moments { n, mean, m2 } => {
            put_uvarint(buf, *n as u64 as u128);
            if *n != 0 {
                buf.extend_from_slice(&mean.to_le_bytes());
                buf.extend_from_slice(&m2.to_le_bytes());
            }
        }
        Partial::Min(v) | Partial::Max(v) => put_opt_value(buf, v),
        Partial::Last(None) => buf.push(0),
        Partial::Last(Some(l)) => {
            let flags = LAST_EVENT
                | if l.created_ns.is_some() {
                    LAST_CREATED
                } else {
                    0
                }
                | if l.value.is_some() { LAST_VALUE } else { 0 };
            buf.push(flags);
            put_time(buf, l.event_ns, base);
            if let Some(c) = l.created_ns {
                put_time(buf, c, l.event_ns);
            }
            if let Some(v) = &l.value {
                put_value(buf, v);
            }
        }
    }
}

pub(super) struct Reader<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl Reader<'_> {
    pub fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| Error::Corrupt("aggregation value truncated".into()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    pub fn flag(&mut self) -> Result<bool> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(Error::Corrupt(format!("bad presence byte {b}"))),
        }
    }

    pub fn uvarint(&mut self) -> Result<u128> {
        let mut v: u128 = 0;
        for shift in (0..128).step_by(7) {
            let b = self.take(1)?[0];
            v |= u128::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                // The shortest form only, so that a value has one encoding.
                if b == 0 && shift > 0 {
                    return Err(Error::Corrupt("overlong varint".into()));
                }
                return Ok(v);
            }
        }
        Err(Error::Corrupt("varint too long".into()))
    }

    pub fn ivarint(&mut self) -> Result<i128> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i128) ^ -((u & 1) as i128))
    }

    /// A count or length that fits its type.
    pub fn count<T: TryFrom<u128>>(&mut self) -> Result<T> {
        T::try_from(self.uvarint()?).map_err(|_| Error::Corrupt("count out of range".into()))
    }

    pub fn time(&mut self, base: i64) -> Result<i64> {
        let d = i64::try_from(self.ivarint()?)
            .map_err(|_| Error::Corrupt("time out of range".into()))?;
        Ok(base.wrapping_add(d))
    }

    fn value(&mut self, t: Option<ScalarType>) -> Result<Value> {
        let t =
            t.ok_or_else(|| Error::Corrupt("a value for an aggregate without a column".into()))?;
        Ok(match t {
            ScalarType::Bool => Value::Bool(self.flag()?),
            ScalarType::Int32 => Value::Int32(i32::from_le_bytes(self.array()?)),
            ScalarType::Int64 => Value::Int64(i64::from_le_bytes(self.array()?)),
            ScalarType::Timestamp => Value::Timestamp(i64::from_le_bytes(self.array()?)),
            ScalarType::Float32 => Value::Float32(f32::from_le_bytes(self.array()?)),
            ScalarType::Float64 => Value::Float64(f64::from_le_bytes(self.array()?)),
            ScalarType::String => {
                let n: usize = self.count()?;
                Value::String(
                    String::from_utf8(self.take(n)?.to_vec())
                        .map_err(|_| Error::Corrupt("string value is not UTF-8".into()))?,
                )
            }
            ScalarType::Bytes => {
                let n: usize = self.count()?;
                Value::Bytes(self.take(n)?.to_vec())
            }
        })
    }

    fn opt_value(&mut self, t: Option<ScalarType>) -> Result<Option<Value>> {
        Ok(if self.flag()? {
            Some(self.value(t)?)
        } else {
            None
        })
    }

    fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    /// A partial of the same kind as `empty` (`base`: its tile's start).
    pub fn partial(
        &mut self,
        empty: &Partial,
        input: Option<ScalarType>,
        base: i64,
    ) -> Result<Partial> {
        Ok(match empty {
            Partial::Count(_) => Partial::Count(self.count()?),
            Partial::IntSum { .. } => Partial::IntSum {
                n: self.count()?,
                sum: self.ivarint()?,
            },
            Partial::FloatSum { .. } => {
                let n: i64 = self.count()?;
                let sum = if n == 0 { 0.0 } else { self.f64()? };
                Partial::FloatSum { n, sum }
            }
            Partial::Moments { .. } => {
                let n: i64 = self.count()?;
                let (mean, m2) = if n == 0 {
                    (0.0, 0.0)
                } else {
                    (self.f64()?, self.f64()?)
                };
                Partial::Moments { n, mean, m2 }
            }
            Partial::Min(_) => Partial::Min(self.opt_value(input)?),
            Partial::Max(_) => Partial::Max(self.opt_value(input)?),
            Partial::Last(_) => {
                let flags = self.take(1)?[0];
                match flags {
                    0 => Partial::Last(None),
                    f if f & LAST_EVENT != 0
                        && f & !(LAST_EVENT | LAST_CREATED | LAST_VALUE) == 0 =>
                    {
                        let event_ns = self.time(base)?;
                        let created_ns = if f & LAST_CREATED != 0 {
                            Some(self.time(event_ns)?)
                        } else {
                            None
                        };
                        let value = if f & LAST_VALUE != 0 {
                            Some(self.value(input)?)
                        } else {
                            None
                        };
                        Partial::Last(Some(Latest {
                            event_ns,
                            created_ns,
                            value,
                        }))
                    }
                    f => return Err(Error::Corrupt(format!("bad `last` flags {f}"))),
                }
            }
        })
    }

    /// Steps over a partial of the same kind as `empty` (reading it is as cheap as skipping
    /// it: varints have no length to jump by).
    pub fn skip_partial(&mut self, empty: &Partial, input: Option<ScalarType>) -> Result<()> {
        self.partial(empty, input, 0).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_their_edges() {
        for v in [
            0i128,
            1,
            -1,
            63,
            -64,
            64,
            i64::MAX as i128,
            i64::MIN as i128,
            i128::MAX,
            i128::MIN,
        ] {
            let mut buf = Vec::new();
            put_ivarint(&mut buf, v);
            let mut r = Reader { buf: &buf, pos: 0 };
            assert_eq!(r.ivarint().unwrap(), v);
            assert_eq!(r.pos, buf.len());
        }
        for (t, base) in [(0, 0), (i64::MIN, i64::MAX), (i64::MAX, i64::MIN), (5, 7)] {
            let mut buf = Vec::new();
            put_time(&mut buf, t, base);
            assert_eq!(Reader { buf: &buf, pos: 0 }.time(base).unwrap(), t);
        }
        // An overlong form (a trailing zero group) is refused.
        assert!(
            Reader {
                buf: &[0x80, 0x00],
                pos: 0
            }
            .uvarint()
            .is_err()
        );
    }
}
