//! `serving.auth:` — bearer tokens (as hashes or files) and the scopes they grant.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Diagnostic, Span};

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
    /// [`Scope`]s as written: kept as text so that an unknown one is reported at load with
    /// every other problem ([`TokenConfig::known_scopes`] parses them).
    pub scopes: Vec<String>,
}

/// Declares [`Scope`], one line per scope: its variant and its spelling in `quiver.yaml`. Parsing,
/// messages and hints all go through [`Scope::ALL`], so adding a scope is adding a line here.
macro_rules! scopes {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)+) => {
        /// What a token may do (`scopes:` of `serving.auth.tokens`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Scope {
            $($(#[$doc])* $variant,)+
        }

        impl Scope {
            /// Every scope, in the order messages list them.
            pub const ALL: &[Scope] = &[$(Scope::$variant,)+];

            /// As written in `quiver.yaml` and in messages.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Scope::$variant => $name,)+
                }
            }
        }
    };
}

scopes! {
    /// Online features, over HTTP and gRPC.
    OnlineRead => "online:read",
    /// Training retrieval (`/get-historical-features`).
    OfflineRead => "offline:read",
    /// Pushes and writes to the online store (`/push`, `/write-to-online-store`).
    OnlineWrite => "online:write",
    /// Pushes appended to a push source's batch source (`/push` with `to: offline`).
    OfflineWrite => "offline:write",
    /// Everything, plus the registry listings (and `/metrics` unless it is public).
    Admin => "admin",
}

impl Scope {
    /// The hint of a message about scopes: `scopes: ` and every scope.
    pub fn hint() -> String {
        let names: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
        format!("scopes: {}", names.join(", "))
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    /// `unknown scope `…``.
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Scope::ALL
            .iter()
            .copied()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| format!("unknown scope `{s}`"))
    }
}

impl TokenConfig {
    /// The token's scopes, parsed; text that names no scope is left out (loading the
    /// configuration refuses it).
    pub fn known_scopes(&self) -> impl Iterator<Item = Scope> + '_ {
        self.scopes.iter().filter_map(|s| s.parse().ok())
    }
}

pub(super) fn check_auth(file: &str, auth: &AuthConfig, problems: &mut Vec<Diagnostic>) {
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
            error(format!("{who} has no scopes"), &Scope::hint());
        }
        for s in &t.scopes {
            if let Err(unknown) = s.parse::<Scope>() {
                error(format!("{who}: {unknown}"), &Scope::hint());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scopes are spelt, parsed and listed in hints from one list (`Scope::ALL`).
    #[test]
    fn scopes_are_spelt_and_refused_as_written() {
        let names: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "online:read",
                "offline:read",
                "online:write",
                "offline:write",
                "admin"
            ]
        );
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(*scope));
            assert_eq!(scope.to_string(), scope.as_str());
        }
        let token = TokenConfig {
            name: "a".into(),
            sha256: Some("a".repeat(64)),
            token_file: None,
            scopes: vec!["admin".into(), "online:wirte".into()],
        };
        assert_eq!(token.known_scopes().collect::<Vec<_>>(), [Scope::Admin]);
        let auth = AuthConfig {
            tokens: vec![token],
            metrics_public: true,
        };
        let mut problems = Vec::new();
        check_auth("quiver.yaml", &auth, &mut problems);
        let [problem] = problems.as_slice() else {
            panic!("one problem: {problems:?}");
        };
        assert_eq!(
            problem.message,
            "serving.auth token `a`: unknown scope `online:wirte`"
        );
        assert_eq!(
            problem.hint.as_deref(),
            Some("scopes: online:read, offline:read, online:write, offline:write, admin")
        );
    }
}
