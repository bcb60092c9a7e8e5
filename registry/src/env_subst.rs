//! `${VAR}` and `${VAR:-default}` substitution in configuration and definition files.
//!
//! Substitution happens inside parsed YAML scalars, never in the text: a value can hold `#`,
//! `: `, quotes, newlines or YAML indicators and still be one string, and it can never add
//! keys or items. Every `${…}` is first masked with a placeholder that is plain text in any YAML
//! context; the file is parsed; each scalar holding a placeholder is then rewritten as a
//! double-quoted scalar of its substituted value (or left plain when it is exactly one
//! `${…}` whose value is a number or a boolean, so typed keys keep their type). Lines never
//! move, so every later location is where the user wrote it.
//!
//! The caller supplies the lookup: libraries never read the process environment themselves.

use serde_saphyr::granit_parser::{Event, Options, Parser, ScalarStyle};

use yaml_scalar::{block_header, double_quoted, is_plain_number_or_bool};

mod yaml_scalar;

/// Starts a placeholder for the reference whose index follows (decimal digits).
const REF_START: char = '\u{E000}';
/// Ends a placeholder.
const REF_END: char = '\u{E001}';
/// Stands for a literal `${` written as `$${`.
const LITERAL: char = '\u{E002}';
/// How deep defaults may nest (`${A:-${B:-${C}}}` is 3 deep).
const MAX_NESTING: usize = 8;

/// One `${…}` as written, with its 1-based line.
struct Reference {
    expr: String,
    line: u64,
}

/// Substitutes every `${NAME}` / `${NAME:-default}` in the scalars of the YAML `text` and
/// returns YAML with the same structure and the same line numbers. `$${` escapes a literal `${`.
/// Defaults may nest (`${A:-${B:-x}}`), an empty default (`${A:-}`) is the empty string, and a
/// default is taken literally, up to its matching `}`. Comments may mention `${VAR}` freely.
/// Returns every unset variable without a default, and every malformed reference, with its
/// 1-based line. Text that is not valid YAML is returned masked, for the parser to report.
pub fn substitute(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<(u64, String)>> {
    substitute_as(text, lookup, false)
}

/// The YAML `text` with every `${…}` (and `$${`) kept as written, inside scalars rewritten as
/// [`substitute`] would: what a later [`substitute_value`] resolves where the value is used.
pub fn keep_references(text: &str) -> String {
    substitute_as(text, &|_| None, true).unwrap_or_else(|_| text.to_string())
}

/// One value's `${NAME}`, `${NAME:-default}` and `$${` resolved (a value kept by
/// [`keep_references`]); every unset variable without a default is returned.
pub fn substitute_value(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<String>> {
    let mut problems = Vec::new();
    match expand_default(value, 0, 0, lookup, &mut problems) {
        Some(v) if problems.is_empty() => Ok(v),
        _ => Err(problems.into_iter().map(|(_, p)| p).collect()),
    }
}

fn substitute_as(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    raw: bool,
) -> Result<String, Vec<(u64, String)>> {
    if !text.contains("${") {
        return Ok(text.to_string());
    }
    let mut problems = reserved_characters(text);
    if !problems.is_empty() {
        return Err(problems);
    }
    let (masked, refs) = mask(text);
    let mut options = Options::default();
    options.set_emit_comments(false);
    let mut rewrites: Vec<(usize, usize, String)> = Vec::new();
    // End of the last node event: a block scalar's header lies between it and the content.
    let mut previous_end = 0;
    for event in Parser::new_from_str_with_options(&masked, options) {
        let Ok((event, span)) = event else {
            // Not YAML: let the deserializer report it where it is.
            return Ok(masked);
        };
        let Some(range) = span.byte_range() else {
            return Ok(masked);
        };
        let scalar_start = range.start;
        let region_start = previous_end;
        previous_end = previous_end.max(range.end);
        let Event::Scalar(value, style, _, tag) = event else {
            continue;
        };
        if !value.contains([REF_START, LITERAL]) && !value.contains("${") {
            continue;
        }
        let line = span.start.line() as u64;
        let Some(expanded) = expand_scalar(&value, &refs, lookup, raw, &mut problems, || {
            line + newlines_before(&masked[range.clone()], "${")
        }) else {
            continue;
        };
        let whole_reference = style == ScalarStyle::Plain
            && tag.is_none()
            && value.starts_with(REF_START)
            && value.ends_with(REF_END)
            && value.matches(REF_START).count() == 1;
        let rendered = if whole_reference && is_plain_number_or_bool(&expanded) {
            expanded
        } else {
            double_quoted(&expanded)
        };
        let start = match style {
            ScalarStyle::Literal | ScalarStyle::Folded => masked
                .get(region_start..scalar_start)
                .and_then(block_header)
                .map_or(scalar_start, |at| region_start + at),
            _ => scalar_start,
        };
        if rewrites.last().is_some_and(|(_, end, _)| *end > start) {
            problems.push((line, "cannot substitute `${…}` in this scalar".into()));
            continue;
        }
        // Keep every line break of the replaced text, and the column where it ended.
        let breaks = masked[start..range.end].matches('\n').count();
        let mut replacement = rendered;
        if breaks > 0 {
            replacement.push_str(&"\n".repeat(breaks));
            replacement.push_str(&" ".repeat(span.end.col()));
        }
        rewrites.push((start, range.end, replacement));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(splice(&masked, &refs, rewrites))
}

/// Every line holding one of the characters placeholders are made of.
fn reserved_characters(text: &str) -> Vec<(u64, String)> {
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.contains([REF_START, REF_END, LITERAL]) {
            problems.push((
                index as u64 + 1,
                "characters U+E000 to U+E002 are reserved in files that use `${…}`".to_string(),
            ));
        }
    }
    problems
}

/// `masked` with each `(start, end, replacement)` applied, in order; outside the rewritten
/// scalars (comments), what was written is put back.
fn splice(masked: &str, refs: &[Reference], rewrites: Vec<(usize, usize, String)>) -> String {
    let mut out = String::with_capacity(masked.len());
    let mut at = 0;
    for (start, end, replacement) in rewrites {
        unmask(&masked[at..start], refs, &mut out);
        out.push_str(&replacement);
        at = end;
    }
    unmask(&masked[at..], refs, &mut out);
    out
}

/// `text` with its placeholders turned back into what they stand for.
fn unmask(text: &str, refs: &[Reference], out: &mut String) {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            LITERAL => out.push_str("$${"),
            REF_START => {
                let digits: String = chars.by_ref().take_while(|&c| c != REF_END).collect();
                let expr = digits
                    .parse::<usize>()
                    .ok()
                    .and_then(|n| refs.get(n))
                    .map_or("", |r| r.expr.as_str());
                out.push_str("${");
                out.push_str(expr);
                out.push('}');
            }
            c => out.push(c),
        }
    }
}

/// Replaces each complete `${…}` with a placeholder and each `$${` with [`LITERAL`]. An
/// unterminated `${` is left as written: it is an error only if it ends up in a scalar.
fn mask(text: &str) -> (String, Vec<Reference>) {
    let mut out = String::with_capacity(text.len());
    let mut refs = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(pos) = rest.find("${") {
            if rest[..pos].ends_with('$') {
                out.push_str(&rest[..pos - 1]);
                out.push(LITERAL);
                rest = &rest[pos + 2..];
                continue;
            }
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 2..];
            match closing_brace(after) {
                Some(end) => {
                    out.push(REF_START);
                    out.push_str(&refs.len().to_string());
                    out.push(REF_END);
                    refs.push(Reference {
                        expr: after[..end].to_string(),
                        line: index as u64 + 1,
                    });
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str("${");
                    rest = after;
                }
            }
        }
        out.push_str(rest);
    }
    (out, refs)
}

/// The index of the `}` that closes a `${` whose text follows, counting nested `${…}`; `None`
/// when it is not closed on its line.
fn closing_brace(after: &str) -> Option<usize> {
    let bytes = after.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => return None,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// A scalar's value with its placeholders substituted; `None` when something could not be.
fn expand_scalar(
    value: &str,
    refs: &[Reference],
    lookup: &dyn Fn(&str) -> Option<String>,
    raw: bool,
    problems: &mut Vec<(u64, String)>,
    unterminated_line: impl Fn() -> u64,
) -> Option<String> {
    let before = problems.len();
    let mut out = String::with_capacity(value.len());
    let mut chars = value.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            LITERAL if raw => out.push_str("$${"),
            LITERAL => out.push_str("${"),
            REF_START => {
                let rest = &value[i + c.len_utf8()..];
                let end = rest.find(REF_END).unwrap_or(rest.len());
                match rest[..end].parse::<usize>().ok().and_then(|n| refs.get(n)) {
                    Some(r) if raw => {
                        out.push_str("${");
                        out.push_str(&r.expr);
                        out.push('}');
                    }
                    Some(r) => {
                        if let Some(v) = resolve(&r.expr, r.line, 1, lookup, problems) {
                            out.push_str(&v);
                        }
                    }
                    // Written as such by the user (reserved characters are refused earlier).
                    None => out.push(c),
                }
                for _ in rest[..end].chars().chain(rest[end..].chars().take(1)) {
                    chars.next();
                }
            }
            '$' if value[i..].starts_with("${") => {
                problems.push((
                    unterminated_line(),
                    "unterminated `${`: close it with `}` on the same line (write `$${` for a literal `${`)".into(),
                ));
                out.push(c);
            }
            c => out.push(c),
        }
    }
    (problems.len() == before).then_some(out)
}

/// The value of one `${expr}` (without `${` and `}`); problems are recorded with `line`.
fn resolve(
    expr: &str,
    line: u64,
    depth: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<(u64, String)>,
) -> Option<String> {
    if depth > MAX_NESTING {
        problems.push((
            line,
            format!("defaults nest more than {MAX_NESTING} deep: `${{{expr}}}`"),
        ));
        return None;
    }
    let (name, default) = match expr.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (expr, None),
    };
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        problems.push((
            line,
            format!(
                "`${{{expr}}}` is not a valid variable reference: write `${{NAME}}` or `${{NAME:-default}}`, with a name of letters, digits and `_`"
            ),
        ));
        return None;
    }
    if let Some(value) = lookup(name) {
        return Some(value);
    }
    match default {
        Some(default) => expand_default(default, line, depth, lookup, problems),
        None => {
            problems.push((
                line,
                format!(
                    "environment variable `{name}` is not set (give a default with `${{{name}:-value}}`)"
                ),
            ));
            None
        }
    }
}

/// A default as written, with its own `${…}` substituted and `$${` unescaped.
fn expand_default(
    text: &str,
    line: u64,
    depth: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<(u64, String)>,
) -> Option<String> {
    let before = problems.len();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("${") {
        if rest[..pos].ends_with('$') {
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        // Always closed: the whole default was inside a closed reference.
        let end = closing_brace(after).unwrap_or(after.len());
        if let Some(v) = resolve(&after[..end], line, depth + 1, lookup, problems) {
            out.push_str(&v);
        }
        rest = after.get(end + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    (problems.len() == before).then_some(out)
}

/// Line breaks in `text` before the first `needle` (0 when there is none).
fn newlines_before(text: &str, needle: &str) -> u64 {
    text.find(needle)
        .map_or(0, |at| text[..at].matches('\n').count() as u64)
}

#[cfg(test)]
mod tests;
