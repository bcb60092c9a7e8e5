//! Entity tables and outputs on object storage: an entity table is copied whole into a local
//! temporary file and read from there (its fingerprint is its content's, its path its URL); an
//! output is written to a local temporary file, then uploaded whole (multipart above 8 MiB,
//! completed only after the last part, aborted on failure) — with its manifest beside it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use object_store::ObjectStore;
use quiver_materializer::retrieve::EntityInput;
use quiver_materializer::retrieve::manifest::Manifest;
use quiver_materializer::storage::{StoreUrl, Upload, block_on, fetch_to_temp, open_url};
use quiver_registry::source_schema::is_url;
use quiver_registry::store::RegistryVersion;

use crate::exit::UserError;

/// An entity table, local or copied from object storage.
#[derive(Debug)]
pub struct Entities {
    pub input: EntityInput,
    /// The URL it was read from (`None`: a local file).
    pub url: Option<String>,
    /// The local copy, removed when this is dropped.
    _copy: Option<tempfile::NamedTempFile>,
}

impl Entities {
    pub fn open(path: &Path, timestamp_column: Option<&str>) -> Result<Entities> {
        let text = path.to_string_lossy();
        if !is_url(&text) {
            return Ok(Entities {
                input: EntityInput::open(path, timestamp_column)?,
                url: None,
                _copy: None,
            });
        }
        let (store, url) = open_url(&text).map_err(|e| UserError(format!("entity table: {e}")))?;
        let (copy, _) = block_on(|| fetch_to_temp(store.as_ref(), &url.path, &url.shown))
            .map_err(|e| UserError(format!("entity table {e}")))?;
        // The copy is named like the object, so the format is known by its extension.
        let input = EntityInput::open(copy.path(), timestamp_column).map_err(|e| {
            UserError(
                e.to_string()
                    .replace(&copy.path().display().to_string(), &url.shown),
            )
        })?;
        Ok(Entities {
            input,
            url: Some(text.to_string()),
            _copy: Some(copy),
        })
    }
}

/// Where the training table goes: a local path, or an object written from a local temporary.
#[derive(Debug)]
pub struct Output {
    /// As given.
    pub given: PathBuf,
    /// Where the table is written first (the output itself when local).
    pub local: PathBuf,
    remote: Option<(Arc<dyn ObjectStore>, StoreUrl)>,
    _dir: Option<tempfile::TempDir>,
}

impl Output {
    pub fn new(given: &Path) -> Result<Output> {
        let text = given.to_string_lossy();
        if !is_url(&text) {
            return Ok(Output {
                given: given.to_path_buf(),
                local: given.to_path_buf(),
                remote: None,
                _dir: None,
            });
        }
        let (store, url) = open_url(&text).map_err(|e| UserError(format!("--output: {e}")))?;
        let dir = tempfile::Builder::new()
            .prefix(".quiver-output-")
            .tempdir()
            .map_err(|e| {
                UserError(format!(
                    "--output {}: cannot create a temporary directory: {e}",
                    url.shown
                ))
            })?;
        let name = given
            .file_name()
            .map_or_else(|| "output.parquet".into(), |n| n.to_os_string());
        Ok(Output {
            given: given.to_path_buf(),
            local: dir.path().join(name),
            remote: Some((store, url)),
            _dir: Some(dir),
        })
    }

    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Uploads the finished local table to the output URL (nothing to do for a local output);
    /// `cancel` (a signal) aborts an upload in parts before its last part.
    pub async fn publish(
        &self,
        cancel: impl std::future::Future<Output = &'static str>,
    ) -> Result<()> {
        if let Some((store, url)) = &self.remote {
            Upload::file(store.clone(), &url.path, &self.local, &url.shown, cancel).await?;
        }
        Ok(())
    }

    /// Writes `manifest` to `path` (next to the output, in its store when remote).
    pub fn write_manifest(&self, manifest: &Manifest, path: &Path) -> Result<()> {
        let Some(_) = &self.remote else {
            manifest.write(path)?;
            return Ok(());
        };
        let local = self.local.with_extension("manifest.json");
        manifest.write(&local)?;
        let (store, url) = open_url(&path.to_string_lossy())?;
        block_on(|| Upload::file(store, &url.path, &local, &url.shown, std::future::pending()))?;
        Ok(())
    }

    /// Removes the file or object at `path` (the output or its manifest, in the output's
    /// store); one that does not exist is no error.
    pub fn remove(&self, path: &Path) -> Result<()> {
        if self.remote.is_none() {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(anyhow::anyhow!("removing {}: {e}", path.display()))
                }
                _ => Ok(()),
            };
        }
        let (store, url) = open_url(&path.to_string_lossy())?;
        match block_on(|| async {
            object_store::ObjectStoreExt::delete(store.as_ref(), &url.path).await
        }) {
            Err(object_store::Error::NotFound { .. }) | Ok(()) => Ok(()),
            Err(e) => Err(anyhow::anyhow!(
                "removing {}: {}",
                url.shown,
                quiver_materializer::storage::explain(&e)
            )),
        }
    }

    /// An output URL must not be the entity table's, nor lie inside a source on object storage
    /// (URLs compared as the store reads them: scheme case, `..` and escapes resolved).
    pub fn refuse_overlaps(
        &self,
        manifest: &Path,
        entities: &Entities,
        version: &RegistryVersion,
    ) -> Result<()> {
        if self.remote.is_none() {
            return Ok(());
        }
        let same_store = |a: &StoreUrl, b: &StoreUrl| a.root == b.root;
        let entity = entities
            .url
            .as_deref()
            .and_then(|u| StoreUrl::parse(u).ok());
        for (what, target) in [
            ("--output", self.given.as_path()),
            ("its manifest", manifest),
        ] {
            let target = StoreUrl::parse(&target.to_string_lossy())
                .map_err(|e| UserError(format!("{what}: {e}")))?;
            if let Some(e) = &entity
                && same_store(e, &target)
                && e.path == target.path
            {
                return Err(UserError(format!(
                    "{what} {} is the entity table itself; write the training table elsewhere",
                    target.shown
                ))
                .into());
            }
            for source in version.registry.sources.values() {
                if !is_url(&source.path) {
                    continue;
                }
                // The directory a source reads (the part before any glob).
                let base = match source.path.find(['*', '[']) {
                    Some(at) => &source.path[..source.path[..at].rfind('/').map_or(0, |i| i + 1)],
                    None => source.path.as_str(),
                };
                let Ok(dir) = StoreUrl::parse(base) else {
                    continue;
                };
                if same_store(&dir, &target) && target.path.prefix_match(&dir.path).is_some() {
                    return Err(UserError(format!(
                        "{what} {} would change the data of source `{}`; write the training table outside it",
                        target.shown, source.name
                    ))
                    .into());
                }
            }
        }
        Ok(())
    }
}

/// A manifest from a local path or an object-store URL.
pub fn read_manifest(path: &Path) -> Result<Manifest> {
    let text = path.to_string_lossy();
    if !is_url(&text) {
        return Ok(Manifest::read(path).map_err(|e| UserError(e.to_string()))?);
    }
    let (store, url) = open_url(&text).map_err(|e| UserError(format!("--rebuild: {e}")))?;
    let (copy, _) = block_on(|| fetch_to_temp(store.as_ref(), &url.path, &url.shown))
        .map_err(|e| UserError(format!("--rebuild {e}")))?;
    Ok(Manifest::read(copy.path()).map_err(|e| {
        UserError(
            e.to_string()
                .replace(&copy.path().display().to_string(), &url.shown),
        )
    })?)
}
