//! Records of materialization runs, kept next to the registry versions they used.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One view's materialization over one time range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaterializationRun {
    pub view: String,
    pub generation: u64,
    pub registry_version: u64,
    /// `[start, end)` as RFC 3339; `start` is absent for "from the beginning of the source".
    pub start: Option<String>,
    pub end: String,
    pub rows_read: u64,
    /// Distinct data files the scan read (after partition and file pruning), and the bytes it
    /// fetched from them (footers included); absent in records of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_read: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_read: Option<u64>,
    /// The Ballista cluster the scan ran on (`df://host:port`); absent for the local engine.
    /// The cluster's executors read the files, so `files_read` and `bytes_read` are absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Entities whose latest row in the range was found.
    pub entities: u64,
    /// Keys actually stored (the rest already held a newer value).
    pub keys_written: u64,
    pub seconds: f64,
    pub finished_at: String,
    pub features: BTreeMap<String, FeatureStats>,
    /// The view's watermark after the run (RFC 3339), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// Why the watermark did not move to `end` (a gap before `start`, an `end` in the future).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark_note: Option<String>,
    /// Keys the online store evicted while the run wrote (Redis `evicted_keys` grew), when it
    /// counts them; a run commits with evictions only under `allow_eviction: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evicted_keys: Option<u64>,
    /// What the user should know about the run although it succeeded (evictions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Statistics of one feature over the rows read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    pub null_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
}

impl MaterializationRun {
    /// The watermark the view had after this run: its `watermark`, or `end` for records from
    /// before that field existed (every completed run then moved it to `end`); `None` for a run
    /// after which the view had no watermark (a range after a gap on a view without one).
    pub fn reached(&self) -> Option<&str> {
        match (&self.watermark, &self.watermark_note) {
            (Some(w), _) => Some(w),
            (None, None) => Some(&self.end),
            (None, Some(_)) => None,
        }
    }

    /// Whether this record can stand for its (view, generation) in the index of newest records:
    /// it says how far the generation was materialized. (A record after which the view had no
    /// watermark must not hide an older one that had: a wiped store would go unnoticed.)
    pub fn indexed(&self) -> bool {
        self.reached().is_some()
    }
}
