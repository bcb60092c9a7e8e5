//! `engine:` — where offline work (materialization, retrieval, verify) runs: in this process
//! (`local`, the default) or on an Apache DataFusion Ballista cluster (`ballista`).

use serde::{Deserialize, Serialize};

use crate::error::{Diagnostic, Span};

/// The scheduler port Ballista listens on unless told otherwise.
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// Where offline work runs.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
pub enum EngineConfig {
    /// In-process DataFusion, the default (no other keys: a `url` here is a mistake).
    Local {},
    /// An Apache DataFusion Ballista cluster whose scheduler is at `url` (`df://host:port`).
    Ballista {
        url: String,
        /// How long to wait for the scheduler to accept a connection, in milliseconds.
        #[serde(default = "default_connect_timeout_ms")]
        connect_timeout_ms: u64,
        /// Where retrieval stages its entity keys for the executors to read: a directory
        /// (local, for executors on this machine or a shared file system; relative to the
        /// repository) or an object-store URL (`s3://bucket/prefix/`). Default: a directory
        /// each client process makes for itself (mode 0700) in the system's temporary
        /// directory.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        staging: Option<String>,
        /// How the staging store is opened, as a source's `storage:` map. It travels with each
        /// job; quiver.yaml's `${VAR}`s are resolved when it is loaded, so its values travel
        /// resolved (keep credentials in the processes' standard environment).
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        staging_storage: std::collections::BTreeMap<String, String>,
        /// Into how many partitions (tasks) a view's join is split on the cluster, by the
        /// join keys' hash. Default: the client's number of CPUs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partitions: Option<usize>,
    },
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig::Local {}
    }
}

/// `url` for messages: a user and password (which a scheduler URL never needs) hidden.
fn shown(url: &str) -> String {
    match url.strip_prefix("df://").and_then(|r| r.split_once('@')) {
        Some((_, host)) => format!("df://***@{host}"),
        None => url.to_string(),
    }
}

impl EngineConfig {
    /// The scheduler's address as `(host, port)`, from a `df://host[:port]` URL.
    pub fn scheduler(url: &str) -> Result<(String, u16), String> {
        let url = &shown(url);
        let rest = url.strip_prefix("df://").ok_or_else(|| {
            format!("engine url `{url}` must start with `df://` (e.g. `df://scheduler:50050`)")
        })?;
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains(['/', '@', '?', '#', ' ']) {
            return Err(format!(
                "engine url `{url}` must be `df://host` or `df://host:port`, nothing more"
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("engine url `{url}`: `{p}` is not a port"))?;
                (h.to_string(), port)
            }
            _ => (rest.to_string(), DEFAULT_SCHEDULER_PORT),
        };
        if host.is_empty() {
            return Err(format!("engine url `{url}` names no host"));
        }
        Ok((host, port))
    }

    /// Whether `staging` can hold staged entity keys: a local directory, or a URL of an
    /// object store Quiver writes to (not `http(s)://`, which is read-only).
    pub fn check_staging(staging: &str) -> Result<(), String> {
        if staging.trim().is_empty() {
            return Err("`engine.staging` is empty".into());
        }
        if let Some((scheme, _)) = staging.split_once("://") {
            let writable = [
                "s3", "s3a", "gs", "az", "abfs", "abfss", "adl", "azure", "file",
            ];
            if !writable.contains(&scheme.to_ascii_lowercase().as_str()) {
                return Err(format!(
                    "`engine.staging` `{staging}`: `{scheme}://` is not a store Quiver writes to (s3://, gs://, az://, file:// or a directory)"
                ));
            }
        }
        Ok(())
    }

    pub(super) fn check(&self, file: &str, problems: &mut Vec<Diagnostic>) {
        if let EngineConfig::Ballista {
            url,
            connect_timeout_ms,
            staging,
            partitions,
            ..
        } = self
        {
            if *partitions == Some(0) {
                problems.push(Diagnostic::error(
                    file,
                    Span::NONE,
                    "`engine.partitions` must be at least 1",
                ));
            }
            if let Some(Err(message)) = staging.as_deref().map(Self::check_staging) {
                problems.push(Diagnostic::error(file, Span::NONE, message).with_hint(
                    "set `engine.staging` to a directory every executor can read, or a URL such as `s3://bucket/quiver-staging/`",
                ));
            }
            if let Err(message) = Self::scheduler(url) {
                problems.push(Diagnostic::error(file, Span::NONE, message).with_hint(
                    "set `engine.url` to the Ballista scheduler, e.g. `df://127.0.0.1:50050`",
                ));
            }
            if *connect_timeout_ms == 0 {
                problems.push(Diagnostic::error(
                    file,
                    Span::NONE,
                    "`engine.connect_timeout_ms` must be at least 1",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EngineConfig;

    #[test]
    fn scheduler_urls() {
        assert_eq!(
            EngineConfig::scheduler("df://127.0.0.1:50051").unwrap(),
            ("127.0.0.1".to_string(), 50051)
        );
        assert_eq!(
            EngineConfig::scheduler("df://sched.internal").unwrap(),
            ("sched.internal".to_string(), 50050)
        );
        for bad in [
            "http://h:1",
            "df://",
            "df://h:0",
            "df://h:x",
            "df://h:1/path",
            "df://u@h:1",
        ] {
            assert!(EngineConfig::scheduler(bad).is_err(), "{bad}");
        }
    }
}
