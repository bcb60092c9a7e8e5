//! The Redis registry backend: a fleet's shared registry, committed atomically.

use std::sync::{Arc, Barrier};

use quiver_registry::store::{RedisStore, RegistryStore, apply, prepare};
use quiver_registry::{Error, Ttl};
use quiver_tests::{RedisServer, describe, quiver};

const END: &str = "2026-01-02T00:00:00Z";

fn redis_repo(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let out = quiver(
        dir,
        &[
            "init",
            "repo",
            "--drivers",
            "5",
            "--customers",
            "5",
            "--end",
            END,
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let repo = dir.join("repo");
    let config = repo.join("quiver.yaml");
    // The URL goes through `${VAR:-default}` substitution, as a deployment's secret would.
    let yaml = std::fs::read_to_string(&config).unwrap().replace(
        "registry:\n  type: local\n  path: .quiver/registry",
        &format!("registry:\n  type: redis\n  url: ${{QUIVER_TEST_REDIS_URL:-{url}}}"),
    );
    std::fs::write(&config, yaml).unwrap();
    repo
}

#[test]
fn apply_through_redis_is_shared_and_versioned() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = redis_repo(tmp.path(), &redis.url());
    let out = quiver(&repo, &["apply"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        !repo.join(".quiver/registry").exists(),
        "nothing is written locally"
    );
    let out = quiver(&repo, &["--format", "json", "apply"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["changed"], false);

    let store = RedisStore::open(&redis.url(), "quiver:registry", "repo", None).unwrap();
    let latest = store.latest().unwrap().unwrap();
    assert_eq!(latest.version, 1);
    assert_eq!(latest.hash, latest.registry.content_hash());
    assert_eq!(latest.registry.feature_views.len(), 4);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut redis.client().unwrap())
        .unwrap();
    assert!(
        keys.iter()
            .all(|k| k.starts_with("quiver:registry:{repo}:")),
        "{keys:?}"
    );
}

#[test]
fn concurrent_applies_to_redis_have_one_winner() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = redis_repo(tmp.path(), &redis.url());
    assert!(quiver(&repo, &["apply"]).status.success());
    let store = Arc::new(RedisStore::open(&redis.url(), "quiver:registry", "repo", None).unwrap());
    let base = store.latest().unwrap().unwrap().registry;
    for round in 0..10u64 {
        let barrier = Arc::new(Barrier::new(3));
        let handles: Vec<_> = (0..3u64)
            .map(|i| {
                let (store, barrier, mut registry) = (store.clone(), barrier.clone(), base.clone());
                std::thread::spawn(move || {
                    registry
                        .feature_views
                        .get_mut("driver_hourly_stats")
                        .unwrap()
                        .ttl = Ttl {
                        seconds: 100 + round * 3 + i,
                    };
                    let prepared = prepare(store.as_ref(), registry).unwrap();
                    barrier.wait();
                    apply(store.as_ref(), &prepared, String::new())
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|e| matches!(e, Error::Conflict { .. }))
        );
        assert_eq!(store.latest_version().unwrap(), Some(round + 2));
    }
    assert_eq!(store.history().unwrap().len(), 11);
}

#[test]
fn redis_down_is_a_clear_error_and_recovers() {
    let mut redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = redis_repo(tmp.path(), &redis.url());
    // Paused (SIGSTOP): connections open, nothing answers.
    redis.pause();
    let out = quiver(&repo, &["apply"]);
    redis.resume();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("timed out: no answer within") && !stderr.contains("os error"),
        "{stderr}"
    );
    redis.stop();
    let out = quiver(&repo, &["apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("registry store unavailable"), "{stderr}");
    redis.restart().unwrap();
    let out = quiver(&repo, &["apply"]);
    assert!(out.status.success(), "{}", describe(&out));
}
