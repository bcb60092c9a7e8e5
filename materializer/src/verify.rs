//! `verify`: the guarantee against training/serving skew, checked. For a sample of each online
//! view's entities, the value the online store holds must equal what point-in-time retrieval
//! computes from the offline source at the view's watermark (just before it, as materialization
//! ranges end exclusively), ignoring ttl (the store keeps a value until it is replaced; the ttl
//! is applied when serving).
//!
//! Per view: the watermark, a seeded sample of the entities with a row before it (`sample`), the
//! retrieval's answer for them (`offline`), the online store's in one read, and the two
//! compared value by value (`compare`); `render` shows the reports.
//!
//! An aggregation view is compared at one time `at` (just before its watermark, the last run's
//! cutoff, unless `--at` says otherwise): the online tiles merged at `at` against the retrieval
//! at `at`, entity by entity (an entity without an online value counts as one with an empty
//! window). A later `at` compares pushed tiles too, and agrees only when every event of the
//! batch source after the cutoff was pushed; a time inside a tile counts the whole tile online. Integer results must be equal; float
//! results (sums and means of floats, standard deviations) merge the same events in another
//! order on each side, so they must agree to 1e-9 relative (see docs/online-format.md).

mod compare;
mod offline;
mod render;
mod sample;

use std::path::Path;
use std::sync::Arc;

use quiver_online_store::OnlineStore;
use quiver_registry::FeatureView;
use quiver_registry::store::RegistryVersion;
use serde::Serialize;

use crate::error::Result;
use crate::materialize::rfc3339;
use crate::retrieve::Engine;
pub use render::render;

/// How many examples of disagreement a report keeps.
const EXAMPLES: usize = 5;

#[derive(Debug)]
pub struct VerifyJob<'a> {
    pub registry: &'a RegistryVersion,
    pub root: &'a Path,
    pub online: Arc<dyn OnlineStore>,
    /// Entities per view.
    pub sample: usize,
    pub seed: u64,
    pub engine: Engine,
    /// Online keys expire at event time + ttl (Redis `key_ttl: true`): an offline winner older
    /// than that is expected to be gone online, and is counted as expired, not missing.
    pub key_ttl: bool,
    /// What run records say each (view, generation) was materialized to
    /// ([`crate::materialize::recorded_watermarks`]): a view the store has no watermark for,
    /// though recorded, lost its data.
    pub recorded: std::collections::HashMap<(String, u64), String>,
    /// The time aggregation views are compared at (ns); `None`: just before each one's
    /// watermark. Their online answer depends on the time asked, so both sides are computed at
    /// this one time.
    pub at_ns: Option<i64>,
}

/// Agreement of one feature over the sample.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FeatureAgreement {
    pub feature: String,
    pub matched: u64,
    pub mismatched: u64,
    /// The offline join has a value row, the online store has nothing for the entity.
    pub missing: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ViewReport {
    pub view: String,
    /// RFC 3339; `None`: never materialized, nothing to compare.
    pub watermark: Option<String>,
    pub entities: u64,
    pub sampled: u64,
    /// Entities whose online value comes from a different (event, created) time than offline.
    pub time_mismatches: u64,
    /// Entities with no online value because their key expired (`key_ttl`), as it should.
    pub expired: u64,
    /// Entities whose online value is from a row at or after the watermark (written by an
    /// explicit range past a gap, or a run still going): newer than what verify compares with,
    /// so not compared.
    pub ahead: u64,
    /// Entities whose online value is damaged (checksum mismatch, or it does not decode): never
    /// served (`NOT_FOUND`), replaced by the next materialization of its range.
    pub corrupt: u64,
    /// An aggregation view's: the one time both sides were computed at (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared_at: Option<String>,
    /// Set when the online store has no watermark for a materialized generation: its data is
    /// gone (wiped, flushed, evicted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<String>,
    /// Set when an aggregation view is compared at a time whose longest window reaches before
    /// what its last run read (`--at` well before the watermark): says why values may differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub features: Vec<FeatureAgreement>,
    /// A few disagreements, described.
    pub examples: Vec<String>,
}

impl ViewReport {
    pub fn agrees(&self) -> bool {
        self.lost.is_none()
            && self.corrupt == 0
            && self.time_mismatches == 0
            && self
                .features
                .iter()
                .all(|f| f.mismatched == 0 && f.missing == 0)
    }
}

pub async fn verify(job: &VerifyJob<'_>, views: &[&FeatureView]) -> Result<Vec<ViewReport>> {
    let mut reports = Vec::new();
    for view in views {
        reports.push(verify_view(job, view).await?);
    }
    Ok(reports)
}

async fn verify_view(job: &VerifyJob<'_>, view: &FeatureView) -> Result<ViewReport> {
    let registry = &job.registry.registry;
    let mut report = ViewReport::new(view);
    let Some(watermark) = job
        .online
        .watermark(&registry.project, &view.name, view.generation)
        .await?
    else {
        if let Some(w) = job.recorded.get(&(view.name.clone(), view.generation)) {
            report.lost = Some(crate::materialize::lost_message(&view.name, w));
        }
        return Ok(report);
    };
    report.watermark = Some(rfc3339(watermark));
    if let Some(aggregations) = &view.aggregations {
        // Windows answer as of a time: both sides at the same one — by default just before the
        // watermark (the last run's cutoff), where every tile is the run's own. Online values
        // hold whole tiles, so a time is taken to the last instant of its tile (reported as
        // `compared_at`): mid-tile, the online side would count the tile's later events too.
        let at = job.at_ns.unwrap_or(watermark.saturating_sub(1));
        let hop = aggregations.hop_ns();
        let at = quiver_registry::aggregation::tile_of(at, hop)
            .saturating_add(1)
            .saturating_mul(hop)
            .saturating_sub(1);
        report.compared_at = Some(rfc3339(at));
        report.note = before_last_span(aggregations, watermark, at);
        let Some(sample) = sample::sample_entities(job, view, at).await? else {
            return Ok(report);
        };
        report.entities = sample.entities;
        report.sampled = sample.keys.num_rows() as u64;
        let offline = offline::offline_rows(job, view, sample.keys).await?;
        compare::compare_aggregates(job, view, &offline, at, &mut report).await?;
        return Ok(report);
    }
    // Just before the watermark: materialization ranges end exclusively.
    let at = watermark.saturating_sub(1);
    let Some(sample) = sample::sample_entities(job, view, at).await? else {
        return Ok(report);
    };
    report.entities = sample.entities;
    report.sampled = sample.keys.num_rows() as u64;
    let offline = offline::offline_rows(job, view, sample.keys).await?;
    compare::compare(job, view, &offline, watermark, &mut report).await?;
    Ok(report)
}

/// A run reads the tiles a window at its cutoff can reach (from the cutoff minus the longest
/// window) and replaces the batch part with them: a window ending at `at`, a tile or more
/// before the cutoff, reaches events the online value never read, which the offline side
/// counts. Said, not refused: where the source has no such events the two still agree.
fn before_last_span(
    aggregations: &quiver_registry::Aggregations,
    cutoff: i64,
    at: i64,
) -> Option<String> {
    let hop = aggregations.hop_ns();
    let longest = aggregations
        .items
        .iter()
        .map(|a| a.window.nanos())
        .max()
        .unwrap_or(hop);
    let read_from = cutoff.saturating_sub(longest);
    (at < cutoff.saturating_sub(hop)).then(|| {
        format!(
            "compared before the last run's cutoff {}: the online values hold the events from {} on (the cutoff minus the longest window), so windows reaching earlier miss events offline counts — a disagreement here need not be a fault; compare at the cutoff (the default) or later",
            rfc3339(cutoff),
            rfc3339(read_from)
        )
    })
}

impl ViewReport {
    /// Nothing compared yet.
    fn new(view: &FeatureView) -> Self {
        ViewReport {
            view: view.name.clone(),
            watermark: None,
            entities: 0,
            sampled: 0,
            time_mismatches: 0,
            expired: 0,
            ahead: 0,
            corrupt: 0,
            lost: None,
            note: None,
            compared_at: None,
            features: view
                .features
                .iter()
                .map(|f| FeatureAgreement {
                    feature: f.name.clone(),
                    ..Default::default()
                })
                .collect(),
            examples: Vec::new(),
        }
    }

    /// Keeps `example` if the report has fewer than [`EXAMPLES`].
    fn example(&mut self, example: impl FnOnce() -> String) {
        if self.examples.len() < EXAMPLES {
            self.examples.push(example());
        }
    }
}
