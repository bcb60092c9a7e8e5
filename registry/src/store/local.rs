//! Versions as files `v00000001.json` in one directory. A version is published by hard-linking a
//! fully written temporary file to its final name, which fails if the name exists: the link is
//! the atomic commit, so a crash or a concurrent apply never leaves a partial version.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{MaterializationRun, RegistryStore, RegistryVersion, VersionSummary};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalStore { dir: dir.into() }
    }

    fn file(&self, version: u64) -> PathBuf {
        self.dir.join(format!("v{version:08}.json"))
    }

    fn versions(&self) -> Result<Vec<u64>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let name = entry.map_err(|e| Error::io(&self.dir, e))?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_prefix('v').and_then(|r| r.strip_suffix(".json"))
                && let Ok(n) = n.parse::<u64>()
            {
                versions.push(n);
            }
        }
        versions.sort_unstable();
        Ok(versions)
    }

    /// Makes `run` its (view, generation)'s entry in `runs/latest/`, unless the entry there is
    /// newer (two runs of a view may finish in either order).
    fn index_run(&self, run: &MaterializationRun, bytes: &[u8]) -> Result<()> {
        let latest = self.dir.join("runs").join("latest");
        fs::create_dir_all(&latest).map_err(|e| Error::io(&latest, e))?;
        let path = latest.join(format!("{}@{}.json", run.view, run.generation));
        if let Ok(old) = read_run(&path)
            && old.finished_at > run.finished_at
        {
            return Ok(());
        }
        let tmp = self.write_temp(bytes)?;
        self.rename(&tmp, &path)
    }

    /// Moves a finished temporary file to `path` (replacing it), or removes it.
    fn rename(&self, tmp: &Path, path: &Path) -> Result<()> {
        let renamed = fs::rename(tmp, path);
        if renamed.is_err() {
            let _ = fs::remove_file(tmp);
        }
        renamed.map_err(|e| Error::io(path, e))
    }

    fn write_temp(&self, bytes: &[u8]) -> Result<PathBuf> {
        fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tmp = self
            .dir
            .join(format!(".tmp-{}-{nanos}", std::process::id()));
        let mut file = fs::File::create_new(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let written = file.write_all(bytes).and_then(|_| file.sync_all());
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(&tmp, e));
        }
        Ok(tmp)
    }
}

fn read_version(path: &Path) -> Result<RegistryVersion> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))
}

impl RegistryStore for LocalStore {
    fn latest_version(&self) -> Result<Option<u64>> {
        Ok(self.versions()?.last().copied())
    }

    fn get(&self, version: u64) -> Result<RegistryVersion> {
        let path = self.file(version);
        if !path.exists() {
            return Err(Error::NotFound(format!(
                "registry version {version} does not exist in {}",
                self.location()
            )));
        }
        let v = read_version(&path)?;
        if v.version != version {
            return Err(Error::Corrupt(format!(
                "{} holds version {}",
                path.display(),
                v.version
            )));
        }
        Ok(v)
    }

    fn history(&self) -> Result<Vec<VersionSummary>> {
        self.versions()?
            .into_iter()
            .map(|v| self.get(v).map(|r| VersionSummary::from(&r)))
            .collect()
    }

    fn commit(&self, base: Option<u64>, next: &RegistryVersion) -> Result<()> {
        let latest = self.latest_version()?;
        if latest != base {
            return Err(Error::Conflict {
                base: base.unwrap_or(0),
                conflicting: latest.unwrap_or(0),
            });
        }
        let bytes = serde_json::to_vec_pretty(next).expect("versions always serialize");
        let tmp = self.write_temp(&bytes)?;
        let target = self.file(next.version);
        let linked = fs::hard_link(&tmp, &target);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                // Make the new name durable before reporting success.
                if let Ok(dir) = fs::File::open(&self.dir) {
                    let _ = dir.sync_all();
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::Conflict {
                base: base.unwrap_or(0),
                conflicting: next.version,
            }),
            Err(e) => Err(Error::io(&target, e)),
        }
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn record_run(&self, run: &MaterializationRun) -> Result<()> {
        let dir = self.dir.join("runs");
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = dir.join(run_file_name(nanos, &run.view));
        let bytes = serde_json::to_vec_pretty(run).expect("runs always serialize");
        let tmp = self.write_temp(&bytes)?;
        self.rename(&tmp, &path)?;
        // The record is written: the index is a cache of it (`latest_runs` also reads the
        // newest records), so failing to update the index does not fail the run.
        if run.indexed()
            && let Err(e) = self.index_run(run, &bytes)
        {
            eprintln!(
                "warning: the run record of `{}` is written, its index entry is not: {e}",
                run.view
            );
        }
        Ok(())
    }

    fn indexed_latest_runs(&self) -> Result<Vec<MaterializationRun>> {
        let dir = self.dir.join("runs").join("latest");
        let names = json_files(&dir)?;
        names.iter().map(|p| read_run(p)).collect()
    }

    fn view_runs(
        &self,
        view: &str,
        limit: usize,
    ) -> Result<(Vec<MaterializationRun>, Option<u64>)> {
        // The view is in the file name, so only its records are read.
        let names: Vec<PathBuf> = json_files(&self.dir.join("runs"))?
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(run_file_view)
                    == Some(view)
            })
            .collect();
        let skip = names.len().saturating_sub(limit);
        let runs = names[skip..]
            .iter()
            .map(|p| read_run(p))
            .collect::<Result<_>>()?;
        Ok((runs, Some(names.len() as u64)))
    }

    fn runs(&self, limit: usize) -> Result<Vec<MaterializationRun>> {
        let names = json_files(&self.dir.join("runs"))?;
        let skip = names.len().saturating_sub(limit);
        names[skip..].iter().map(|p| read_run(p)).collect()
    }
}

/// A run record's file: `{nanos:020}-{view}.json` (view names have no `-`).
fn run_file_name(nanos: u128, view: &str) -> String {
    format!("{nanos:020}-{view}.json")
}

/// The view a run record's file name names.
fn run_file_view(name: &str) -> Option<&str> {
    let (nanos, rest) = name.split_once('-')?;
    (nanos.len() == 20 && nanos.bytes().all(|b| b.is_ascii_digit()))
        .then_some(rest)?
        .strip_suffix(".json")
}

/// The `.json` files directly in `dir`, sorted by name (none when it does not exist).
fn json_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut names: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(dir, e)),
    };
    names.sort();
    Ok(names)
}

fn read_run(path: &Path) -> Result<MaterializationRun> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))
}
