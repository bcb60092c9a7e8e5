//! Sources, entity tables and outputs on object storage (issue 13), against a real
//! S3-compatible server (`moto_server`, started by the harness on a free loopback port): the
//! same data as local files gives the same results; partition pruning, counted in the requests
//! the server saw; multipart outputs; credentials; a missing bucket and a server that dies.
//! Every test is skipped, loudly, where moto is not installed (`bash .ci/run` installs it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, AsArray, BinaryArray, BooleanArray, RecordBatch, RecordBatchReader};
use arrow::datatypes::{DataType, Field, Schema, TimestampMicrosecondType};
use chrono::{DateTime, Timelike};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use quiver_online_store::key_codec::{KeyValue, entity_key, online_key, view_prefix};
use quiver_registry::Repository;
use quiver_tests::s3::S3Server;
use quiver_tests::{describe, quiver, quiver_bin, snapshot};
use serde_json::Value as J;

/// The newest event time of the sample: 24 hourly rows per driver on 2026-01-01, 00:00 … 23:00.
pub(crate) const END: &str = "2026-01-01T23:00:00Z";
pub(crate) const FIRST_DRIVER: i64 = 1001;
pub(crate) const BUCKET: &str = "lake";
pub(crate) const DRIVER_VIEWS: [&str; 2] = ["driver_hourly_stats", "driver_derived"];

/// Starts the server, or says loudly that the test is skipped.
macro_rules! s3_or_skip {
    ($test:literal) => {
        match S3Server::start().expect("moto_server starts") {
            Some(server) => server,
            None => {
                eprintln!("SKIPPED: {}: no moto_server (see above)", $test);
                return;
            }
        }
    };
}

/// A sample repository (not applied) and its driver statistics cut into Hive partitions.
pub(crate) struct Lake {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) base: PathBuf,
    pub(crate) drivers: i64,
    /// `date=2026-01-01/hour=07/part-0.parquet` → the file's bytes, one per hour.
    pub(crate) parts: BTreeMap<String, Vec<u8>>,
}

pub(crate) fn lake(drivers: u64, hours: u32) -> Lake {
    let tmp = tempfile::tempdir().unwrap();
    let (d, h) = (drivers.to_string(), hours.to_string());
    let out = quiver(
        tmp.path(),
        &[
            "init",
            "base",
            "--drivers",
            &d,
            "--hours",
            &h,
            "--customers",
            "50",
            "--end",
            END,
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let base = tmp.path().join("base");
    let parts = partitions(&base.join("data/driver_stats.parquet"));
    assert_eq!(parts.len(), hours as usize, "{:?}", parts.keys());
    Lake {
        tmp,
        base,
        drivers: drivers as i64,
        parts,
    }
}

/// The rows of `file` split by the UTC hour of `event_timestamp`, as Parquet files without the
/// partition columns (they live in the path).
fn partitions(file: &Path) -> BTreeMap<String, Vec<u8>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let schema = reader.schema();
    let mut by_hour: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
    for batch in reader {
        let batch = batch.unwrap();
        let events = batch
            .column_by_name("event_timestamp")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>()
            .clone();
        let keys: Vec<String> = (0..batch.num_rows())
            .map(|i| {
                let t = DateTime::from_timestamp_micros(events.value(i)).unwrap();
                format!(
                    "date={}/hour={:02}/part-0.parquet",
                    t.format("%Y-%m-%d"),
                    t.hour()
                )
            })
            .collect();
        let mut distinct = keys.clone();
        distinct.sort();
        distinct.dedup();
        for key in distinct {
            let mask: BooleanArray = keys.iter().map(|k| Some(*k == key)).collect();
            let rows = arrow::compute::filter_record_batch(&batch, &mask).unwrap();
            by_hour.entry(key).or_default().push(rows);
        }
    }
    by_hour
        .into_iter()
        .map(|(key, batches)| {
            let mut w = ArrowWriter::try_new(Vec::new(), schema.clone(), None).unwrap();
            for b in &batches {
                w.write(b).unwrap();
            }
            (key, w.into_inner().unwrap())
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The driver source's location as a Hive-partitioned dataset with an hourly time partition.
pub(crate) fn partitioned(path: &str, storage: &str) -> String {
    format!(
        "    path: {path}\n    partition_columns: [{{name: date, type: string}}, {{name: hour, type: int32}}]\n    time_partition: {{column: date, format: \"%Y-%m-%d\", hour_column: hour}}\n{storage}"
    )
}

/// A copy of the lake's base repository named `name`, its driver source moved to `source` (the
/// YAML lines replacing `path: data/driver_stats.parquet`; `None` keeps the single local file).
pub(crate) fn repo(lake: &Lake, name: &str, source: Option<&str>) -> PathBuf {
    let repo = lake.tmp.path().join(name);
    copy_dir(&lake.base, &repo);
    if let Some(source) = source {
        let file = repo.join("features/drivers.yaml");
        let yaml = std::fs::read_to_string(&file).unwrap();
        let old = "    path: data/driver_stats.parquet\n";
        assert!(yaml.contains(old), "{yaml}");
        std::fs::write(&file, yaml.replace(old, source)).unwrap();
    }
    repo
}

/// A repository whose driver source is the partitioned directory `data/trips/` on local disk.
pub(crate) fn local_partitioned_repo(lake: &Lake, name: &str) -> PathBuf {
    let repo = repo(lake, name, Some(&partitioned("data/trips/", "")));
    for (key, bytes) in &lake.parts {
        let path = repo.join("data/trips").join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    repo
}

pub(crate) fn upload(server: &S3Server, lake: &Lake, prefix: &str) {
    for (key, bytes) in &lake.parts {
        server
            .put(BUCKET, &format!("{prefix}{key}"), bytes)
            .unwrap();
    }
}

/// The environment of a `quiver` child reaching `server`, plus `S3_ENDPOINT` for `storage:` maps.
pub(crate) fn env(server: &S3Server) -> Vec<(String, String)> {
    let mut env = server.env();
    env.push(("S3_ENDPOINT".into(), server.endpoint()));
    env
}

fn command(dir: &Path, args: &[&str], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(quiver_bin());
    cmd.args(args)
        .current_dir(dir)
        .env_remove("QUIVER_REPO")
        .env_remove("QUIVER_CONFIG");
    // Nothing of the machine's own cloud configuration leaks in.
    for (k, _) in std::env::vars() {
        if ["AWS_", "AZURE_", "AZURITE_", "GOOGLE_"]
            .iter()
            .any(|p| k.starts_with(p))
            || k == "S3_ENDPOINT"
        {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd
}

/// Runs `quiver ARGS` in `dir` with `env`.
pub(crate) fn run(dir: &Path, args: &[&str], env: &[(String, String)]) -> Output {
    command(dir, args, env).output().expect("quiver runs")
}

pub(crate) fn ok(dir: &Path, args: &[&str], env: &[(String, String)]) -> Output {
    let out = run(dir, args, env);
    assert!(
        out.status.success(),
        "{args:?} in {}: {}",
        dir.display(),
        describe(&out)
    );
    out
}

pub(crate) fn json_of(out: &Output) -> J {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(out)))
}

/// `quiver --format json materialize…`: the run records.
pub(crate) fn materialize(dir: &Path, args: &[&str], env: &[(String, String)]) -> J {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    json_of(&ok(dir, &all, env))
}

pub(crate) fn run_of<'a>(runs: &'a J, view: &str) -> &'a J {
    runs.as_array()
        .unwrap()
        .iter()
        .find(|r| r["view"] == view)
        .unwrap_or_else(|| panic!("no run of {view} in {runs}"))
}

/// Every driver's stored blob (and two ids without data) for the driver views, read from the
/// repository's online store.
pub(crate) fn online_blobs(repo: &Path, drivers: i64) -> Vec<(String, i64, Option<Vec<u8>>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let repository = Repository::open(repo, None, &|_| None).unwrap();
        let version = repository.store().unwrap().latest().unwrap().unwrap();
        let store = quiver_online_store::open(&repository.config.online_store, &repository.root)
            .await
            .unwrap();
        let ids: Vec<i64> = (FIRST_DRIVER..FIRST_DRIVER + drivers + 2).collect();
        let mut out = Vec::new();
        for name in DRIVER_VIEWS {
            let view = &version.registry.feature_views[name];
            let prefix = view_prefix(&version.registry.project, name, view.generation);
            let keys: Vec<String> = ids
                .iter()
                .map(|id| online_key(&prefix, &entity_key(&[KeyValue::Int(*id)])))
                .collect();
            let blobs = store.read(&keys).await.unwrap();
            out.extend(
                ids.iter()
                    .zip(blobs)
                    .map(|(id, blob)| (name.to_string(), *id, blob.map(|b| b.to_vec()))),
            );
        }
        out
    })
}

pub(crate) fn assert_same_online(a: &Path, b: &Path, drivers: i64) {
    let (x, y) = (online_blobs(a, drivers), online_blobs(b, drivers));
    assert!(
        x.iter().filter(|(_, _, blob)| blob.is_some()).count() >= drivers as usize,
        "{} has too few values",
        a.display()
    );
    for (l, r) in x.iter().zip(&y) {
        assert_eq!(
            l,
            r,
            "online value of {} driver {}: {} vs {}",
            l.0,
            l.1,
            a.display(),
            b.display()
        );
    }
    assert_eq!(x.len(), y.len());
}

fn table(bytes: Vec<u8>) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .unwrap()
        .build()
        .unwrap();
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    arrow::compute::concat_batches(&schema, &batches).unwrap()
}

/// The same columns (names, types, values), row for row.
pub(crate) fn assert_same_table(a: &[u8], b: &[u8], what: &str) {
    let (x, y) = (table(a.to_vec()), table(b.to_vec()));
    let fields = |t: &RecordBatch| {
        t.schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(fields(&x), fields(&y), "{what}: columns");
    assert_eq!(x.num_rows(), y.num_rows(), "{what}: rows");
    for (i, f) in x.schema().fields().iter().enumerate() {
        assert!(
            x.column(i).as_ref() == y.column(i).as_ref(),
            "{what}: column {} differs",
            f.name()
        );
    }
    if a != b {
        eprintln!("note: {what}: same rows, different Parquet bytes");
    }
}

/// Object requests (GET, HEAD) the server saw under `/lake/prefix`, from index `from` of its log.
fn object_reads(server: &S3Server, from: usize, prefix: &str) -> Vec<(String, String, u16)> {
    let path = format!("/{BUCKET}/{prefix}");
    server.requests()[from..]
        .iter()
        .filter(|(m, p, _)| (m == "GET" || m == "HEAD") && p.starts_with(&path))
        .cloned()
        .collect()
}

/// Writes to `key` that succeeded (a PUT, or the POST completing a multipart upload).
fn writes_to(server: &S3Server, from: usize, key: &str) -> Vec<(String, String, u16)> {
    let path = format!("/{BUCKET}/{key}");
    server.requests()[from..]
        .iter()
        .filter(|(m, p, s)| {
            (m == "PUT" || m == "POST")
                && (p == &path || p.starts_with(&format!("{path}?")))
                && *s < 300
        })
        .cloned()
        .collect()
}

/// A partitioned source on S3 gives what the same rows give as one local file and as a local
/// partitioned directory: the same training table, the same online values; a full-range run
/// reads every partition file (and says so).
#[test]
fn a_partitioned_source_on_s3_gives_the_same_results_as_local_files() {
    let server = s3_or_skip!("a_partitioned_source_on_s3_gives_the_same_results_as_local_files");
    let lake = lake(60, 24);
    server.create_bucket(BUCKET).unwrap();
    upload(&server, &lake, "trips/");
    assert_eq!(server.list(BUCKET, "trips/").len(), 24);
    let env = env(&server);

    let local = repo(&lake, "local", None);
    let dir = local_partitioned_repo(&lake, "dir");
    let storage = "    storage: {endpoint: \"${S3_ENDPOINT}\", region: us-east-1}\n";
    let s3 = repo(&lake, "s3", Some(&partitioned("s3://lake/trips/", storage)));
    for r in [&local, &dir, &s3] {
        ok(r, &["apply"], &env);
    }

    let retrieve = [
        "retrieve",
        "--entities",
        "data/labels.parquet",
        "--features",
        "model_v1",
        "--output",
        "train.parquet",
    ];
    for r in [&local, &dir, &s3] {
        ok(r, &retrieve, &env);
    }
    let expected = std::fs::read(local.join("train.parquet")).unwrap();
    assert_same_table(
        &expected,
        &std::fs::read(dir.join("train.parquet")).unwrap(),
        "local partitioned directory",
    );
    assert_same_table(
        &expected,
        &std::fs::read(s3.join("train.parquet")).unwrap(),
        "partitions on S3",
    );

    let range = [
        "materialize",
        "2026-01-01T00:00:00Z",
        "2026-01-02T00:00:00Z",
    ];
    let mut files = Vec::new();
    for r in [&local, &dir, &s3] {
        let runs = materialize(r, &range, &env);
        files.push(runs.clone());
        for view in DRIVER_VIEWS {
            let run = run_of(&runs, view);
            assert!(run["bytes_read"].as_u64().unwrap() > 0, "{run}");
        }
    }
    // Every partition file, each fetched about once (footers may be fetched twice: at most 2x).
    let total: u64 = lake.parts.values().map(|p| p.len() as u64).sum();
    let mut problems = Vec::new();
    for (runs, name) in files[1..].iter().zip(["directory", "S3"]) {
        for view in DRIVER_VIEWS {
            let run = run_of(runs, view);
            let (files, bytes) = (&run["files_read"], run["bytes_read"].as_u64().unwrap());
            if *files != 24 {
                problems.push(format!("{name} {view}: files_read {files}, expected 24"));
            }
            if bytes > 2 * total {
                problems.push(format!(
                    "{name} {view}: {bytes} bytes read of {total} in the files"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}\n{}", problems.join("\n"), files[2]);
    assert_same_online(&local, &dir, lake.drivers);
    assert_same_online(&local, &s3, lake.drivers);
    ok(&s3, &["verify"], &env);
}

/// 24 hourly partitions: after a run up to the newest hour, `materialize-incremental` of that
/// hour reads its partition only — the run record says so, and so do the server's requests —
/// with footers fetched as ranged reads, and the values equal a local run's.
#[test]
fn incremental_runs_read_only_the_partitions_of_their_range() {
    let server = s3_or_skip!("incremental_runs_read_only_the_partitions_of_their_range");
    let lake = lake(200, 24);
    server.create_bucket(BUCKET).unwrap();
    upload(&server, &lake, "trips/");
    let env = server.env();
    let local = repo(&lake, "local", None);
    let s3 = repo(&lake, "s3", Some(&partitioned("s3://lake/trips/", "")));
    for r in [&local, &s3] {
        ok(r, &["apply"], &env);
    }

    // Every problem is collected, so one failure does not hide the others.
    let mut problems: Vec<String> = Vec::new();
    let mut check = |ok: bool, problem: String| {
        if !ok {
            problems.push(problem);
        }
    };
    // The plain view prunes; a view with a query reads its source whole (a query may move rows
    // in time), checked below.
    let plain = "driver_hourly_stats";
    let first = [
        "materialize-incremental",
        "2026-01-01T23:00:00Z",
        "--views",
        plain,
    ];
    let before_first = server.requests().len();
    let full = materialize(&s3, &first, &env);
    let full_reads = object_reads(&server, before_first, "trips/");
    let view = plain;
    let run = run_of(&full, view);
    check(
        run["files_read"] == 23,
        format!(
            "run up to 23:00, {view}: files_read {} (expected 23: hours 00..22)",
            run["files_read"]
        ),
    );
    let late: Vec<_> = full_reads
        .iter()
        .filter(|(_, p, _)| p.contains("hour=23/"))
        .collect();
    // The newest file's footer (two ranged reads) gives the table's columns; no data of the
    // 23:00 partition is read.
    check(
        late.len() <= 2 && late.iter().all(|(_, _, status)| *status == 206),
        format!("the run up to 23:00 read the 23:00 partition: {late:?}"),
    );
    check(
        full_reads.iter().any(|(_, _, s)| *s == 206),
        format!("no ranged read (206) at all: {full_reads:?}"),
    );

    let newest = [
        "materialize-incremental",
        "2026-01-02T00:00:00Z",
        "--views",
        plain,
    ];
    let before = server.requests().len();
    let incremental = materialize(&s3, &newest, &env);
    let reads = object_reads(&server, before, "trips/");
    let run = run_of(&incremental, view);
    let files = run["files_read"].as_u64().unwrap();
    check(
        (1..=2).contains(&files),
        format!("the newest hour, {view}: files_read {files}"),
    );
    let (bytes, all) = (
        run["bytes_read"].as_u64().unwrap(),
        run_of(&full, view)["bytes_read"].as_u64().unwrap(),
    );
    check(
        bytes > 0 && bytes * 12 <= all,
        format!("the newest hour, {view}: {bytes} bytes read, {all} for the full run"),
    );
    check(
        !reads.is_empty(),
        "the newest hour was not read at all".into(),
    );
    let outside: Vec<_> = reads
        .iter()
        .filter(|(_, p, _)| !p.starts_with("/lake/trips/date=2026-01-01/hour=23/"))
        .collect();
    check(
        outside.is_empty(),
        format!("the newest hour's run read outside its partition: {outside:?}"),
    );
    assert!(
        problems.is_empty(),
        "{}\n--- run up to 23:00: {full}\n--- newest hour: {incremental}",
        problems.join("\n")
    );

    let derived = [
        "materialize-incremental",
        "2026-01-02T00:00:00Z",
        "--views",
        "driver_derived",
    ];
    let whole = materialize(&s3, &derived, &env);
    assert_eq!(
        run_of(&whole, "driver_derived")["files_read"],
        24,
        "a view with a query reads every partition: {whole}"
    );
    for args in [&first, &newest, &derived] {
        ok(&local, &args[..], &env);
    }
    assert_same_online(&local, &s3, lake.drivers);
}

/// Deterministic bytes (xorshift), incompressible.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The sample entity table repeated `times` times, with a `payload` column of 128 random bytes
/// per row (so the training table is large and incompressible).
pub(crate) fn big_entities(labels: &Path, times: usize) -> Vec<u8> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(labels).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let one = arrow::compute::concat_batches(&schema, &batches).unwrap();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("payload", DataType::Binary, false));
    let wide = Arc::new(Schema::new(fields));
    let mut w = ArrowWriter::try_new(Vec::new(), wide.clone(), None).unwrap();
    for t in 0..times {
        let payload: Vec<Vec<u8>> = (0..one.num_rows())
            .map(|i| noise((t * one.num_rows() + i) as u64 + 1, 128))
            .collect();
        let payload = BinaryArray::from_iter_values(payload.iter());
        let mut columns: Vec<ArrayRef> = one.columns().to_vec();
        columns.push(Arc::new(payload));
        w.write(&RecordBatch::try_new(wide.clone(), columns).unwrap())
            .unwrap();
    }
    w.into_inner().unwrap()
}

/// `retrieve` with its entity table and its output on S3: the same table as with local files,
/// uploaded whole in one PUT; an output above 8 MiB goes up as a multipart upload, completed.
#[test]
fn retrieve_reads_entities_from_and_writes_outputs_to_s3() {
    let server = s3_or_skip!("retrieve_reads_entities_from_and_writes_outputs_to_s3");
    let lake = lake(60, 24);
    server.create_bucket(BUCKET).unwrap();
    upload(&server, &lake, "trips/");
    let env = server.env();
    let local = repo(&lake, "local", None);
    let s3 = repo(&lake, "s3", Some(&partitioned("s3://lake/trips/", "")));
    for r in [&local, &s3] {
        ok(r, &["apply"], &env);
    }
    server
        .put_file(
            BUCKET,
            "labels/2026-01.parquet",
            &local.join("data/labels.parquet"),
        )
        .unwrap();

    ok(
        &local,
        &[
            "retrieve",
            "--entities",
            "data/labels.parquet",
            "--features",
            "model_v1",
            "--output",
            "train.parquet",
        ],
        &env,
    );
    let before = server.requests().len();
    let before_files = snapshot(&s3);
    ok(
        &s3,
        &[
            "retrieve",
            "--entities",
            "s3://lake/labels/2026-01.parquet",
            "--features",
            "model_v1",
            "--output",
            "s3://lake/train/v7.parquet",
        ],
        &env,
    );
    let uploaded = server
        .get(BUCKET, "train/v7.parquet")
        .expect("the output is on S3");
    assert_same_table(
        &std::fs::read(local.join("train.parquet")).unwrap(),
        &uploaded,
        "entities and output on S3",
    );
    let writes = writes_to(&server, before, "train/v7.parquet");
    assert!(
        writes.len() == 1 && writes[0].0 == "PUT" && !writes[0].1.contains("uploadId"),
        "a small output is one PUT: {writes:?}"
    );
    let local_outputs: Vec<_> = snapshot(&s3)
        .into_iter()
        .filter(|f| !before_files.contains(f) && f.0.extension().is_some_and(|e| e == "parquet"))
        .map(|f| f.0)
        .collect();
    assert!(
        local_outputs.is_empty(),
        "an S3 output was also written locally: {local_outputs:?}"
    );

    // Above 8 MiB: multipart, parts of at least 5 MiB but the last, completed once.
    let big = big_entities(&local.join("data/labels.parquet"), 80);
    std::fs::write(local.join("big.parquet"), &big).unwrap();
    server.put(BUCKET, "labels/big.parquet", &big).unwrap();
    let started = Instant::now();
    ok(
        &local,
        &[
            "retrieve",
            "--entities",
            "big.parquet",
            "--features",
            "model_v1",
            "--output",
            "big-train.parquet",
        ],
        &env,
    );
    eprintln!("local retrieve of 80,000 rows: {:?}", started.elapsed());
    let expected = std::fs::read(local.join("big-train.parquet")).unwrap();
    assert!(
        expected.len() > 8 << 20,
        "the big output is only {} bytes",
        expected.len()
    );
    let before = server.requests().len();
    ok(
        &s3,
        &[
            "retrieve",
            "--entities",
            "s3://lake/labels/big.parquet",
            "--features",
            "model_v1",
            "--output",
            "s3://lake/train/big.parquet",
        ],
        &env,
    );
    let requests = server.requests()[before..].to_vec();
    let on_key: Vec<_> = requests
        .iter()
        .filter(|(_, p, _)| p.starts_with("/lake/train/big.parquet"))
        .collect();
    assert!(
        on_key.iter().any(|(m, p, s)| m == "POST"
            && (p.ends_with("?uploads") || p.ends_with("?uploads="))
            && *s == 200),
        "no multipart upload started: {on_key:?}"
    );
    let parts = on_key
        .iter()
        .filter(|(m, p, s)| m == "PUT" && p.contains("partNumber=") && *s == 200)
        .count();
    assert!(parts >= 2, "{parts} parts: {on_key:?}");
    let completed = on_key
        .iter()
        .filter(|(m, p, s)| m == "POST" && p.contains("uploadId=") && *s == 200)
        .count();
    assert_eq!(completed, 1, "{on_key:?}");
    let uploaded = server.get(BUCKET, "train/big.parquet").unwrap();
    assert_same_table(&expected, &uploaded, "multipart output");
}

/// Credentials: a secret in clear in the definitions is refused; `${VAR}` references are kept
/// unresolved (never printed); a server that refuses the keys gives a clear error.
#[test]
fn credentials_are_never_in_clear_and_refused_keys_are_a_clear_error() {
    let server = s3_or_skip!("credentials_are_never_in_clear_and_refused_keys_are_a_clear_error");
    let lake = lake(20, 6);
    server.create_bucket(BUCKET).unwrap();
    upload(&server, &lake, "trips/");
    let secret = "s3cr3t-never-printed";
    let mut env = env(&server);
    for (k, v) in env.iter_mut() {
        if k == "AWS_SECRET_ACCESS_KEY" {
            *v = secret.to_string();
        }
    }

    let clear = "    storage: {endpoint: \"${S3_ENDPOINT}\", region: us-east-1, access_key_id: \"${AWS_ACCESS_KEY_ID}\", secret_access_key: abc}\n";
    let refused = repo(
        &lake,
        "clear",
        Some(&partitioned("s3://lake/trips/", clear)),
    );
    let before = snapshot(&refused);
    let out = run(&refused, &["apply"], &env);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("it would be kept in clear"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        before == snapshot(&refused),
        "a refused apply changed files"
    );

    let by_reference = "    storage: {endpoint: \"${S3_ENDPOINT}\", region: us-east-1, access_key_id: \"${AWS_ACCESS_KEY_ID}\", secret_access_key: \"${AWS_SECRET_ACCESS_KEY}\"}\n";
    let r = repo(
        &lake,
        "refs",
        Some(&partitioned("s3://lake/trips/", by_reference)),
    );
    let mut printed = String::new();
    for args in [
        &["plan"][..],
        &["apply"],
        &["registry", "describe", "driver_stats_source"],
        &[
            "--format",
            "json",
            "registry",
            "describe",
            "driver_stats_source",
        ],
        &[
            "materialize",
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z",
        ],
    ] {
        let out = ok(&r, args, &env);
        printed.push_str(&String::from_utf8_lossy(&out.stdout));
        printed.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    let described = ok(&r, &["registry", "describe", "driver_stats_source"], &env);
    let described = String::from_utf8_lossy(&described.stdout);
    assert!(
        described.contains("${AWS_SECRET_ACCESS_KEY}"),
        "{described}"
    );
    assert!(
        !printed.contains(secret),
        "the secret was printed: {printed}"
    );
    for file in snapshot(&r) {
        let text = String::from_utf8_lossy(&file.1);
        assert!(
            !text.contains(secret),
            "{} holds the secret",
            file.0.display()
        );
    }

    // The server now checks credentials: these keys are unknown to it.
    server.set_auth(true).unwrap();
    let started = Instant::now();
    let out = run(
        &r,
        &[
            "materialize",
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z",
        ],
        &env,
    );
    let elapsed = started.elapsed();
    server.set_auth(false).unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("access denied") || err.contains("credentials"),
        "{}",
        describe(&out)
    );
    assert!(
        err.contains("s3://lake/trips"),
        "the URL is not named: {err}"
    );
    assert!(!err.contains(secret) && !err.contains("panicked"), "{err}");
    assert!(
        elapsed < Duration::from_secs(40),
        "refused keys took {elapsed:?}"
    );
}

/// Spawns `quiver ARGS` with its output in files; returns the child and the two paths.
pub(crate) fn spawn(
    dir: &Path,
    args: &[&str],
    env: &[(String, String)],
    tag: &str,
) -> (Child, PathBuf, PathBuf) {
    let (out, err) = (
        dir.join(format!("{tag}.stdout")),
        dir.join(format!("{tag}.stderr")),
    );
    let child = command(dir, args, env)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("quiver starts");
    (child, out, err)
}

/// Waits up to `limit` for `child`; kills it (by its PID) when it is still running then.
pub(crate) fn finish(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Access lines in the server's log so far (no waiting: for triggers).
fn logged(server: &S3Server) -> usize {
    server
        .log_text()
        .lines()
        .filter(|l| l.contains(" HTTP/1.1\" "))
        .count()
}

/// A missing bucket is named in a clear error; a server that dies mid-run, or before, makes
/// the command fail within the retry bound with a clear error; no output object is left.
#[test]
fn a_missing_bucket_or_a_dead_server_is_a_clear_error_and_writes_nothing() {
    let mut server =
        s3_or_skip!("a_missing_bucket_or_a_dead_server_is_a_clear_error_and_writes_nothing");
    let lake = lake(100, 24);
    server.create_bucket(BUCKET).unwrap();
    upload(&server, &lake, "trips/");
    let env = server.env();
    let s3 = repo(&lake, "s3", Some(&partitioned("s3://lake/trips/", "")));
    ok(&s3, &["apply"], &env);
    server
        .put_file(BUCKET, "labels.parquet", &s3.join("data/labels.parquet"))
        .unwrap();
    let retrieve = |entities: &str, output: &str| -> Vec<String> {
        [
            "retrieve",
            "--entities",
            entities,
            "--features",
            "model_v1",
            "--output",
            output,
        ]
        .map(String::from)
        .to_vec()
    };
    let refused = |args: &[String], names: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&s3, &args, &env);
        assert!(!out.status.success(), "{args:?}: {}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(names) && err.to_lowercase().contains("bucket"),
            "{args:?}: expected `{names}` and `bucket` in: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    };

    // A missing bucket, for the entity table and for the output.
    refused(
        &retrieve("s3://nobucket/labels.parquet", "s3://lake/out/a.parquet"),
        "s3://nobucket/labels.parquet",
    );
    refused(
        &retrieve("s3://lake/labels.parquet", "s3://nobucket/out/a.parquet"),
        "s3://nobucket",
    );
    assert_eq!(server.list(BUCKET, "out/"), Vec::<String>::new());

    // A source in a missing bucket: refused at apply, or at the first read.
    let missing = repo(
        &lake,
        "missing",
        Some(&partitioned("s3://nobucket/trips/", "")),
    );
    let out = run(&missing, &["apply"], &env);
    let out = if out.status.success() {
        run(
            &missing,
            &[
                "materialize",
                "2026-01-01T00:00:00Z",
                "2026-01-02T00:00:00Z",
            ],
            &env,
        )
    } else {
        out
    };
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("s3://nobucket") && err.to_lowercase().contains("bucket"),
        "{err}"
    );

    // The server dies while `retrieve` runs: at its first request.
    let before = server.requests().len();
    let logged_before = logged(&server);
    let args = retrieve("s3://lake/labels.parquet", "s3://lake/out/b.parquet");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let (mut child, _, err_file) = spawn(&s3, &args, &env, "midrun");
    let deadline = Instant::now() + Duration::from_secs(30);
    while logged(&server) == logged_before {
        assert!(Instant::now() < deadline, "quiver sent nothing in 30 s");
        std::thread::sleep(Duration::from_millis(1));
    }
    server.kill();
    let status = finish(&mut child, Duration::from_secs(60));
    let elapsed = started.elapsed();
    let err = std::fs::read_to_string(&err_file).unwrap();
    let status = status.unwrap_or_else(|| panic!("still running after 60 s: {err}"));
    assert!(
        !status.success(),
        "succeeded although the server died: {err}"
    );
    assert!(elapsed < Duration::from_secs(40), "took {elapsed:?}: {err}");
    let lower = err.to_lowercase();
    assert!(
        lower.contains("endpoint") || lower.contains("did not answer"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let wrote = writes_to(&server, before, "out/b.parquet");
    assert!(wrote.is_empty(), "the output was written: {wrote:?}");

    // The server is down from the start.
    let started = Instant::now();
    let (mut child, _, err_file) = spawn(
        &s3,
        &[
            "materialize",
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z",
        ],
        &env,
        "down",
    );
    let status = finish(&mut child, Duration::from_secs(60));
    let elapsed = started.elapsed();
    let err = std::fs::read_to_string(&err_file).unwrap();
    let status = status.unwrap_or_else(|| panic!("still running after 60 s: {err}"));
    assert!(!status.success(), "{err}");
    // Not the user's mistake: exit 1, as for any store that is down.
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(elapsed < Duration::from_secs(40), "took {elapsed:?}: {err}");
    let lower = err.to_lowercase();
    assert!(
        lower.contains("endpoint") || lower.contains("did not answer"),
        "{err}"
    );
    assert!(
        err.contains("s3://lake/trips"),
        "the URL is not named: {err}"
    );
}

/// Found by using it: files in plain subdirectories are read, hidden ones never; a partition
/// format the data does not use, credentials around or beside a `${VAR}`, users and passwords
/// in URLs and endpoints without a scheme are refused with a message (never a panic); an output
/// cannot reach into a source's data by spelling its URL differently.
#[test]
fn layouts_secrets_and_urls_users_write() {
    let server = s3_or_skip!("layouts_secrets_and_urls_users_write");
    let lake = lake(60, 24);
    server.create_bucket(BUCKET).unwrap();
    let env = env(&server);
    // Plain subdirectories, plus hidden files and directories that are not data.
    for (i, bytes) in lake.parts.values().enumerate() {
        server
            .put(
                BUCKET,
                &format!("nested/a/b{}/part-{i}.parquet", i % 3),
                bytes,
            )
            .unwrap();
    }
    for hidden in [
        "nested/_tmp.parquet",
        "nested/.partial.parquet",
        "nested/a/_temporary/x.parquet",
        "nested/_SUCCESS",
    ] {
        server.put(BUCKET, hidden, b"junk").unwrap();
    }
    let plain = "    path: s3://lake/nested/\n";
    let local = repo(&lake, "local", None);
    let nested = repo(&lake, "nested", Some(plain));
    for r in [&local, &nested] {
        ok(r, &["apply"], &env);
    }
    let all = ["--views", "driver_hourly_stats"];
    let range = [
        "materialize",
        "2026-01-01T00:00:00Z",
        "2026-01-02T00:00:00Z",
    ];
    let args: Vec<&str> = range.iter().chain(&all).copied().collect();
    let runs = materialize(&nested, &args, &env);
    assert_eq!(
        run_of(&runs, "driver_hourly_stats")["files_read"],
        lake.parts.len(),
        "every file below the directory, no hidden one: {runs}"
    );
    ok(&local, &args, &env);
    let view = |r: &Path| {
        online_blobs(r, lake.drivers)
            .into_iter()
            .filter(|(v, _, _)| v == "driver_hourly_stats")
            .collect::<Vec<_>>()
    };
    assert_eq!(view(&local), view(&nested));

    // Refused at apply, with a message and no panic.
    let refused = |name: &str, source: &str, expected: &str| {
        let r = repo(&lake, name, Some(source));
        let out = run(&r, &["apply"], &env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expected) && !err.contains("panicked"),
            "{name}: expected `{expected}` in: {}",
            describe(&out)
        );
        assert!(
            !err.contains("CLEAR"),
            "{name}: a secret in the message: {err}"
        );
    };
    upload(&server, &lake, "trips/");
    refused(
        "format",
        "    path: s3://lake/trips/\n    partition_columns: [{name: date, type: string}, {name: hour, type: int32}]\n    time_partition: {column: date, format: \"%Y%m%d\", hour_column: hour}\n",
        "is not a time written as `%Y%m%d`",
    );
    for (name, storage) in [
        (
            "suffix",
            "secret_access_key: \"${AWS_SECRET_ACCESS_KEY}CLEAR\"",
        ),
        ("default", "session_token: \"${UNSET_TOKEN:-CLEAR}\""),
        ("userinfo", "endpoint: \"http://user:CLEAR@127.0.0.1:1\""),
    ] {
        refused(
            name,
            &format!("    path: s3://lake/trips/\n    storage: {{{storage}}}\n"),
            "clear",
        );
    }
    refused(
        "path-userinfo",
        "    path: s3://key:CLEAR@lake/trips/\n",
        "user or password",
    );

    // An endpoint without a scheme is an error, not a crash.
    let trips = repo(&lake, "trips", Some(&partitioned("s3://lake/trips/", "")));
    ok(&trips, &["apply"], &env);
    let mut bad = env.clone();
    bad.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    bad.push((
        "AWS_ENDPOINT_URL".into(),
        server.endpoint().trim_start_matches("http://").into(),
    ));
    let out = run(&trips, &range, &bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("AWS_ENDPOINT_URL") && !err.contains("panicked"),
        "{}",
        describe(&out)
    );

    // An output inside the source's data, however it is spelled, is refused; nothing written.
    server
        .put_file(BUCKET, "labels.parquet", &trips.join("data/labels.parquet"))
        .unwrap();
    for output in [
        "S3://lake/trips/train.parquet",
        "s3://lake/x/../trips/train.parquet",
        "s3://lake/trips%2Ftrain.parquet",
    ] {
        let out = run(
            &trips,
            &[
                "retrieve",
                "--entities",
                "s3://lake/labels.parquet",
                "--features",
                "model_v1",
                "--output",
                output,
            ],
            &env,
        );
        // (An escaped slash is refused before that: escapes are never taken.)
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && (err.contains("would change the data of source")
                    || (output.contains('%') && err.contains("percent-escape"))),
            "{output}: {}",
            describe(&out)
        );
    }
    assert!(
        !server
            .list(BUCKET, "trips/")
            .iter()
            .any(|k| k.contains("train")),
        "{:?}",
        server.list(BUCKET, "trips/")
    );
}

/// An offline push to a batch source on object storage is one new whole object in its
/// directory, read by `retrieve` with the rest of the history; a partitioned batch source is
/// refused (a pushed file would lie outside its partitions).
#[test]
fn offline_pushes_append_whole_objects_to_a_batch_source_on_s3() {
    use arrow::array::{Float64Array, Int64Array, TimestampMicrosecondArray};
    let server = s3_or_skip!("offline_pushes_append_whole_objects_to_a_batch_source_on_s3");
    server.create_bucket(BUCKET).unwrap();
    let env = env(&server);
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    // History: driver 1 at 06:00 (rate 0.1).
    let schema = Arc::new(Schema::new(vec![
        Field::new("driver_id", DataType::Int64, false),
        Field::new(
            "event_timestamp",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("conv_rate", DataType::Float64, true),
    ]));
    let seed = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1])) as ArrayRef,
            Arc::new(
                TimestampMicrosecondArray::from(vec![1_767_247_200_000_000]).with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from(vec![0.1])),
        ],
    )
    .unwrap();
    let mut w = ArrowWriter::try_new(Vec::new(), schema, None).unwrap();
    w.write(&seed).unwrap();
    server
        .put(BUCKET, "events/seed.parquet", &w.into_inner().unwrap())
        .unwrap();
    std::fs::create_dir_all(repo.join("features")).unwrap();
    std::fs::write(
        repo.join("quiver.yaml"),
        "project: s3push\nregistry:\n  type: local\n  path: .quiver/registry\nonline_store:\n  type: embedded\n  path: .quiver/online.redb\n",
    )
    .unwrap();
    let defs = |path: &str| {
        format!(
            "entities:\n  - name: driver\n    join_keys: [{{name: driver_id, type: int64}}]\nsources:\n  - name: events_history\n    path: {path}\n    timestamp_field: event_timestamp\npush_sources:\n  - name: events\n    batch_source: events_history\n    schema: {{driver_id: int64, event_timestamp: timestamp, conv_rate: float64}}\nfeature_views:\n  - name: live\n    entities: [driver]\n    source: events\n    ttl: 0\n    features: [{{name: conv_rate, type: float64}}]\n"
        )
    };
    std::fs::write(repo.join("features/defs.yaml"), defs("s3://lake/events/")).unwrap();
    ok(repo, &["apply"], &env);
    std::fs::write(
        repo.join("rows.csv"),
        "driver_id,event_timestamp,conv_rate\n1,2026-01-01T08:00:00Z,0.8\n2,2026-01-01T08:00:00Z,0.2\n",
    )
    .unwrap();
    ok(
        repo,
        &["push", "events", "rows.csv", "--to", "online_and_offline"],
        &env,
    );
    let objects = server.list(BUCKET, "events/");
    let pushed: Vec<_> = objects.iter().filter(|k| k.contains("/push-")).collect();
    assert_eq!(pushed.len(), 1, "one new object: {objects:?}");
    assert!(
        !objects.iter().any(|k| k.contains("/.") || k.contains("/_")),
        "no temporary object: {objects:?}"
    );
    // The history now holds the pushed rows: a training table at 09:00 sees them.
    std::fs::write(
        repo.join("labels.csv"),
        "driver_id,event_timestamp\n1,2026-01-01T07:00:00Z\n1,2026-01-01T09:00:00Z\n2,2026-01-01T09:00:00Z\n",
    )
    .unwrap();
    ok(
        repo,
        &[
            "retrieve",
            "--entities",
            "labels.csv",
            "--features",
            "live:conv_rate",
            "--output",
            "train.parquet",
        ],
        &env,
    );
    let train = table(std::fs::read(repo.join("train.parquet")).unwrap());
    let rates = train
        .column_by_name("conv_rate")
        .unwrap()
        .as_primitive::<arrow::datatypes::Float64Type>();
    assert_eq!(
        rates.iter().collect::<Vec<_>>(),
        vec![Some(0.1), Some(0.8), Some(0.2)],
        "history before the push, the pushed rows after it"
    );

    // A partitioned batch source: refused with a message, nothing written.
    let seed_bytes = server.get(BUCKET, "events/seed.parquet").unwrap();
    server
        .put(BUCKET, "pevents/date=2026-01-01/seed.parquet", &seed_bytes)
        .unwrap();
    std::fs::write(
        repo.join("features/defs.yaml"),
        defs("s3://lake/pevents/\n    partition_columns: [{name: date, type: string}]"),
    )
    .unwrap();
    ok(repo, &["apply"], &env);
    let before = server.list(BUCKET, "pevents/");
    let out = run(
        repo,
        &["push", "events", "rows.csv", "--to", "offline"],
        &env,
    );
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("is partitioned"),
        "{}",
        describe(&out)
    );
    assert_eq!(before, server.list(BUCKET, "pevents/"));
}
