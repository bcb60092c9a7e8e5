//! A feature repository on disk: `quiver.yaml` plus the definition files it names.

use std::path::{Path, PathBuf};

use crate::config::{CONFIG_FILE, ProjectConfig};
use crate::definitions::DefinitionFile;
use crate::error::{Diagnostic, Error, Result, Span};
use crate::source_schema::SchemaResolver;
use crate::store::{RegistryStore, open_store};
use crate::validate::{Validated, validate};

#[derive(Debug, Clone)]
pub struct Repository {
    /// The directory relative paths (definitions, sources, local stores) are resolved against.
    pub root: PathBuf,
    pub config_path: PathBuf,
    pub config: ProjectConfig,
}

impl Repository {
    /// Opens the repository at `root`; `config` overrides `root/quiver.yaml`.
    pub fn open(
        root: &Path,
        config: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let config_path = config.map_or_else(|| root.join(CONFIG_FILE), Path::to_path_buf);
        if !config_path.is_file() {
            return Err(Error::NotFound(format!(
                "no {} found at {}: run `quiver init DIR` to create a repository, or point at one with `-C DIR` / `--config FILE`",
                CONFIG_FILE,
                config_path.display()
            )));
        }
        let config = ProjectConfig::load(&config_path, env)?;
        Ok(Repository {
            root: root.to_path_buf(),
            config_path,
            config,
        })
    }

    /// The definition files the configured globs match, sorted and without repeats.
    pub fn definition_files(&self) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        let mut problems = Vec::new();
        for pattern in &self.config.definitions {
            let full = self.root.join(pattern).to_string_lossy().to_string();
            match glob::glob(&full) {
                Ok(paths) => files.extend(paths.filter_map(|p| p.ok()).filter(|p| p.is_file())),
                Err(e) => problems.push(Diagnostic::error(
                    self.shown(&self.config_path),
                    Span::NONE,
                    format!("invalid definitions glob `{pattern}`: {e}"),
                )),
            }
        }
        files.sort();
        files.dedup();
        if files.is_empty() && problems.is_empty() {
            problems.push(
                Diagnostic::error(
                    self.shown(&self.config_path),
                    Span::NONE,
                    format!("no definition files match {:?}", self.config.definitions),
                )
                .with_hint(
                    "create e.g. features/drivers.yaml, or fix `definitions` in quiver.yaml",
                ),
            );
        }
        if problems.is_empty() {
            Ok(files)
        } else {
            Err(Error::Invalid(problems))
        }
    }

    /// Parses and validates every definition file; all problems are reported together.
    pub fn load(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        resolver: &dyn SchemaResolver,
    ) -> Result<Validated> {
        let mut parsed = Vec::new();
        let mut problems = Vec::new();
        for path in self.definition_files()? {
            let shown = self.shown(&path);
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            match DefinitionFile::parse(&shown, &text, env) {
                Ok(defs) => parsed.push((shown, defs)),
                Err(Error::Invalid(mut d)) => problems.append(&mut d),
                Err(other) => return Err(other),
            }
        }
        match validate(&self.config.project, &parsed, resolver) {
            Ok(v) if problems.is_empty() => Ok(v),
            Ok(_) => Err(Error::Invalid(problems)),
            Err(Error::Invalid(mut d)) => {
                problems.append(&mut d);
                Err(Error::Invalid(problems))
            }
            Err(other) => Err(other),
        }
    }

    pub fn store(&self) -> Result<Box<dyn RegistryStore>> {
        open_store(&self.config.registry, &self.config.project, &self.root)
    }

    /// A path as the user would type it from the repository root.
    pub fn shown(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}
