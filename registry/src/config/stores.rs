//! `registry:` and `online_store:` — where registry versions and online values are kept.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ProjectConfig;
use super::redis_url::redact_url;
use crate::error::{Diagnostic, Span};

/// Where applied registry versions are kept.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
pub enum RegistryConfig {
    /// A local directory (relative to the repository root), the default.
    Local {
        #[serde(default = "default_registry_path")]
        path: PathBuf,
    },
    /// A Redis server shared by a fleet of feature servers.
    Redis {
        url: String,
        #[serde(default = "default_registry_prefix")]
        key_prefix: String,
        /// With `rediss://`: a PEM CA certificate to trust instead of the system's roots.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tls_ca_file: Option<PathBuf>,
    },
}

fn default_registry_path() -> PathBuf {
    PathBuf::from(".quiver/registry")
}

fn default_registry_prefix() -> String {
    "quiver:registry".into()
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig::Local {
            path: default_registry_path(),
        }
    }
}

/// Where materialized feature values are kept for online serving.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
pub enum OnlineStoreConfig {
    /// An on-disk store inside the repository, the default: no server needed.
    Embedded {
        #[serde(default = "default_embedded_path")]
        path: PathBuf,
    },
    /// Redis standalone (`redis://`, with optional user:password) or Cluster.
    Redis {
        url: String,
        /// Treat `url` (and `cluster_nodes`) as a Redis Cluster.
        #[serde(default)]
        cluster: bool,
        /// More seed nodes of a cluster.
        #[serde(default)]
        cluster_nodes: Vec<String>,
        /// Bound on every online read, in milliseconds.
        #[serde(default = "default_timeout_ms")]
        timeout_ms: u64,
        /// Bound on each batch of writes during materialization, in milliseconds.
        #[serde(default = "default_write_timeout_ms")]
        write_timeout_ms: u64,
        /// Let Redis expire values a view's ttl makes useless.
        #[serde(default)]
        key_ttl: bool,
        /// Materialize into a Redis whose `maxmemory-policy` may evict Quiver's values (any
        /// `allkeys-*`, or `volatile-*` with `key_ttl`), and finish runs during which Redis
        /// evicted keys, with warnings instead of refusing and failing.
        #[serde(default)]
        allow_eviction: bool,
        /// With `rediss://`: a PEM CA certificate to trust instead of the system's roots
        /// (relative to the repository root).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tls_ca_file: Option<PathBuf>,
    },
}

fn default_embedded_path() -> PathBuf {
    PathBuf::from(".quiver/online.redb")
}

fn default_timeout_ms() -> u64 {
    100
}

fn default_write_timeout_ms() -> u64 {
    10_000
}

impl OnlineStoreConfig {
    /// Whether stored values expire (Redis `key_ttl: true`) once a view's ttl makes them useless.
    pub fn key_ttl(&self) -> bool {
        matches!(self, OnlineStoreConfig::Redis { key_ttl: true, .. })
    }

    /// Whether the user accepts a Redis that may evict values (`allow_eviction: true`).
    pub fn allow_eviction(&self) -> bool {
        matches!(
            self,
            OnlineStoreConfig::Redis {
                allow_eviction: true,
                ..
            }
        )
    }
}

impl Default for OnlineStoreConfig {
    fn default() -> Self {
        OnlineStoreConfig::Embedded {
            path: default_embedded_path(),
        }
    }
}

/// Where `registry.path` and `online_store.path` are written in `quiver.yaml`.
#[derive(Default, Deserialize)]
pub(super) struct PathSpans {
    #[serde(default)]
    registry: Option<PathSpan>,
    #[serde(default)]
    online_store: Option<PathSpan>,
}

#[derive(Default, Deserialize)]
struct PathSpan {
    #[serde(default)]
    path: Option<serde_saphyr::Spanned<serde::de::IgnoredAny>>,
}

impl PathSpan {
    fn at(section: Option<&PathSpan>) -> Span {
        section
            .and_then(|s| s.path.as_ref())
            .map_or(Span::NONE, |p| p.referenced.into())
    }
}

/// An empty path (often an empty `${VAR}`) would be the repository root itself: the registry's
/// versions written among the user's files, the embedded store opened on a directory.
pub(super) fn check_store_paths(
    file: &str,
    config: &ProjectConfig,
    spans: impl FnOnce() -> PathSpans,
    problems: &mut Vec<Diagnostic>,
) {
    let empty = |p: &Path| p.to_str().is_some_and(|p| p.trim().is_empty());
    let registry = matches!(&config.registry, RegistryConfig::Local { path } if empty(path));
    let online =
        matches!(&config.online_store, OnlineStoreConfig::Embedded { path } if empty(path));
    if !registry && !online {
        return;
    }
    let spans = spans();
    if registry {
        problems.push(
            Diagnostic::error(
                file,
                PathSpan::at(spans.registry.as_ref()),
                "`registry.path` is empty: the registry would be written into the repository root",
            )
            .with_hint("give a directory, e.g. `.quiver/registry` (an unset or empty `${VAR:-}` gives an empty path)"),
        );
    }
    if online {
        problems.push(
            Diagnostic::error(
                file,
                PathSpan::at(spans.online_store.as_ref()),
                "`online_store.path` is empty: the embedded store would be the repository root",
            )
            .with_hint("give a file, e.g. `.quiver/online.redb` (an unset or empty `${VAR:-}` gives an empty path)"),
        );
    }
}

/// Every Redis URL of the registry and the online store (its cluster nodes too).
pub(super) fn check_redis_urls(file: &str, config: &ProjectConfig, problems: &mut Vec<Diagnostic>) {
    if let RegistryConfig::Redis {
        url, tls_ca_file, ..
    } = &config.registry
    {
        check_redis_url(file, url, tls_ca_file.is_some(), problems);
    }
    if let OnlineStoreConfig::Redis {
        url,
        tls_ca_file,
        cluster_nodes,
        ..
    } = &config.online_store
    {
        check_redis_url(file, url, tls_ca_file.is_some(), problems);
        for node in cluster_nodes {
            check_redis_url(file, node, tls_ca_file.is_some(), problems);
        }
    }
}

fn check_redis_url(file: &str, url: &str, has_ca: bool, problems: &mut Vec<Diagnostic>) {
    if url.starts_with("redis://") && has_ca {
        // Said at load time, not discovered as a plain-text connection later.
        problems.push(
            Diagnostic::error(
                file,
                Span::NONE,
                format!("`tls_ca_file` is set but `{}` is not TLS", redact_url(url)),
            )
            .with_hint("use `rediss://` to connect with TLS"),
        );
    } else if !url.starts_with("redis://") && !url.starts_with("rediss://") {
        problems.push(
            Diagnostic::error(
                file,
                Span::NONE,
                format!("invalid Redis URL `{}`", redact_url(url)),
            )
            .with_hint("write `redis://[user:password@]host:port[/db]` (`rediss://` for TLS)"),
        );
    }
}
