//! What every command shares: where the repository is, and how to print.

use std::path::PathBuf;

use anyhow::Result;
use quiver_materializer::DataFusionSchemaResolver;
use quiver_registry::store::{Prepared, RegistryStore, RegistryVersion, prepare};
use quiver_registry::{Diagnostic, Repository};
use serde::Serialize;

use crate::Output;

#[derive(Debug)]
pub struct Context {
    pub repo: PathBuf,
    pub config: Option<PathBuf>,
    pub output: Output,
}

/// The process environment, for `${VAR}` substitution.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Context {
    pub fn open(&self) -> Result<Repository> {
        Ok(Repository::open(&self.repo, self.config.as_deref(), &env)?)
    }

    /// Loads and validates the definitions, then plans them against the newest version.
    pub fn prepare(&self, repo: &Repository) -> Result<(Box<dyn RegistryStore>, Prepared)> {
        let resolver = DataFusionSchemaResolver {
            root: repo.root.clone(),
        };
        let validated = repo.load(&env, &resolver)?;
        print_warnings(&validated.warnings);
        let store = repo.store()?;
        let prepared = prepare(store.as_ref(), validated.registry)?;
        Ok((store, prepared))
    }

    /// The newest applied registry version, or a user error saying to apply first.
    pub fn current_version(
        &self,
        repo: &Repository,
        store: &dyn RegistryStore,
    ) -> Result<RegistryVersion> {
        let version = store.latest()?.ok_or_else(|| {
            crate::exit::UserError(format!(
                "no registry version in {} yet: run `quiver apply` first",
                store.location()
            ))
        })?;
        same_project(repo, store, &version)?;
        Ok(version)
    }
}

/// A registry version of another project than `quiver.yaml` names (the project was renamed, or
/// the registry location is shared) is never used: its keys would be the other project's.
pub fn same_project(
    repo: &Repository,
    store: &dyn RegistryStore,
    version: &RegistryVersion,
) -> Result<()> {
    let (held, named) = (&version.registry.project, &repo.config.project);
    if held != named {
        return Err(crate::exit::UserError(format!(
            "{} holds project `{held}`, but quiver.yaml names project `{named}`; point `registry` in quiver.yaml at this project's registry (or a new location, then `quiver apply`), or restore `project: {held}`",
            store.location()
        ))
        .into());
    }
    Ok(())
}

impl Context {
    /// A runtime for the commands that talk to stores and engines.
    pub fn runtime(&self) -> Result<tokio::runtime::Runtime> {
        Ok(tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?)
    }

    /// Prints `value` as JSON in `--format json` mode, else the text `render` makes.
    pub fn print<T: Serialize>(&self, value: &T, render: impl FnOnce() -> String) -> Result<()> {
        let text = match self.output {
            Output::Json => serde_json::to_string_pretty(value)? + "\n",
            Output::Text => render(),
        };
        use std::io::Write;
        match std::io::stdout().lock().write_all(text.as_bytes()) {
            // A reader that stopped early (`| head`) is not an error of ours.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
        }
    }
}

fn print_warnings(warnings: &[Diagnostic]) {
    for w in warnings {
        eprintln!("{w}\n");
    }
}
