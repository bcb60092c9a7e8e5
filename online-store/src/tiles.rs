//! The online value of an aggregation view for one entity: the tiles its longest window needs,
//! each with every aggregate's partial state (docs/online-format.md, "Aggregation tiles").
//!
//! Tiles before `cutoff_ns` were computed by materialization from the batch source; tiles from
//! `cutoff_ns` on are kept up to date by pushes. `seq` counts writes, so a writer that read a
//! value can store its successor only if nobody wrote in between (`OnlineStore::write_tiles`).

use std::collections::BTreeMap;

use quiver_registry::aggregation::{first_tile, tile_of};
use quiver_registry::{Aggregations, ScalarType};

use crate::aggregate::{Latest, Partial, input_type};
use crate::error::{Error, Result};
use crate::value_codec::{Value, ordered_i64};

/// The first byte of a tiles value (plain values are 1 and 2).
pub const TILES_VERSION: u8 = 3;
/// Bytes 1..17: the cutoff (order-preserving) and the write sequence (big-endian): the token a
/// compare-and-set compares.
pub const TOKEN: std::ops::Range<usize> = 1..17;
const HEADER: usize = 25;
const CHECKSUM: usize = 4;

/// One tile: the latest event time in it, and each aggregate's partial state.
#[derive(Debug, Clone, PartialEq)]
pub struct Tile {
    pub latest_ns: i64,
    pub latest_created_ns: Option<i64>,
    pub partials: Vec<Partial>,
}

/// An entity's tiles for one aggregation view generation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tiles {
    /// Exclusive end of what materialization computed (hop-aligned; `i64::MIN`: none yet).
    pub cutoff_ns: i64,
    pub seq: u64,
    /// By tile index; only tiles with events.
    pub tiles: BTreeMap<i64, Tile>,
}

/// What a window answers at one time: each aggregate's value, and the time of the latest event
/// in the longest window (the value's event time).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowValues {
    pub values: Vec<Option<Value>>,
    pub latest: Option<(i64, Option<i64>)>,
}

impl Tiles {
    pub fn new(cutoff_ns: i64) -> Tiles {
        Tiles {
            cutoff_ns,
            seq: 0,
            tiles: BTreeMap::new(),
        }
    }

    /// Adds one event; `values[i]` is aggregate `i`'s column value (ignored without a column).
    pub fn add(
        &mut self,
        aggregations: &Aggregations,
        event_ns: i64,
        created_ns: Option<i64>,
        values: &[Option<Value>],
    ) {
        let tile = self
            .tiles
            .entry(tile_of(event_ns, aggregations.hop_ns()))
            .or_insert_with(|| empty_tile(aggregations));
        add_to_tile(tile, aggregations, event_ns, created_ns, values);
    }

    /// Drops tiles no window at `now_ns` or later can hold.
    pub fn trim(&mut self, aggregations: &Aggregations, now_ns: i64) {
        let first = first_tile(now_ns, aggregations.hop_ns(), aggregations.max_tiles());
        self.tiles = self.tiles.split_off(&first);
    }

    /// Every aggregate's value at `t_ns`: tiles merged in ascending order, each window from its
    /// first tile to `t_ns`'s.
    pub fn window(&self, aggregations: &Aggregations, t_ns: i64) -> WindowValues {
        let hop = aggregations.hop_ns();
        let last = tile_of(t_ns, hop);
        let longest = first_tile(t_ns, hop, aggregations.max_tiles());
        let mut values = Vec::with_capacity(aggregations.items.len());
        for (i, a) in aggregations.items.iter().enumerate() {
            let first = first_tile(t_ns, hop, a.tiles(hop));
            let mut acc = Partial::empty(a);
            for (_, tile) in self.tiles.range(first..=last) {
                acc.merge(&tile.partials[i]);
            }
            values.push(acc.finish(a.function));
        }
        let latest = self
            .tiles
            .range(longest..=last)
            .next_back()
            .map(|(_, t)| (t.latest_ns, t.latest_created_ns));
        WindowValues { values, latest }
    }

    pub fn encode(&self, aggregations: &Aggregations) -> Vec<u8> {
        let mut buf = Vec::with_capacity(HEADER + self.tiles.len() * 64 + CHECKSUM);
        buf.push(TILES_VERSION);
        buf.extend_from_slice(&ordered_i64(self.cutoff_ns));
        buf.extend_from_slice(&self.seq.to_be_bytes());
        buf.extend_from_slice(&(aggregations.items.len() as u32).to_le_bytes());
        buf.extend_from_slice(&(self.tiles.len() as u32).to_le_bytes());
        for (index, tile) in &self.tiles {
            buf.extend_from_slice(&index.to_le_bytes());
            buf.extend_from_slice(&tile.latest_ns.to_le_bytes());
            put_opt_i64(&mut buf, tile.latest_created_ns);
            for (p, a) in tile.partials.iter().zip(&aggregations.items) {
                put_partial(&mut buf, p, input_type(a));
            }
        }
        let sum = crc32fast::hash(&buf);
        buf.extend_from_slice(&sum.to_le_bytes());
        buf
    }

    pub fn decode(blob: &[u8], aggregations: &Aggregations) -> Result<Tiles> {
        let body = checked_body(blob)?;
        let mut r = Reader { buf: body, pos: 1 };
        let cutoff_ns = (u64::from_be_bytes(r.array()?) ^ (1 << 63)) as i64;
        let seq = u64::from_be_bytes(r.array()?);
        let n_aggs = u32::from_le_bytes(r.array()?) as usize;
        if n_aggs != aggregations.items.len() {
            return Err(Error::Corrupt(format!(
                "aggregation value has {n_aggs} aggregates, the view {}",
                aggregations.items.len()
            )));
        }
        let n_tiles = u32::from_le_bytes(r.array()?) as usize;
        let mut tiles = BTreeMap::new();
        for _ in 0..n_tiles {
            let index = i64::from_le_bytes(r.array()?);
            let latest_ns = i64::from_le_bytes(r.array()?);
            let latest_created_ns = r.opt_i64()?;
            let partials = aggregations
                .items
                .iter()
                .map(|a| r.partial(&Partial::empty(a), input_type(a)))
                .collect::<Result<Vec<_>>>()?;
            tiles.insert(
                index,
                Tile {
                    latest_ns,
                    latest_created_ns,
                    partials,
                },
            );
        }
        if r.pos != body.len() {
            return Err(Error::Corrupt("trailing bytes in aggregation value".into()));
        }
        Ok(Tiles {
            cutoff_ns,
            seq,
            tiles,
        })
    }
}

/// What an encoded tiles value answers at `t_ns` — the same as [`Tiles::decode`] then
/// [`Tiles::window`], read in one pass without building the tiles: partials outside every
/// window are skipped, the others merged as they are read (serving's path).
pub fn window_of(blob: &[u8], aggregations: &Aggregations, t_ns: i64) -> Result<WindowValues> {
    let body = checked_body(blob)?;
    let mut r = Reader { buf: body, pos: 17 };
    let n_aggs = u32::from_le_bytes(r.array()?) as usize;
    if n_aggs != aggregations.items.len() {
        return Err(Error::Corrupt(format!(
            "aggregation value has {n_aggs} aggregates, the view {}",
            aggregations.items.len()
        )));
    }
    let n_tiles = u32::from_le_bytes(r.array()?) as usize;
    let hop = aggregations.hop_ns();
    let last = tile_of(t_ns, hop);
    let longest = first_tile(t_ns, hop, aggregations.max_tiles());
    let firsts: Vec<i64> = aggregations
        .items
        .iter()
        .map(|a| first_tile(t_ns, hop, a.tiles(hop)))
        .collect();
    let empties: Vec<Partial> = aggregations.items.iter().map(Partial::empty).collect();
    let inputs: Vec<Option<ScalarType>> = aggregations.items.iter().map(input_type).collect();
    let mut totals = empties.clone();
    let mut latest = None;
    for _ in 0..n_tiles {
        let index = i64::from_le_bytes(r.array()?);
        let latest_ns = i64::from_le_bytes(r.array()?);
        let latest_created_ns = r.opt_i64()?;
        if (longest..=last).contains(&index) {
            latest = Some((latest_ns, latest_created_ns));
        }
        for (i, total) in totals.iter_mut().enumerate() {
            if (firsts[i]..=last).contains(&index) {
                total.merge(&r.partial(&empties[i], inputs[i])?);
            } else {
                r.skip_partial(&empties[i], inputs[i])?;
            }
        }
    }
    if r.pos != body.len() {
        return Err(Error::Corrupt("trailing bytes in aggregation value".into()));
    }
    let values = totals
        .iter()
        .zip(&aggregations.items)
        .map(|(p, a)| p.finish(a.function))
        .collect();
    Ok(WindowValues { values, latest })
}

/// A tiles value's bytes before its checksum, once its format byte, length and checksum are
/// right.
fn checked_body(blob: &[u8]) -> Result<&[u8]> {
    if blob.first() != Some(&TILES_VERSION) {
        return Err(Error::Corrupt(format!(
            "not an aggregation value (format byte {:?})",
            blob.first()
        )));
    }
    if blob.len() < HEADER + CHECKSUM {
        return Err(Error::Corrupt("aggregation value too short".into()));
    }
    let (body, sum) = blob.split_at(blob.len() - CHECKSUM);
    if crc32fast::hash(body).to_le_bytes() != sum {
        return Err(Error::Corrupt("aggregation value checksum mismatch".into()));
    }
    Ok(body)
}

/// The compare-and-set token of an encoded tiles value (bytes 1..17), if it is one.
pub fn token(blob: &[u8]) -> Option<&[u8]> {
    (blob.first() == Some(&TILES_VERSION) && blob.len() >= TOKEN.end).then(|| &blob[TOKEN])
}

pub fn empty_tile(aggregations: &Aggregations) -> Tile {
    Tile {
        latest_ns: i64::MIN,
        latest_created_ns: None,
        partials: aggregations.items.iter().map(Partial::empty).collect(),
    }
}

/// Adds one event to a tile (see [`Tiles::add`]).
pub fn add_to_tile(
    tile: &mut Tile,
    aggregations: &Aggregations,
    event_ns: i64,
    created_ns: Option<i64>,
    values: &[Option<Value>],
) {
    if (event_ns, created_ns) > (tile.latest_ns, tile.latest_created_ns) {
        tile.latest_ns = event_ns;
        tile.latest_created_ns = created_ns;
    }
    for ((p, a), v) in tile
        .partials
        .iter_mut()
        .zip(&aggregations.items)
        .zip(values)
    {
        p.add(event_ns, created_ns, v.as_ref(), a.column.is_some());
    }
}

/// Merges tile `other` into `tile` (disjoint events of the same tile).
pub fn merge_tile(tile: &mut Tile, other: &Tile) {
    if (other.latest_ns, other.latest_created_ns) > (tile.latest_ns, tile.latest_created_ns) {
        tile.latest_ns = other.latest_ns;
        tile.latest_created_ns = other.latest_created_ns;
    }
    for (p, o) in tile.partials.iter_mut().zip(&other.partials) {
        p.merge(o);
    }
}

fn put_opt_i64(buf: &mut Vec<u8>, v: Option<i64>) {
    match v {
        None => buf.push(0),
        Some(v) => {
            buf.push(1);
            buf.extend_from_slice(&v.to_le_bytes());
        }
    }
}

fn put_value(buf: &mut Vec<u8>, v: &Option<Value>) {
    let Some(v) = v else {
        buf.push(0);
        return;
    };
    buf.push(1);
    match v {
        Value::Bool(x) => buf.push(u8::from(*x)),
        Value::Int32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::Int64(x) | Value::Timestamp(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::Float32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::Float64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::String(s) => {
            buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
            buf.extend_from_slice(s.as_bytes());
        }
        Value::Bytes(b) => {
            buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
            buf.extend_from_slice(b);
        }
        Value::List(_) => unreachable!("aggregates read scalar columns"),
    }
}

fn put_partial(buf: &mut Vec<u8>, p: &Partial, _input: Option<ScalarType>) {
    match p {
        Partial::Count(n) => buf.extend_from_slice(&n.to_le_bytes()),
        Partial::IntSum { n, sum } => {
            buf.extend_from_slice(&n.to_le_bytes());
            buf.extend_from_slice(&sum.to_le_bytes());
        }
        Partial::FloatSum { n, sum } => {
            buf.extend_from_slice(&n.to_le_bytes());
            buf.extend_from_slice(&sum.to_le_bytes());
        }
        Partial::Moments { n, mean, m2 } => {
            buf.extend_from_slice(&n.to_le_bytes());
            buf.extend_from_slice(&mean.to_le_bytes());
            buf.extend_from_slice(&m2.to_le_bytes());
        }
        Partial::Min(v) | Partial::Max(v) => put_value(buf, v),
        Partial::Last(l) => match l {
            None => buf.push(0),
            Some(l) => {
                buf.push(1);
                buf.extend_from_slice(&l.event_ns.to_le_bytes());
                put_opt_i64(buf, l.created_ns);
                put_value(buf, &l.value);
            }
        },
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| Error::Corrupt("aggregation value truncated".into()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    fn flag(&mut self) -> Result<bool> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(Error::Corrupt(format!("bad presence byte {b}"))),
        }
    }

    fn opt_i64(&mut self) -> Result<Option<i64>> {
        Ok(if self.flag()? {
            Some(i64::from_le_bytes(self.array()?))
        } else {
            None
        })
    }

    fn value(&mut self, t: Option<ScalarType>) -> Result<Option<Value>> {
        if !self.flag()? {
            return Ok(None);
        }
        let t =
            t.ok_or_else(|| Error::Corrupt("a value for an aggregate without a column".into()))?;
        let text = |b: &[u8]| {
            String::from_utf8(b.to_vec())
                .map_err(|_| Error::Corrupt("string value is not UTF-8".into()))
        };
        Ok(Some(match t {
            ScalarType::Bool => Value::Bool(self.flag()?),
            ScalarType::Int32 => Value::Int32(i32::from_le_bytes(self.array()?)),
            ScalarType::Int64 => Value::Int64(i64::from_le_bytes(self.array()?)),
            ScalarType::Timestamp => Value::Timestamp(i64::from_le_bytes(self.array()?)),
            ScalarType::Float32 => Value::Float32(f32::from_le_bytes(self.array()?)),
            ScalarType::Float64 => Value::Float64(f64::from_le_bytes(self.array()?)),
            ScalarType::String => {
                let n = u32::from_le_bytes(self.array()?) as usize;
                Value::String(text(self.take(n)?)?)
            }
            ScalarType::Bytes => {
                let n = u32::from_le_bytes(self.array()?) as usize;
                Value::Bytes(self.take(n)?.to_vec())
            }
        }))
    }

    /// Steps over a value without reading it.
    fn skip_value(&mut self, t: Option<ScalarType>) -> Result<()> {
        if !self.flag()? {
            return Ok(());
        }
        let t =
            t.ok_or_else(|| Error::Corrupt("a value for an aggregate without a column".into()))?;
        let n = match t {
            ScalarType::Bool => 1,
            ScalarType::Int32 | ScalarType::Float32 => 4,
            ScalarType::Int64 | ScalarType::Float64 | ScalarType::Timestamp => 8,
            ScalarType::String | ScalarType::Bytes => u32::from_le_bytes(self.array()?) as usize,
        };
        self.take(n).map(|_| ())
    }

    /// Steps over a partial of the same kind as `empty` without building it.
    fn skip_partial(&mut self, empty: &Partial, input: Option<ScalarType>) -> Result<()> {
        match empty {
            Partial::Count(_) => self.take(8).map(|_| ()),
            Partial::IntSum { .. } => self.take(24).map(|_| ()),
            Partial::FloatSum { .. } => self.take(16).map(|_| ()),
            Partial::Moments { .. } => self.take(24).map(|_| ()),
            Partial::Min(_) | Partial::Max(_) => self.skip_value(input),
            Partial::Last(_) => {
                if self.flag()? {
                    self.take(8)?;
                    self.opt_i64()?;
                    self.skip_value(input)?;
                }
                Ok(())
            }
        }
    }

    /// A partial of the same kind as `empty`.
    fn partial(&mut self, empty: &Partial, input: Option<ScalarType>) -> Result<Partial> {
        let i64v = |r: &mut Self| Ok::<_, Error>(i64::from_le_bytes(r.array()?));
        let f64v = |r: &mut Self| Ok::<_, Error>(f64::from_le_bytes(r.array()?));
        Ok(match empty {
            Partial::Count(_) => Partial::Count(i64v(self)?),
            Partial::IntSum { .. } => Partial::IntSum {
                n: i64v(self)?,
                sum: i128::from_le_bytes(self.array()?),
            },
            Partial::FloatSum { .. } => Partial::FloatSum {
                n: i64v(self)?,
                sum: f64v(self)?,
            },
            Partial::Moments { .. } => Partial::Moments {
                n: i64v(self)?,
                mean: f64v(self)?,
                m2: f64v(self)?,
            },
            Partial::Min(_) => Partial::Min(self.value(input)?),
            Partial::Max(_) => Partial::Max(self.value(input)?),
            Partial::Last(_) => Partial::Last(if self.flag()? {
                Some(Latest {
                    event_ns: i64v(self)?,
                    created_ns: self.opt_i64()?,
                    value: self.value(input)?,
                })
            } else {
                None
            }),
        })
    }
}

#[cfg(test)]
mod tests;
