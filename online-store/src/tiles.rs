//! The online value of an aggregation view for one entity (docs/online-format.md, "Aggregation
//! tiles (format byte 4)").
//!
//! A window at time `t` merges its aggregates' partials over the tiles from its first tile to
//! `t`'s. Merging one partial per tile at every read would cost a read as many merges as the
//! longest window has tiles (288 for a day of 5-minute tiles), so most tiles are kept merged
//! into *suffixes*: in a [`Suffixes`] segment the entry at tile `j` holds each aggregate's
//! partial over the segment's events from tile `j` on. A window then takes one entry per
//! aggregate from each segment — the first at or after its first tile — and merges the few
//! newest tiles, which stay one per hop. A value has three parts, in tile order:
//! - `batch`: what materialization computed from the batch source, the tiles before the cutoff;
//! - `pushed`: pushed tiles from the cutoff on that were complete at a write ("sealed");
//! - `head`: the newest pushed tiles, one partial set per tile, where pushes land.
//!
//! A segment answers a window ending at tile `c` exactly when its last entry is at or before
//! `c` (all its events are then at or before the window's end) or its first entry is after `c`
//! (none is in the window). Serving reads at the current time, after every sealed tile; a time
//! between a segment's first and last entries (only `quiver verify --at` asks for one) is
//! refused with [`Error::Unanswerable`].
//!
//! `seq` counts writes, so a writer that read a value can store its successor only if nobody
//! wrote in between (`OnlineStore::swap`).

use std::collections::BTreeMap;

use quiver_registry::aggregation::{first_tile, tile_of};
use quiver_registry::{Aggregations, ScalarType};

use crate::aggregate::{Partial, input_type};
use crate::error::{Error, Result};
use crate::value_codec::{Value, ordered_i64};
use codec::{Reader, put_partial, put_time};
pub use segment::{Segment, Suffixes};
use segment::{SegmentHeader, check_framing, entry_frame, kept};

/// The first byte of a tiles value (plain values are 1 and 2; 3 was the flat tiles of an
/// earlier version).
pub const TILES_VERSION: u8 = 4;
/// Bytes 1..17: the cutoff (order-preserving) and the write sequence (big-endian): the token a
/// compare-and-set compares.
pub const TOKEN: std::ops::Range<usize> = 1..17;
/// Format byte, token, number of aggregates.
const HEADER: usize = 21;
/// A segment's fixed header: entries, bytes after the header, first and last tile, the latest
/// event (presence, time, created presence, created time).
pub(crate) const SEGMENT_HEADER: usize = 4 + 4 + 8 + 8 + 1 + 8 + 1 + 8;
const CHECKSUM: usize = 4;

/// The latest event of a set: its event time and created time.
pub type Stamp = (i64, Option<i64>);

/// One tile: the latest event time in it, and each aggregate's partial state.
#[derive(Debug, Clone, PartialEq)]
pub struct Tile {
    pub latest_ns: i64,
    pub latest_created_ns: Option<i64>,
    pub partials: Vec<Partial>,
}

/// An entity's value for one aggregation view generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Tiles {
    /// Exclusive end of what materialization computed (hop-aligned; `i64::MIN`: none yet).
    pub cutoff_ns: i64,
    pub seq: u64,
    /// The tiles before the cutoff, from the batch source.
    pub batch: Segment,
    /// Pushed tiles from the cutoff on, sealed; all before the head's.
    pub pushed: Segment,
    /// The newest pushed tiles, by tile index (only tiles with events).
    pub head: BTreeMap<i64, Tile>,
}

/// What a window answers at one time: each aggregate's value, and the time of the latest event
/// in the longest window (the value's event time).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowValues {
    pub values: Vec<Option<Value>>,
    pub latest: Option<Stamp>,
}

impl Tiles {
    pub fn new(cutoff_ns: i64) -> Tiles {
        Tiles {
            cutoff_ns,
            seq: 0,
            batch: Segment::empty(),
            pushed: Segment::empty(),
            head: BTreeMap::new(),
        }
    }

    /// A value whose batch part is `tiles` (those before the cutoff's tile are taken).
    pub fn of_batch(
        aggregations: &Aggregations,
        cutoff_ns: i64,
        tiles: &BTreeMap<i64, Tile>,
    ) -> Tiles {
        let mut out = Tiles::new(cutoff_ns);
        let first_pushed = tile_of(cutoff_ns, aggregations.hop_ns());
        out.batch = Segment::Open(Suffixes::of_tiles(
            aggregations,
            tiles.range(..first_pushed),
        ));
        out
    }

    /// Keeps what `stored` holds from this value's cutoff on: pushed tiles materialization has
    /// not covered.
    pub fn keep_pushed(&mut self, aggregations: &Aggregations, mut stored: Tiles) -> Result<()> {
        let first_pushed = tile_of(self.cutoff_ns, aggregations.hop_ns());
        stored.pushed.drop_before(aggregations, first_pushed)?;
        self.pushed = stored.pushed;
        self.head = stored.head.split_off(&first_pushed);
        Ok(())
    }

    /// Adds one event at or after the cutoff (`values[i]`: aggregate `i`'s column value,
    /// ignored without a column): into the head, or into the sealed pushed tiles when it is
    /// older than their last.
    pub fn add(
        &mut self,
        aggregations: &Aggregations,
        event_ns: i64,
        created_ns: Option<i64>,
        values: &[Option<Value>],
    ) -> Result<()> {
        let tile = tile_of(event_ns, aggregations.hop_ns());
        if self.pushed.span().is_some_and(|(_, last)| tile <= last) {
            self.pushed
                .open(aggregations)?
                .add(aggregations, tile, (event_ns, created_ns), values);
        } else {
            let t = self
                .head
                .entry(tile)
                .or_insert_with(|| empty_tile(aggregations));
            add_to_tile(t, aggregations, event_ns, created_ns, values);
        }
        Ok(())
    }

    /// Seals the head tiles before `now_ns`'s tile (complete: later events there are late)
    /// into the pushed suffixes.
    pub fn seal(&mut self, aggregations: &Aggregations, now_ns: i64) -> Result<()> {
        let current = tile_of(now_ns, aggregations.hop_ns());
        if self
            .head
            .keys()
            .next()
            .is_none_or(|first| *first >= current)
        {
            return Ok(());
        }
        let newer = self.head.split_off(&current);
        let complete = std::mem::replace(&mut self.head, newer);
        self.pushed
            .open(aggregations)?
            .extend(aggregations, complete.iter());
        Ok(())
    }

    /// Drops what no window at `t_ns` or later can hold.
    pub fn trim(&mut self, aggregations: &Aggregations, t_ns: i64) -> Result<()> {
        let first = first_tile(t_ns, aggregations.hop_ns(), aggregations.max_tiles());
        self.batch.drop_before(aggregations, first)?;
        self.pushed.drop_before(aggregations, first)?;
        self.head = self.head.split_off(&first);
        Ok(())
    }

    /// The newest tile with events.
    pub fn newest_tile(&self) -> Option<i64> {
        let last = |s: &Segment| s.span().map(|(_, l)| l);
        self.head
            .keys()
            .next_back()
            .copied()
            .or_else(|| last(&self.pushed))
            .or_else(|| last(&self.batch))
    }

    /// Whether it holds no event.
    pub fn is_empty(&self) -> bool {
        self.newest_tile().is_none()
    }

    /// Every aggregate's value at `t_ns` (what serving answers: [`window_of`] its encoding).
    pub fn window(&self, aggregations: &Aggregations, t_ns: i64) -> Result<WindowValues> {
        window_of(&self.encode(aggregations), aggregations, t_ns)
    }

    pub fn encode(&self, aggregations: &Aggregations) -> Vec<u8> {
        let mut buf =
            Vec::with_capacity(HEADER + 2 * SEGMENT_HEADER + self.head.len() * 64 + CHECKSUM);
        buf.push(TILES_VERSION);
        buf.extend_from_slice(&ordered_i64(self.cutoff_ns));
        buf.extend_from_slice(&self.seq.to_be_bytes());
        buf.extend_from_slice(&(aggregations.items.len() as u32).to_le_bytes());
        self.batch.encode(aggregations, &mut buf);
        self.pushed.encode(aggregations, &mut buf);
        let hop = aggregations.hop_ns();
        buf.extend_from_slice(&(self.head.len() as u32).to_le_bytes());
        let mut previous = 0i64;
        for (index, tile) in &self.head {
            let start = index.wrapping_mul(hop);
            put_time(&mut buf, *index, previous);
            put_time(&mut buf, tile.latest_ns, start);
            match tile.latest_created_ns {
                None => buf.push(0),
                Some(c) => {
                    buf.push(1);
                    put_time(&mut buf, c, tile.latest_ns);
                }
            }
            for p in &tile.partials {
                put_partial(&mut buf, p, start);
            }
            previous = *index;
        }
        let sum = crc32fast::hash(&buf);
        buf.extend_from_slice(&sum.to_le_bytes());
        buf
    }

    /// A stored value. Its segments stay encoded (checked for framing and order) until a
    /// write opens them; the head is decoded.
    pub fn decode(blob: &[u8], aggregations: &Aggregations) -> Result<Tiles> {
        let body = checked_body(blob)?;
        let mut r = Reader { buf: body, pos: 1 };
        let cutoff_ns = (u64::from_be_bytes(r.array()?) ^ (1 << 63)) as i64;
        let seq = u64::from_be_bytes(r.array()?);
        check_aggregates(&mut r, aggregations)?;
        let segment = |r: &mut Reader| -> Result<Segment> {
            let header = SegmentHeader::read(&r.buf[r.pos..])?;
            let bytes = r.take(header.len)?;
            check_framing(bytes, &header)?;
            Ok(Segment::Encoded(bytes.to_vec()))
        };
        let batch = segment(&mut r)?;
        let pushed = segment(&mut r)?;
        let hop = aggregations.hop_ns();
        let n_tiles = u32::from_le_bytes(r.array()?) as usize;
        let mut head = BTreeMap::new();
        let mut previous = None;
        for _ in 0..n_tiles {
            let (index, latest_ns, latest_created_ns) = head_frame(&mut r, &mut previous, hop)?;
            let start = index.wrapping_mul(hop);
            let partials = aggregations
                .items
                .iter()
                .map(|a| r.partial(&Partial::empty(a), input_type(a), start))
                .collect::<Result<Vec<_>>>()?;
            head.insert(
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
            batch,
            pushed,
            head,
        })
    }
}

/// A head tile's index (strictly increasing), latest event time and its created time.
fn head_frame(
    r: &mut Reader,
    previous: &mut Option<i64>,
    hop: i64,
) -> Result<(i64, i64, Option<i64>)> {
    let index = r.time(previous.unwrap_or(0))?;
    if previous.is_some_and(|p| index <= p) {
        return Err(Error::Corrupt("aggregation head tiles out of order".into()));
    }
    *previous = Some(index);
    let latest_ns = r.time(index.wrapping_mul(hop))?;
    let created = if r.flag()? {
        Some(r.time(latest_ns)?)
    } else {
        None
    };
    Ok((index, latest_ns, created))
}

fn check_aggregates(r: &mut Reader, aggregations: &Aggregations) -> Result<()> {
    let n_aggs = u32::from_le_bytes(r.array()?) as usize;
    if n_aggs != aggregations.items.len() {
        return Err(Error::Corrupt(format!(
            "aggregation value has {n_aggs} aggregates, the view {}",
            aggregations.items.len()
        )));
    }
    Ok(())
}

/// What an encoded value answers at `t_ns`, read in one pass without building anything: from
/// each segment the first entry at or after each aggregate's first tile, then the head tiles
/// in each window (serving's path).
pub fn window_of(blob: &[u8], aggregations: &Aggregations, t_ns: i64) -> Result<WindowValues> {
    let body = checked_body(blob)?;
    let mut r = Reader {
        buf: body,
        pos: TOKEN.end,
    };
    check_aggregates(&mut r, aggregations)?;
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
    let mut latest: Option<Stamp> = None;
    for _ in 0..2 {
        let header = SegmentHeader::read(&r.buf[r.pos..])?;
        let mut s = Reader {
            buf: r.take(header.len)?,
            pos: SEGMENT_HEADER,
        };
        if header.entries == 0 || header.first > last {
            continue;
        }
        if header.last > last {
            return Err(Error::Unanswerable(format!(
                "the online value keeps tiles {}..={} merged; it cannot answer for a time inside them",
                header.first, header.last
            )));
        }
        if header.last >= longest {
            latest = latest.max(header.latest);
        }
        let mut pending: Vec<bool> = firsts.iter().map(|f| *f <= header.last).collect();
        let mut previous = None;
        for _ in 0..header.entries {
            if !pending.contains(&true) {
                break;
            }
            let (index, len) = entry_frame(&mut s, previous, header.first)?;
            previous = Some(index);
            if !pending.iter().zip(&firsts).any(|(p, f)| *p && *f <= index) {
                s.take(len)?;
                continue;
            }
            let end = s.pos + len;
            let start = index.wrapping_mul(hop);
            for (i, kept) in kept(aggregations, hop, index, header.last).enumerate() {
                if !kept {
                    continue;
                }
                if pending[i] && firsts[i] <= index {
                    totals[i].merge(&s.partial(&empties[i], inputs[i], start)?);
                    pending[i] = false;
                } else {
                    s.skip_partial(&empties[i], inputs[i])?;
                }
            }
            if s.pos != end {
                return Err(Error::Corrupt("aggregation entry length mismatch".into()));
            }
        }
    }
    let n_tiles = u32::from_le_bytes(r.array()?) as usize;
    let mut previous = None;
    for _ in 0..n_tiles {
        let (index, latest_ns, latest_created_ns) = head_frame(&mut r, &mut previous, hop)?;
        let start = index.wrapping_mul(hop);
        if (longest..=last).contains(&index) {
            latest = latest.max(Some((latest_ns, latest_created_ns)));
        }
        for (i, total) in totals.iter_mut().enumerate() {
            if (firsts[i]..=last).contains(&index) {
                total.merge(&r.partial(&empties[i], inputs[i], start)?);
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
    match blob.first() {
        Some(&TILES_VERSION) => {}
        Some(3) => {
            return Err(Error::Corrupt(
                "an aggregation value in the flat tiles of an earlier Quiver (format byte 3): materialize the view again (`quiver materialize`)".into(),
            ));
        }
        other => {
            return Err(Error::Corrupt(format!(
                "not an aggregation value (format byte {other:?})"
            )));
        }
    }
    if blob.len() < HEADER + 2 * SEGMENT_HEADER + 4 + CHECKSUM {
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

/// Adds one event to each of `partials` (one per aggregate).
pub(crate) fn add_partials(
    partials: &mut [Partial],
    aggregations: &Aggregations,
    (event_ns, created_ns): Stamp,
    values: &[Option<Value>],
) {
    for ((p, a), v) in partials.iter_mut().zip(&aggregations.items).zip(values) {
        p.add(event_ns, created_ns, v.as_ref(), a.column.is_some());
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
    add_partials(
        &mut tile.partials,
        aggregations,
        (event_ns, created_ns),
        values,
    );
}

mod codec;
mod segment;
#[cfg(test)]
mod tests;
