//! A substituted value written back as a YAML scalar: where a block scalar's header starts,
//! and when a value may stay plain or must be double-quoted.

/// Where the `|` or `>` header of a block scalar starts in the text between the previous node
/// and the scalar's content (indicators, properties, comments and blank lines).
pub(super) fn block_header(region: &str) -> Option<usize> {
    let mut offset = 0;
    for line in region.split_inclusive('\n') {
        let mut previous = '\n';
        for (i, c) in line.char_indices() {
            if c == '#' && previous.is_whitespace() {
                break; // a comment: the rest of the line
            }
            if (c == '|' || c == '>') && is_header_rest(&line[i + 1..]) {
                return Some(offset + i);
            }
            previous = c;
        }
        offset += line.len();
    }
    None
}

/// Chomping/indentation indicators, then blanks and perhaps a comment, to the end of the line.
fn is_header_rest(rest: &str) -> bool {
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == '+' || c == '-');
    let rest = rest.trim_start_matches([' ', '\t']);
    rest.is_empty() || rest.starts_with(['#', '\n', '\r'])
}

/// A value that means the same left plain as when written literally: a number or a boolean,
/// which can never be read as structure.
pub(super) fn is_plain_number_or_bool(value: &str) -> bool {
    if matches!(
        value,
        "true" | "false" | "True" | "False" | "TRUE" | "FALSE"
    ) {
        return true;
    }
    let unsigned = value.strip_prefix(['+', '-']).unwrap_or(value);
    let unsigned = unsigned.strip_prefix('.').unwrap_or(unsigned);
    unsigned.starts_with(|c: char| c.is_ascii_digit())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'))
}

/// `value` as a YAML double-quoted scalar on one line: whatever it holds stays one string.
pub(super) fn double_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control()
                || matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}'
                ) =>
            {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
