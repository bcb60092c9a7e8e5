//! Offline work on an Apache DataFusion Ballista cluster (issue 16): one scheduler and two
//! executors of the built binary on loopback (`quiver_tests::ballista`), sources on the
//! S3-compatible test server and on local disk. Retrieval, materialization and verify equal the
//! local engine's output exactly; a lost executor is survived; a scheduler that is down is a
//! clear error within a bounded time, and nothing is written.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatchReader as _;
use arrow::array::{ArrayRef, AsArray, Float32Array, RecordBatch, new_null_array};
use arrow::datatypes::{Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value as J;

use quiver_tests::ballista::{Cluster, EXECUTOR_TIMEOUT_SECONDS, NO_EXECUTOR_TIMEOUT_SECONDS};
use quiver_tests::s3::S3Server;
use quiver_tests::{describe, snapshot};

use super::object_store::{
    BUCKET, assert_same_online, assert_same_table, env, lake, materialize, ok, online_blobs,
    partitioned, repo, run, upload,
};
use super::training_limits::{PARQUET, TRAIN, post};

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

/// `out` (a retrieve on the cluster) succeeded and wrote `output` equal to `expected`.
fn same_as_local(
    out: &std::process::Output,
    cluster: &Cluster,
    repo: &Path,
    output: &str,
    expected: &[u8],
    what: &str,
) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        describe(out),
        cluster.logs()
    );
    assert_same_table(expected, &std::fs::read(repo.join(output)).unwrap(), what);
}

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
    // The cluster's processes have credentials but no endpoint: the source's `storage:` map
    // (`endpoint: ${S3_ENDPOINT}`) travels with each job and they resolve it themselves.
    let cluster_env: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k != "AWS_ENDPOINT_URL")
        .cloned()
        .collect();
    let cluster = Cluster::start(2, &cluster_env).unwrap();

    let storage = "    storage: {endpoint: \"${S3_ENDPOINT}\", region: us-east-1}\n";
    let local = repo(&lake, "local", None);
    // Executors on this machine read local paths; on S3 every process opens the bucket itself.
    let files_on_cluster = repo(&lake, "files-on-cluster", None);
    let s3_on_cluster = repo(
        &lake,
        "s3-on-cluster",
        Some(&partitioned("s3://lake/trips/", storage)),
    );
    // Its customers in another bucket, with their own map: a retrieval's two views are two jobs
    // reading two stores, and each job's executors must open its store with that store's map.
    server.create_bucket("custs").unwrap();
    server
        .put_file(
            "custs",
            "customer_profile.parquet",
            &lake.base.join("data/customer_profile.parquet"),
        )
        .unwrap();
    let customers = s3_on_cluster.join("features/customers.yaml");
    let yaml = std::fs::read_to_string(&customers).unwrap();
    let local_path = "    path: data/customer_profile.parquet\n";
    assert!(yaml.contains(local_path), "{yaml}");
    std::fs::write(
        &customers,
        yaml.replace(
            local_path,
            &format!("    path: s3://custs/customer_profile.parquet\n{storage}"),
        ),
    )
    .unwrap();
    use_cluster(&files_on_cluster, &cluster);
    use_cluster(&s3_on_cluster, &cluster);
    // Entity keys staged for the executors: in a directory of the test's own, and on S3 in a
    // bucket of their own (the processes open the staging store with its map, which travels
    // with the job; quiver.yaml's values are resolved when it is loaded, so a literal here —
    // the same bucket as a source with another map is refused).
    server.create_bucket("stage").unwrap();
    let staging = lake.tmp.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    for (r, engine) in [
        (
            &files_on_cluster,
            format!("  staging: {}\n", staging.display()),
        ),
        (
            &s3_on_cluster,
            format!(
                "  staging: s3://stage/quiver/\n  staging_storage: {{endpoint: \"{}\", region: us-east-1}}\n",
                server.endpoint()
            ),
        ),
    ] {
        let file = r.join("quiver.yaml");
        let yaml = std::fs::read_to_string(&file).unwrap();
        std::fs::write(file, format!("{yaml}{engine}")).unwrap();
    }
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

    // The views' merges ran on the executors: the jobs the scheduler planned hold them, and
    // the entity keys staged for them are gone.
    let log = cluster.scheduler_log();
    for merge in ["AsOfExec", "WindowAggExec"] {
        assert!(log.contains(merge), "no {merge} in a job:\n{log}");
    }
    let left: Vec<_> = std::fs::read_dir(&staging).unwrap().collect();
    assert!(left.is_empty(), "staged files left: {left:?}");
    let staged_on_s3 = server
        .requests()
        .iter()
        .filter(|(method, path, status)| {
            method == "PUT" && path.contains("/stage/quiver/quiver-entities-") && *status == 200
        })
        .count();
    assert!(staged_on_s3 >= 2, "no entity keys staged on S3");
    assert_eq!(server.list("stage", "quiver/"), Vec::<String>::new());

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

    // A `${VAR}` the client has but the cluster's processes lack: the job fails, naming the
    // option and the variable, and writes nothing.
    let unresolved = repo(
        &lake,
        "unresolved-on-cluster",
        Some(&partitioned(
            "s3://lake/trips/",
            "    storage: {endpoint: \"${CLIENT_ONLY_ENDPOINT}\", region: us-east-1}\n",
        )),
    );
    use_cluster(&unresolved, &cluster);
    let file = unresolved.join("quiver.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    std::fs::write(file, format!("{yaml}  staging: {}\n", staging.display())).unwrap();
    let mut client_env = env.clone();
    client_env.push(("CLIENT_ONLY_ENDPOINT".into(), server.endpoint()));
    ok(&unresolved, &["apply"], &client_env);
    let out = run(
        &unresolved,
        &args(&retrieve_args(SERVICES[0], "t.parquet")),
        &client_env,
    );
    let text = describe(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("storage.endpoint") && text.contains("CLIENT_ONLY_ENDPOINT"),
        "{text}"
    );
    assert!(!unresolved.join("t.parquet").exists());
    // The failed run removed what it staged for the executors.
    let left: Vec<_> = std::fs::read_dir(&staging).unwrap().collect();
    assert!(
        left.is_empty(),
        "staged files left by a failed run: {left:?}"
    );

    // The scheduler's progress, as an operator's Prometheus reads it.
    let (status, text) = quiver_tests::http_get(cluster.metrics, "/metrics").expect("/metrics");
    assert_eq!(status, 200, "{text}");
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    // Every retrieval, materialization and verify above ran jobs; two executors heartbeat.
    assert!(
        value("quiver_cluster_jobs_total{state=\"completed\"}") >= 10.0,
        "{text}"
    );
    assert!(
        value("quiver_cluster_jobs_total{state=\"submitted\"}") >= 10.0,
        "{text}"
    );
    assert_eq!(value("quiver_cluster_executors_alive"), 2.0, "{text}");
    assert!(value("quiver_cluster_job_duration_seconds_count{state=\"completed\"}") >= 10.0);
    // A client that connects and sends nothing is closed (after the 5 s header timeout), not
    // kept open for ever.
    let mut idle = std::net::TcpStream::connect(cluster.metrics).unwrap();
    idle.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let closed = matches!(std::io::Read::read(&mut idle, &mut buf), Ok(0) | Err(_));
    assert!(
        closed && started.elapsed() < std::time::Duration::from_secs(20),
        "an idle /metrics connection is still open after {:?}",
        started.elapsed()
    );
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
    same_as_local(
        &out,
        &cluster,
        &remote,
        "after-kill.parquet",
        &expected,
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
    same_as_local(
        &out,
        &cluster,
        &remote,
        "after-pause.parquet",
        &expected,
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

    // The scheduler stalled longer than the executor timeout: on resuming it takes every
    // executor for lost and stops them; they start afresh, register again, and work goes on.
    cluster.signal_scheduler("STOP");
    std::thread::sleep(Duration::from_secs(EXECUTOR_TIMEOUT_SECONDS + 3));
    cluster.signal_scheduler("CONT");
    std::thread::sleep(Duration::from_secs(6));
    let out = run(
        &remote,
        &args(&retrieve_args(service, "after-stall.parquet")),
        &[],
    );
    same_as_local(
        &out,
        &cluster,
        &remote,
        "after-stall.parquet",
        &expected,
        "retrieval after the scheduler stalled",
    );

    // No executor alive: the scheduler cancels the waiting job, the command fails saying why.
    cluster.kill_executors();
    let started = Instant::now();
    let out = run(
        &remote,
        &args(&retrieve_args(service, "never.parquet")),
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr.contains("cancelled the job") && stderr.contains("quiver ballista executor"),
        "{}\n{}",
        describe(&out),
        cluster.logs()
    );
    let limit = Duration::from_secs(EXECUTOR_TIMEOUT_SECONDS + NO_EXECUTOR_TIMEOUT_SECONDS + 20);
    assert!(started.elapsed() < limit, "{:?}", started.elapsed());

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

/// The driver source rewritten with the rows users have besides clean ones: full ties (the same
/// key, event and created time, another value), rows without a key, rows without an event
/// time, rows outside the run's range.
fn add_awkward_rows(repo: &Path) {
    let path = repo.join("data/driver_stats.parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let nullable = Arc::new(Schema::new(
        reader
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<Field>>(),
    ));
    let batches: Vec<RecordBatch> = reader
        .map(|b| RecordBatch::try_new(nullable.clone(), b.unwrap().columns().to_vec()).unwrap())
        .collect();
    let all = arrow::compute::concat_batches(&nullable, &batches).unwrap();
    let with = |rows: RecordBatch, name: &str, column: ArrayRef| {
        let i = nullable.index_of(name).unwrap();
        let mut columns = rows.columns().to_vec();
        columns[i] = column;
        RecordBatch::try_new(nullable.clone(), columns).unwrap()
    };
    let ties = all.slice(0, 60);
    let conv = ties
        .column_by_name("conv_rate")
        .unwrap()
        .as_primitive::<arrow::datatypes::Float32Type>();
    let other: Float32Array = conv.iter().map(|v| Some(v.unwrap_or(0.5) + 1.0)).collect();
    let ties = with(ties, "conv_rate", Arc::new(other));
    let no_key = all.slice(60, 20);
    let no_key = with(
        no_key.clone(),
        "driver_id",
        new_null_array(no_key.column(0).data_type(), 20),
    );
    let no_time = all.slice(80, 20);
    let t = nullable
        .field_with_name("event_timestamp")
        .unwrap()
        .data_type()
        .clone();
    let no_time = with(no_time, "event_timestamp", new_null_array(&t, 20));
    let mut w = ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        nullable.clone(),
        None,
    )
    .unwrap();
    for b in [&all, &ties, &no_key, &no_time] {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

/// What a run record says that both engines must agree on (means to 1e-9: sums in another
/// order).
fn assert_same_runs(local: &J, cluster: &J) {
    let by_view = |runs: &J| {
        let mut v: Vec<J> = runs.as_array().unwrap().clone();
        v.sort_by_key(|r| r["view"].as_str().unwrap().to_string());
        v
    };
    for (l, c) in by_view(local).iter().zip(by_view(cluster).iter()) {
        for key in ["view", "rows_read", "entities", "keys_written", "watermark"] {
            assert_eq!(l[key], c[key], "{key} of {}: {l}\n{c}", l["view"]);
        }
        assert!(
            c.get("files_read").is_none() && c["engine"].is_string(),
            "{c}"
        );
        let (lf, cf) = (
            l["features"].as_object().unwrap(),
            c["features"].as_object().unwrap(),
        );
        assert_eq!(lf.len(), cf.len());
        for (name, ls) in lf {
            let cs = &cf[name];
            for key in ["null_count", "min", "max"] {
                assert_eq!(ls[key], cs[key], "{key} of {}.{name}", l["view"]);
            }
            match (ls["mean"].as_f64(), cs["mean"].as_f64()) {
                (Some(a), Some(b)) => assert!(
                    (a - b).abs() <= 1e-9 * a.abs().max(1.0),
                    "mean of {name}: {a} vs {b}"
                ),
                (a, b) => assert_eq!(a, b, "mean of {name}"),
            }
        }
    }
    assert_eq!(
        local.as_array().unwrap().len(),
        cluster.as_array().unwrap().len()
    );
}

#[test]
fn a_cluster_reduces_ties_missing_keys_and_times_as_the_local_engine_does() {
    let lake = lake(50, 12);
    let cluster = Cluster::start(2, &[]).unwrap();
    let local = repo(&lake, "local", None);
    let remote = repo(&lake, "remote", None);
    for r in [&local, &remote] {
        add_awkward_rows(r);
    }
    use_cluster(&remote, &cluster);
    // Each view's join split into five partitions by key (more than the executors' slots).
    let file = remote.join("quiver.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    std::fs::write(file, format!("{yaml}  partitions: 5\n")).unwrap();
    let mut runs = Vec::new();
    for r in [&local, &remote] {
        ok(r, &["apply"], &[]);
        // Rows after 18:00 (the last 6 of 12 hours) are outside the range.
        runs.push(materialize(
            r,
            &[
                "materialize",
                "2026-01-01T00:00:00Z",
                "2026-01-01T18:00:00Z",
            ],
            &[],
        ));
    }
    assert_same_runs(&runs[0], &runs[1]);
    assert_same_online(&local, &remote, lake.drivers);
    // A range without rows: empty stages (Ballista's adaptive planner re-planned them forever).
    let out = std::process::Command::new("timeout")
        .arg("60")
        .arg(quiver_tests::quiver_bin())
        .args([
            "--format",
            "json",
            "materialize",
            "2020-01-01T00:00:00Z",
            "2020-01-02T00:00:00Z",
        ])
        .current_dir(&remote)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        describe(&out),
        cluster.logs()
    );
    for run in serde_json::from_slice::<J>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
    {
        assert_eq!(run["rows_read"], 0, "{run}");
    }
    ok(&remote, &["verify"], &[]);
    for service in SERVICES {
        for r in [&local, &remote] {
            ok(r, &args(&retrieve_args(service, "out.parquet")), &[]);
        }
        assert_same_table(
            &std::fs::read(local.join("out.parquet")).unwrap(),
            &std::fs::read(remote.join("out.parquet")).unwrap(),
            service,
        );
    }
    let log = cluster.scheduler_log();
    assert!(log.contains("Hash([driver_id@0], 5)"), "{log}");
}

#[test]
fn training_over_http_on_a_cluster_that_is_down_is_a_503() {
    let lake = lake(20, 6);
    let mut cluster = Cluster::start(1, &[]).unwrap();
    let remote = repo(&lake, "remote", None);
    use_cluster(&remote, &cluster);
    ok(&remote, &["apply"], &[]);
    let mut server = quiver_tests::QuiverServer::start(&remote, false).unwrap();
    server.wait_ready(Duration::from_secs(60));
    let labels = std::fs::read(remote.join("data/labels.parquet")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let up = rt.block_on(post(server.http, TRAIN, PARQUET, &labels));
    assert_eq!(up.status, 200, "{}", String::from_utf8_lossy(&up.body));
    cluster.kill_scheduler();
    let down = rt.block_on(post(server.http, TRAIN, PARQUET, &labels));
    let body = String::from_utf8_lossy(&down.body);
    assert_eq!(down.status, 503, "{body}\n{}", server.log());
    assert!(
        body.contains("Ballista cluster") && !body.contains("online store"),
        "{body}"
    );
    // The detail (the scheduler's address) is in the server's log, not the answer.
    assert!(server.log().contains(&cluster.url()), "{}", server.log());
    assert!(!body.contains(&cluster.url()), "{body}");
}
