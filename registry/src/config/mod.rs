//! `quiver.yaml`: the project name, where the registry and the online store live, and which
//! definition files to load. Every key is documented in `examples/quiver.reference.yaml`.
//!
//! By section: [`ServingConfig`] (`serving:`, with [`AuthConfig`] and its [`Scope`]s),
//! [`RegistryConfig`] and [`OnlineStoreConfig`] (where things are kept), Redis URLs in messages
//! ([`redact_url`]), and the names users give ([`check_name`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Diagnostic, Error, Result, Span};
use crate::yaml::parse_yaml;

mod auth;
mod engine;
mod names;
mod redis_url;
mod serving;
mod stores;
#[cfg(test)]
mod tests;

pub use auth::{AuthConfig, Scope, TokenConfig};
pub use engine::{DEFAULT_SCHEDULER_PORT, EngineConfig};
pub use names::{MAX_NAME_LEN, check_name, is_identifier};
pub use redis_url::{REDIS_URL_HINT, check_redis_url_encoding, invalid_redis_url, redact_url};
pub use serving::{CacheConfig, DEFAULT_MAX_RESPONSE_VALUES, ServingConfig, TlsConfig};
pub use stores::{OnlineStoreConfig, RegistryConfig};
use stores::{PathSpans, check_redis_urls, check_store_paths};

pub const CONFIG_FILE: &str = "quiver.yaml";

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Namespaces everything Quiver stores (registry keys, online keys).
    pub project: String,
    /// Definition files to load, as globs relative to the repository root.
    #[serde(default = "default_definitions")]
    pub definitions: Vec<String>,
    #[serde(default)]
    pub registry: RegistryConfig,
    #[serde(default)]
    pub online_store: OnlineStoreConfig,
    #[serde(default)]
    pub serving: ServingConfig,
    /// Where offline work runs: in this process, or on a Ballista cluster.
    #[serde(default, skip_serializing_if = "is_local")]
    pub engine: EngineConfig,
}

fn is_local(engine: &EngineConfig) -> bool {
    *engine == EngineConfig::default()
}

fn default_definitions() -> Vec<String> {
    vec!["features/**/*.yaml".into(), "features/**/*.yml".into()]
}

impl ProjectConfig {
    /// Reads and checks `quiver.yaml`, substituting `${VAR}` with `env`.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let shown = path.display().to_string();
        let config: ProjectConfig = parse_yaml(&shown, &text, env)?;
        // Read again only to point at an empty path.
        let spans = || parse_yaml::<PathSpans>(&shown, &text, env).unwrap_or_default();
        config.check(&shown, spans)?;
        Ok(config)
    }

    /// `spans`: where the store paths are written, for messages.
    fn check(&self, file: &str, spans: impl FnOnce() -> PathSpans) -> Result<()> {
        let mut problems = Vec::new();
        check_store_paths(file, self, spans, &mut problems);
        if let Err((message, hint)) = check_name("project", &self.project) {
            problems.push(Diagnostic::error(file, Span::NONE, message).with_hint(hint));
        }
        if self.definitions.is_empty() {
            problems.push(
                Diagnostic::error(file, Span::NONE, "`definitions` is empty")
                    .with_hint("list definition files or globs, e.g. `features/*.yaml`"),
            );
        }
        check_redis_urls(file, self, &mut problems);
        self.serving.check(file, &mut problems);
        self.engine.check(file, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(problems))
        }
    }
}
