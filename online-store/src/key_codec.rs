//! Online keys: `quiver:<project>:<view>:<generation>:{<entity key>}` (docs/online-format.md).

use std::fmt::Write;

/// One join key value, as the key encoding distinguishes them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyValue {
    Int(i64),
    Str(String),
    Bytes(Vec<u8>),
}

/// Appends the encoding of one join key value to `out`.
pub fn push_key_value(out: &mut String, value: &KeyValue) {
    match value {
        KeyValue::Int(v) => {
            out.push('i');
            let _ = write!(out, "{v}");
        }
        KeyValue::Str(s) => push_str_component(out, s.as_bytes()),
        KeyValue::Bytes(b) => push_bytes_component(out, b),
    }
}

/// `s` + UTF-8 with every byte outside `A–Z a–z 0–9 - _ . ~` as `%XX`.
pub fn push_str_component(out: &mut String, bytes: &[u8]) {
    out.push('s');
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// `b` + lower-case hex.
pub fn push_bytes_component(out: &mut String, bytes: &[u8]) {
    out.push('b');
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// The encoded entity key of a row: its join key values joined by `,`.
pub fn entity_key(values: &[KeyValue]) -> String {
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_key_value(&mut out, v);
    }
    out
}

/// `quiver:<project>:<view>:<generation>:` — every key of a view generation starts so.
pub fn view_prefix(project: &str, view: &str, generation: u64) -> String {
    format!("quiver:{project}:{view}:{generation}:")
}

/// The full key: prefix and the entity key as the hash tag.
pub fn online_key(prefix: &str, entity_key: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + entity_key.len() + 2);
    key.push_str(prefix);
    key.push('{');
    key.push_str(entity_key);
    key.push('}');
    key
}

/// The hash holding a view's watermarks, one field per generation.
pub fn watermark_key(project: &str, view: &str) -> String {
    format!("quiver:{project}:__watermark__:{{{view}}}")
}

/// The Redis Cluster hash tag of a key: what its slot is computed from.
pub fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_vectors() {
        let prefix = view_prefix("quickstart", "driver_hourly_stats", 1);
        assert_eq!(
            online_key(&prefix, &entity_key(&[KeyValue::Int(1001)])),
            "quiver:quickstart:driver_hourly_stats:1:{i1001}"
        );
        assert_eq!(
            online_key(
                &prefix,
                &entity_key(&[KeyValue::Str("a b{c}".into()), KeyValue::Int(-3)])
            ),
            "quiver:quickstart:driver_hourly_stats:1:{sa%20b%7Bc%7D,i-3}"
        );
        assert_eq!(
            online_key(&prefix, &entity_key(&[KeyValue::Bytes(vec![0xde, 0xad])])),
            "quiver:quickstart:driver_hourly_stats:1:{bdead}"
        );
        assert_eq!(
            watermark_key("quickstart", "driver_hourly_stats"),
            "quiver:quickstart:__watermark__:{driver_hourly_stats}"
        );
    }

    #[test]
    fn hash_tags_are_the_entity_key() {
        assert_eq!(hash_tag("quiver:p:v:1:{i1001}"), "i1001");
        assert_eq!(hash_tag("quiver:p:v:1:{}"), "quiver:p:v:1:{}");
    }

    proptest::proptest! {
        #[test]
        fn string_keys_never_break_the_hash_tag(s in ".*", t in proptest::collection::vec(proptest::num::u8::ANY, 0..8)) {
            let key = entity_key(&[KeyValue::Str(s.clone()), KeyValue::Bytes(t)]);
            let braces = key.contains(['{', '}']);
            proptest::prop_assert!(!braces, "{}", key);
            proptest::prop_assert_eq!(key.matches(',').count(), 1);
            // Distinct strings give distinct keys.
            let other = entity_key(&[KeyValue::Str(format!("{s}x")), KeyValue::Bytes(vec![])]);
            proptest::prop_assert_ne!(key, other);
        }
    }
}
