//! Training retrieval end to end: `quiver retrieve` with its manifest and `--rebuild`, the HTTP
//! training endpoint, and `quiver verify` (online = offline, and a corrupted value caught).

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use quiver_online_store::value_codec::{Value, decode, encode};
use quiver_registry::ValueType;
use quiver_tests::{RedisServer, describe, quiver, snapshot};
use serde_json::Value as J;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::materialize::{json, redis_yaml, repo_with};

fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn ids(batches: &[RecordBatch], column: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(column)
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

#[test]
fn retrieve_writes_a_table_in_input_order_and_rebuilds_it_from_the_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(
        tmp.path(),
        30,
        6,
        "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
    );
    let out = quiver(
        &repo,
        &[
            "--format",
            "json",
            "retrieve",
            "--entities",
            "data/labels.parquet",
            "--features",
            "model_v1",
            "--output",
            "train.parquet",
        ],
    );
    let summary = json(&out);
    assert_eq!(summary["rows"], 1000);
    let labels = read_parquet(&repo.join("data/labels.parquet"));
    let train = read_parquet(&repo.join("train.parquet"));
    // Every entity row once, in input order, with its own columns first.
    assert_eq!(ids(&train, "driver_id"), ids(&labels, "driver_id"));
    assert_eq!(ids(&train, "customer_id"), ids(&labels, "customer_id"));
    let schema = train[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        &names[..5],
        [
            "driver_id",
            "customer_id",
            "event_timestamp",
            "trip_completed",
            "conv_rate"
        ]
    );
    assert_eq!(names.len(), 24);

    let manifest: J =
        serde_json::from_str(&std::fs::read_to_string(repo.join("train.manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["registry"]["version"], 1);
    assert_eq!(manifest["selection"], "model_v1");
    assert_eq!(manifest["features"].as_array().unwrap().len(), 20);
    assert_eq!(manifest["entities"]["rows"], 1000);
    assert_eq!(manifest["sources"].as_array().unwrap().len(), 2);
    assert!(manifest["sources"][0]["rows"].as_u64().unwrap() > 0);

    // The same bytes back.
    let out = quiver(
        &repo,
        &[
            "retrieve",
            "--rebuild",
            "train.manifest.json",
            "--output",
            "again.parquet",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        std::fs::read(repo.join("train.parquet")).unwrap(),
        std::fs::read(repo.join("again.parquet")).unwrap()
    );

    // A source file rewritten since: refused, with the reason, and nothing written.
    let source = repo.join("data/driver_stats.parquet");
    let file = std::fs::File::options().append(true).open(&source).unwrap();
    file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    drop(file);
    let before = snapshot(&repo);
    let out = quiver(
        &repo,
        &[
            "retrieve",
            "--rebuild",
            "train.manifest.json",
            "--output",
            "third.parquet",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("driver_stats.parquet changed"), "{err}");
    assert_eq!(before, snapshot(&repo));
}

#[test]
fn retrieve_rejects_bad_input_clearly_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(
        tmp.path(),
        10,
        3,
        "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
    );
    std::fs::write(repo.join("garbage.parquet"), b"not a table").unwrap();
    std::fs::write(
        repo.join("nokey.csv"),
        "customer_id,event_timestamp\n1,2026-01-01T00:00:00Z\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("nots.csv"),
        "driver_id,customer_id,when\n1001,1,2026-01-01T00:00:00Z\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("intts.csv"),
        "driver_id,customer_id,event_timestamp\n1001,1,17\n",
    )
    .unwrap();
    // Values that cannot be read are errors naming their row, never silent nulls.
    for (name, text) in [
        (
            "badtime.csv",
            "driver_id,customer_id,event_timestamp\n1001,1,2026-01-01T00:00:00Z\n1002,1,not a time\n",
        ),
        (
            "slashtime.csv",
            "driver_id,customer_id,event_timestamp\n1001,1,2026/01/01\n",
        ),
        (
            "floatkey.csv",
            "driver_id,customer_id,event_timestamp\n1002.0,1,2026-01-01T00:00:00Z\n1002.9,1,2026-01-01T00:00:00Z\n",
        ),
        (
            "badkey.csv",
            "driver_id,customer_id,event_timestamp\n1001,1,2026-01-01T00:00:00Z\nabc,1,2026-01-01T00:00:00Z\n",
        ),
    ] {
        std::fs::write(repo.join(name), text).unwrap();
    }
    {
        // A Parquet string column in a non-RFC 3339 format.
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("driver_id", arrow::datatypes::DataType::Int64, false),
            arrow::datatypes::Field::new("customer_id", arrow::datatypes::DataType::Int64, false),
            arrow::datatypes::Field::new(
                "event_timestamp",
                arrow::datatypes::DataType::Utf8,
                false,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                std::sync::Arc::new(arrow::array::Int64Array::from(vec![1001, 1002])),
                std::sync::Arc::new(arrow::array::Int64Array::from(vec![1, 1])),
                std::sync::Arc::new(arrow::array::StringArray::from(vec![
                    "2026-01-01T01:00:00Z",
                    "01/01/2026 01:00",
                ])),
            ],
        )
        .unwrap();
        let file = std::fs::File::create(repo.join("strtime.parquet")).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    std::fs::write(
        repo.join("clash.csv"),
        "driver_id,customer_id,event_timestamp,conv_rate\n1001,1,2026-01-01T00:00:00Z,1\n",
    )
    .unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--entities", "garbage.parquet", "--features", "model_v1"],
            "not Parquet, Arrow IPC or CSV",
        ),
        (
            &["--entities", "missing.parquet", "--features", "model_v1"],
            "missing.parquet",
        ),
        (
            &[
                "--entities",
                "data/labels.parquet",
                "--features",
                "model_v2",
            ],
            "did you mean",
        ),
        (
            &[
                "--entities",
                "data/labels.parquet",
                "--features",
                "driver_hourly_stats:nope",
            ],
            "has no feature `nope`",
        ),
        (
            &["--entities", "nokey.csv", "--features", "model_v1"],
            "no column `driver_id`",
        ),
        (
            &["--entities", "nots.csv", "--features", "model_v1"],
            "no timestamp column `event_timestamp`",
        ),
        (
            &["--entities", "intts.csv", "--features", "model_v1"],
            "numbers are ambiguous",
        ),
        (
            &["--entities", "clash.csv", "--features", "model_v1"],
            "collides",
        ),
        (
            &["--entities", "badtime.csv", "--features", "model_v1"],
            "row 2, column `event_timestamp`: `not a time`",
        ),
        (
            &["--entities", "slashtime.csv", "--features", "model_v1"],
            "`2026/01/01` cannot be read as a timestamp",
        ),
        (
            &["--entities", "strtime.parquet", "--features", "model_v1"],
            "row 2, column `event_timestamp`: `01/01/2026 01:00`",
        ),
        (
            &["--entities", "badkey.csv", "--features", "model_v1"],
            "row 2, column `driver_id`: `abc` cannot be read as int64",
        ),
        (
            // 1002.9 is not driver 1002.
            &["--entities", "floatkey.csv", "--features", "model_v1"],
            "row 2, column `driver_id`: `1002.9` cannot be read as int64",
        ),
        (
            // One view on two cores: the merge is split by key, and the bad value is met while
            // the repartition reads the entity keys (no key filter reads them first).
            &[
                "--entities",
                "badkey.csv",
                "--features",
                "driver_hourly_stats:conv_rate",
                "--key-filter-rows",
                "0",
            ],
            "row 2, column `driver_id`: `abc` cannot be read as int64",
        ),
        (
            &[
                "--entities",
                "data/labels.parquet",
                "--features",
                "model_v1,driver_hourly_stats:conv_rate",
            ],
            "is a feature service",
        ),
        (
            &[
                "--entities",
                "data/labels.parquet",
                "--features",
                "driver_hourly_stats:",
            ],
            "names no feature",
        ),
        (
            &[
                "--entities",
                "data/labels.parquet",
                "--features",
                "model_v1",
                "--memory-limit",
                "1KiB",
            ],
            "too little",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["retrieve", "--output", "out.parquet"];
        all.extend_from_slice(args);
        quiver_tests::assert_refused(&repo, &all, expected);
    }
    // The output may not replace the entity table or any source's data.
    for (output, expected) in [
        ("data/labels.parquet", "is the entity table itself"),
        (
            "./data/../data/labels.parquet",
            "is the entity table itself",
        ),
        ("data/driver_stats.parquet", "source `driver_stats_source`"),
        (
            "data/customer_profile.parquet",
            "source `customer_profile_source`",
        ),
        ("quiver.yaml", "would overwrite quiver.yaml"),
        ("features/drivers.yaml", "would overwrite a definition file"),
        (
            ".quiver/registry/v9.parquet",
            "would overwrite the registry",
        ),
        (
            ".quiver/online.redb",
            "would overwrite the embedded online store",
        ),
        ("train.csv", "name the format by its extension"),
    ] {
        quiver_tests::assert_refused(
            &repo,
            &[
                "retrieve",
                "--entities",
                "data/labels.parquet",
                "--features",
                "driver_hourly_stats:conv_rate",
                "--output",
                output,
            ],
            expected,
        );
    }
    // With full feature names the clash is gone.
    let out = quiver(
        &repo,
        &[
            "retrieve",
            "--entities",
            "clash.csv",
            "--features",
            "model_v1",
            "--full-feature-names",
            "--output",
            "ok.parquet",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let t = read_parquet(&repo.join("ok.parquet"));
    assert!(
        t[0].schema()
            .field_with_name("driver_hourly_stats__conv_rate")
            .is_ok()
    );
    assert!(t[0].schema().field_with_name("conv_rate").is_ok());
    // CSV times come out as UTC timestamps (Parquet TIMESTAMP, not a bare INT64).
    let schema = t[0].schema();
    let ts = schema.field_with_name("event_timestamp").unwrap();
    assert!(
        matches!(ts.data_type(), arrow::datatypes::DataType::Timestamp(_, Some(z)) if z.as_ref() == "UTC"),
        "{ts:?}"
    );
    let file = std::fs::File::open(repo.join("ok.parquet")).unwrap();
    let meta = parquet::file::reader::FileReader::metadata(
        &parquet::file::serialized_reader::SerializedFileReader::new(file).unwrap(),
    )
    .clone();
    let column = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .find(|c| c.name() == "event_timestamp")
        .unwrap()
        .clone();
    assert!(
        matches!(
            column.logical_type_ref(),
            Some(parquet::basic::LogicalType::Timestamp(t)) if t.is_adjusted_to_u_t_c
        ),
        "{column:?}"
    );

    // The manifest's name is taken by something that cannot be removed (a directory): the
    // command fails before writing anything — a table is never left beside a manifest that is
    // not its own — and no temporary file stays. With `--no-manifest`, a manifest of an earlier
    // table is removed.
    // `quiver retrieve` of the labels with `features` to `output`, and `extra` flags.
    let retrieve_to = |features: &str, output: &str, extra: &[&str]| {
        let mut args = vec![
            "retrieve",
            "--entities",
            "data/labels.parquet",
            "--features",
            features,
            "--output",
            output,
        ];
        args.extend_from_slice(extra);
        quiver(&repo, &args)
    };
    std::fs::create_dir(repo.join("nomani.manifest.json")).unwrap();
    let out = retrieve_to("model_v1", "nomani.parquet", &[]);
    let text = describe(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("cannot be removed") && text.contains("nothing was written"),
        "{text}"
    );
    assert!(!repo.join("nomani.parquet").exists(), "{text}");
    let left: Vec<_> = std::fs::read_dir(&repo)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(repo.join("ok.manifest.json").exists());
    // Rebuilt in place, however the manifest is spelled: the table and a manifest stay.
    let before = std::fs::read(repo.join("ok.parquet")).unwrap();
    let out = quiver(
        &repo,
        &[
            "retrieve",
            "--rebuild",
            "./ok.manifest.json",
            "--output",
            "ok.parquet",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(repo.join("ok.manifest.json").exists());
    assert_eq!(std::fs::read(repo.join("ok.parquet")).unwrap(), before);
    let out = retrieve_to(
        "driver_hourly_stats:conv_rate",
        "ok.parquet",
        &["--no-manifest"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        !repo.join("ok.manifest.json").exists(),
        "the earlier table's manifest still describes the new one"
    );

    // A `file://` URL is a local path and gets its checks: it cannot overwrite a source's data
    // or the entity table.
    let source = std::fs::read(repo.join("data/driver_stats.parquet")).unwrap();
    for target in ["data/driver_stats.parquet", "data/labels.parquet"] {
        let url = format!("file://{}", repo.join(target).display());
        let out = retrieve_to("model_v1", &url, &[]);
        let text = describe(&out);
        assert!(!out.status.success(), "{url}: {text}");
        assert!(
            text.contains("would change the data of source") || text.contains("entity table"),
            "{url}: {text}"
        );
    }
    assert_eq!(
        std::fs::read(repo.join("data/driver_stats.parquet")).unwrap(),
        source
    );
}

/// POSTs `body` and returns the status and the de-chunked response body.
async fn post_bytes(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let _ = s.write_all(body).await;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let headers = String::from_utf8_lossy(&buf[..split]).to_ascii_lowercase();
    let status: u16 = headers[9..12].parse().unwrap();
    let mut rest = &buf[split + 4..];
    if !headers.contains("transfer-encoding: chunked") {
        return (status, rest.to_vec());
    }
    let mut out = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                .unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
    (status, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_training_endpoint_streams_the_same_table_as_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(
        tmp.path(),
        30,
        6,
        "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
    );
    let out = quiver(
        &repo,
        &[
            "retrieve",
            "--entities",
            "data/labels.parquet",
            "--features",
            "model_v1",
            "--output",
            "train.arrow",
            "--no-manifest",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let expected: Vec<RecordBatch> = arrow::ipc::reader::FileReader::try_new(
        std::fs::File::open(repo.join("train.arrow")).unwrap(),
        None,
    )
    .unwrap()
    .map(Result::unwrap)
    .collect();
    let server = crate::serve::start(&repo).await;
    let labels = std::fs::read(repo.join("data/labels.parquet")).unwrap();
    let (status, body) = post_bytes(
        server.http,
        "/get-historical-features?features=model_v1",
        "application/vnd.apache.parquet",
        &labels,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let got: Vec<RecordBatch> = arrow::ipc::reader::StreamReader::try_new(&body[..], None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let schema = expected[0].schema();
    assert_eq!(
        arrow::compute::concat_batches(&schema, &got).unwrap(),
        arrow::compute::concat_batches(&schema, &expected).unwrap()
    );

    // CSV in, with the content type saying so; full feature names.
    let csv = "driver_id,customer_id,event_timestamp\n1001,1,2026-01-01T23:30:00Z\n999,1,2026-01-01T23:30:00Z\n";
    let (status, body) = post_bytes(
        server.http,
        "/get-historical-features?features=driver_hourly_stats:conv_rate&full_feature_names=true",
        "text/csv",
        csv.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let got: Vec<RecordBatch> = arrow::ipc::reader::StreamReader::try_new(&body[..], None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let rate = got[0]
        .column_by_name("driver_hourly_stats__conv_rate")
        .unwrap();
    assert_eq!(rate.len(), 2);
    assert!(
        !rate.is_null(0),
        "driver 1001 has a value half an hour before the end"
    );
    assert!(rate.is_null(1), "driver 999 does not exist");

    // Bad requests: 4xx with a message, never a 500.
    let cases: &[(&str, &str, &[u8], u16, &str)] = &[
        (
            "/get-historical-features?features=nope",
            "application/vnd.apache.parquet",
            &labels,
            400,
            "nope",
        ),
        (
            "/get-historical-features",
            "application/vnd.apache.parquet",
            &labels,
            400,
            "give `features`",
        ),
        (
            "/get-historical-features?features=model_v1&bogus=1",
            "application/vnd.apache.parquet",
            &labels,
            400,
            "unknown query parameter",
        ),
        (
            "/get-historical-features?features=model_v1&full_feature_names=maybe",
            "application/vnd.apache.parquet",
            &labels,
            400,
            "true or false",
        ),
        (
            "/get-historical-features?features=model_v1",
            "application/octet-stream",
            b"garbage",
            400,
            "not Parquet",
        ),
        (
            "/get-historical-features?features=model_v1",
            "application/octet-stream",
            b"",
            400,
            "empty body",
        ),
        (
            "/get-historical-features?features=model_v1",
            "text/csv",
            b"customer_id,event_timestamp\n1,2026-01-01T00:00:00Z\n",
            400,
            "driver_id",
        ),
        (
            "/get-historical-features?features=model_v1",
            "application/octet-stream",
            &vec![0u8; (1 << 20) + 1],
            413,
            "limit",
        ),
    ];
    for (path, ct, body, want, text) in cases {
        let (status, body) = post_bytes(server.http, path, ct, body).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, *want, "{path}: {body}");
        assert!(body.contains(text), "{path}: expected `{text}` in {body}");
    }
    server.stop().await;
}

#[test]
fn verify_agrees_after_materializing_and_catches_a_corrupted_value() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(tmp.path(), 40, 6, &redis_yaml(&redis.url()));
    json(&quiver(
        &repo,
        &[
            "--format",
            "json",
            "materialize-incremental",
            "2026-01-02T00:00:01Z",
        ],
    ));
    let report = json(&quiver(&repo, &["--format", "json", "verify"]));
    let views = report.as_array().unwrap();
    assert_eq!(views.len(), 4, "{report}");
    for v in views {
        assert_eq!(v["time_mismatches"], 0, "{v}");
        assert!(v["sampled"].as_u64().unwrap() > 0, "{v}");
        for f in v["features"].as_array().unwrap() {
            assert_eq!(f["mismatched"], 0, "{v}");
            assert_eq!(f["missing"], 0, "{v}");
            assert_eq!(f["matched"], v["sampled"], "{v}");
        }
    }

    // Change one driver's stored conv_rate (times kept): verify must fail and name it.
    let mut conn = redis.client().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("quiver:*:driver_hourly_stats:*")
        .query(&mut conn)
        .unwrap();
    let key = &keys[0];
    let blob: Vec<u8> = redis::cmd("GET").arg(key).query(&mut conn).unwrap();
    let repository = quiver_registry::Repository::open(&repo, None, &|_| None).unwrap();
    let version = repository.store().unwrap().latest().unwrap().unwrap();
    let types: Vec<ValueType> = version.registry.feature_views["driver_hourly_stats"]
        .features
        .iter()
        .map(|f| f.value_type)
        .collect();
    let mut decoded = decode(&blob, &types).unwrap();
    decoded.values[0] = Some(Value::Float32(-1.0));
    let () = redis::cmd("SET")
        .arg(key)
        .arg(encode(&decoded, &types))
        .query(&mut conn)
        .unwrap();
    let out = quiver(
        &repo,
        &[
            "--format",
            "json",
            "verify",
            "--views",
            "driver_hourly_stats",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report: J = serde_json::from_slice(&out.stdout).unwrap();
    let features = report[0]["features"].as_array().unwrap();
    assert_eq!(features[0]["feature"], "conv_rate");
    assert_eq!(features[0]["mismatched"], 1, "{report}");
    assert_eq!(features[1]["mismatched"], 0, "{report}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("disagree"), "{err}");
    let _ = std::io::stderr().flush();
}

/// Retrieval output as (driver_id, event time, conv_rate) per row, for comparing tables.
fn conv_rates(batches: &[RecordBatch]) -> Vec<Option<f32>> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b
                .column_by_name("conv_rate")
                .unwrap()
                .as_primitive::<arrow::datatypes::Float32Type>();
            (0..c.len())
                .map(|i| (!c.is_null(i)).then(|| c.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Small entity tables over a source bigger than the as-of merge's window of retained batches
/// (64 batches of 8,192 rows): 600,000 driver rows against 1,000 and 1 entity rows, through the
/// CLI, `verify` and the HTTP training endpoint. Every one of them crashed with "all columns in
/// a record batch must have the same length" before the merge's fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_entity_tables_over_a_large_source_retrieve_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(
        tmp.path(),
        25_000,
        24,
        "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
    );
    let retrieve = |entities: &str, output: &str, key_filter_rows: &str| {
        let out = quiver(
            &repo,
            &[
                "retrieve",
                "--entities",
                entities,
                "--features",
                "driver_hourly_stats:conv_rate",
                "--output",
                output,
                "--no-manifest",
                "--key-filter-rows",
                key_filter_rows,
            ],
        );
        assert!(out.status.success(), "{}", describe(&out));
        read_parquet(&repo.join(output))
    };
    // Without the key filter the merge walks all 600,000 rows (the shape that crashed); with it
    // (the default for small tables) only the rows of the entities asked for: the same table.
    let thousand = retrieve("data/labels.parquet", "t1000.parquet", "0");
    let filtered = retrieve("data/labels.parquet", "t1000f.parquet", "20000");
    assert_eq!(conv_rates(&filtered), conv_rates(&thousand));
    let labels = read_parquet(&repo.join("data/labels.parquet"));
    assert_eq!(ids(&thousand, "driver_id"), ids(&labels, "driver_id"));
    let rates = conv_rates(&thousand);
    assert_eq!(rates.len(), 1000);
    assert!(
        rates.iter().filter(|r| r.is_some()).count() > 500,
        "most labels fall within the 2h ttl of a driver row"
    );

    // One row: the first label with a value, alone, must get the same value.
    let first = rates.iter().position(Option::is_some).unwrap();
    let batch = labels
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(move |r| b.slice(r, 1)))
        .nth(first)
        .unwrap();
    let file = std::fs::File::create(repo.join("one.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    for key_filter_rows in ["0", "20000"] {
        let one = retrieve("one.parquet", "t1.parquet", key_filter_rows);
        assert_eq!(conv_rates(&one), [rates[first]]);
    }

    // The HTTP training endpoint with the same one-row body: 200 and the same row.
    let server = crate::serve::start(&repo).await;
    let (status, body) = post_bytes(
        server.http,
        "/get-historical-features?features=driver_hourly_stats:conv_rate",
        "application/vnd.apache.parquet",
        &std::fs::read(repo.join("one.parquet")).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let got: Vec<RecordBatch> = arrow::ipc::reader::StreamReader::try_new(&body[..], None)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(conv_rates(&got), [rates[first]]);
    server.stop().await;

    // verify samples a few entities and retrieves them over the whole source.
    json(&quiver(
        &repo,
        &[
            "--format",
            "json",
            "materialize-incremental",
            "2026-01-02T00:00:01Z",
        ],
    ));
    for sample in ["1", "1000"] {
        let report = json(&quiver(
            &repo,
            &[
                "--format",
                "json",
                "verify",
                "--views",
                "driver_hourly_stats",
                "--sample",
                sample,
            ],
        ));
        let v = &report[0];
        assert_eq!(v["sampled"].as_u64(), Some(sample.parse().unwrap()), "{v}");
        for f in v["features"].as_array().unwrap() {
            assert_eq!(f["mismatched"], 0, "{v}");
            assert_eq!(f["matched"], v["sampled"], "{v}");
        }
    }
}

/// With `key_ttl: true` Redis drops values once their view's ttl makes them useless: `verify`
/// counts those entities as expired, as they should be, not as missing.
#[test]
fn verify_counts_expired_keys_as_expected_with_key_ttl() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = format!("{}  key_ttl: true\n", redis_yaml(&redis.url()));
    let repo = repo_with(tmp.path(), 40, 6, &store);
    json(&quiver(
        &repo,
        &[
            "--format",
            "json",
            "materialize-incremental",
            "2026-01-02T00:00:01Z",
        ],
    ));
    // The sample's data ended on 2026-01-02: older than every ttl, so every key has expired.
    let report = json(&quiver(
        &repo,
        &[
            "--format",
            "json",
            "verify",
            "--views",
            "driver_hourly_stats",
        ],
    ));
    let v = &report[0];
    assert!(v["sampled"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["expired"], v["sampled"], "{v}");
    for f in v["features"].as_array().unwrap() {
        assert_eq!(f["missing"], 0, "{v}");
        assert_eq!(f["mismatched"], 0, "{v}");
    }
}

/// An interrupted retrieval leaves no temporary output behind (SIGTERM mid-write), and the
/// temporary output of a killed one (SIGKILL: no chance to clean) is removed by the next run.
#[test]
fn interrupted_retrievals_leave_no_temporary_files() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(
        tmp.path(),
        20_000,
        24,
        "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
    );
    let temps = || -> Vec<String> {
        std::fs::read_dir(&repo)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect()
    };
    // A stale temporary file of a process that no longer exists.
    std::fs::write(repo.join("t.parquet.tmp-4000000"), b"half a table").unwrap();
    let args = [
        "retrieve",
        "--entities",
        "data/labels.parquet",
        "--features",
        "model_v1",
        "--output",
        "t.parquet",
        "--no-manifest",
    ];
    let mut child = std::process::Command::new(quiver_tests::quiver_bin())
        .args(args)
        .current_dir(&repo)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the write has begun (its temporary file exists), then interrupt.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !temps().iter().any(|t| !t.ends_with("4000000")) && std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        // It finished first: then the table is whole.
        assert!(repo.join("t.parquet").exists());
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("interrupted by SIGTERM"), "{err}");
        assert!(!repo.join("t.parquet").exists());
    }
    assert!(temps().is_empty(), "{:?}", temps());
}

/// A timestamp beyond what nanoseconds hold (the 9999-12-31 sentinel) in a source: retrieval
/// and materialization both refuse it the same way, saying what to do (exit 2), never a silent
/// null online and an engine error offline.
#[test]
fn a_timestamp_sentinel_in_a_source_is_refused_the_same_online_and_offline() {
    use arrow::array::{ArrayRef, TimestampMicrosecondArray};
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(
        tmp.path(),
        10,
        3,
        "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
    );
    let path = repo.join("data/customer_profile.parquet");
    let batches = read_parquet(&path);
    let schema = batches[0].schema();
    let i = schema.index_of("signup_at").unwrap();
    let mut rewritten = Vec::new();
    for (n, b) in batches.iter().enumerate() {
        let mut columns: Vec<ArrayRef> = b.columns().to_vec();
        if n == 0 {
            let old = columns[i].as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            let mut values: Vec<Option<i64>> = old.iter().collect();
            values[0] = Some(253_402_214_400_000_000); // 9999-12-31T00:00:00Z in µs
            let tz = match old.data_type() {
                arrow::datatypes::DataType::Timestamp(_, tz) => tz.clone(),
                _ => None,
            };
            columns[i] =
                std::sync::Arc::new(TimestampMicrosecondArray::from(values).with_timezone_opt(tz));
        }
        rewritten.push(RecordBatch::try_new(schema.clone(), columns).unwrap());
    }
    let file = std::fs::File::create(&path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    for b in &rewritten {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    quiver_tests::assert_refused(
        &repo,
        &[
            "retrieve",
            "--entities",
            "data/labels.parquet",
            "--features",
            "customer_profile:age",
            "--output",
            "t.parquet",
        ],
        "outside what a timestamp holds",
    );
    let out = quiver(
        &repo,
        &["materialize-incremental", "--views", "customer_profile"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("9999-12-31"), "{err}");
}
