//! Building the object store of a URL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::http::HttpBuilder;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientConfigKey, ClientOptions, ObjectStore, RetryConfig};
use quiver_registry::env_subst::substitute_value;
use quiver_registry::source_schema::url_scheme;
use quiver_registry::validate::{SCHEMES, redact, url_problem};
use url::Url;

use crate::error::{Error, Result};

/// Transient failures (5xx, 429, timeouts, refused connections) are retried this many times,
/// with exponential backoff from 100 ms, within [`RETRY_TIMEOUT`]; then the job fails.
const MAX_RETRIES: usize = 4;
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);
/// One request's bound (a Parquet range or a part upload), and a connection's.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A URL split as DataFusion registers stores: the store (`s3://bucket`) and the object path.
#[derive(Debug, Clone)]
pub struct StoreUrl {
    /// `scheme://authority`, the key DataFusion finds the store by.
    pub root: Url,
    /// The path inside the store (no leading `/`).
    pub path: Path,
    /// The URL for messages (no user, password or query).
    pub shown: String,
}

impl StoreUrl {
    pub fn parse(text: &str) -> Result<StoreUrl> {
        let shown = redact(text);
        if let Some(problem) = url_problem(text) {
            return Err(Error::Invalid(problem));
        }
        if url_scheme(text).is_none() {
            return Err(Error::Invalid(format!(
                "`{shown}` is not a URL Quiver can read; use a local path or one of {SCHEMES}"
            )));
        }
        let url = Url::parse(text)
            .map_err(|e| Error::Invalid(format!("`{shown}` is not a valid URL: {e}")))?;
        let root = Url::parse(&format!("{}://{}", url.scheme(), url.authority()))
            .map_err(|e| Error::Invalid(format!("`{shown}`: {e}")))?;
        let path = Path::from_url_path(url.path())
            .map_err(|e| Error::Invalid(format!("`{shown}`: {e}")))?;
        Ok(StoreUrl { root, path, shown })
    }

    /// The URL of `path` in the same store (for messages and DataFusion).
    pub fn with_path(&self, path: &Path) -> String {
        format!(
            "{}{}",
            self.root.as_str().trim_end_matches('/'),
            slash(path)
        )
    }
}

fn slash(p: &Path) -> String {
    format!("/{}", p.as_ref())
}

/// The store `url` lives in, built from the environment and `options` (a source's `storage:`
/// map, its `${VAR}` references resolved with `env`).
pub fn open(
    url: &StoreUrl,
    options: &BTreeMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn ObjectStore>> {
    let shown = &url.shown;
    let mut resolved = Vec::new();
    for (key, value) in options {
        let value = substitute_value(value, env).map_err(|problems| {
            Error::Invalid(format!(
                "`storage.{key}` of {shown}: {}",
                problems.join("; ")
            ))
        })?;
        resolved.push((key.to_ascii_lowercase(), value));
    }
    let unknown = |key: &str| {
        Error::Invalid(format!(
            "`storage.{key}` of {shown} is not an option of its object store (see the object_store crate's configuration keys, e.g. `endpoint`, `region`, `access_key_id`)"
        ))
    };
    let vars: Vec<(String, String)> = std::env::vars().collect();
    // An endpoint is an http(s) URL without credentials (object_store panics on others).
    let endpoints = resolved
        .iter()
        .filter(|(k, _)| k.contains("endpoint"))
        .map(|(k, v)| (format!("`storage.{k}`"), v.clone()))
        .chain(
            vars.iter()
                .filter(|(k, _)| {
                    k.contains("ENDPOINT")
                        && ["AWS_", "GOOGLE_", "AZURE_"]
                            .iter()
                            .any(|p| k.starts_with(p))
                })
                .map(|(k, v)| (format!("the environment's {k}"), v.clone())),
        );
    for (what, value) in endpoints {
        let ok = Url::parse(&value).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.username().is_empty()
                && u.password().is_none()
        });
        if !ok {
            return Err(Error::Invalid(format!(
                "{shown}: {what} is not an endpoint URL (`http://host:port` or `https://host`, without a user or password)"
            )));
        }
    }
    let from_env = |prefix: &'static str| {
        vars.iter()
            .filter(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
    };
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: MAX_RETRIES,
        retry_timeout: RETRY_TIMEOUT,
    };
    let client = ClientOptions::new()
        .with_timeout(REQUEST_TIMEOUT)
        .with_connect_timeout(CONNECT_TIMEOUT);
    let built: object_store::Result<Arc<dyn ObjectStore>> = match url_scheme(url.root.as_str()) {
        Some("s3") => {
            let mut b = AmazonS3Builder::new()
                .with_client_options(client)
                .with_retry(retry);
            for (k, v) in from_env("AWS_") {
                if let Ok(key) = k.parse::<AmazonS3ConfigKey>() {
                    b = b.with_config(key, v);
                }
            }
            for (k, v) in &resolved {
                let key = k.parse::<AmazonS3ConfigKey>().map_err(|_| unknown(k))?;
                // A plain-HTTP endpoint (a local S3-compatible server) is allowed by saying so.
                if key == AmazonS3ConfigKey::Endpoint && v.starts_with("http://") {
                    b = b.with_allow_http(true);
                }
                b = b.with_config(key, v);
            }
            if let Some(endpoint) = vars
                .iter()
                .find(|(k, _)| k == "AWS_ENDPOINT_URL" || k == "AWS_ENDPOINT")
                && endpoint.1.starts_with("http://")
                && !resolved.iter().any(|(k, _)| k == "allow_http")
            {
                b = b.with_allow_http(true);
            }
            b.with_url(url.root.as_str())
                .build()
                .map(|s| Arc::new(s) as _)
        }
        Some("gcs") => {
            let mut b = GoogleCloudStorageBuilder::new()
                .with_client_options(client)
                .with_retry(retry);
            for (k, v) in from_env("GOOGLE_") {
                if let Ok(key) = k.parse::<GoogleConfigKey>() {
                    b = b.with_config(key, v);
                }
            }
            for (k, v) in &resolved {
                let key = k.parse::<GoogleConfigKey>().map_err(|_| unknown(k))?;
                // A plain-HTTP base URL (an emulator) is allowed by saying so, as for S3.
                if key == GoogleConfigKey::BaseUrl && v.starts_with("http://") {
                    b = b.with_config(GoogleConfigKey::Client(ClientConfigKey::AllowHttp), "true");
                }
                b = b.with_config(key, v);
            }
            if vars
                .iter()
                .any(|(k, v)| k == "GOOGLE_BASE_URL" && v.starts_with("http://"))
                && !resolved.iter().any(|(k, _)| k == "allow_http")
            {
                b = b.with_config(GoogleConfigKey::Client(ClientConfigKey::AllowHttp), "true");
            }
            b.with_url(url.root.as_str())
                .build()
                .map(|s| Arc::new(s) as _)
        }
        Some("azure") => {
            let mut b = MicrosoftAzureBuilder::new()
                .with_client_options(client)
                .with_retry(retry);
            for (k, v) in from_env("AZURE_") {
                if let Ok(key) = k.parse::<AzureConfigKey>() {
                    b = b.with_config(key, v);
                }
            }
            for (k, v) in &resolved {
                b = b.with_config(k.parse::<AzureConfigKey>().map_err(|_| unknown(k))?, v);
            }
            b.with_url(url.root.as_str())
                .build()
                .map(|s| Arc::new(s) as _)
        }
        Some("http") => {
            let mut b = HttpBuilder::new()
                .with_client_options(client)
                .with_retry(retry);
            for (k, v) in &resolved {
                b = b.with_config(k.parse::<ClientConfigKey>().map_err(|_| unknown(k))?, v);
            }
            b.with_url(url.root.as_str())
                .build()
                .map(|s| Arc::new(s) as _)
        }
        Some("file") => Ok(Arc::new(object_store::local::LocalFileSystem::new()) as _),
        _ => {
            return Err(Error::Invalid(format!(
                "`{shown}` is not a URL Quiver can read; use a local path or one of {SCHEMES}"
            )));
        }
    };
    built.map_err(|e| Error::Invalid(format!("{shown}: {}", explain(&e))))
}

/// An object-store failure as an error: `context: what happened and what to check`; a missing
/// object or bucket and refused credentials are the user's to fix ([`Error::Invalid`]), a store
/// that does not answer is not ([`Error::Unavailable`]).
pub fn failure(context: &str, e: &object_store::Error) -> Error {
    use object_store::Error as E;
    let text = format!("{context}: {}", explain(e));
    let lower = chain(e).to_ascii_lowercase();
    let users = match e {
        E::NotFound { .. } | E::PermissionDenied { .. } | E::Unauthenticated { .. } => true,
        E::InvalidPath { .. } | E::NotSupported { .. } | E::NotImplemented { .. } => true,
        _ => [
            "nosuchbucket",
            "signaturedoesnotmatch",
            "invalidaccesskeyid",
            "accessdenied",
            "status 403",
            "403 forbidden",
            "404 not found",
            "status 404",
            "url scheme is not allowed",
        ]
        .iter()
        .any(|s| lower.contains(s)),
    };
    if users {
        Error::Invalid(text)
    } else {
        Error::Unavailable(text)
    }
}

/// An object-store failure in a few words and what to check (no secrets: object_store's
/// messages name paths and status codes, never credentials).
pub fn explain(e: &object_store::Error) -> String {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => "not found: check the bucket (container) and the key".into(),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => format!(
            "access denied ({}): check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*, or the source's `storage:` map) and that they allow reading (or, for an output, writing) this path",
            first_line(e)
        ),
        other => {
            let text = chain(other);
            let lower = text.to_ascii_lowercase();
            // Which service's settings to name: object_store says whose error it is.
            let store = match other {
                E::Generic { store, .. } => *store,
                _ => "",
            };
            // Every retried error names the retry settings (`retry_timeout: 30s`): only a
            // timeout of its own, without an HTTP status, means nobody answered.
            let unanswered = lower.replace("retry_timeout", "");
            let hint = if !lower.contains("status code")
                && (unanswered.contains("connect")
                    || unanswered.contains("dns error")
                    || unanswered.contains("timed out")
                    || unanswered.contains("timeout"))
            {
                match store {
                    "MicrosoftAzure" => {
                        "the endpoint did not answer: check `storage.endpoint` (or AZURE_STORAGE_ENDPOINT; AZURITE_BLOB_STORAGE_URL for the emulator), the network, and that the server is up"
                    }
                    "GCS" => {
                        "the endpoint did not answer: check `storage.base_url` (or GOOGLE_BASE_URL), the network, and that the server is up"
                    }
                    _ => {
                        "the endpoint did not answer: check `storage.endpoint` (or AWS_ENDPOINT_URL), the network, and that the server is up"
                    }
                }
            } else if lower.contains("account must be specified") {
                "no Azure storage account: set AZURE_STORAGE_ACCOUNT_NAME with a key, SAS or client credentials (or `account_name` and the rest in the source's `storage:` map), or AZURE_STORAGE_USE_EMULATOR=true for Azurite"
            } else if lower.contains("nosuchbucket") || lower.contains("bucket does not exist") {
                "the bucket does not exist: check its name"
            } else if lower.contains("404 not found") || lower.contains("status 404") {
                "not found: check the bucket (container) and the path"
            } else if lower.contains("url scheme is not allowed") {
                match store {
                    "MicrosoftAzure" => {
                        "plain HTTP is refused unless allowed: use https, or set `allow_http: true` in `storage:` (or AZURE_ALLOW_HTTP=true)"
                    }
                    "GCS" => {
                        "plain HTTP is refused unless allowed: use https, or set `allow_http: true` in `storage:` (or GOOGLE_ALLOW_HTTP=true)"
                    }
                    _ => {
                        "plain HTTP is refused unless allowed: use https, or set `allow_http: true` in `storage:` (or AWS_ALLOW_HTTP=true)"
                    }
                }
            } else if lower.contains("signaturedoesnotmatch")
                || lower.contains("invalidaccesskeyid")
                || lower.contains("accessdenied")
                || lower.contains("access denied")
                || lower.contains("status 403")
                || lower.contains("403 forbidden")
            {
                match store {
                    "MicrosoftAzure" => {
                        "access denied: check the credentials (AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY or a SAS or client secret, or the source's `storage:` map)"
                    }
                    "GCS" => {
                        "access denied: check the credentials (GOOGLE_APPLICATION_CREDENTIALS or GOOGLE_SERVICE_ACCOUNT, or the source's `storage:` map)"
                    }
                    _ => {
                        "access denied: check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the source's `storage:` map) and the region"
                    }
                }
            } else {
                ""
            };
            if hint.is_empty() {
                text
            } else {
                format!("{hint} ({text})")
            }
        }
    }
}

fn first_line(e: &dyn std::error::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// An error with its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = first_line(e);
    let mut source = e.source();
    while let Some(s) = source {
        let next = first_line(s);
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::explain;

    fn generic(store: &'static str, text: &str) -> object_store::Error {
        object_store::Error::Generic {
            store,
            source: text.to_string().into(),
        }
    }

    /// A server that answered (with an error status) is not reported as one that did not
    /// answer, although every retried error names `retry_timeout`.
    #[test]
    fn an_answer_with_an_error_status_is_not_a_silent_endpoint() {
        let answered = generic(
            "GCS",
            "Error performing HEAD http://127.0.0.1:9/lake/x in 1.2s, after 5 retries, max_retries: 5, retry_timeout: 30s - Server returned non-2xx status code: 501 Not Implemented",
        );
        let text = explain(&answered);
        assert!(!text.contains("did not answer"), "{text}");
        assert!(text.contains("501"), "{text}");
        let silent = generic(
            "GCS",
            "Error performing GET http://127.0.0.1:9/lake/x in 1.2s, after 5 retries, max_retries: 5, retry_timeout: 30s - error sending request: client error (Connect): tcp connect error: Connection refused",
        );
        assert!(explain(&silent).contains("did not answer"));
        assert!(explain(&silent).contains("storage.base_url"));
    }

    #[test]
    fn plain_http_hints_name_each_stores_variable() {
        for (store, variable) in [
            ("GCS", "GOOGLE_ALLOW_HTTP"),
            ("MicrosoftAzure", "AZURE_ALLOW_HTTP"),
            ("S3", "AWS_ALLOW_HTTP"),
        ] {
            let e = generic(store, "builder error: URL scheme is not allowed");
            assert!(explain(&e).contains(variable), "{store}: {}", explain(&e));
        }
    }
}
