//! Reading one YAML file into a typed value, with `${VAR}` substitution (inside parsed scalars,
//! see [`crate::env_subst`]) and located errors.

use serde::de::DeserializeOwned;

use crate::env_subst::substitute;
use crate::error::{Diagnostic, Error, Result, Span};

/// Parses `text` (from `file`, for messages) after substituting environment variables.
pub(crate) fn parse_yaml<T: DeserializeOwned>(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<T> {
    let text = substitute(text, env).map_err(|missing| {
        Error::Invalid(
            missing
                .into_iter()
                .map(|(line, message)| Diagnostic::error(file, Span { line, column: 1 }, message))
                .collect(),
        )
    })?;
    serde_saphyr::from_str(&text).map_err(|e| Error::Invalid(vec![yaml_diagnostic(file, &e)]))
}

/// Parses `text` with every `${…}` kept as written (and `$${` kept escaped).
pub(crate) fn parse_yaml_raw<T: DeserializeOwned>(file: &str, text: &str) -> Result<T> {
    let text = crate::env_subst::keep_references(text);
    serde_saphyr::from_str(&text).map_err(|e| Error::Invalid(vec![yaml_diagnostic(file, &e)]))
}

fn yaml_diagnostic(file: &str, err: &serde_saphyr::Error) -> Diagnostic {
    let at = err.location().map(Span::from).unwrap_or(Span::NONE);
    if let serde_saphyr::Error::DuplicateMappingKey { key, location } = err.without_snippet() {
        let key = key.as_ref().map(|k| format!(" `{k}`")).unwrap_or_default();
        return Diagnostic::error(
            file,
            Span::from(*location),
            format!(
                "duplicate key{key} at line {}; each key may appear once",
                location.line()
            ),
        )
        .with_hint("remove one of the two, or merge them");
    }
    let message = err.without_snippet().to_string();
    // The library appends its own position; ours is in the `-->` line.
    let message = match message.rfind(" at line ") {
        Some(pos) => message[..pos].to_string(),
        None => message,
    };
    let hint = if message.contains("unknown field") {
        Some("remove the key or fix its spelling; the expected keys are listed above".to_string())
    } else if message.contains("missing field") {
        Some("add the required key".to_string())
    } else {
        None
    };
    Diagnostic::error(file, at, format!("invalid YAML: {message}")).with_hint_opt(hint)
}
