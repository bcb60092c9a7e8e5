//! Segments of a tiles value: tiles merged into suffixes, their bytes, and reading them
//! lazily (see the parent module's documentation).

use std::collections::BTreeMap;

use quiver_registry::Aggregations;

use super::codec::{Reader, put_partial, put_uvarint};
use super::{SEGMENT_HEADER, Stamp, Tile, add_partials};
use crate::aggregate::{Partial, input_type};
use crate::error::{Error, Result};
use crate::value_codec::Value;

/// Tiles merged into suffixes (see the module's documentation). Entries exist only at tiles
/// with events. Aggregate `i` is kept in the entry at tile `j` only when a window of it that
/// ends at or after the last entry can start there (`j + tiles_i > last`); elsewhere its
/// partial is not stored (and not meaningful in memory).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Suffixes {
    pub entries: BTreeMap<i64, Vec<Partial>>,
    /// The latest event in the segment (it is in the last entry's tile).
    pub latest: Option<Stamp>,
}

/// A segment as read (its encoded bytes, decoded only when a write must change it), as
/// changed, or not read at all (a push reads the batch segment's bytes never: it rewrites the
/// value's live part in place).
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Encoded(Vec<u8>),
    Open(Suffixes),
    Unread,
}

impl Suffixes {
    /// The suffixes of `tiles` (ascending by tile index).
    pub fn of_tiles<'a>(
        aggregations: &Aggregations,
        tiles: impl DoubleEndedIterator<Item = (&'a i64, &'a Tile)>,
    ) -> Suffixes {
        let mut out = Suffixes::default();
        out.extend(aggregations, tiles);
        out
    }

    /// Appends `tiles`, all after the last entry (ascending): every entry's suffix takes them
    /// in, and each of them becomes an entry.
    pub fn extend<'a>(
        &mut self,
        aggregations: &Aggregations,
        tiles: impl DoubleEndedIterator<Item = (&'a i64, &'a Tile)>,
    ) {
        let mut acc: Vec<Partial> = aggregations.items.iter().map(Partial::empty).collect();
        let mut added = Vec::new();
        for (index, tile) in tiles.rev() {
            for (a, p) in acc.iter_mut().zip(&tile.partials) {
                a.merge(p);
            }
            let stamp = (tile.latest_ns, tile.latest_created_ns);
            if self.latest.is_none_or(|l| stamp > l) {
                self.latest = Some(stamp);
            }
            added.push((*index, acc.clone()));
        }
        if added.is_empty() {
            return;
        }
        for partials in self.entries.values_mut() {
            for (p, a) in partials.iter_mut().zip(&acc) {
                p.merge(a);
            }
        }
        self.entries.extend(added);
    }

    /// Adds one event at tile `tile`, at or before the last entry.
    pub(super) fn add(
        &mut self,
        aggregations: &Aggregations,
        tile: i64,
        event: (i64, Option<i64>),
        values: &[Option<Value>],
    ) {
        if !self.entries.contains_key(&tile) {
            let from_next = self
                .entries
                .range(tile..)
                .next()
                .map(|(_, p)| p.clone())
                .unwrap_or_else(|| aggregations.items.iter().map(Partial::empty).collect());
            self.entries.insert(tile, from_next);
        }
        for partials in self.entries.range_mut(..=tile).map(|(_, p)| p) {
            add_partials(partials, aggregations, event, values);
        }
        if self.latest.is_none_or(|l| event > l) {
            self.latest = Some(event);
        }
    }

    /// Drops the entries before tile `first` (their suffixes hold nothing later windows need).
    fn drop_before(&mut self, first: i64) {
        self.entries = self.entries.split_off(&first);
        if self.entries.is_empty() {
            self.latest = None;
        }
    }

    pub(super) fn encode(&self, aggregations: &Aggregations, buf: &mut Vec<u8>) {
        let hop = aggregations.hop_ns();
        let start = buf.len();
        buf.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        buf.extend_from_slice(&[0; 4]);
        let first = self.entries.keys().next().copied().unwrap_or(0);
        let last = self.entries.keys().next_back().copied().unwrap_or(0);
        buf.extend_from_slice(&first.to_le_bytes());
        buf.extend_from_slice(&last.to_le_bytes());
        let (flag, at, created) = match self.latest {
            Some((at, created)) => (1, at, created),
            None => (0, 0, None),
        };
        buf.push(flag);
        buf.extend_from_slice(&at.to_le_bytes());
        buf.push(u8::from(created.is_some()));
        buf.extend_from_slice(&created.unwrap_or(0).to_le_bytes());
        let mut previous = first;
        let mut scratch = Vec::new();
        for (index, partials) in &self.entries {
            scratch.clear();
            for (p, kept) in partials.iter().zip(kept(aggregations, hop, *index, last)) {
                if kept {
                    put_partial(&mut scratch, p, index.wrapping_mul(hop));
                }
            }
            put_uvarint(buf, index.wrapping_sub(previous) as u64 as u128);
            put_uvarint(buf, scratch.len() as u128);
            buf.extend_from_slice(&scratch);
            previous = *index;
        }
        let len = (buf.len() - start - 8) as u32;
        buf[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    }
}

/// Which aggregates the entry at tile `index` keeps, in a segment whose last entry is `last`.
pub(super) fn kept(
    aggregations: &Aggregations,
    hop: i64,
    index: i64,
    last: i64,
) -> impl Iterator<Item = bool> {
    aggregations
        .items
        .iter()
        .map(move |a| index.saturating_add(a.tiles(hop)) > last)
}

/// A segment's header fields.
pub(super) struct SegmentHeader {
    pub entries: usize,
    /// Bytes of the segment, header included.
    pub len: usize,
    pub first: i64,
    pub last: i64,
    pub latest: Option<Stamp>,
}

impl SegmentHeader {
    /// The header of the segment at the start of `bytes`.
    pub fn read(bytes: &[u8]) -> Result<SegmentHeader> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let entries = u32::from_le_bytes(r.array()?) as usize;
        let len = u32::from_le_bytes(r.array()?) as usize + 8;
        let first = i64::from_le_bytes(r.array()?);
        let last = i64::from_le_bytes(r.array()?);
        let has_latest = r.flag()?;
        let at = i64::from_le_bytes(r.array()?);
        let has_created = r.flag()?;
        let created = i64::from_le_bytes(r.array()?);
        if len > bytes.len() || len < SEGMENT_HEADER {
            return Err(Error::Corrupt("aggregation segment truncated".into()));
        }
        if (entries == 0) != (!has_latest && first == 0 && last == 0) || first > last {
            return Err(Error::Corrupt(
                "aggregation segment header inconsistent".into(),
            ));
        }
        Ok(SegmentHeader {
            entries,
            len,
            first,
            last,
            latest: has_latest.then_some((at, has_created.then_some(created))),
        })
    }
}

impl Segment {
    pub(super) fn empty() -> Segment {
        Segment::Open(Suffixes::default())
    }

    /// Its first and last entries' tiles (`None`: no entries).
    pub fn span(&self) -> Option<(i64, i64)> {
        match self {
            Segment::Open(s) => Some((*s.entries.keys().next()?, *s.entries.keys().next_back()?)),
            Segment::Encoded(b) => {
                let h = SegmentHeader::read(b).expect("checked when decoded");
                (h.entries > 0).then_some((h.first, h.last))
            }
            Segment::Unread => None,
        }
    }

    /// The suffixes, decoded if they were not yet.
    pub fn open(&mut self, aggregations: &Aggregations) -> Result<&mut Suffixes> {
        match self {
            Segment::Encoded(bytes) => *self = Segment::Open(decode_segment(bytes, aggregations)?),
            Segment::Open(_) => {}
            Segment::Unread => {
                return Err(Error::Unanswerable(
                    "the batch part of an aggregation value was not read".into(),
                ));
            }
        }
        match self {
            Segment::Open(s) => Ok(s),
            _ => unreachable!("opened above"),
        }
    }

    pub(super) fn encode(&self, aggregations: &Aggregations, buf: &mut Vec<u8>) {
        match self {
            Segment::Encoded(bytes) => buf.extend_from_slice(bytes),
            Segment::Unread => {
                unreachable!("a value with an unread batch part is only written in place")
            }
            Segment::Open(s) => s.encode(aggregations, buf),
        }
    }

    /// Drops the entries before tile `first`, decoding only when there are some.
    pub(super) fn drop_before(&mut self, aggregations: &Aggregations, first: i64) -> Result<()> {
        if self.span().is_some_and(|(f, _)| f < first) {
            self.open(aggregations)?.drop_before(first);
        }
        Ok(())
    }
}

/// A segment's entries are in order and fill it exactly (their partials are read by `open`).
pub(super) fn check_framing(bytes: &[u8], header: &SegmentHeader) -> Result<()> {
    let mut r = Reader {
        buf: &bytes[..header.len],
        pos: SEGMENT_HEADER,
    };
    let mut previous = None;
    for _ in 0..header.entries {
        let (index, len) = entry_frame(&mut r, previous, header.first)?;
        if index > header.last {
            return Err(Error::Corrupt(
                "aggregation segment entries out of order".into(),
            ));
        }
        previous = Some(index);
        r.take(len)?;
    }
    if r.pos != header.len || previous != (header.entries > 0).then_some(header.last) {
        return Err(Error::Corrupt("aggregation segment length mismatch".into()));
    }
    Ok(())
}

/// An entry's tile and the length of its partials: the tile as its distance to the entry
/// before (the first's to the segment's first tile, so 0), strictly increasing.
pub(super) fn entry_frame(
    r: &mut Reader,
    previous: Option<i64>,
    first: i64,
) -> Result<(i64, usize)> {
    let delta: u64 = r.count()?;
    let index = previous
        .unwrap_or(first)
        .checked_add_unsigned(delta)
        .filter(|_| {
            if previous.is_some() {
                delta > 0
            } else {
                delta == 0
            }
        })
        .ok_or_else(|| Error::Corrupt("aggregation segment entries out of order".into()))?;
    Ok((index, r.count()?))
}

pub(super) fn decode_segment(bytes: &[u8], aggregations: &Aggregations) -> Result<Suffixes> {
    let hop = aggregations.hop_ns();
    let header = SegmentHeader::read(bytes)?;
    check_framing(bytes, &header)?;
    let mut r = Reader {
        buf: &bytes[..header.len],
        pos: SEGMENT_HEADER,
    };
    let mut out = Suffixes {
        entries: BTreeMap::new(),
        latest: header.latest,
    };
    let mut previous = None;
    for _ in 0..header.entries {
        let (index, len) = entry_frame(&mut r, previous, header.first)?;
        previous = Some(index);
        let end = r.pos + len;
        let partials = aggregations
            .items
            .iter()
            .zip(kept(aggregations, hop, index, header.last))
            .map(|(a, kept)| {
                if kept {
                    r.partial(&Partial::empty(a), input_type(a), index.wrapping_mul(hop))
                } else {
                    Ok(Partial::empty(a))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        if r.pos != end {
            return Err(Error::Corrupt("aggregation entry length mismatch".into()));
        }
        out.entries.insert(index, partials);
    }
    Ok(out)
}
