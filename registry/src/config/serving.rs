//! `serving:` — the feature server's listeners, limits, cache and TLS.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::auth::{AuthConfig, check_auth};
use crate::error::{Diagnostic, Span};

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

impl ServingConfig {
    /// Limits that cannot be 0, an upload directory, and `auth`.
    pub(super) fn check(&self, file: &str, problems: &mut Vec<Diagnostic>) {
        for (key, zero) in [
            (
                "max_training_decoded_bytes",
                self.max_training_decoded_bytes == 0,
            ),
            ("training_memory_limit", self.training_memory_limit == 0),
            ("max_training_requests", self.max_training_requests == 0),
        ] {
            if zero {
                problems.push(at_least_one(file, key));
            }
        }
        if self.upload_dir.as_os_str().is_empty() {
            problems.push(
                Diagnostic::error(file, Span::NONE, "`serving.upload_dir` is empty")
                    .with_hint("give a directory for training uploads, e.g. `.quiver/uploads`"),
            );
        }
        if let Some(auth) = &self.auth {
            check_auth(file, auth, problems);
        }
        for (key, value) in [
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("keepalive_interval_ms", self.keepalive_interval_ms),
            ("keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("max_connections", self.max_connections as u64),
        ] {
            if value == 0 {
                problems.push(at_least_one(file, key));
            }
        }
    }
}

fn at_least_one(file: &str, key: &str) -> Diagnostic {
    Diagnostic::error(file, Span::NONE, format!("`serving.{key}` is 0"))
        .with_hint("it must be at least 1 (see examples/quiver.reference.yaml)")
}
