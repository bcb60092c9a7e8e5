//! Bearer-token authentication and scope checks, the same for HTTP and gRPC.
//!
//! Only SHA-256 hashes of tokens are held. A presented token is hashed and compared with every
//! configured hash in constant time (`subtle`: no early exit, no data-dependent branch per
//! byte), so response timing says nothing about how close a guess was. Tokens never reach logs.

use std::path::Path;

use quiver_registry::{AuthConfig, Scope};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{ErrorCode, ServiceError};

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    OnlineRead,
    OfflineRead,
    /// Pushes and writes to the online store.
    OnlineWrite,
    /// Pushes appended to a batch source.
    OfflineWrite,
    Admin,
    /// Any valid token (the registry listings).
    Authenticated,
}

impl Need {
    /// The scope that grants it (`admin` grants every one); `None`: any valid token.
    fn scope(self) -> Option<Scope> {
        match self {
            Need::OnlineRead => Some(Scope::OnlineRead),
            Need::OfflineRead => Some(Scope::OfflineRead),
            Need::OnlineWrite => Some(Scope::OnlineWrite),
            Need::OfflineWrite => Some(Scope::OfflineWrite),
            Need::Admin => Some(Scope::Admin),
            Need::Authenticated => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    name: String,
    hash: [u8; 32],
    scopes: Vec<Scope>,
}

/// The server's view of `serving.auth`: open when no tokens are configured.
#[derive(Debug, Clone)]
pub struct Authenticator {
    tokens: Vec<Token>,
    metrics_public: bool,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The hex SHA-256 of a token, as `sha256:` in the configuration expects it.
pub fn hash_token(token: &str) -> String {
    hex::encode(sha256(token.trim().as_bytes()))
}

/// The shortest token Quiver accepts, in characters (surrounding whitespace aside).
pub const MIN_TOKEN_CHARS: usize = 16;

/// The one rule for a token in the clear (`quiver auth hash-token`, `token_file`): at least
/// [`MIN_TOKEN_CHARS`] characters once trimmed. Returns the trimmed token; the error never
/// quotes it.
pub fn check_token(token: &str) -> Result<&str, String> {
    let token = token.trim();
    if token.chars().count() < MIN_TOKEN_CHARS {
        return Err(format!(
            "the token is shorter than {MIN_TOKEN_CHARS} characters: use a long random one, e.g. `openssl rand -hex 32`"
        ));
    }
    Ok(token)
}

impl Authenticator {
    /// No authentication: every endpoint is open.
    pub fn open() -> Self {
        Authenticator {
            tokens: Vec::new(),
            metrics_public: true,
        }
    }

    /// From the configuration; `token_file`s are read (relative to `root`) and hashed now.
    pub fn from_config(auth: Option<&AuthConfig>, root: &Path) -> Result<Self, String> {
        let Some(auth) = auth else {
            return Ok(Self::open());
        };
        let mut tokens = Vec::new();
        for t in &auth.tokens {
            let hash = match (&t.sha256, &t.token_file) {
                (Some(hex_hash), _) => {
                    let bytes = hex::decode(hex_hash)
                        .map_err(|e| format!("token `{}`: sha256: {e}", t.name))?;
                    bytes
                        .try_into()
                        .map_err(|_| format!("token `{}`: sha256 must be 32 bytes", t.name))?
                }
                (None, Some(file)) => {
                    let path = root.join(file);
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        format!("token `{}`: cannot read {}: {e}", t.name, path.display())
                    })?;
                    if text.trim().is_empty() {
                        return Err(format!("token `{}`: {} is empty", t.name, path.display()));
                    }
                    let token = check_token(&text)
                        .map_err(|e| format!("token `{}` in {}: {e}", t.name, path.display()))?;
                    sha256(token.as_bytes())
                }
                (None, None) => return Err(format!("token `{}` has no sha256", t.name)),
            };
            tokens.push(Token {
                name: t.name.clone(),
                hash,
                scopes: t.known_scopes().collect(),
            });
        }
        Ok(Authenticator {
            tokens,
            metrics_public: auth.metrics_public,
        })
    }

    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn metrics_need(&self) -> Option<Need> {
        (!self.metrics_public).then_some(Need::Admin)
    }

    /// Checks an `Authorization` header value (`Bearer <token>`) against what is needed;
    /// returns the token's name.
    pub fn check(
        &self,
        authorization: Option<&[u8]>,
        need: Need,
    ) -> Result<Option<&str>, ServiceError> {
        if self.is_open() {
            return Ok(None);
        }
        let unauthenticated = |m: &str| ServiceError {
            code: ErrorCode::Unauthenticated,
            message: m.to_string(),
        };
        let header = authorization.ok_or_else(|| {
            unauthenticated("missing bearer token: send `Authorization: Bearer <token>`")
        })?;
        let token = header
            .strip_prefix(b"Bearer ")
            .or_else(|| header.strip_prefix(b"bearer "))
            .ok_or_else(|| unauthenticated("the Authorization header is not `Bearer <token>`"))?;
        let presented = sha256(token.trim_ascii());
        // Compare with every token, always: the time taken does not depend on which matched.
        let mut found: Option<&Token> = None;
        for t in &self.tokens {
            if bool::from(presented.ct_eq(&t.hash)) {
                found = Some(t);
            }
        }
        let t = found.ok_or_else(|| unauthenticated("invalid bearer token"))?;
        if let Some(scope) = need.scope()
            && !t.scopes.contains(&scope)
            && !t.scopes.contains(&Scope::Admin)
        {
            return Err(ServiceError {
                code: ErrorCode::PermissionDenied,
                message: format!("token `{}` lacks the `{scope}` scope", t.name),
            });
        }
        Ok(Some(t.name.as_str()))
    }
}

/// Counts a refused request in `quiver_auth_failures_total{protocol, reason}`.
pub fn record_failure(protocol: &'static str, error: &ServiceError) {
    let reason = if error.code == ErrorCode::Unauthenticated {
        "unauthenticated"
    } else {
        "permission_denied"
    };
    metrics::counter!("quiver_auth_failures_total", "protocol" => protocol, "reason" => reason)
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_registry::TokenConfig;

    fn auth() -> Authenticator {
        let token = |name: &str, secret: &str, scopes: &[&str]| TokenConfig {
            name: name.into(),
            sha256: Some(hash_token(secret)),
            token_file: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        };
        let config = AuthConfig {
            tokens: vec![
                token("app", "s3cret-app", &["online:read"]),
                token("trainer", "s3cret-train", &["offline:read"]),
                token("ops", "s3cret-ops", &["admin"]),
            ],
            metrics_public: false,
        };
        Authenticator::from_config(Some(&config), Path::new(".")).unwrap()
    }

    #[test]
    fn scopes_decide_and_401_differs_from_403() {
        let a = auth();
        let check = |h: Option<&str>, need| a.check(h.map(str::as_bytes), need).map_err(|e| e.code);
        assert_eq!(
            check(Some("Bearer s3cret-app"), Need::OnlineRead),
            Ok(Some("app"))
        );
        assert_eq!(
            check(Some("Bearer s3cret-app"), Need::OfflineRead),
            Err(ErrorCode::PermissionDenied)
        );
        assert_eq!(
            check(Some("Bearer s3cret-train"), Need::OfflineRead),
            Ok(Some("trainer"))
        );
        assert_eq!(
            check(Some("Bearer s3cret-train"), Need::Authenticated),
            Ok(Some("trainer"))
        );
        assert_eq!(
            check(Some("Bearer s3cret-ops"), Need::OnlineRead),
            Ok(Some("ops"))
        );
        assert_eq!(
            check(Some("Bearer s3cret-ops"), Need::Admin),
            Ok(Some("ops"))
        );
        assert_eq!(
            check(Some("Bearer s3cret-app"), Need::Admin),
            Err(ErrorCode::PermissionDenied)
        );
        assert_eq!(
            check(None, Need::OnlineRead),
            Err(ErrorCode::Unauthenticated)
        );
        assert_eq!(
            check(Some("Bearer nope"), Need::OnlineRead),
            Err(ErrorCode::Unauthenticated)
        );
        assert_eq!(
            check(Some("Basic abc"), Need::OnlineRead),
            Err(ErrorCode::Unauthenticated)
        );
        assert_eq!(
            check(Some("Bearer "), Need::OnlineRead),
            Err(ErrorCode::Unauthenticated)
        );
        // Messages never echo the token.
        let e = a
            .check(Some(b"Bearer s3cret-ap"), Need::OnlineRead)
            .unwrap_err();
        assert!(!e.message.contains("s3cret"), "{}", e.message);
        assert_eq!(
            Authenticator::open().check(None, Need::Admin).unwrap(),
            None
        );
    }

    #[test]
    fn token_files_are_read_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), "from-a-file-0123456789\n").unwrap();
        let config = AuthConfig {
            tokens: vec![TokenConfig {
                name: "f".into(),
                sha256: None,
                token_file: Some("t".into()),
                scopes: vec!["online:read".into()],
            }],
            metrics_public: true,
        };
        let a = Authenticator::from_config(Some(&config), dir.path()).unwrap();
        assert!(
            a.check(Some(b"Bearer from-a-file-0123456789"), Need::OnlineRead)
                .is_ok()
        );
        let missing = AuthConfig {
            tokens: vec![TokenConfig {
                token_file: Some("absent".into()),
                ..config.tokens[0].clone()
            }],
            metrics_public: true,
        };
        let err = Authenticator::from_config(Some(&missing), dir.path()).unwrap_err();
        assert!(err.contains("cannot read"), "{err}");
    }

    /// `token_file` and `quiver auth hash-token` share one rule: at least 16 characters.
    #[test]
    fn short_tokens_are_refused_the_same_way_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let config = |file: &str| AuthConfig {
            tokens: vec![TokenConfig {
                name: "f".into(),
                sha256: None,
                token_file: Some(file.into()),
                scopes: vec!["online:read".into()],
            }],
            metrics_public: true,
        };
        let fifteen = "x".repeat(MIN_TOKEN_CHARS - 1);
        for (file, token) in [("one", "a\n"), ("fifteen", fifteen.as_str())] {
            std::fs::write(dir.path().join(file), token).unwrap();
            let err = Authenticator::from_config(Some(&config(file)), dir.path()).unwrap_err();
            assert!(err.contains("shorter than 16 characters"), "{err}");
            assert!(!err.contains(&fifteen), "the token is never quoted: {err}");
            assert_eq!(
                check_token(token).unwrap_err(),
                check_token("a").unwrap_err()
            );
        }
        // Sixteen characters (whitespace around them aside) are enough, counted as characters.
        let sixteen = format!("  {}\n", "é".repeat(MIN_TOKEN_CHARS));
        std::fs::write(dir.path().join("ok"), &sixteen).unwrap();
        let a = Authenticator::from_config(Some(&config("ok")), dir.path()).unwrap();
        let header = format!("Bearer {}", sixteen.trim());
        assert!(a.check(Some(header.as_bytes()), Need::OnlineRead).is_ok());
        assert_eq!(check_token(&sixteen), Ok(sixteen.trim()));
    }
}
