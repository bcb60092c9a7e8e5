//! Reads back the samples of the Prometheus text format `/metrics` writes (exposition format
//! 0.0.4): `name{label="value",…} number`, comments skipped.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of `text`; a line that is not one (a comment, a blank, anything malformed) is
/// skipped.
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines().filter_map(sample).collect()
}

fn sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(inner)?;
        labels = parsed;
        rest = after;
    }
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `a="x",b="y"}` → the labels and what follows the `}`.
fn label_set(mut s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key, value);
        s = &s[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_labels_escapes_and_special_values() {
        let text = "# TYPE x counter\n\
                    x_total 3\n\
                    h_bucket{endpoint=\"a\",le=\"+Inf\"} 7\n\
                    g{view=\"we\\\"ird\\\\na\\nme\",b=\"}\"} -Inf\n\
                    broken{a=\"1\" 2\n\
                    \n";
        let s = samples(text);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(s[0].name, "x_total");
        assert_eq!(s[0].value, 3.0);
        assert_eq!(s[1].labels["le"], "+Inf");
        assert_eq!(s[1].labels["endpoint"], "a");
        assert_eq!(s[2].labels["view"], "we\"ird\\na\nme");
        assert_eq!(s[2].labels["b"], "}");
        assert_eq!(s[2].value, f64::NEG_INFINITY);
    }
}
