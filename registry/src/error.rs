//! Errors of the registry crate, and the located diagnostics that validation reports all at once.

use std::fmt;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's definitions or configuration are invalid; every problem found is listed.
    #[error("{}", render_diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
    /// A file the user named could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another `apply` committed a version between our read and our write.
    #[error(
        "registry changed concurrently: version {conflicting} was written by another apply while this one was based on version {base}; run `quiver plan` again and re-apply"
    )]
    Conflict { base: u64, conflicting: u64 },
    /// The registry store holds something we cannot read (corrupted or written by a newer Quiver).
    #[error("registry store is unreadable: {0}")]
    Corrupt(String),
    /// The registry store (e.g. Redis) could not be reached.
    #[error("registry store unavailable: {0}")]
    Unavailable(String),
    /// A lookup named something the registry does not hold.
    #[error("{0}")]
    NotFound(String),
}

impl Error {
    /// True when the user can fix this by changing what they wrote or typed (exit code 2 in the CLI).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::Invalid(_) | Error::Conflict { .. } | Error::NotFound(_)
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in the user's files: where it is, what is wrong, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The file, as the user would type it (relative to the repository root when inside it).
    pub file: String,
    /// 1-based line and column; 0 when the problem has no single place (e.g. a missing file).
    pub line: u64,
    pub column: u64,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(file: impl Into<String>, at: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.into(),
            line: at.line,
            column: at.column,
            message: message.into(),
            hint: None,
        }
    }

    pub fn warning(file: impl Into<String>, at: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, at, message)
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(f, "{level}: {}", self.message)?;
        if self.line > 0 {
            write!(f, "  --> {}:{}:{}", self.file, self.line, self.column)?;
        } else {
            write!(f, "  --> {}", self.file)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n   = help: {hint}")?;
        }
        Ok(())
    }
}

/// A 1-based position in a definition file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub line: u64,
    pub column: u64,
}

impl Span {
    pub const NONE: Span = Span { line: 0, column: 0 };
}

impl From<serde_saphyr::Location> for Span {
    fn from(loc: serde_saphyr::Location) -> Self {
        Span {
            line: loc.line(),
            column: loc.column(),
        }
    }
}

fn render_diagnostics(diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.to_string());
        out.push_str("\n\n");
    }
    out.push_str(&format!(
        "{errors} error{} found; nothing was changed",
        if errors == 1 { "" } else { "s" }
    ));
    out
}
