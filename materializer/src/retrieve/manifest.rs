//! The manifest written next to a training table: everything needed to compute the same table
//! again, and to notice when that is no longer possible (a source file changed, the entity table
//! changed, the registry version is gone).

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use quiver_registry::FeatureRef;
use quiver_registry::source_schema::{is_url, resolve_source_files};
use quiver_registry::store::RegistryVersion;
use serde::{Deserialize, Serialize};

use super::Options;
use super::entities::{EntityFormat, EntityInput, sha256_file};
use crate::error::{Error, Result};
use crate::materialize::rfc3339;

pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub manifest_version: u32,
    pub quiver_version: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub project: String,
    pub registry: RegistryRef,
    /// The features as the user selected them (a feature service or references).
    pub selection: String,
    /// The resolved features, `view:feature`, in output order.
    pub features: Vec<String>,
    pub options: Options,
    pub entities: EntityFingerprint,
    /// Every file of every source the features are read from.
    pub sources: Vec<FileFingerprint>,
    pub output: OutputInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryRef {
    pub version: u64,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityFingerprint {
    pub path: PathBuf,
    pub format: EntityFormat,
    pub timestamp_column: String,
    pub size: u64,
    pub sha256: String,
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFingerprint {
    pub source: String,
    pub path: PathBuf,
    pub size: u64,
    /// Modification time, ns since the Unix epoch.
    pub modified_ns: i64,
    pub rows: u64,
    /// The object's ETag (and version, where the store keeps versions), for files on object
    /// storage: what tells a rewritten object from the recorded one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputInfo {
    pub path: PathBuf,
    pub rows: u64,
    pub columns: Vec<String>,
}

/// `train.parquet` → `train.manifest.json`.
pub fn manifest_path(output: &Path) -> PathBuf {
    output.with_extension("manifest.json")
}

fn parquet_rows(path: &Path) -> Result<u64> {
    let file = std::fs::File::open(path).map_err(Error::io(path))?;
    let reader = parquet::file::reader::SerializedFileReader::new(file)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    use parquet::file::reader::FileReader;
    Ok(reader.metadata().file_metadata().num_rows().max(0) as u64)
}

fn file_fingerprint(source: &str, path: &Path, with_rows: bool) -> Result<FileFingerprint> {
    let meta = std::fs::metadata(path).map_err(Error::io(path))?;
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    Ok(FileFingerprint {
        source: source.to_string(),
        path: path.to_path_buf(),
        size: meta.len(),
        modified_ns,
        rows: if with_rows { parquet_rows(path)? } else { 0 },
        etag: None,
    })
}

/// The files of every source the features read, in a stable order.
pub fn source_fingerprints(
    registry: &RegistryVersion,
    root: &Path,
    features: &[FeatureRef],
    with_rows: bool,
) -> Result<Vec<FileFingerprint>> {
    let mut sources: Vec<&str> = features
        .iter()
        .filter_map(|f| registry.registry.feature_views.get(&f.view))
        .filter_map(|v| registry.registry.batch_source(v))
        .map(|s| s.name.as_str())
        .collect();
    sources.sort_unstable();
    sources.dedup();
    let mut out = Vec::new();
    for name in sources {
        let source = registry
            .registry
            .sources
            .get(name)
            .ok_or_else(|| Error::Invalid(format!("unknown source `{name}`")))?;
        if is_url(&source.path) {
            out.extend(crate::storage::block_on(|| {
                remote_fingerprints(root, source, with_rows)
            })?);
            continue;
        }
        let files = resolve_source_files(root, &source.path)
            .map_err(|e| Error::Invalid(format!("source `{name}`: {e}")))?;
        for f in files {
            let mut print = file_fingerprint(name, &f, with_rows)?;
            // Recorded relative to the repository, so a moved checkout still rebuilds.
            if let Ok(rel) = f.strip_prefix(root) {
                print.path = rel.to_path_buf();
            }
            out.push(print);
        }
    }
    Ok(out)
}

impl EntityFingerprint {
    pub fn of(input: &EntityInput, rows: u64) -> Result<Self> {
        let size = std::fs::metadata(&input.path)
            .map_err(Error::io(&input.path))?
            .len();
        Ok(EntityFingerprint {
            path: std::path::absolute(&input.path).map_err(Error::io(&input.path))?,
            format: input.format,
            timestamp_column: input.timestamp_column.clone(),
            size,
            sha256: input.sha256()?,
            rows,
        })
    }
}

impl Manifest {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
        let m: Manifest = serde_json::from_str(&text)
            .map_err(|e| Error::Invalid(format!("manifest {}: {e}", path.display())))?;
        if m.manifest_version != MANIFEST_VERSION {
            return Err(Error::Invalid(format!(
                "manifest {}: version {} is not supported (this Quiver reads version {MANIFEST_VERSION})",
                path.display(),
                m.manifest_version
            )));
        }
        Ok(m)
    }

    /// Writes the manifest atomically (a temporary file renamed into place).
    pub fn write(&self, path: &Path) -> Result<()> {
        // Temporaries of killed runs go first; this run's is removed when anything fails.
        super::output_file::remove_stale_temps(path);
        let tmp = super::temp_path(path);
        let text = serde_json::to_string_pretty(self).expect("a manifest serializes");
        let written = std::fs::write(&tmp, text + "\n")
            .map_err(Error::io(&tmp))
            .and_then(|()| std::fs::rename(&tmp, path).map_err(Error::io(path)));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// The reasons the table can no longer be rebuilt exactly, if any: the registry version's
    /// content, a source file (added, removed, resized or modified), or the entity table.
    pub fn check_inputs(&self, registry: &RegistryVersion, root: &Path) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        if registry.hash != self.registry.hash {
            problems.push(format!(
                "registry version {} has content hash {}, the manifest recorded {}",
                registry.version, registry.hash, self.registry.hash
            ));
        }
        let features = self.feature_refs()?;
        let now = source_fingerprints(registry, root, &features, false)?;
        for old in &self.sources {
            match now.iter().find(|n| n.path == old.path) {
                None => problems.push(format!(
                    "source file {} (of `{}`) is gone",
                    old.path.display(),
                    old.source
                )),
                // On object storage the ETag (and version) names the content: an identical
                // re-upload is the same file though its modified time moved.
                Some(n)
                    if n.size != old.size
                        || n.etag != old.etag
                        || (old.etag.is_none() && n.modified_ns != old.modified_ns) =>
                {
                    problems.push(format!(
                        "source file {} changed: now {} bytes modified {}, the manifest recorded {} bytes modified {}",
                        old.path.display(),
                        n.size,
                        rfc3339(n.modified_ns),
                        old.size,
                        rfc3339(old.modified_ns)
                    ));
                }
                Some(_) => {}
            }
        }
        for n in &now {
            if !self.sources.iter().any(|o| o.path == n.path) {
                problems.push(format!(
                    "source `{}` has a new file {}",
                    n.source,
                    n.path.display()
                ));
            }
        }
        let e = &self.entities;
        let shown = e.path.to_string_lossy();
        if is_url(&shown) {
            let (store, url) = crate::storage::open_url(&shown)?;
            let (copy, _) = crate::storage::block_on(|| {
                crate::storage::fetch_to_temp(store.as_ref(), &url.path, &url.shown)
            })?;
            let sha = sha256_file(copy.path())?;
            if sha != e.sha256 {
                problems.push(format!(
                    "entity table {} changed (SHA-256 {sha}, the manifest recorded {})",
                    url.shown, e.sha256
                ));
            }
            return Ok(problems);
        }
        match std::fs::metadata(&e.path) {
            Err(err) => problems.push(format!("entity table {}: {err}", e.path.display())),
            Ok(_) => {
                let sha = sha256_file(&e.path)?;
                if sha != e.sha256 {
                    problems.push(format!(
                        "entity table {} changed (SHA-256 {sha}, the manifest recorded {})",
                        e.path.display(),
                        e.sha256
                    ));
                }
            }
        }
        Ok(problems)
    }

    pub fn feature_refs(&self) -> Result<Vec<FeatureRef>> {
        self.features
            .iter()
            .map(|f| {
                f.split_once(':')
                    .map(|(v, f)| FeatureRef {
                        view: v.into(),
                        feature: f.into(),
                    })
                    .ok_or_else(|| {
                        Error::Invalid(format!("manifest feature `{f}` is not `view:feature`"))
                    })
            })
            .collect()
    }
}

/// The files of a source on object storage: path (its URL), size, last modified, ETag, and
/// (with `with_rows`) rows from each footer.
async fn remote_fingerprints(
    root: &Path,
    source: &quiver_registry::Source,
    with_rows: bool,
) -> Result<Vec<FileFingerprint>> {
    use futures::StreamExt as _;
    let dataset = crate::source::Dataset::of(root, source)?;
    let files = dataset.files().await?;
    let prints = futures::stream::iter(files.into_iter().map(|meta| {
        let dataset = &dataset;
        async move {
            let rows = match with_rows {
                true => crate::source::footer_rows(dataset.store.as_ref(), &meta)
                    .await
                    .map_err(|e| {
                        Error::Invalid(format!("{}: {e}", dataset.url.with_path(&meta.location)))
                    })?,
                false => 0,
            };
            let etag = match (&meta.e_tag, &meta.version) {
                (Some(e), Some(v)) => Some(format!("{e} (version {v})")),
                (Some(e), None) => Some(e.clone()),
                (None, Some(v)) => Some(format!("version {v}")),
                (None, None) => None,
            };
            Ok::<_, Error>(FileFingerprint {
                source: source.name.clone(),
                path: PathBuf::from(dataset.url.with_path(&meta.location)),
                size: meta.size,
                modified_ns: meta.last_modified.timestamp_nanos_opt().unwrap_or(0),
                rows,
                etag,
            })
        }
    }))
    .buffered(16)
    .collect::<Vec<_>>()
    .await;
    prints.into_iter().collect()
}
