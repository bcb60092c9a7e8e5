//! The `OnlineStore` trait: batch read, batch write-if-newer, per-view watermarks.
//! Backends implement it; this module knows none of them (opening one from the configuration
//! is [`crate::open::open`]'s job).

use async_trait::async_trait;

use crate::error::Result;
use crate::health::StoreReport;

/// One blob to store under `key`, unless a newer one is there already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteEntry {
    pub key: String,
    pub blob: Vec<u8>,
    /// Unix time in milliseconds after which the value is useless (event time + ttl); backends
    /// that can expire keys (Redis) drop it then.
    pub expire_at_ms: Option<i64>,
}

/// One value to store under `key` only if the key still holds what the writer read (a
/// compare-and-set): `expected` is the first [`SWAP_PREFIX`] bytes of the value read, `None` when
/// the key was absent. Aggregation tiles are read, merged and written back this way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapEntry {
    pub key: String,
    pub expected: Option<Vec<u8>>,
    pub blob: Vec<u8>,
    pub expire_at_ms: Option<i64>,
}

/// How much of a stored value a [`SwapEntry`] compares: a tiles value's version byte, cutoff
/// and write sequence (docs/online-format.md).
pub const SWAP_PREFIX: usize = 17;

/// The `expected` of a [`SwapEntry`] for a value read as `stored`.
pub fn swap_expected(stored: Option<&[u8]>) -> Option<Vec<u8>> {
    stored.map(|b| b[..b.len().min(SWAP_PREFIX)].to_vec())
}

/// An aggregation value's fixed header (docs/online-format.md, "Aggregation tiles"): format
/// byte, token, number of aggregates, then where its live part starts and how long it is.
pub const LIVE_HEADER: usize = 29;
/// Bytes of the header holding the live part's offset (u32 little-endian).
pub const LIVE_AT: std::ops::Range<usize> = 21..25;
/// Bytes of the header holding the live part's length, its checksum included (u32 LE).
pub const LIVE_LEN: std::ops::Range<usize> = 25..29;

/// An in-place compare-and-set of an aggregation value's header and live part (a push): if the
/// key's value starts with `expected`, its first [`LIVE_HEADER`] bytes become `header` and its
/// bytes from `live_at` on become `live` (never shorter than the live part it replaces, so the
/// value ends where `live` does). The batch part between them is left as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSwapEntry {
    pub key: String,
    pub expected: Vec<u8>,
    pub header: Vec<u8>,
    pub live_at: usize,
    pub live: Vec<u8>,
    /// Unix ms to expire the key at (`None`: leave its expiry as it is).
    pub expire_at_ms: Option<i64>,
}

/// What [`OnlineStore::read_live`] answers for a stored value: its header and its bytes from
/// the header's live offset on (the header alone if the offset is past the end).
pub fn live_part(value: &[u8]) -> Vec<u8> {
    let header = &value[..value.len().min(LIVE_HEADER)];
    let mut out = header.to_vec();
    if header.len() == LIVE_HEADER {
        let at = u32::from_le_bytes(header[LIVE_AT].try_into().expect("4 bytes")) as usize;
        if at <= value.len() {
            out.extend_from_slice(&value[at..]);
        }
    }
    out
}

/// `value` with `entry` applied, if its token matches (the embedded store's
/// [`OnlineStore::swap_live`]).
pub fn splice_live(value: &[u8], entry: &LiveSwapEntry) -> Option<Vec<u8>> {
    if !value.starts_with(&entry.expected)
        || value.len() < entry.live_at
        || entry.live_at < LIVE_HEADER
        || entry.header.len() != LIVE_HEADER
    {
        return None;
    }
    let mut out = Vec::with_capacity(entry.live_at + entry.live.len());
    out.extend_from_slice(&entry.header);
    out.extend_from_slice(&value[LIVE_HEADER..entry.live_at]);
    out.extend_from_slice(&entry.live);
    Some(out)
}

#[async_trait]
pub trait OnlineStore: Send + Sync + std::fmt::Debug {
    /// Stores each entry whose `(event_ts, created_ts)` is not older than the stored one's,
    /// atomically per key. Returns how many entries were stored.
    async fn write(&self, entries: Vec<WriteEntry>) -> Result<u64>;
    /// Compare-and-set, atomically per key: stores each entry whose key still holds the value
    /// it expects. Returns, per entry in order, whether it was stored.
    async fn swap(&self, entries: Vec<SwapEntry>) -> Result<Vec<bool>>;
    /// The blobs under `keys`, in order; all in one round trip.
    async fn read(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>>;
    /// [`OnlineStore::read`] for a compare-and-set that follows: bounded by the write timeout
    /// (serving's reads have a shorter one).
    async fn read_for_update(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        self.read(keys).await
    }
    /// For aggregation values: each one's header and live part ([`live_part`]), without the
    /// batch part a push leaves alone; all in one round trip.
    async fn read_live(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>>;
    /// In-place compare-and-sets of aggregation values' live parts ([`LiveSwapEntry`]),
    /// atomically per key. Returns, per entry in order, whether it was stored.
    async fn swap_live(&self, entries: Vec<LiveSwapEntry>) -> Result<Vec<bool>>;
    /// The exclusive end (ns since the epoch) of what has been materialized for a view generation.
    async fn watermark(&self, project: &str, view: &str, generation: u64) -> Result<Option<i64>>;
    /// Moves the watermark to `end_ns` unless it is already later (it never moves back).
    async fn advance_watermark(
        &self,
        project: &str,
        view: &str,
        generation: u64,
        end_ns: i64,
    ) -> Result<()>;
    /// Whether the store answers.
    async fn ping(&self) -> Result<()>;
    /// What the store says about keeping values: whether it may evict them, whether they
    /// survive a restart, how many keys it has evicted (see [`StoreReport`]). What it refuses
    /// to tell is in the report; an error means the store did not answer at all. A store that
    /// keeps everything on disk (embedded) reports nothing to worry about.
    async fn health_report(&self) -> Result<StoreReport> {
        Ok(StoreReport::default())
    }
    /// Where the store is, for messages (no secrets).
    fn location(&self) -> String;
    /// Whether [`OnlineStore::write`] is cheaper when entries come in key order (a B-tree on
    /// disk: each write transaction then touches a contiguous run of pages instead of
    /// rewriting most of them). The materializer sorts a view's entries when it is.
    fn prefers_key_order(&self) -> bool {
        false
    }
}
