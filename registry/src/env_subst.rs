//! `${VAR}` and `${VAR:-default}` substitution in configuration and definition files.
//!
//! The caller supplies the lookup: libraries never read the process environment themselves.

/// Replaces every `${NAME}` / `${NAME:-default}` in `text`. `$${` escapes a literal `${`.
/// Whole-line YAML comments are left as they are, so they can document variables freely.
/// Returns every unset variable without a default (with its 1-based line) as an error.
pub fn substitute(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<(u64, String)>> {
    let mut out = String::with_capacity(text.len());
    let mut missing = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(pos) = rest.find("${") {
            if rest[..pos].ends_with('$') {
                out.push_str(&rest[..pos - 1]);
                out.push_str("${");
                rest = &rest[pos + 2..];
                continue;
            }
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 2..];
            let Some(end) = after.find('}') else {
                missing.push((
                    index as u64 + 1,
                    "unterminated `${`: close it with `}`".into(),
                ));
                out.push_str(&rest[pos..]);
                rest = "";
                break;
            };
            let expr = &after[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                missing.push((
                    index as u64 + 1,
                    format!("`${{{expr}}}` is not a valid variable reference"),
                ));
            } else {
                match lookup(name).or_else(|| default.map(str::to_string)) {
                    Some(value) => out.push_str(&value),
                    None => missing.push((
                        index as u64 + 1,
                        format!("environment variable `{name}` is not set (give a default with `${{{name}:-value}}`)"),
                    )),
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("redis.internal".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_values_defaults_and_escapes() {
        let text = "url: redis://${HOST}:${PORT:-6379}/0\nx: '${EMPTY:-unused}'\nlit: $${HOST}\n";
        assert_eq!(
            substitute(text, &env).unwrap(),
            "url: redis://redis.internal:6379/0\nx: ''\nlit: ${HOST}\n"
        );
    }

    #[test]
    fn reports_every_missing_variable_with_its_line() {
        let err = substitute("a: ${A}\n# ${COMMENTED}\nc: ${B} ${1X}\n", &env).unwrap_err();
        assert_eq!(err.len(), 3);
        assert_eq!(err[0].0, 1);
        assert!(err[0].1.contains("`A` is not set"));
        assert_eq!(err[1].0, 3);
        assert!(err[2].1.contains("not a valid variable"));
    }
}
