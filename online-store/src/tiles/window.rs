//! Serving's read: what an encoded value answers at a time, in one pass.

use quiver_registry::aggregation::{first_tile, tile_of};
use quiver_registry::{Aggregations, ScalarType};

use super::codec::Reader;
use super::layout::split;
use super::segment::{SegmentHeader, entry_frame, kept};
use super::{PUSHED_AT, SEGMENT_HEADER, Stamp, TOKEN, WindowValues, check_aggregates, head_frame};
use crate::aggregate::{Partial, input_type};
use crate::error::{Error, Result};

/// What an encoded value answers at `t_ns`, read in one pass without building anything: from
/// each segment the first entry at or after each aggregate's first tile, then the head tiles
/// in each window (serving's path).
pub fn window_of(blob: &[u8], aggregations: &Aggregations, t_ns: i64) -> Result<WindowValues> {
    let parts = split(blob)?;
    check_aggregates(
        &mut Reader {
            buf: parts.header,
            pos: TOKEN.end,
        },
        aggregations,
    )?;
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
    let mut r = Reader {
        buf: &parts.live[PUSHED_AT..],
        pos: 0,
    };
    let live = &parts.live[PUSHED_AT..];
    for bytes in [parts.batch.expect("a whole value"), live] {
        let header = SegmentHeader::read(bytes)?;
        let mut s = Reader {
            buf: &bytes[..header.len],
            pos: SEGMENT_HEADER,
        };
        if std::ptr::eq(bytes, live) {
            r.pos = header.len;
        } else if header.len != bytes.len() {
            return Err(Error::Corrupt(
                "trailing bytes in aggregation batch part".into(),
            ));
        }
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
    if r.pos != live.len() {
        return Err(Error::Corrupt("trailing bytes in aggregation value".into()));
    }
    let values = totals
        .iter()
        .zip(&aggregations.items)
        .map(|(p, a)| p.finish(a.function))
        .collect();
    Ok(WindowValues { values, latest })
}
