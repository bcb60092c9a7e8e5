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

use quiver_registry::Aggregations;
use quiver_registry::aggregation::{first_tile, tile_of};

use crate::aggregate::{Partial, input_type};
use crate::error::{Error, Result};
use crate::value_codec::{Value, ordered_i64};
use codec::{Reader, put_partial, put_time};
use layout::{Parts, live_checksum, split, split_live};
pub use segment::{Segment, Suffixes};
use segment::{SegmentHeader, check_framing};
pub use window::window_of;

use crate::store::{LIVE_AT, LIVE_HEADER, LIVE_LEN};

/// The first byte of a tiles value (plain values are 1 and 2; 3 was the flat tiles of an
/// earlier version).
pub const TILES_VERSION: u8 = 4;
/// Bytes 1..17: the cutoff (order-preserving) and the write sequence (big-endian): the token a
/// compare-and-set compares.
pub const TOKEN: std::ops::Range<usize> = 1..17;
/// Format byte, token, number of aggregates, the live part's offset and length.
pub(crate) const HEADER: usize = LIVE_HEADER;
/// A segment's fixed header: entries, bytes after the header, first and last tile, the latest
/// event (presence, time, created presence, created time).
pub(crate) const SEGMENT_HEADER: usize = 4 + 4 + 8 + 8 + 1 + 8 + 1 + 8;
/// The live part's first field: the last push's wall time (i64; `i64::MIN`: none).
pub(crate) const PUSHED_AT: usize = 8;
pub(crate) const CHECKSUM: usize = 4;

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
    /// The wall time of the last push written into it (`None`: never pushed to): a run that
    /// started reading its source before it leaves the value alone (its scan may have missed
    /// those events).
    pub pushed_at_ns: Option<i64>,
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
            pushed_at_ns: None,
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
        self.pushed_at_ns = stored.pushed_at_ns;
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

    /// The whole value: header, batch part (segment and checksum), live part (pushed segment,
    /// head and a checksum over the header and the live part).
    pub fn encode(&self, aggregations: &Aggregations) -> Vec<u8> {
        let mut batch = Vec::new();
        self.batch.encode(aggregations, &mut batch);
        let live = self.encode_live(aggregations);
        let live_at = HEADER + batch.len() + CHECKSUM;
        let header = self.header(aggregations, live_at, live.len() + CHECKSUM);
        let mut buf = Vec::with_capacity(live_at + live.len() + CHECKSUM);
        buf.extend_from_slice(&header);
        buf.extend_from_slice(&batch);
        buf.extend_from_slice(&crc32fast::hash(&batch).to_le_bytes());
        buf.extend_from_slice(&live);
        buf.extend_from_slice(&live_checksum(&header, &live));
        buf
    }

    /// The header and the live part (checksum included) of this value, for an in-place update
    /// of a stored value whose batch part, unchanged, ends at `live_at`.
    pub fn encode_live_update(
        &self,
        aggregations: &Aggregations,
        live_at: usize,
    ) -> (Vec<u8>, Vec<u8>) {
        let mut live = self.encode_live(aggregations);
        let header = self.header(aggregations, live_at, live.len() + CHECKSUM);
        let sum = live_checksum(&header, &live);
        live.extend_from_slice(&sum);
        (header.to_vec(), live)
    }

    fn header(&self, aggregations: &Aggregations, live_at: usize, live_len: usize) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[0] = TILES_VERSION;
        h[1..9].copy_from_slice(&ordered_i64(self.cutoff_ns));
        h[9..17].copy_from_slice(&self.seq.to_be_bytes());
        h[17..21].copy_from_slice(&(aggregations.items.len() as u32).to_le_bytes());
        h[LIVE_AT].copy_from_slice(&(live_at as u32).to_le_bytes());
        h[LIVE_LEN].copy_from_slice(&(live_len as u32).to_le_bytes());
        h
    }

    /// The pushed segment and the head, without a checksum.
    fn encode_live(&self, aggregations: &Aggregations) -> Vec<u8> {
        let mut buf = Vec::with_capacity(2 * SEGMENT_HEADER + self.head.len() * 64);
        buf.extend_from_slice(&self.pushed_at_ns.unwrap_or(i64::MIN).to_le_bytes());
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
        buf
    }

    /// A stored value. Its segments stay encoded (checked for framing and order) until a
    /// write opens them; the head is decoded.
    pub fn decode(blob: &[u8], aggregations: &Aggregations) -> Result<Tiles> {
        Tiles::of_parts(&split(blob)?, aggregations)
    }

    /// A value's header and live part as [`crate::OnlineStore::read_live`] reads them: the
    /// batch segment is [`Segment::Unread`]; with where the live part starts and how long it
    /// is, for [`Tiles::encode_live_update`].
    pub fn decode_live(bytes: &[u8], aggregations: &Aggregations) -> Result<LiveValue> {
        let parts = split_live(bytes)?;
        Ok(LiveValue {
            tiles: Tiles::of_parts(&parts, aggregations)?,
            live_at: parts.live_at,
            live_len: bytes.len() - HEADER,
        })
    }

    fn of_parts(parts: &Parts, aggregations: &Aggregations) -> Result<Tiles> {
        let mut r = Reader {
            buf: parts.header,
            pos: 1,
        };
        let cutoff_ns = (u64::from_be_bytes(r.array()?) ^ (1 << 63)) as i64;
        let seq = u64::from_be_bytes(r.array()?);
        check_aggregates(&mut r, aggregations)?;
        let segment = |bytes: &[u8]| -> Result<(Segment, usize)> {
            let header = SegmentHeader::read(bytes)?;
            let bytes = &bytes[..header.len];
            check_framing(bytes, &header)?;
            Ok((Segment::Encoded(bytes.to_vec()), header.len))
        };
        let batch = match parts.batch {
            None => Segment::Unread,
            Some(bytes) => {
                let (batch, len) = segment(bytes)?;
                if len != bytes.len() {
                    return Err(Error::Corrupt(
                        "trailing bytes in aggregation batch part".into(),
                    ));
                }
                batch
            }
        };
        let pushed_at_ns = Some(i64::from_le_bytes(
            parts.live[..PUSHED_AT].try_into().expect("checked length"),
        ))
        .filter(|t| *t != i64::MIN);
        let (pushed, len) = segment(&parts.live[PUSHED_AT..])?;
        let mut r = Reader {
            buf: parts.live,
            pos: PUSHED_AT + len,
        };
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
        if r.pos != parts.live.len() {
            return Err(Error::Corrupt("trailing bytes in aggregation value".into()));
        }
        Ok(Tiles {
            cutoff_ns,
            seq,
            pushed_at_ns,
            batch,
            pushed,
            head,
        })
    }
}

/// A value read without its batch part, and where its live part is.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveValue {
    pub tiles: Tiles,
    pub live_at: usize,
    /// The stored live part's length (checksum included): an in-place update may not shorten it.
    pub live_len: usize,
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
mod layout;
mod segment;
#[cfg(test)]
mod tests;
mod window;
