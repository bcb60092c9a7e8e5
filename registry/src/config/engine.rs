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

    pub(super) fn check(&self, file: &str, problems: &mut Vec<Diagnostic>) {
        if let EngineConfig::Ballista {
            url,
            connect_timeout_ms,
        } = self
        {
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
