//! Offline work on an Apache DataFusion Ballista cluster (issue 16): one scheduler and two
//! executors of the built binary on loopback (`quiver_tests::ballista`), sources on the
//! S3-compatible test server and on local disk. Retrieval, materialization and verify equal the
//! local engine's output exactly; a lost executor is survived; a scheduler that is down is a
//! clear error within a bounded time, and nothing is written.

use std::path::Path;
use std::time::{Duration, Instant};

use quiver_tests::ballista::{Cluster, EXECUTOR_TIMEOUT_SECONDS};
use quiver_tests::s3::S3Server;
use quiver_tests::{describe, snapshot};

use super::object_store::{
    BUCKET, assert_same_online, assert_same_table, env, lake, materialize, ok, online_blobs,
    partitioned, repo, run, upload,
};

/// Points the repository's offline work at `cluster`.
fn use_cluster(repo: &Path, cluster: &Cluster) {
    let file = repo.join("quiver.yaml");
    let mut yaml = std::fs::read_to_string(&file).unwrap();
    yaml.push_str(&cluster.engine_yaml());
    std::fs::write(file, yaml).unwrap();
}

fn retrieve_args(service: &str, output: &str) -> Vec<String> {
    [
        "retrieve",
        "--entities",
        "data/labels.parquet",
        "--features",
        service,
        "--output",
        output,
    ]
    .map(String::from)
    .to_vec()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

const SERVICES: [&str; 2] = ["model_v1", "driver_activity_v1"];

#[test]
fn a_cluster_gives_the_local_engines_results() {
    let Some(server) = S3Server::start().expect("moto_server starts") else {
        eprintln!("SKIPPED: a_cluster_gives_the_local_engines_results: no moto_server (see above)");
        return;
    };
    let lake = lake(40, 24);
    server.create_bucket(BUCKET).unwrap();
    upload(&server, &lake, "trips/");
    let env = env(&server);
    let cluster = Cluster::start(2, &env).unwrap();

    let storage = "    storage: {endpoint: \"${S3_ENDPOINT}\", region: us-east-1}\n";
    let local = repo(&lake, "local", None);
    // Executors on this machine read local paths; on S3 every process opens the bucket itself.
    let files_on_cluster = repo(&lake, "files-on-cluster", None);
    let s3_on_cluster = repo(
        &lake,
        "s3-on-cluster",
        Some(&partitioned("s3://lake/trips/", storage)),
    );
    use_cluster(&files_on_cluster, &cluster);
    use_cluster(&s3_on_cluster, &cluster);
    let all = [&local, &files_on_cluster, &s3_on_cluster];
    for r in all {
        ok(r, &["apply"], &env);
    }

    for service in SERVICES {
        let output = format!("{service}.parquet");
        for r in all {
            let out = run(r, &args(&retrieve_args(service, &output)), &env);
            assert!(
                out.status.success(),
                "{}: {}\n{}",
                r.display(),
                describe(&out),
                cluster.logs()
            );
        }
        let expected = std::fs::read(local.join(&output)).unwrap();
        for r in &all[1..] {
            assert_same_table(
                &expected,
                &std::fs::read(r.join(&output)).unwrap(),
                &format!("{service} from {}", r.display()),
            );
        }
    }

    let range = [
        "materialize",
        "2026-01-01T00:00:00Z",
        "2026-01-02T00:00:00Z",
    ];
    for r in all {
        let runs = materialize(r, &range, &env);
        assert!(runs.as_array().is_some_and(|r| !r.is_empty()), "{runs}");
    }
    assert_same_online(&local, &files_on_cluster, lake.drivers);
    assert_same_online(&local, &s3_on_cluster, lake.drivers);
    // verify reads offline through the cluster and compares with what the runs wrote.
    for r in &all[1..] {
        ok(r, &["verify"], &env);
    }
}

#[test]
fn a_lost_executor_is_survived_and_a_scheduler_that_is_down_is_a_clear_error() {
    let lake = lake(30, 12);
    let mut cluster = Cluster::start(2, &[]).unwrap();
    let local = repo(&lake, "local", None);
    let remote = repo(&lake, "remote", None);
    use_cluster(&remote, &cluster);
    for r in [&local, &remote] {
        ok(r, &["apply"], &[]);
    }
    let service = "model_v1";
    ok(
        &local,
        &args(&retrieve_args(service, "expected.parquet")),
        &[],
    );
    let expected = std::fs::read(local.join("expected.parquet")).unwrap();

    // An executor killed while the scheduler still counts it: its tasks run on the other one.
    cluster.kill_executor(0);
    let started = Instant::now();
    let out = run(
        &remote,
        &args(&retrieve_args(service, "after-kill.parquet")),
        &[],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        describe(&out),
        cluster.logs()
    );
    assert_same_table(
        &expected,
        &std::fs::read(remote.join("after-kill.parquet")).unwrap(),
        "retrieval after an executor was killed",
    );
    eprintln!(
        "retrieval with a dead executor took {:?}",
        started.elapsed()
    );

    // An executor paused in the middle of the cluster's work: taken for lost after
    // its timeout, its tasks run elsewhere.
    let paused = cluster.add_executor().unwrap();
    cluster.signal_executor(paused, "STOP");
    let out = run(
        &remote,
        &args(&retrieve_args(service, "after-pause.parquet")),
        &[],
    );
    cluster.signal_executor(paused, "CONT");
    assert!(
        out.status.success(),
        "{}\n{}",
        describe(&out),
        cluster.logs()
    );
    assert_same_table(
        &expected,
        &std::fs::read(remote.join("after-pause.parquet")).unwrap(),
        "retrieval while an executor was paused",
    );

    // Materialized on the cluster (so that `verify` below has values to compare).
    let range = [
        "materialize",
        "2026-01-01T00:00:00Z",
        "2026-01-02T00:00:00Z",
    ];
    materialize(&remote, &range, &[]);
    materialize(&local, &range, &[]);
    assert_same_online(&local, &remote, lake.drivers);

    // The scheduler down: a clear error, quickly, and nothing written.
    cluster.kill_scheduler();
    let before = snapshot(&remote);
    let values_before = online_blobs(&remote, lake.drivers);
    let limit = Duration::from_secs(EXECUTOR_TIMEOUT_SECONDS + 20);
    for command in [
        retrieve_args(service, "never.parquet"),
        [
            "materialize",
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z",
        ]
        .map(String::from)
        .to_vec(),
        vec!["verify".to_string()],
    ] {
        let started = Instant::now();
        let out = run(&remote, &args(&command), &[]);
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command:?}: {}", describe(&out));
        assert!(
            stderr.contains("Ballista scheduler") && stderr.contains(&cluster.url()),
            "{command:?}: {}",
            describe(&out)
        );
        assert!(took < limit, "{command:?} took {took:?}");
    }
    assert!(!remote.join("never.parquet").exists());
    // Nothing written: the same files (the online store's file aside: opening it may touch its
    // header) and the same online values.
    let after = snapshot(&remote);
    let changed: Vec<_> = before
        .iter()
        .chain(&after)
        .filter(|(p, _)| !p.ends_with(".quiver/online.redb"))
        .filter(|f| !(before.contains(f) && after.contains(f)))
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert!(changed.is_empty(), "failed commands changed {changed:?}");
    assert_eq!(online_blobs(&remote, lake.drivers), values_before);
}
