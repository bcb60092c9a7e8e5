//! Aggregation views online: events → tiles, and tiles → the store with a compare-and-set per
//! entity, so that materialization and pushes never lose each other's updates.
//!
//! Materialization computes the tiles before its cutoff (its END, aligned down to the hop) from
//! the batch source and replaces that part of each entity's value; pushes add their events to
//! the tiles from the cutoff on. An event pushed with a time before the cutoff is not added
//! online (the materialization that set the cutoff may already have counted it): it counts
//! once it reaches the batch source and the next run. Every write trims tiles no window can
//! reach any more.

use std::collections::{BTreeMap, HashMap};

use arrow::record_batch::RecordBatch;
use quiver_online_store::store::swap_expected;
use quiver_online_store::tiles::{Tile, Tiles, add_to_tile, empty_tile};
use quiver_online_store::value_codec::Value;
use quiver_online_store::{LiveSwapEntry, OnlineStore, SwapEntry};
use quiver_registry::aggregation::tile_of;
use quiver_registry::{Aggregations, FeatureView, Registry};

use crate::columns::{Layout, Rows};
use crate::error::{Error, Result};

/// One event: its times and each aggregate's column value.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_ns: i64,
    pub created_ns: Option<i64>,
    pub values: Vec<Option<Value>>,
}

/// What to do to one entity's tiles.
#[derive(Debug, Clone)]
pub enum Update {
    /// Materialization: the tiles before `cutoff_ns`, computed from the batch source as it was
    /// when the run started reading it (`read_from_ns`, wall time).
    Batch {
        cutoff_ns: i64,
        tiles: BTreeMap<i64, Tile>,
        read_from_ns: i64,
    },
    /// Pushed events.
    Events(Vec<Event>),
}

/// What a round of updates did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Entities whose value was stored.
    pub written: u64,
    /// Materializations older than the stored value's cutoff: nothing to do.
    pub stale: u64,
    /// Pushed events before the stored cutoff: left to the next materialization.
    pub late_events: u64,
    /// Entities whose stored tiles a run computed again: nothing written.
    pub unchanged: u64,
    /// Entities pushed to after the run started reading its source: left as they are (its
    /// scan may have missed those events; the next run rewrites them).
    pub pushed_during: u64,
}

impl Applied {
    fn add(&mut self, other: Applied) {
        self.written += other.written;
        self.stale += other.stale;
        self.late_events += other.late_events;
        self.unchanged += other.unchanged;
        self.pushed_during += other.pushed_during;
    }
}

/// Rounds of read-merge-swap before giving up on keys that keep changing under us; between
/// rounds a writer backs off a random while (up to [`MAX_BACKOFF`], doubling), so writers of a
/// hot entity take turns instead of colliding again.
const MAX_ROUNDS: usize = 64;
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_millis(20);

/// The layout of a view's events in a batch: join keys, times, and the aggregates' columns.
pub fn layout(
    registry: &Registry,
    view: &FeatureView,
    timestamp: &str,
    created: Option<&str>,
) -> Layout {
    let aggregations = view.aggregations.as_ref().expect("an aggregation view");
    Layout {
        join_keys: registry.join_keys(view).into_iter().cloned().collect(),
        timestamp: timestamp.to_string(),
        created: created.map(str::to_string),
        features: aggregations.input_fields(),
    }
}

/// Per aggregate, the index of its column in [`layout`]'s features.
pub fn column_indices(aggregations: &Aggregations) -> Vec<Option<usize>> {
    let columns = aggregations.input_columns();
    aggregations
        .items
        .iter()
        .map(|a| {
            a.column
                .as_ref()
                .and_then(|c| columns.iter().position(|(n, _)| n == c))
        })
        .collect()
}

/// The events of `batch` by entity key (in batch order). A null join key or event time is
/// refused with its row number.
pub fn events_by_entity(
    registry: &Registry,
    view: &FeatureView,
    batch: &RecordBatch,
    timestamp: &str,
    created: Option<&str>,
) -> Result<HashMap<String, Vec<Event>>> {
    let aggregations = view.aggregations.as_ref().expect("an aggregation view");
    let rows =
        Rows::new(batch, &layout(registry, view, timestamp, created)).map_err(Error::Invalid)?;
    let indices = column_indices(aggregations);
    let mut out: HashMap<String, Vec<Event>> = HashMap::new();
    let mut key = String::new();
    for row in 0..rows.num_rows() {
        let (event_ns, created_ns) = rows
            .identity(row, &mut key, &view.name, timestamp)
            .map_err(Error::Invalid)?;
        let values = indices
            .iter()
            .map(|i| i.and_then(|i| rows.value(i, row)))
            .collect();
        out.entry(key.clone()).or_default().push(Event {
            event_ns,
            created_ns,
            values,
        });
    }
    Ok(out)
}

/// Folds `events` (in the order given) into tiles.
pub fn tiles_of(aggregations: &Aggregations, events: &[Event]) -> BTreeMap<i64, Tile> {
    let hop = aggregations.hop_ns();
    let mut tiles: BTreeMap<i64, Tile> = BTreeMap::new();
    for e in events {
        let tile = tiles
            .entry(tile_of(e.event_ns, hop))
            .or_insert_with(|| empty_tile(aggregations));
        add_to_tile(tile, aggregations, e.event_ns, e.created_ns, &e.values);
    }
    tiles
}

/// The new value of one entity: `update` applied to what is stored (`None`: nothing to write),
/// and what it did, in `counts` (added to the totals once the write is final). `watermark` is
/// the view's last cutoff, which a push to an entity with nothing stored starts from. Tiles
/// complete at `now_ns` are sealed, and what no window can reach any more is trimmed.
fn next(
    aggregations: &Aggregations,
    stored: Option<Tiles>,
    update: &Update,
    (now_ns, watermark): (i64, Option<i64>),
    counts: &mut Applied,
) -> Result<Option<Tiles>> {
    let mut tiles = match update {
        Update::Batch {
            cutoff_ns,
            tiles,
            read_from_ns,
        } => {
            let mut next = Tiles::of_batch(aggregations, *cutoff_ns, tiles);
            match stored {
                Some(s) if s.cutoff_ns > *cutoff_ns => {
                    counts.stale += 1;
                    return Ok(None);
                }
                // Pushed events after the scan began may be in files it did not list: replacing
                // the pushed tiles before the new cutoff would lose them online.
                Some(s) if s.pushed_at_ns.is_some_and(|p| p >= *read_from_ns) => {
                    counts.pushed_during += 1;
                    return Ok(None);
                }
                Some(s) => {
                    next.seq = s.seq.wrapping_add(1);
                    // Pushed tiles from the new cutoff on stay; the rest is the batch's.
                    next.keep_pushed(aggregations, s)?;
                }
                None => {}
            }
            next
        }
        Update::Events(events) => {
            let mut next = stored.unwrap_or_else(|| Tiles::new(watermark.unwrap_or(i64::MIN)));
            next.seq = next.seq.wrapping_add(1);
            // Real time, not `now_ns` (a clock a test may fix): runs compare it with theirs.
            let wall = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
            next.pushed_at_ns = Some(next.pushed_at_ns.map_or(wall, |p| p.max(wall)));
            let mut fresh = 0;
            let cutoff_ns = next.cutoff_ns;
            for e in events.iter().filter(|e| e.event_ns >= cutoff_ns) {
                next.add(aggregations, e.event_ns, e.created_ns, &e.values)?;
                fresh += 1;
            }
            counts.late_events += (events.len() - fresh) as u64;
            if fresh == 0 {
                return Ok(None);
            }
            next
        }
    };
    tiles.seal(aggregations, now_ns)?;
    tiles.trim(aggregations, trim_time(&tiles, now_ns))?;
    Ok(Some(tiles))
}

/// The time tiles are trimmed for: now, but never later than just before the cutoff, so the
/// tiles a window at the last run's end needs stay (`quiver verify` compares there).
fn trim_time(tiles: &Tiles, now_ns: i64) -> i64 {
    if tiles.cutoff_ns == i64::MIN {
        now_ns
    } else {
        now_ns.min(tiles.cutoff_ns.saturating_sub(1))
    }
}

/// When a value with these tiles stops mattering: its newest tile's end plus the longest window
/// (Unix ms), so the store may drop it then.
fn expiry_ms(aggregations: &Aggregations, tiles: &Tiles) -> Option<i64> {
    let hop = aggregations.hop_ns();
    let newest = tiles
        .newest_tile()
        .unwrap_or(tile_of(tiles.cutoff_ns.max(0), hop));
    let end = newest
        .saturating_add(1)
        .saturating_add(aggregations.max_tiles())
        .saturating_mul(hop);
    Some(end.div_euclid(1_000_000))
}

/// How a pending update reads and writes its value: a push reads only the header and live
/// part and rewrites them in place; a run — or a push whose live part would shrink — reads and
/// compare-and-sets the whole value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Live,
    Whole,
}

/// `read`'s answer, or nothing without keys (no round trip).
async fn read_if_any(
    keys: &[String],
    read: impl std::future::Future<Output = quiver_online_store::Result<Vec<Option<Vec<u8>>>>>,
) -> Result<Vec<Option<Vec<u8>>>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    Ok(read.await?)
}

/// A push refused because the stored value fails its checks.
fn refused(view: &FeatureView, key: &str, e: quiver_online_store::Error) -> Error {
    Error::Store(quiver_online_store::Error::Corrupt(format!(
        "feature view `{}`, key {key}: {e}; the push was not applied to it — rebuild the value with `quiver materialize` (pushed events after the last run's cutoff are lost with it)",
        view.name
    )))
}

/// Applies `updates` (online key → update) to the store: read, merge, compare-and-set, and
/// again for keys another writer changed in between.
pub async fn apply(
    store: &dyn OnlineStore,
    project: &str,
    view: &FeatureView,
    updates: Vec<(String, Update)>,
    key_ttl: bool,
    now_ns: i64,
) -> Result<Applied> {
    let aggregations = view.aggregations.as_ref().expect("an aggregation view");
    let mut applied = Applied::default();
    let mut pending: Vec<(String, Update, Mode)> = updates
        .into_iter()
        .map(|(key, update)| {
            let mode = match update {
                Update::Events(_) => Mode::Live,
                Update::Batch { .. } => Mode::Whole,
            };
            (key, update, mode)
        })
        .collect();
    // Read once, when a push meets an entity with nothing stored.
    let mut watermark: Option<Option<i64>> = None;
    for round in 0..MAX_ROUNDS {
        if pending.is_empty() {
            return Ok(applied);
        }
        if round > 0 {
            let cap = (MAX_BACKOFF.as_micros() as u64).min(50 << round.min(16));
            let pause = rand::random_range(0..=cap);
            tokio::time::sleep(std::time::Duration::from_micros(pause)).await;
        }
        let keys_in = |mode: Mode| -> Vec<String> {
            pending
                .iter()
                .filter(|p| p.2 == mode)
                .map(|p| p.0.clone())
                .collect()
        };
        let (live_keys, whole_keys) = (keys_in(Mode::Live), keys_in(Mode::Whole));
        let mut live_read = read_if_any(&live_keys, store.read_live(&live_keys))
            .await?
            .into_iter();
        let mut whole_read = read_if_any(&whole_keys, store.read_for_update(&whole_keys))
            .await?
            .into_iter();
        let mut whole = Vec::new();
        let mut live = Vec::new();
        let mut sent = Vec::new();
        let mut sent_live = Vec::new();
        let mut again = Vec::new();
        for (key, update, mode) in std::mem::take(&mut pending) {
            let blob = match mode {
                Mode::Live => live_read.next(),
                Mode::Whole => whole_read.next(),
            }
            .expect("one answer per key");
            let (decoded, layout) = match (mode, blob.as_deref()) {
                (_, None) => (None, None),
                (Mode::Live, Some(b)) => match Tiles::decode_live(b, aggregations) {
                    Ok(v) => (Some(v.tiles), Some((v.live_at, v.live_len))),
                    Err(e) => return Err(refused(view, &key, e)),
                },
                (Mode::Whole, Some(b)) => match Tiles::decode(b, aggregations) {
                    Ok(t) => (Some(t), None),
                    // A push onto a value it cannot read would replace every event stored
                    // there by its own: refused, loudly; a run rebuilds the value.
                    Err(e) if matches!(update, Update::Events(_)) => {
                        return Err(refused(view, &key, e));
                    }
                    Err(e) => {
                        tracing::warn!(view = %view.name, %key, error = %e, "replacing an undecodable aggregation value");
                        (None, None)
                    }
                },
            };
            if decoded.is_none() && matches!(update, Update::Events(_)) && watermark.is_none() {
                watermark = Some(
                    store
                        .watermark(project, &view.name, view.generation)
                        .await?,
                );
            }
            let mut counts = Applied::default();
            let stored_seq = decoded.as_ref().map(|d| d.seq);
            let Some(tiles) = next(
                aggregations,
                decoded,
                &update,
                (now_ns, watermark.flatten()),
                &mut counts,
            )?
            else {
                applied.add(counts);
                continue;
            };
            let expire_at_ms = key_ttl.then(|| expiry_ms(aggregations, &tiles)).flatten();
            if let Some((live_at, live_len)) = layout {
                // A push: the header and live part in place, unless they would shrink (then
                // the whole value, next round).
                let (header, part) = tiles.encode_live_update(aggregations, live_at);
                if part.len() < live_len {
                    again.push((key, update, Mode::Whole));
                    continue;
                }
                live.push(LiveSwapEntry {
                    expected: swap_expected(blob.as_deref()).expect("a stored value"),
                    key: key.clone(),
                    header,
                    live_at,
                    live: part,
                    // Without a newest tile known here (the batch part is unread), the
                    // expiry stays as it is.
                    expire_at_ms: expire_at_ms.filter(|_| tiles.newest_tile().is_some()),
                });
                sent_live.push((key, update, counts));
                continue;
            }
            let encoded = tiles.encode(aggregations);
            // A run that computes what is stored writes nothing (compared as stored bytes, so
            // NaNs compare too); nor does one whose tiles are all too old, with nothing stored.
            if matches!(update, Update::Batch { .. }) {
                let same = match (stored_seq, blob.as_deref()) {
                    (Some(seq), Some(b)) => {
                        let mut again = tiles.clone();
                        again.seq = seq;
                        again.encode(aggregations) == b
                    }
                    (None, None) => tiles.is_empty(),
                    _ => false,
                };
                if same {
                    counts.unchanged += 1;
                    applied.add(counts);
                    continue;
                }
            }
            whole.push(SwapEntry {
                key: key.clone(),
                expected: swap_expected(blob.as_deref()),
                blob: encoded,
                expire_at_ms,
            });
            sent.push((key, update, counts, mode));
        }
        let stored = if whole.is_empty() {
            Vec::new()
        } else {
            store.swap(whole).await?
        };
        let stored_live = if live.is_empty() {
            Vec::new()
        } else {
            store.swap_live(live).await?
        };
        pending = again;
        for (ok, (key, update, counts, mode)) in stored.into_iter().zip(sent) {
            if ok {
                applied.written += 1;
                applied.add(counts);
            } else {
                pending.push((key, update, mode));
            }
        }
        for (ok, (key, update, counts)) in stored_live.into_iter().zip(sent_live) {
            if ok {
                applied.written += 1;
                applied.add(counts);
            } else {
                pending.push((key, update, Mode::Live));
            }
        }
    }
    if pending.is_empty() {
        return Ok(applied);
    }
    Err(Error::Invalid(format!(
        "feature view `{}`: {} entities' aggregation values kept changing under {MAX_ROUNDS} attempts to update them; try again",
        view.name,
        pending.len()
    )))
}
