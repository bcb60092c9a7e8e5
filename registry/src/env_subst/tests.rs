//! Substitution in every YAML context: values, defaults, escapes, block scalars, comments.

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "HOST" => Some("redis.internal".into()),
        "EMPTY" => Some(String::new()),
        "PORT_SET" => Some("7000".into()),
        "TRICKY" => Some("ab #cd: \"q\" 'x'\n  injected: true\\".into()),
        _ => None,
    }
}

#[test]
fn substitutes_values_defaults_and_escapes() {
    let text = "url: redis://${HOST}:${PORT:-6379}/0\nx: '${EMPTY:-unused}'\nlit: $${HOST}\n";
    assert_eq!(
        substitute(text, &env).unwrap(),
        "url: \"redis://redis.internal:6379/0\"\nx: \"\"\nlit: \"${HOST}\"\n"
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

#[test]
fn values_never_add_structure_and_lines_never_move() {
    let text = "a: ${TRICKY}\nb: |\n  one ${HOST}\n  two\nc: [${TRICKY}, x]\nd: 1\n";
    let out = substitute(text, &env).unwrap();
    assert_eq!(out.lines().count(), text.lines().count(), "{out}");
    assert_eq!(out.lines().nth(5), Some("d: 1"), "{out}");
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        a: String,
        b: String,
        c: Vec<String>,
        d: u32,
    }
    let doc: Doc = serde_saphyr::from_str(&out).unwrap();
    let tricky = env("TRICKY").unwrap();
    assert_eq!(doc.a, tricky);
    assert_eq!(doc.b, "one redis.internal\ntwo\n");
    assert_eq!(doc.c, [tricky.as_str(), "x"]);
    assert_eq!(doc.d, 1);
}

#[test]
fn block_scalars_keys_and_aliases() {
    let text = "a:\n  - !!str |  # ${IGNORED}\n\n    x ${HOST}\n  - >-\n    folded\n    ${TRICKY}\n  - &h ${HOST}\n  - *h\n${HOST}: \"q\n  ${PORT_SET}\"\nz: ${PORT_SET}\n";
    let out = substitute(text, &env).unwrap();
    assert_eq!(out.lines().count(), text.lines().count(), "{out}");
    assert_eq!(out.lines().last(), Some("z: 7000"), "{out}");
    #[derive(serde::Deserialize, Debug)]
    struct Doc {
        a: Vec<String>,
        #[serde(rename = "redis.internal")]
        host: String,
        z: u16,
    }
    let doc: Doc = serde_saphyr::from_str(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let tricky = env("TRICKY").unwrap();
    assert_eq!(
        doc.a,
        [
            "\nx redis.internal\n",
            &format!("folded {tricky}"),
            "redis.internal",
            "redis.internal"
        ]
    );
    assert_eq!(doc.host, "q 7000");
    assert_eq!(doc.z, 7000);
    let err = substitute("a: |\n  one\n  ${MISSING}\n", &env).unwrap_err();
    assert_eq!(err[0].0, 3, "{err:?}");
}

#[test]
fn nested_and_empty_defaults() {
    let one = |text: &str| substitute(&format!("k: {text}\n"), &env);
    assert_eq!(one("${A:-${PORT_SET}}").unwrap(), "k: 7000\n");
    assert_eq!(one("${A:-${B:-x}y}").unwrap(), "k: \"xy\"\n");
    assert_eq!(one("${A:-}").unwrap(), "k: \"\"\n");
    assert_eq!(one("${A:-a #b: c}").unwrap(), "k: \"a #b: c\"\n");
    assert_eq!(one("${A:-$${B}}").unwrap(), "k: \"${B}\"\n");
    let err = one("${A:-${B}}").unwrap_err();
    assert_eq!(err[0].0, 1);
    assert!(err[0].1.contains("`B` is not set"), "{err:?}");
    let err = one("x ${A:-${B}").unwrap_err();
    assert!(err[0].1.contains("unterminated"), "{err:?}");
    let deep = format!("{}x{}", "${A:-".repeat(20_000), "}".repeat(20_000));
    let err = one(&deep).unwrap_err();
    assert!(err[0].1.contains("nest more than 8 deep"), "{err:?}");
}

#[test]
fn comments_may_mention_anything() {
    let text = "# ${UNSET} and ${unterminated\na: 1 # ${ALSO_UNSET}\nb: ${HOST} # ${NOPE\n";
    assert_eq!(
        substitute(text, &env).unwrap(),
        "# ${UNSET} and ${unterminated\na: 1 # ${ALSO_UNSET}\nb: \"redis.internal\" # ${NOPE\n"
    );
}

#[test]
fn references_kept_as_written_resolve_later() {
    let text = "storage:\n  endpoint: ${S3_ENDPOINT:-http://localhost:9000}\n  secret: \"${SECRET}\"\n  literal: $${NOT}\n";
    let kept = keep_references(text);
    let parsed: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> =
        serde_saphyr::from_str(&kept).unwrap();
    let storage = &parsed["storage"];
    assert_eq!(storage["endpoint"], "${S3_ENDPOINT:-http://localhost:9000}");
    assert_eq!(storage["secret"], "${SECRET}");
    assert_eq!(storage["literal"], "$${NOT}");
    let env = |name: &str| (name == "SECRET").then(|| "s3cr3t".to_string());
    assert_eq!(
        substitute_value(&storage["endpoint"], &env).unwrap(),
        "http://localhost:9000"
    );
    assert_eq!(
        substitute_value(&storage["secret"], &env).unwrap(),
        "s3cr3t"
    );
    assert_eq!(
        substitute_value(&storage["literal"], &env).unwrap(),
        "${NOT}"
    );
    let missing = substitute_value("${NOPE}", &env).unwrap_err();
    assert!(missing[0].contains("`NOPE` is not set"), "{missing:?}");
}
