//! `quiver.yaml` as users write it: defaults, every refusal and its message, secrets kept out
//! of messages.

use std::path::PathBuf;

use super::*;

fn load(text: &str) -> Result<ProjectConfig> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONFIG_FILE);
    std::fs::write(&path, text).unwrap();
    ProjectConfig::load(&path, &|name| {
        (name == "REDIS_PASSWORD").then(|| "s3cret".to_string())
    })
}

#[test]
fn the_documented_reference_file_is_valid() {
    // The runtime variable, not `env!`: a test binary reused from a build in another checkout
    // (a shared target directory) must read this checkout's file.
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo");
    let path = Path::new(&dir).join("../examples/quiver.reference.yaml");
    let c = ProjectConfig::load(&path, &|_| None).unwrap();
    assert_eq!(c.project, "my_project");
    assert_eq!(c.registry, RegistryConfig::default());
    assert_eq!(c.online_store, OnlineStoreConfig::default());
    // The limits it shows are the defaults.
    assert_eq!(c.serving, ServingConfig::default());
    assert_eq!(c.engine, EngineConfig::default());
}

#[test]
fn engines_are_checked_when_loaded() {
    let c = load("project: p\nengine:\n  type: ballista\n  url: df://sched:50051\n").unwrap();
    assert_eq!(
        c.engine,
        EngineConfig::Ballista {
            url: "df://sched:50051".into(),
            connect_timeout_ms: 5000,
            staging: None,
            staging_storage: Default::default(),
            partitions: None,
        }
    );
    for (yaml, expected) in [
        (
            "engine:\n  type: ballista\n  url: http://sched:50050\n",
            "must start with `df://`",
        ),
        ("engine:\n  type: ballista\n", "missing field `url`"),
        ("engine:\n  type: spark\n", "unknown variant `spark`"),
        (
            "engine:\n  type: local\n  url: df://h:1\n",
            "unknown field `url`",
        ),
        (
            "engine:\n  type: ballista\n  url: df://admin:s3cr3t@h:1\n",
            "df://***@h:1",
        ),
        (
            "engine:\n  type: ballista\n  url: df://h\n  connect_timeout_ms: 0\n",
            "at least 1",
        ),
        (
            "engine:\n  type: ballista\n  url: df://h\n  staging: https://cdn/x/\n",
            "not a store Quiver writes to",
        ),
        (
            "engine:\n  type: ballista\n  url: df://h\n  staging: \"\"\n",
            "`engine.staging` is empty",
        ),
        (
            "engine:\n  type: ballista\n  url: df://h\n  partitions: 0\n",
            "`engine.partitions` must be at least 1",
        ),
    ] {
        let err = load(&format!("project: p\n{yaml}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{yaml}: {err}");
    }
}

#[test]
fn connection_limits_of_zero_are_refused() {
    for key in [
        "idle_timeout_ms",
        "keepalive_interval_ms",
        "keepalive_timeout_ms",
        "max_connections",
    ] {
        let err = load(&format!("project: p\nserving:\n  {key}: 0\n")).unwrap_err();
        assert!(
            err.to_string().contains(&format!("`serving.{key}` is 0")),
            "{err}"
        );
    }
    let c = load("project: p\nserving:\n  idle_timeout_ms: 5\n  max_connections: 1\n").unwrap();
    assert_eq!(
        (c.serving.idle_timeout_ms, c.serving.max_connections),
        (5, 1)
    );
}

#[test]
fn training_limits_have_defaults_and_refuse_zero() {
    let c = load("project: p\n").unwrap();
    assert_eq!(c.serving.max_training_decoded_bytes, 1 << 30);
    assert_eq!(c.serving.training_memory_limit, 1 << 30);
    assert_eq!(c.serving.max_training_requests, 2);
    assert_eq!(c.serving.upload_dir, PathBuf::from(".quiver/uploads"));
    for key in [
        "max_training_decoded_bytes",
        "training_memory_limit",
        "max_training_requests",
    ] {
        let err = load(&format!("project: p\nserving:\n  {key}: 0\n")).unwrap_err();
        assert!(
            err.to_string().contains(&format!("`serving.{key}` is 0")),
            "{err}"
        );
    }
    let err = load("project: p\nserving:\n  upload_dir: ''\n").unwrap_err();
    assert!(
        err.to_string().contains("`serving.upload_dir` is empty"),
        "{err}"
    );
}

#[test]
fn passwords_never_reach_messages() {
    assert_eq!(
        redact_url("redis://user:pw@host:6379/0"),
        "redis://***@host:6379/0"
    );
    assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
    // Malformed URLs too: everything before the last `@` goes, whatever surrounds it.
    for (url, shown) in [
        ("redis:/default:S3cret@host", "***@host"),
        ("redis:default:S3cret@host:6379", "***@host:6379"),
        ("default:S3cret@host", "***@host"),
        ("redis://u:S3cret@x@host/0", "redis://***@host/0"),
        ("redis:/u:S3cret://@host", "***@host"),
        ("rediss://:S3cret@host", "rediss://***@host"),
        (
            "redis+unix:///run/redis.sock?db=1&pass=S3cret",
            "redis+unix:///run/redis.sock?***",
        ),
        (
            "redis://host:6379/0?protocol=resp3",
            "redis://host:6379/0?***",
        ),
    ] {
        assert_eq!(redact_url(url), shown, "{url}");
    }
}

#[test]
fn invalid_redis_urls_are_reported_without_their_password() {
    for url in [
        "redis:/default:S3cret@host",
        "redis:default:S3cret@host:6379",
        "http://default:S3cret@host",
        "redis+unix:///run/redis.sock?pass=S3cret",
    ] {
        for yaml in [
            format!("project: demo\nonline_store:\n  type: redis\n  url: \"{url}\"\n"),
            format!("project: demo\nregistry:\n  type: redis\n  url: \"{url}\"\n"),
            format!(
                "project: demo\nonline_store:\n  type: redis\n  url: redis://h\n  cluster: true\n  cluster_nodes: [\"{url}\"]\n"
            ),
        ] {
            let err = load(&yaml).unwrap_err().to_string();
            assert!(err.contains("invalid Redis URL"), "{err}");
            assert!(!err.contains("S3cret"), "{err}");
        }
    }
}

/// An empty `path` (often an empty `${VAR}`) used to put the registry's versions in the
/// repository root; it is refused at load, pointing at its line.
#[test]
fn empty_store_paths_are_refused_with_their_line() {
    for (text, expected, line) in [
        (
            "project: demo\nregistry: {type: local, path: \"\"}\n",
            "`registry.path` is empty",
            "quiver.yaml:2:",
        ),
        (
            "project: demo\nregistry:\n  type: local\n  path: ${REDIS_PASSWORD}\n",
            "`registry.path` is empty",
            "quiver.yaml:4:",
        ),
        (
            "project: demo\nregistry:\n  type: local\n  path: ${RP:-}\n",
            "`registry.path` is empty",
            "quiver.yaml:4:",
        ),
        (
            "project: demo\nonline_store:\n  type: embedded\n  path: \"  \"\n",
            "`online_store.path` is empty",
            "quiver.yaml:4:",
        ),
    ] {
        let err = load_with_password(text, "").unwrap_err().to_string();
        assert!(err.contains(expected), "{text}: {err}");
        assert!(err.contains(line), "{text}: {err}");
        assert!(err.contains("e.g. `.quiver/"), "{text}: {err}");
    }
    assert!(load("project: demo\nregistry: {type: local, path: reg}\n").is_ok());
}

/// A password with `#`, `/` or `?` written as is gave "InvalidClientConfig" or "Invalid
/// database number" (or another host): the registry's Redis says to percent-encode, without
/// the password; a URL that does not parse gets the same hint.
#[test]
fn reserved_characters_in_redis_passwords_get_an_encoding_hint() {
    for secret in ["Pa#ss", "12/34", "12?Sx", "P@ss#w/rd?"] {
        let url = format!("redis://default:{secret}@127.0.0.1:6379/0");
        let err = check_redis_url_encoding(&url).unwrap_err();
        let from_store = crate::store::RedisStore::open(&url, "quiver", "demo", None)
            .unwrap_err()
            .to_string();
        for err in [err, from_store] {
            assert!(err.contains("`#` → `%23`"), "{secret}: {err}");
            assert!(!err.contains(secret), "{secret}: {err}");
        }
    }
    let err = crate::store::RedisStore::open("redis://default:S3cret@", "quiver", "demo", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("percent-encode") && !err.contains("S3cret"),
        "{err}"
    );
    for fine in [
        "redis://default:Pa%23s%2Fs%3F%40@host:6379/0",
        "redis://default:p@ss@host:6379/0",
        "redis://host:6379/0",
        "redis+unix:///run/redis.sock?pass=a#b@c",
    ] {
        assert!(check_redis_url_encoding(fine).is_ok(), "{fine}");
    }
}

#[test]
fn defaults_are_local_and_embedded() {
    let c = load("project: demo\n").unwrap();
    assert_eq!(c.registry, RegistryConfig::default());
    assert_eq!(c.online_store, OnlineStoreConfig::default());
    assert_eq!(c.definitions, default_definitions());
}

#[test]
fn env_substitution_fills_secrets() {
    let c = load(
        "project: demo\nonline_store:\n  type: redis\n  url: redis://:${REDIS_PASSWORD}@localhost:${PORT:-6379}\n",
    )
    .unwrap();
    match c.online_store {
        OnlineStoreConfig::Redis {
            url, timeout_ms, ..
        } => {
            assert_eq!(url, "redis://:s3cret@localhost:6379");
            assert_eq!(timeout_ms, 100);
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Loads `text` with `REDIS_PASSWORD` set to `password`.
fn load_with_password(text: &str, password: &str) -> Result<ProjectConfig> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONFIG_FILE);
    std::fs::write(&path, text).unwrap();
    ProjectConfig::load(&path, &|name| {
        (name == "REDIS_PASSWORD").then(|| password.to_string())
    })
}

#[test]
fn substituted_values_stay_whole_strings() {
    let text = "# the online store: set ${REDIS_PASSWORD} (and ${ANYTHING})\nproject: demo\nonline_store:\n  type: redis\n  url: redis://:${REDIS_PASSWORD}@host:6379\n  timeout_ms: ${TIMEOUT_MS:-250}\n  key_ttl: ${KEY_TTL:-true}\nregistry:\n  type: redis\n  url: \"redis://:${REDIS_PASSWORD}@host:6379/1\"\n  key_prefix: ${PREFIX:-}\n";
    for password in [
        "ab #cd",
        "p@ss: word",
        "line1\nkey_ttl: false",
        "x\n  cluster: true",
        "q\"uo'te\\",
        "*alias",
        "&anchor",
        "!tag",
        "- item",
        "[a, b]",
        "{a: b}",
        "| block",
        "> folded",
        "% directive",
        "@at",
        "`tick",
        "? key",
        "",
        " spaced ",
        "tab\there",
        "null",
        "~",
        "123",
        "${NOT_AGAIN}",
    ] {
        let c = load_with_password(text, password)
            .unwrap_or_else(|e| panic!("password {password:?}: {e}"));
        match &c.online_store {
            OnlineStoreConfig::Redis {
                url,
                timeout_ms,
                key_ttl,
                cluster,
                ..
            } => {
                assert_eq!(url, &format!("redis://:{password}@host:6379"));
                assert_eq!(*timeout_ms, 250);
                assert!(*key_ttl, "{password:?}");
                assert!(!*cluster, "{password:?}");
            }
            other => panic!("unexpected {other:?}"),
        }
        match &c.registry {
            RegistryConfig::Redis {
                url, key_prefix, ..
            } => {
                assert_eq!(url, &format!("redis://:{password}@host:6379/1"));
                assert_eq!(key_prefix, "", "an empty default is the empty string");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn nested_defaults_work_and_unset_ones_name_their_line() {
    let text = "project: demo\nonline_store:\n  type: redis\n  url: ${URL:-redis://:${REDIS_PASSWORD}@host:6379}\n";
    match load_with_password(text, "pw").unwrap().online_store {
        OnlineStoreConfig::Redis { url, .. } => assert_eq!(url, "redis://:pw@host:6379"),
        other => panic!("unexpected {other:?}"),
    }
    let text = text.replace("REDIS_PASSWORD", "UNSET_PASSWORD");
    let err = load_with_password(&text, "pw").unwrap_err().to_string();
    assert!(err.contains("`UNSET_PASSWORD` is not set"), "{err}");
    assert!(err.contains("quiver.yaml:4:"), "{err}");
}

#[test]
fn duplicate_keys_are_named_with_their_line() {
    let err = load("project: demo\nserving:\n  http: 0.0.0.0:1\n  http: 0.0.0.0:2\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("duplicate key `http` at line 4; each key may appear once"),
        "{err}"
    );
    assert!(!err.contains("DuplicateKeyPolicy"), "{err}");
}

#[test]
fn names_longer_than_the_limit_are_refused() {
    let err = load(&format!("project: {}\n", "p".repeat(MAX_NAME_LEN + 1)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 100 characters"), "{err}");
    assert!(load(&format!("project: {}\n", "p".repeat(MAX_NAME_LEN))).is_ok());
}

#[test]
fn unknown_keys_and_bad_values_are_errors() {
    let err = load("project: demo\nregistry:\n  type: local\n  pth: x\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("pth"), "{text}");
    // Internally tagged sections are located at their start.
    assert!(text.contains("quiver.yaml:2:"), "{text}");
    let err =
        load("project: 9lives\nonline_store:\n  type: redis\n  url: localhost\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("invalid project name"), "{text}");
    assert!(text.contains("invalid Redis URL"), "{text}");
    assert!(
        load("project: demo\nonline_store:\n  type: redis\n  url: rediss://:pw@host:6380\n")
            .is_ok()
    );
    let err = load(
        "project: demo\nonline_store:\n  type: redis\n  url: redis://:pw@host:6380\n  tls_ca_file: ca.pem\n",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("`tls_ca_file` is set but `redis://***@host:6380` is not TLS"),
        "{err}"
    );
    assert!(load("project: demo\nregistry:\n  url: ${UNSET}\n").is_err());
}

#[test]
fn auth_tokens_are_checked_at_load() {
    let ok = "a".repeat(64);
    let config = load(&format!(
        "project: demo\nserving:\n  auth:\n    tokens:\n      - {{name: app, sha256: {ok}, scopes: [online:read]}}\n      - {{name: ops, token_file: secrets/ops, scopes: [admin]}}\n"
    ))
    .unwrap();
    let auth = config.serving.auth.unwrap();
    assert_eq!(auth.tokens.len(), 2);
    assert!(auth.metrics_public);
    let bad = [
        ("tokens: []", "is empty"),
        (
            "tokens: [{name: a, sha256: abc, scopes: [online:read]}]",
            "64 hex digits",
        ),
        (
            "tokens: [{name: a, scopes: [online:read]}]",
            "exactly one of `sha256` or `token_file`",
        ),
        (
            "tokens: [{name: a, sha256: SHA, token_file: f, scopes: [admin]}]",
            "exactly one",
        ),
        (
            "tokens: [{name: a, sha256: SHA, scopes: [online:wirte]}]",
            "unknown scope",
        ),
        ("tokens: [{name: a, sha256: SHA, scopes: []}]", "no scopes"),
        (
            "tokens: [{name: a, sha256: SHA, scopes: [admin]}, {name: a, sha256: SHA, scopes: [admin]}]",
            "declared twice",
        ),
        (
            "tokens: [{name: a, sha256: SHA, scopes: [admin], token: x}]",
            "token",
        ),
    ];
    for (auth, expected) in bad {
        let text = format!(
            "project: demo\nserving:\n  auth:\n    {}\n",
            auth.replace("SHA", &ok)
        );
        let err = load(&text).unwrap_err().to_string();
        assert!(
            err.contains(expected),
            "{auth}: expected `{expected}` in {err}"
        );
    }
}
