//! A value's layout: its header, batch part and live part, and their checksums.

use super::{CHECKSUM, HEADER, PUSHED_AT, SEGMENT_HEADER, TILES_VERSION};
use crate::error::{Error, Result};
use crate::store::{LIVE_AT, LIVE_LEN};

/// A value's parts, once its format byte, lengths and checksums are right.
pub(super) struct Parts<'a> {
    pub header: &'a [u8],
    /// The batch segment (`None`: not read).
    pub batch: Option<&'a [u8]>,
    /// The pushed segment and the head.
    pub live: &'a [u8],
    pub live_at: usize,
}

/// The live part's offset and length from a value's header.
pub(super) fn layout(bytes: &[u8]) -> Result<(usize, usize)> {
    match bytes.first() {
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
    if bytes.len() < HEADER {
        return Err(Error::Corrupt("aggregation value too short".into()));
    }
    let at = u32::from_le_bytes(bytes[LIVE_AT].try_into().expect("4 bytes")) as usize;
    let len = u32::from_le_bytes(bytes[LIVE_LEN].try_into().expect("4 bytes")) as usize;
    if at < HEADER + SEGMENT_HEADER + CHECKSUM || len < PUSHED_AT + SEGMENT_HEADER + 4 + CHECKSUM {
        return Err(Error::Corrupt(
            "aggregation value lengths inconsistent".into(),
        ));
    }
    Ok((at, len))
}

/// A whole value's parts.
pub(super) fn split(blob: &[u8]) -> Result<Parts<'_>> {
    let (live_at, live_len) = layout(blob)?;
    if live_at.checked_add(live_len) != Some(blob.len()) {
        return Err(Error::Corrupt(
            "aggregation value lengths inconsistent".into(),
        ));
    }
    let (batch, sum) = blob[HEADER..live_at].split_at(live_at - HEADER - CHECKSUM);
    if crc32fast::hash(batch).to_le_bytes() != sum {
        return Err(Error::Corrupt(
            "aggregation value checksum mismatch (batch part)".into(),
        ));
    }
    Ok(Parts {
        header: &blob[..HEADER],
        batch: Some(batch),
        live: checked_live(&blob[..HEADER], &blob[live_at..])?,
        live_at,
    })
}

/// The parts of a header and live part read without the batch part.
pub(super) fn split_live(bytes: &[u8]) -> Result<Parts<'_>> {
    let (live_at, live_len) = layout(bytes)?;
    if HEADER.checked_add(live_len) != Some(bytes.len()) {
        return Err(Error::Corrupt(
            "aggregation value lengths inconsistent".into(),
        ));
    }
    Ok(Parts {
        header: &bytes[..HEADER],
        batch: None,
        live: checked_live(&bytes[..HEADER], &bytes[HEADER..])?,
        live_at,
    })
}

/// A live part's content, once its checksum (over the header and the content) is right.
pub(super) fn checked_live<'a>(header: &[u8], live: &'a [u8]) -> Result<&'a [u8]> {
    let (content, sum) = live.split_at(live.len() - CHECKSUM);
    if live_checksum(header, content) != sum {
        return Err(Error::Corrupt("aggregation value checksum mismatch".into()));
    }
    Ok(content)
}

pub(super) fn live_checksum(header: &[u8], live: &[u8]) -> [u8; 4] {
    let mut h = crc32fast::Hasher::new();
    h.update(header);
    h.update(live);
    h.finalize().to_le_bytes()
}
