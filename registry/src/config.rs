//! `quiver.yaml`: the project name, where the registry and the online store live, and which
//! definition files to load. Every key is documented in `examples/quiver.reference.yaml`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Diagnostic, Error, Result, Span};
use crate::yaml::parse_yaml;

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
}

/// The feature server (`quiver serve`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServingConfig {
    /// HTTP listen address.
    pub http: String,
    /// gRPC listen address; empty to serve HTTP only.
    pub grpc: String,
    /// Largest request body (HTTP) or message (gRPC), in bytes.
    pub max_request_bytes: usize,
    /// Most entity rows one request may ask for.
    pub max_entity_rows: usize,
    /// Most values one online answer may hold: entity rows × requested features. Bounds the
    /// memory and time of a request that is small itself (many features, or one feature listed
    /// many times, over many rows).
    pub max_response_values: usize,
    /// Largest entity table `/get-historical-features` accepts, in bytes (spooled to disk).
    pub max_training_upload_bytes: u64,
    /// Most bytes an uploaded entity table may decode to (its columns in memory, a dictionary
    /// value counted for every row that uses it); also what a Parquet upload's pages may hold
    /// uncompressed. A small file that decodes to more is refused with 413.
    pub max_training_decoded_bytes: u64,
    /// Memory the training retrievals of the server share for their sorts, in bytes: each of
    /// the `max_training_requests` running requests gets an equal part and spills beyond it.
    pub training_memory_limit: u64,
    /// Most training retrievals at once; more get 503 with `Retry-After`.
    pub max_training_requests: usize,
    /// Where training uploads are spooled, relative to the repository root; what a server that
    /// is gone left there is removed when `quiver serve` starts.
    pub upload_dir: PathBuf,
    /// How often to look for a new registry version and new materializations, in milliseconds.
    pub registry_poll_ms: u64,
    /// An in-process cache of online values; off when absent.
    pub cache: Option<CacheConfig>,
    /// Bearer-token authentication; every endpoint is open when absent.
    pub auth: Option<AuthConfig>,
    /// TLS for HTTP and gRPC; plain text when absent.
    pub tls: Option<TlsConfig>,
    /// Longest a client may take to send a request head or finish a TLS handshake, in
    /// milliseconds (slow or idle clients are disconnected).
    pub header_timeout_ms: u64,
    /// Longest a client may take to send a request body, in milliseconds: the whole body of an
    /// online request; each wait for more of a training upload (which may be gigabytes). Past
    /// it the request gets 408 and the connection is closed.
    pub body_timeout_ms: u64,
    /// On SIGTERM or Ctrl-C, how long in-flight requests may take to finish, in milliseconds;
    /// then every connection still open is closed and the process exits.
    pub shutdown_grace_ms: u64,
    /// An HTTP/2 connection with no open stream for this long is closed (GOAWAY), in
    /// milliseconds.
    pub idle_timeout_ms: u64,
    /// An HTTP/2 peer silent for this long is sent a PING, in milliseconds…
    pub keepalive_interval_ms: u64,
    /// …and closed when it does not answer a PING within this, in milliseconds.
    pub keepalive_timeout_ms: u64,
    /// Most connections open at once, both ports together; more are closed as soon as accepted
    /// (also lowered to what the process's open-file limit allows).
    pub max_connections: usize,
}

/// The default of `serving.max_response_values`: 10,000 rows × 100 features.
pub const DEFAULT_MAX_RESPONSE_VALUES: usize = 1_000_000;

/// A certificate chain and private key (PEM files, relative to the repository root).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Default for ServingConfig {
    fn default() -> Self {
        ServingConfig {
            http: "127.0.0.1:6566".into(),
            grpc: "127.0.0.1:6567".into(),
            max_request_bytes: 1 << 20,
            max_entity_rows: 10_000,
            max_response_values: DEFAULT_MAX_RESPONSE_VALUES,
            max_training_upload_bytes: 2 << 30,
            max_training_decoded_bytes: 1 << 30,
            training_memory_limit: 1 << 30,
            max_training_requests: 2,
            upload_dir: PathBuf::from(".quiver/uploads"),
            registry_poll_ms: 500,
            cache: None,
            auth: None,
            tls: None,
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            shutdown_grace_ms: 10_000,
            idle_timeout_ms: 60_000,
            keepalive_interval_ms: 30_000,
            keepalive_timeout_ms: 10_000,
            max_connections: 10_000,
        }
    }
}

/// Who may call the feature server: bearer tokens, each with scopes. Only hashes of tokens are
/// configured (or files holding a token, read and hashed at start), never tokens in the clear.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub tokens: Vec<TokenConfig>,
    /// Serve `/metrics` without a token (scrapers on a private network); else it needs `admin`.
    #[serde(default = "default_true")]
    pub metrics_public: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (for logs and metrics; never the token itself).
    pub name: String,
    /// Hex SHA-256 of the token (`quiver auth hash-token` prints it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A file holding the token itself (a mounted secret), relative to the repository root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// `online:read`, `offline:read`, `admin` (all of them, plus the registry listings).
    pub scopes: Vec<String>,
}

/// The scopes a token can have.
pub const SCOPES: [&str; 3] = ["online:read", "offline:read", "admin"];

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// No value older than this is served from the cache, in milliseconds.
    pub max_staleness_ms: u64,
    #[serde(default = "default_cache_entries")]
    pub max_entries: u64,
}

fn default_cache_entries() -> u64 {
    1_000_000
}

fn default_definitions() -> Vec<String> {
    vec!["features/**/*.yaml".into(), "features/**/*.yml".into()]
}

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
        if let RegistryConfig::Redis {
            url, tls_ca_file, ..
        } = &self.registry
        {
            check_redis_url(file, url, tls_ca_file.is_some(), &mut problems);
        }
        if let OnlineStoreConfig::Redis {
            url,
            tls_ca_file,
            cluster_nodes,
            ..
        } = &self.online_store
        {
            check_redis_url(file, url, tls_ca_file.is_some(), &mut problems);
            for node in cluster_nodes {
                check_redis_url(file, node, tls_ca_file.is_some(), &mut problems);
            }
        }
        for (key, zero) in [
            (
                "max_training_decoded_bytes",
                self.serving.max_training_decoded_bytes == 0,
            ),
            (
                "training_memory_limit",
                self.serving.training_memory_limit == 0,
            ),
            (
                "max_training_requests",
                self.serving.max_training_requests == 0,
            ),
        ] {
            if zero {
                problems.push(
                    Diagnostic::error(file, Span::NONE, format!("`serving.{key}` is 0"))
                        .with_hint("it must be at least 1 (see examples/quiver.reference.yaml)"),
                );
            }
        }
        if self.serving.upload_dir.as_os_str().is_empty() {
            problems.push(
                Diagnostic::error(file, Span::NONE, "`serving.upload_dir` is empty")
                    .with_hint("give a directory for training uploads, e.g. `.quiver/uploads`"),
            );
        }
        if let Some(auth) = &self.serving.auth {
            check_auth(file, auth, &mut problems);
        }
        let s = &self.serving;
        for (key, value) in [
            ("idle_timeout_ms", s.idle_timeout_ms),
            ("keepalive_interval_ms", s.keepalive_interval_ms),
            ("keepalive_timeout_ms", s.keepalive_timeout_ms),
            ("max_connections", s.max_connections as u64),
        ] {
            if value == 0 {
                problems.push(
                    Diagnostic::error(file, Span::NONE, format!("`serving.{key}` is 0"))
                        .with_hint("it must be at least 1 (see examples/quiver.reference.yaml)"),
                );
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(problems))
        }
    }
}

/// Where `registry.path` and `online_store.path` are written in `quiver.yaml`.
#[derive(Default, Deserialize)]
struct PathSpans {
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
fn check_store_paths(
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

fn check_auth(file: &str, auth: &AuthConfig, problems: &mut Vec<Diagnostic>) {
    let mut error = |message: String, hint: &str| {
        problems.push(Diagnostic::error(file, Span::NONE, message).with_hint(hint));
    };
    if auth.tokens.is_empty() {
        error(
            "`serving.auth.tokens` is empty: no one could call the server".into(),
            "add a token, or remove `serving.auth` to leave the server open",
        );
    }
    let mut names = std::collections::HashSet::new();
    for t in &auth.tokens {
        let who = format!("serving.auth token `{}`", t.name);
        if !names.insert(t.name.as_str()) {
            error(
                format!("{who} is declared twice"),
                "give each token its own name",
            );
        }
        match (&t.sha256, &t.token_file) {
            (Some(h), None) => {
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    error(
                        format!("{who}: `sha256` must be 64 hex digits"),
                        "print it with `quiver auth hash-token` (reads the token on stdin)",
                    );
                }
            }
            (None, Some(_)) => {}
            _ => error(
                format!("{who}: give exactly one of `sha256` or `token_file`"),
                "`sha256: <hex>` (from `quiver auth hash-token`) or `token_file: /run/secrets/…`",
            ),
        }
        if t.scopes.is_empty() {
            error(
                format!("{who} has no scopes"),
                "scopes: online:read, offline:read, admin",
            );
        }
        for s in &t.scopes {
            if !SCOPES.contains(&s.as_str()) {
                error(
                    format!("{who}: unknown scope `{s}`"),
                    "scopes: online:read, offline:read, admin",
                );
            }
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

/// A Redis URL without its secrets, for messages and logs, however malformed the URL is:
/// everything before the last `@` (user and password) but a well-formed scheme, and the query
/// (`?pass=…` of socket URLs).
pub fn redact_url(url: &str) -> String {
    let (head, rest) = match url.rfind('@') {
        None => ("", url),
        Some(at) => {
            let scheme = url.find("://").filter(|&i| {
                i < at
                    && url[..i]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            });
            let kept = scheme.map_or("", |i| &url[..i + 3]);
            (kept, &url[at..])
        }
    };
    let masked = if head.len() < url.len() - rest.len() {
        "***"
    } else {
        ""
    };
    match rest.split_once('?') {
        Some((base, query)) if !query.is_empty() => format!("{head}{masked}{base}?***"),
        _ => format!("{head}{masked}{rest}"),
    }
}

/// Said with every Redis URL that cannot be used as written: the usual cause is a user or
/// password holding characters that mean something in a URL.
pub const REDIS_URL_HINT: &str = "percent-encode reserved characters in the user and password: `#` → `%23`, `@` → `%40`, `/` → `%2F`, `?` → `%3F`, `:` → `%3A`, `%` → `%25` (e.g. redis://default:p%23ss@host:6379)";

/// Refuses a `redis://` / `rediss://` URL whose user or password holds `#`, `/` or `?`
/// unencoded, with the message to show (never the password). Each ends a URL's host part, so
/// such a URL names another host, port or database than meant (`redis://u:12#x@h` is host `u`,
/// port 12), or does not parse at all.
pub fn check_redis_url_encoding(url: &str) -> std::result::Result<(), String> {
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"));
    let unencoded = rest.is_some_and(|rest| {
        rest.rfind('@')
            .is_some_and(|at| rest[..at].contains(['#', '/', '?']))
    });
    if unencoded {
        Err(format!(
            "invalid Redis URL {}: its user or password holds `#`, `/` or `?`, which end a URL's host part; {REDIS_URL_HINT}",
            redact_url(url)
        ))
    } else {
        Ok(())
    }
}

/// Why a Redis URL did not parse, as said to the user: never its password.
pub fn invalid_redis_url(url: &str, problem: impl std::fmt::Display) -> String {
    format!(
        "invalid Redis URL {}: {problem}; {REDIS_URL_HINT}",
        redact_url(url)
    )
}

/// The longest name of a project, entity, source, view, feature or service, in characters:
/// names become parts of file names and keys, which have limits of their own.
pub const MAX_NAME_LEN: usize = 100;

/// Names of projects, entities, views, features and services: what can safely appear in keys,
/// file names, column names and SQL without quoting.
pub fn is_identifier(name: &str) -> bool {
    check_name("", name).is_ok()
}

/// Checks a name; on error, the message (`invalid {what} name …`) and a hint.
pub fn check_name(what: &str, name: &str) -> std::result::Result<(), (String, String)> {
    let mut chars = name.chars();
    let well_formed = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !well_formed {
        return Err((
            format!("invalid {what} name `{name}`"),
            "names use letters, digits and `_`, and do not start with a digit".into(),
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err((
            format!(
                "invalid {what} name `{}…`: names are at most {MAX_NAME_LEN} characters, this one has {}",
                &name[..40],
                name.len()
            ),
            format!("shorten the name to at most {MAX_NAME_LEN} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<ProjectConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        std::fs::write(&path, text).unwrap();
        ProjectConfig::load(&path, &|name| {
            (name == "REDIS_PASSWORD").then(|| "s3cret".to_string())
        })
    }

    #[test]
    fn the_documented_reference_file_is_valid() {
        // The runtime variable, not `env!`: a test binary reused from a build in another checkout
        // (a shared target directory) must read this checkout's file.
        let dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo");
        let path = Path::new(&dir).join("../examples/quiver.reference.yaml");
        let c = ProjectConfig::load(&path, &|_| None).unwrap();
        assert_eq!(c.project, "my_project");
        assert_eq!(c.registry, RegistryConfig::default());
        assert_eq!(c.online_store, OnlineStoreConfig::default());
        // The limits it shows are the defaults.
        assert_eq!(c.serving, ServingConfig::default());
    }

    #[test]
    fn connection_limits_of_zero_are_refused() {
        for key in [
            "idle_timeout_ms",
            "keepalive_interval_ms",
            "keepalive_timeout_ms",
            "max_connections",
        ] {
            let err = load(&format!("project: p\nserving:\n  {key}: 0\n")).unwrap_err();
            assert!(
                err.to_string().contains(&format!("`serving.{key}` is 0")),
                "{err}"
            );
        }
        let c = load("project: p\nserving:\n  idle_timeout_ms: 5\n  max_connections: 1\n").unwrap();
        assert_eq!(
            (c.serving.idle_timeout_ms, c.serving.max_connections),
            (5, 1)
        );
    }

    #[test]
    fn training_limits_have_defaults_and_refuse_zero() {
        let c = load("project: p\n").unwrap();
        assert_eq!(c.serving.max_training_decoded_bytes, 1 << 30);
        assert_eq!(c.serving.training_memory_limit, 1 << 30);
        assert_eq!(c.serving.max_training_requests, 2);
        assert_eq!(c.serving.upload_dir, PathBuf::from(".quiver/uploads"));
        for key in [
            "max_training_decoded_bytes",
            "training_memory_limit",
            "max_training_requests",
        ] {
            let err = load(&format!("project: p\nserving:\n  {key}: 0\n")).unwrap_err();
            assert!(
                err.to_string().contains(&format!("`serving.{key}` is 0")),
                "{err}"
            );
        }
        let err = load("project: p\nserving:\n  upload_dir: ''\n").unwrap_err();
        assert!(
            err.to_string().contains("`serving.upload_dir` is empty"),
            "{err}"
        );
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("redis://user:pw@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        // Malformed URLs too: everything before the last `@` goes, whatever surrounds it.
        for (url, shown) in [
            ("redis:/default:S3cret@host", "***@host"),
            ("redis:default:S3cret@host:6379", "***@host:6379"),
            ("default:S3cret@host", "***@host"),
            ("redis://u:S3cret@x@host/0", "redis://***@host/0"),
            ("redis:/u:S3cret://@host", "***@host"),
            ("rediss://:S3cret@host", "rediss://***@host"),
            (
                "redis+unix:///run/redis.sock?db=1&pass=S3cret",
                "redis+unix:///run/redis.sock?***",
            ),
            (
                "redis://host:6379/0?protocol=resp3",
                "redis://host:6379/0?***",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn invalid_redis_urls_are_reported_without_their_password() {
        for url in [
            "redis:/default:S3cret@host",
            "redis:default:S3cret@host:6379",
            "http://default:S3cret@host",
            "redis+unix:///run/redis.sock?pass=S3cret",
        ] {
            for yaml in [
                format!("project: demo\nonline_store:\n  type: redis\n  url: \"{url}\"\n"),
                format!("project: demo\nregistry:\n  type: redis\n  url: \"{url}\"\n"),
                format!(
                    "project: demo\nonline_store:\n  type: redis\n  url: redis://h\n  cluster: true\n  cluster_nodes: [\"{url}\"]\n"
                ),
            ] {
                let err = load(&yaml).unwrap_err().to_string();
                assert!(err.contains("invalid Redis URL"), "{err}");
                assert!(!err.contains("S3cret"), "{err}");
            }
        }
    }

    /// An empty `path` (often an empty `${VAR}`) used to put the registry's versions in the
    /// repository root; it is refused at load, pointing at its line.
    #[test]
    fn empty_store_paths_are_refused_with_their_line() {
        for (text, expected, line) in [
            (
                "project: demo\nregistry: {type: local, path: \"\"}\n",
                "`registry.path` is empty",
                "quiver.yaml:2:",
            ),
            (
                "project: demo\nregistry:\n  type: local\n  path: ${REDIS_PASSWORD}\n",
                "`registry.path` is empty",
                "quiver.yaml:4:",
            ),
            (
                "project: demo\nregistry:\n  type: local\n  path: ${RP:-}\n",
                "`registry.path` is empty",
                "quiver.yaml:4:",
            ),
            (
                "project: demo\nonline_store:\n  type: embedded\n  path: \"  \"\n",
                "`online_store.path` is empty",
                "quiver.yaml:4:",
            ),
        ] {
            let err = load_with_password(text, "").unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(err.contains(line), "{text}: {err}");
            assert!(err.contains("e.g. `.quiver/"), "{text}: {err}");
        }
        assert!(load("project: demo\nregistry: {type: local, path: reg}\n").is_ok());
    }

    /// A password with `#`, `/` or `?` written as is gave "InvalidClientConfig" or "Invalid
    /// database number" (or another host): the registry's Redis says to percent-encode, without
    /// the password; a URL that does not parse gets the same hint.
    #[test]
    fn reserved_characters_in_redis_passwords_get_an_encoding_hint() {
        for secret in ["Pa#ss", "12/34", "12?Sx", "P@ss#w/rd?"] {
            let url = format!("redis://default:{secret}@127.0.0.1:6379/0");
            let err = check_redis_url_encoding(&url).unwrap_err();
            let from_store = crate::store::RedisStore::open(&url, "quiver", "demo", None)
                .unwrap_err()
                .to_string();
            for err in [err, from_store] {
                assert!(err.contains("`#` → `%23`"), "{secret}: {err}");
                assert!(!err.contains(secret), "{secret}: {err}");
            }
        }
        let err = crate::store::RedisStore::open("redis://default:S3cret@", "quiver", "demo", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("percent-encode") && !err.contains("S3cret"),
            "{err}"
        );
        for fine in [
            "redis://default:Pa%23s%2Fs%3F%40@host:6379/0",
            "redis://default:p@ss@host:6379/0",
            "redis://host:6379/0",
            "redis+unix:///run/redis.sock?pass=a#b@c",
        ] {
            assert!(check_redis_url_encoding(fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn defaults_are_local_and_embedded() {
        let c = load("project: demo\n").unwrap();
        assert_eq!(c.registry, RegistryConfig::default());
        assert_eq!(c.online_store, OnlineStoreConfig::default());
        assert_eq!(c.definitions, default_definitions());
    }

    #[test]
    fn env_substitution_fills_secrets() {
        let c = load(
            "project: demo\nonline_store:\n  type: redis\n  url: redis://:${REDIS_PASSWORD}@localhost:${PORT:-6379}\n",
        )
        .unwrap();
        match c.online_store {
            OnlineStoreConfig::Redis {
                url, timeout_ms, ..
            } => {
                assert_eq!(url, "redis://:s3cret@localhost:6379");
                assert_eq!(timeout_ms, 100);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Loads `text` with `REDIS_PASSWORD` set to `password`.
    fn load_with_password(text: &str, password: &str) -> Result<ProjectConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        std::fs::write(&path, text).unwrap();
        ProjectConfig::load(&path, &|name| {
            (name == "REDIS_PASSWORD").then(|| password.to_string())
        })
    }

    #[test]
    fn substituted_values_stay_whole_strings() {
        let text = "# the online store: set ${REDIS_PASSWORD} (and ${ANYTHING})\nproject: demo\nonline_store:\n  type: redis\n  url: redis://:${REDIS_PASSWORD}@host:6379\n  timeout_ms: ${TIMEOUT_MS:-250}\n  key_ttl: ${KEY_TTL:-true}\nregistry:\n  type: redis\n  url: \"redis://:${REDIS_PASSWORD}@host:6379/1\"\n  key_prefix: ${PREFIX:-}\n";
        for password in [
            "ab #cd",
            "p@ss: word",
            "line1\nkey_ttl: false",
            "x\n  cluster: true",
            "q\"uo'te\\",
            "*alias",
            "&anchor",
            "!tag",
            "- item",
            "[a, b]",
            "{a: b}",
            "| block",
            "> folded",
            "% directive",
            "@at",
            "`tick",
            "? key",
            "",
            " spaced ",
            "tab\there",
            "null",
            "~",
            "123",
            "${NOT_AGAIN}",
        ] {
            let c = load_with_password(text, password)
                .unwrap_or_else(|e| panic!("password {password:?}: {e}"));
            match &c.online_store {
                OnlineStoreConfig::Redis {
                    url,
                    timeout_ms,
                    key_ttl,
                    cluster,
                    ..
                } => {
                    assert_eq!(url, &format!("redis://:{password}@host:6379"));
                    assert_eq!(*timeout_ms, 250);
                    assert!(*key_ttl, "{password:?}");
                    assert!(!*cluster, "{password:?}");
                }
                other => panic!("unexpected {other:?}"),
            }
            match &c.registry {
                RegistryConfig::Redis {
                    url, key_prefix, ..
                } => {
                    assert_eq!(url, &format!("redis://:{password}@host:6379/1"));
                    assert_eq!(key_prefix, "", "an empty default is the empty string");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn nested_defaults_work_and_unset_ones_name_their_line() {
        let text = "project: demo\nonline_store:\n  type: redis\n  url: ${URL:-redis://:${REDIS_PASSWORD}@host:6379}\n";
        match load_with_password(text, "pw").unwrap().online_store {
            OnlineStoreConfig::Redis { url, .. } => assert_eq!(url, "redis://:pw@host:6379"),
            other => panic!("unexpected {other:?}"),
        }
        let text = text.replace("REDIS_PASSWORD", "UNSET_PASSWORD");
        let err = load_with_password(&text, "pw").unwrap_err().to_string();
        assert!(err.contains("`UNSET_PASSWORD` is not set"), "{err}");
        assert!(err.contains("quiver.yaml:4:"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_named_with_their_line() {
        let err = load("project: demo\nserving:\n  http: 0.0.0.0:1\n  http: 0.0.0.0:2\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("duplicate key `http` at line 4; each key may appear once"),
            "{err}"
        );
        assert!(!err.contains("DuplicateKeyPolicy"), "{err}");
    }

    #[test]
    fn names_longer_than_the_limit_are_refused() {
        let err = load(&format!("project: {}\n", "p".repeat(MAX_NAME_LEN + 1)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most 100 characters"), "{err}");
        assert!(load(&format!("project: {}\n", "p".repeat(MAX_NAME_LEN))).is_ok());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let err = load("project: demo\nregistry:\n  type: local\n  pth: x\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("pth"), "{text}");
        // Internally tagged sections are located at their start.
        assert!(text.contains("quiver.yaml:2:"), "{text}");
        let err =
            load("project: 9lives\nonline_store:\n  type: redis\n  url: localhost\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("invalid project name"), "{text}");
        assert!(text.contains("invalid Redis URL"), "{text}");
        assert!(
            load("project: demo\nonline_store:\n  type: redis\n  url: rediss://:pw@host:6380\n")
                .is_ok()
        );
        let err = load(
            "project: demo\nonline_store:\n  type: redis\n  url: redis://:pw@host:6380\n  tls_ca_file: ca.pem\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("`tls_ca_file` is set but `redis://***@host:6380` is not TLS"),
            "{err}"
        );
        assert!(load("project: demo\nregistry:\n  url: ${UNSET}\n").is_err());
    }

    #[test]
    fn auth_tokens_are_checked_at_load() {
        let ok = "a".repeat(64);
        let config = load(&format!(
            "project: demo\nserving:\n  auth:\n    tokens:\n      - {{name: app, sha256: {ok}, scopes: [online:read]}}\n      - {{name: ops, token_file: secrets/ops, scopes: [admin]}}\n"
        ))
        .unwrap();
        let auth = config.serving.auth.unwrap();
        assert_eq!(auth.tokens.len(), 2);
        assert!(auth.metrics_public);
        let bad = [
            ("tokens: []", "is empty"),
            (
                "tokens: [{name: a, sha256: abc, scopes: [online:read]}]",
                "64 hex digits",
            ),
            (
                "tokens: [{name: a, scopes: [online:read]}]",
                "exactly one of `sha256` or `token_file`",
            ),
            (
                "tokens: [{name: a, sha256: SHA, token_file: f, scopes: [admin]}]",
                "exactly one",
            ),
            (
                "tokens: [{name: a, sha256: SHA, scopes: [online:write]}]",
                "unknown scope",
            ),
            ("tokens: [{name: a, sha256: SHA, scopes: []}]", "no scopes"),
            (
                "tokens: [{name: a, sha256: SHA, scopes: [admin]}, {name: a, sha256: SHA, scopes: [admin]}]",
                "declared twice",
            ),
            (
                "tokens: [{name: a, sha256: SHA, scopes: [admin], token: x}]",
                "token",
            ),
        ];
        for (auth, expected) in bad {
            let text = format!(
                "project: demo\nserving:\n  auth:\n    {}\n",
                auth.replace("SHA", &ok)
            );
            let err = load(&text).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{auth}: expected `{expected}` in {err}"
            );
        }
    }
}
