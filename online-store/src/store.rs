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
}
