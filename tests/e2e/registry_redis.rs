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

/// A run record of `view` that finished at second `at` of a day.
fn run_record(view: &str, generation: u64, at: u32) -> quiver_registry::store::MaterializationRun {
    quiver_registry::store::MaterializationRun {
        view: view.into(),
        generation,
        registry_version: 1,
        start: None,
        end: "2026-01-01T00:00:00Z".into(),
        rows_read: u64::from(at),
        files_read: None,
        bytes_read: None,
        engine: None,
        entities: 1,
        keys_written: 1,
        seconds: 0.1,
        finished_at: format!(
            "2026-01-01T{:02}:{:02}:{:02}Z",
            at / 3600,
            at / 60 % 60,
            at % 60
        ),
        features: Default::default(),
        watermark: Some(format!("2026-01-01T00:00:{:02}Z", at % 60)),
        watermark_note: None,
        evicted_keys: None,
        warnings: vec![],
    }
}

/// What both stores promise about run records: a view's records however many runs of other
/// views came since, exactly its own (not a view whose name ends like it), and the newest record
/// of every (view, generation) — the one `recorded_watermarks` (lost-data detection) and the
/// console read — also for a view that last ran long ago. `unindexed` writes a record as versions
/// before the index did.
fn check_run_records(
    store: &dyn RegistryStore,
    unindexed: &dyn Fn(&[quiver_registry::store::MaterializationRun]),
) {
    unindexed(&[run_record("old", 1, 1)]);
    store.record_run(&run_record("rare", 7, 2)).unwrap();
    store.record_run(&run_record("a_b", 1, 3)).unwrap();
    // A run after which `rare` had no watermark (a range after a gap on a wiped store) must not
    // hide the record that says how far it was materialized.
    let mut gap = run_record("rare", 7, 4);
    gap.watermark = None;
    gap.watermark_note = Some("a gap before the range".into());
    store.record_run(&gap).unwrap();
    for at in 10..40 {
        store.record_run(&run_record("b", 1, at)).unwrap();
    }
    store.record_run(&run_record("b", 2, 50)).unwrap();
    // A run of an older range that finishes after a newer one (two runs at once): the index
    // keeps the one that finished last.
    store.record_run(&run_record("b", 2, 45)).unwrap();
    let newest = store.runs(10).unwrap();
    assert!(
        newest.iter().all(|r| r.view == "b"),
        "the newest runs are b's"
    );

    let (rare, total) = store.view_runs("rare", 1000).unwrap();
    assert_eq!((rare.len(), total), (2, Some(2)));
    assert_eq!(rare[0].generation, 7);
    let (b, total) = store.view_runs("b", 1000).unwrap();
    assert_eq!((b.len(), total), (32, Some(32)), "b's own, not a_b's");
    assert!(
        b[..31].windows(2).all(|w| w[0].rows_read < w[1].rows_read),
        "oldest first"
    );
    let (b, _) = store.view_runs("b", 5).unwrap();
    let read: Vec<u64> = b.iter().map(|r| r.rows_read).collect();
    assert_eq!(
        read,
        [37, 38, 39, 50, 45],
        "the newest five, in the order recorded"
    );
    assert_eq!(store.view_runs("nope", 10).unwrap(), (vec![], Some(0)));

    // More records of another view since than a scan of the newest records reads.
    let filler: Vec<_> = (0..=quiver_registry::store::UNINDEXED_RUNS as u32)
        .map(|i| run_record("filler", 1, 60 + i))
        .collect();
    unindexed(&filler);
    assert!(
        store
            .runs(quiver_registry::store::UNINDEXED_RUNS)
            .unwrap()
            .iter()
            .all(|r| r.view == "filler")
    );
    let latest = store.latest_runs().unwrap();
    let key = |v: &str, g: u64| (v.to_string(), g);
    assert_eq!(latest[&key("rare", 7)].rows_read, 2);
    assert_eq!(latest[&key("b", 1)].rows_read, 39);
    assert_eq!(latest[&key("b", 2)].rows_read, 50);
    assert_eq!(latest[&key("filler", 1)].rows_read, 60 + 2_000);
    assert_eq!(
        latest.len(),
        5,
        "the pre-index `old` is now beyond the scan"
    );
    let recorded = quiver_materializer::materialize::recorded_watermarks(store).unwrap();
    assert_eq!(recorded[&key("rare", 7)], "2026-01-01T00:00:02Z");
}

#[test]
fn run_records_by_view_and_the_newest_of_each_generation_on_redis() {
    let redis = RedisServer::start().unwrap();
    let store = RedisStore::open(&redis.url(), "quiver:registry", "repo", None).unwrap();
    check_run_records(&store, &|runs| {
        let mut cmd = redis::cmd("RPUSH");
        cmd.arg("quiver:registry:{repo}:runs");
        for run in runs {
            cmd.arg(serde_json::to_string(run).unwrap());
        }
        let _: i64 = cmd.query(&mut redis.client().unwrap()).unwrap();
    });
}

#[test]
fn run_records_by_view_and_the_newest_of_each_generation_in_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = quiver_registry::store::LocalStore::new(dir.path().join("registry"));
    let runs = dir.path().join("registry/runs");
    let written = std::cell::Cell::new(0u64);
    check_run_records(&store, &|batch| {
        std::fs::create_dir_all(&runs).unwrap();
        for run in batch {
            // Named as `record_run` names them: the first before every real record, the rest
            // after them.
            let n = written.replace(written.get() + 1);
            let nanos = if n == 0 {
                1
            } else {
                9_000_000_000_000_000_000 + n
            };
            std::fs::write(
                runs.join(format!("{nanos:020}-{}.json", run.view)),
                serde_json::to_vec(run).unwrap(),
            )
            .unwrap();
        }
    });
}

/// The registry and the online store in one Redis (as the README's fleet setup may have them),
/// flushed under a running server: the run records go with the data, so the server's own memory
/// of the watermarks it read says the data was lost — `/ready` turns 503 naming the view, never
/// "ready" over an empty store.
#[test]
fn a_flush_of_the_redis_holding_both_stores_is_noticed() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = redis_repo(tmp.path(), &redis.url());
    let config = repo.join("quiver.yaml");
    let yaml = std::fs::read_to_string(&config).unwrap().replace(
        "online_store:\n  type: embedded\n  path: .quiver/online.redb",
        &format!("online_store:\n  type: redis\n  url: {}", redis.url()),
    );
    std::fs::write(&config, yaml).unwrap();
    for step in [&["apply"][..], &["materialize-incremental"]] {
        let out = quiver(&repo, step);
        assert!(out.status.success(), "{step:?}: {}", describe(&out));
    }
    let mut server = quiver_tests::QuiverServer::start(&repo, false).unwrap();
    server.wait_ready(std::time::Duration::from_secs(20));
    let () = redis::cmd("FLUSHALL")
        .query(&mut redis.client().unwrap())
        .unwrap();
    let (_, body) = crate::faults::poll_server(
        &server,
        "/ready",
        "/ready naming the flushed view",
        std::time::Duration::from_secs(30),
        |status, body| status == 503 && body.contains("wiped"),
    );
    assert!(body.contains("driver_hourly_stats"), "{body}");
    server.sigterm();
}
