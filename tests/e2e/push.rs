//! Pushes and writes over HTTP (issue 12): Feast's request bodies, recorded from its client,
//! write the online store and are read back by the next request; older pushes never replace
//! newer values; bad input is refused whole with a message and writes nothing; scopes.

use std::path::Path;

use quiver_tests::{RedisServer, quiver};
use serde_json::{Value as J, json};

use crate::materialize::json;
use crate::serve::{http, setup, start, wait_ready};

/// A push source over the quickstart's driver statistics, and a view it feeds.
const PUSH_DEFINITIONS: &str = "
push_sources:
  - name: driver_events
    batch_source: driver_stats_source
    schema:
      driver_id: int64
      event_timestamp: timestamp
      created: timestamp
      conv_rate: float32
      avg_daily_trips: int64
      city: string

feature_views:
  - name: driver_live
    entities: [driver]
    source: driver_events
    ttl: 0
    features:
      - {name: conv_rate, type: float32}
      - {name: avg_daily_trips, type: int64}
      - {name: city, type: string}
";

fn with_push_source(repo: &Path) {
    std::fs::write(repo.join("features/push.yaml"), PUSH_DEFINITIONS).unwrap();
    json(&quiver(repo, &["--format", "json", "apply"]));
}

async fn read(addr: std::net::SocketAddr, drivers: &[i64]) -> J {
    let body = json!({
        "features": ["driver_live:conv_rate", "driver_live:avg_daily_trips", "driver_live:city"],
        "entities": {"driver_id": drivers},
    });
    let (status, answer) = http(addr, "POST", "/get-online-features", &body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// The values and statuses of feature `i` (0: driver_id) of an answer.
fn column(answer: &J, i: usize) -> (Vec<J>, Vec<J>) {
    let r = &answer["results"][i];
    (
        r["values"].as_array().unwrap().clone(),
        r["statuses"].as_array().unwrap().clone(),
    )
}

/// Feast 0.67's remote online store writes through `POST /write-to-online-store` with this
/// body (recorded, `tests/feast/fixtures/push/sdk_write_to_online_store.json`: naive UTC
/// timestamps with and without microseconds, `created`, a 2^53+1 integer): a push source's
/// view takes it, and the next read returns it; a push to the source writes the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feast_write_bodies_are_read_back_by_the_next_request() {
    let redis = RedisServer::start().unwrap();
    let (_tmp, repo) = setup(&redis);
    with_push_source(&repo);
    let server = start(&repo).await;
    wait_ready(server.http).await;

    let body = json!({
        "feature_view_name": "driver_live",
        "df": {
            "driver_id": [1001, 1002],
            "conv_rate": [0.5, 0.25],
            "avg_daily_trips": [7, 9007199254740993i64],
            "city": ["fast", "na\u{ef}ve \"q\""],
            "event_timestamp": ["2026-11-30T07:00:00", "2026-11-30T07:00:00.123456"],
            "created": ["2026-11-30T07:00:01", "2026-11-30T07:00:01"]
        },
        "allow_registry_cache": false
    });
    let (status, answer) = http(
        server.http,
        "POST",
        "/write-to-online-store",
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["stored"], 2, "{answer}");
    let got = read(server.http, &[1001, 1002, 1003]).await;
    let (values, statuses) = column(&got, 1);
    assert_eq!(values, [json!(0.5), json!(0.25), J::Null]);
    assert_eq!(statuses, ["PRESENT", "PRESENT", "NOT_FOUND"]);
    assert_eq!(
        column(&got, 2).0,
        [json!(7), json!(9007199254740993i64), J::Null]
    );
    assert_eq!(
        column(&got, 3).0,
        [json!("fast"), json!("na\u{ef}ve \"q\""), J::Null]
    );
    let times = got["results"][1]["event_timestamps"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(times[0], "2026-11-30T07:00:00Z");
    assert_eq!(times[1], "2026-11-30T07:00:00.123456Z");

    // A push to the source: RFC 3339 with an offset, no created (the receive time).
    let push = json!({
        "push_source_name": "driver_events",
        "to": "online",
        "df": {
            "driver_id": [1001],
            "event_timestamp": ["2026-11-30T09:00:00+01:00"],
            "conv_rate": [0.75],
            "avg_daily_trips": [8],
            "city": ["later"],
            "unused_column": ["ignored"]
        }
    });
    let (status, answer) = http(server.http, "POST", "/push", &push.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["views"], json!(["driver_live"]));
    let got = read(server.http, &[1001]).await;
    assert_eq!(column(&got, 1).0, [json!(0.75)]);
    assert_eq!(
        got["results"][1]["event_timestamps"][0],
        "2026-11-30T08:00:00Z"
    );

    // An older event arriving late (or a replay of the first write) changes nothing.
    let (status, answer) = http(
        server.http,
        "POST",
        "/write-to-online-store",
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["stored"], 0,
        "1001 has a newer value, 1002 the same: {answer}"
    );
    let got = read(server.http, &[1001, 1002]).await;
    assert_eq!(column(&got, 1).0, [json!(0.75), json!(0.25)]);
    server.stop().await;
}

/// An error answer's message: `{"error": …}`, or Feast's shape (a JSON string of
/// `{module, class, message}`).
fn error_message(answer: &J) -> String {
    match answer {
        J::Object(o) if o.contains_key("error") => o["error"].as_str().unwrap().to_string(),
        J::String(s) => match serde_json::from_str::<J>(s) {
            Ok(inner) => format!(
                "{}: {}",
                inner["class"],
                inner["message"].as_str().unwrap_or("")
            ),
            Err(_) => s.clone(),
        },
        other => other.to_string(),
    }
}

/// Bad input is refused whole — 4xx with a message naming the problem — and nothing of it
/// is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_writes_are_refused_and_write_nothing() {
    let redis = RedisServer::start().unwrap();
    let (_tmp, repo) = setup(&redis);
    with_push_source(&repo);
    let server = start(&repo).await;
    wait_ready(server.http).await;
    let good_df = || {
        json!({
            "driver_id": [1001, 1002],
            "event_timestamp": ["2026-11-30T07:00:00Z", "2026-11-30T07:00:00Z"],
            "conv_rate": [0.5, 0.25],
            "avg_daily_trips": [7, 8],
            "city": ["a", "b"]
        })
    };
    let good_body = || json!({"push_source_name": "driver_events", "df": good_df()}).to_string();
    let with = |column: &str, values: J| {
        let mut df = good_df();
        df[column] = values;
        json!({"push_source_name": "driver_events", "df": df})
    };
    let without = |column: &str| {
        let mut df = good_df();
        df.as_object_mut().unwrap().remove(column);
        json!({"push_source_name": "driver_events", "df": df})
    };
    let cases: Vec<(&str, J, u16, &str)> = vec![
        (
            "/push",
            json!({"push_source_name": "nope", "df": good_df()}),
            422,
            "unknown push source `nope`",
        ),
        (
            "/write-to-online-store",
            json!({"feature_view_name": "nope", "df": good_df()}),
            404,
            "unknown feature view `nope`",
        ),
        (
            "/push",
            without("city"),
            400,
            "no column `city` (feature view `driver_live` needs it)",
        ),
        ("/push", without("driver_id"), 400, "no column `driver_id`"),
        (
            "/push",
            without("event_timestamp"),
            400,
            "no event time column `event_timestamp`",
        ),
        (
            "/push",
            with("conv_rate", json!([0.5, "abc"])),
            400,
            "df column `conv_rate`, row 1: \"abc\" is not a float32",
        ),
        (
            "/push",
            with("avg_daily_trips", json!([1.5, 2])),
            400,
            "row 0: 1.5 is not an int64",
        ),
        (
            "/push",
            with("conv_rate", json!([0.5])),
            400,
            "df columns differ in length",
        ),
        (
            "/push",
            with(
                "event_timestamp",
                json!(["yesterday-ish", "2026-11-30T07:00:00Z"]),
            ),
            400,
            "is not a timestamp",
        ),
        (
            "/push",
            with("event_timestamp", json!([null, "2026-11-30T07:00:00Z"])),
            400,
            "row 0: the event time `event_timestamp` is null",
        ),
        (
            "/push",
            with("driver_id", json!([null, 1002])),
            400,
            "row 0: a join key of feature view `driver_live` is null",
        ),
        (
            "/push",
            with("city", json!("abc")),
            400,
            "df column `city` is a string, not a list of values",
        ),
        (
            "/push",
            json!({"push_source_name": "driver_events", "df": good_df(), "to": "elsewhere"}),
            400,
            "`to` is `elsewhere`",
        ),
        (
            "/push",
            json!({"push_source_name": "driver_events"}),
            400,
            "missing field `df`",
        ),
    ];
    for (path, body, status, message) in cases {
        let (got, answer) = http(server.http, "POST", path, &body.to_string()).await;
        let text = error_message(&answer);
        assert_eq!(got, status, "{path} {body}: {text}");
        assert!(text.contains(message), "{path} {body}: {text}");
    }
    let (got, answer) = http(
        server.http,
        "POST",
        "/push",
        &with("conv_rate", json!([0.5, 1e39])).to_string(),
    )
    .await;
    assert_eq!(got, 400, "a float32 that would be infinity: {answer}");
    assert!(error_message(&answer).contains("out of range"), "{answer}");
    // A write must say it is JSON: a form post from a web page must not write.
    let raw = format!(
        "POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        good_body().len(),
        good_body()
    );
    let mut tcp = tokio::net::TcpStream::connect(server.http).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, raw.as_bytes())
        .await
        .unwrap();
    let mut reply = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut tcp, &mut reply)
        .await
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 415"), "{reply}");
    // Over the row limit (1,000 in these tests): 413.
    let n = 1001;
    let big = json!({"push_source_name": "driver_events", "df": {
        "driver_id": vec![1; n], "event_timestamp": vec!["2026-11-30T07:00:00Z"; n],
        "conv_rate": vec![0.5; n], "avg_daily_trips": vec![1; n], "city": vec!["a"; n],
    }});
    let (got, answer) = http(server.http, "POST", "/push", &big.to_string()).await;
    assert_eq!(got, 413, "{answer}");
    assert!(answer.to_string().contains("max_entity_rows"), "{answer}");

    let got = read(server.http, &[1001, 1002]).await;
    assert_eq!(
        column(&got, 1).1,
        ["NOT_FOUND", "NOT_FOUND"],
        "nothing was written: {got}"
    );
    server.stop().await;
}

/// Feast's `GrpcFeatureServer` (`feast listen`; no package, so `/GrpcFeatureServer/Push`):
/// one row as a string map or as typed values, on the gRPC port, read back over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_push_and_write_take_one_row_each() {
    use quiver_proto::feast::types::{Value as PbValue, value::Val};
    use quiver_proto::grpc_feature_server_client::GrpcFeatureServerClient;
    use quiver_proto::{PushRequest, WriteToOnlineStoreRequest};

    let redis = RedisServer::start().unwrap();
    let (_tmp, repo) = setup(&redis);
    with_push_source(&repo);
    let server = start(&repo).await;
    wait_ready(server.http).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = GrpcFeatureServerClient::new(channel);
    let strings = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let pushed = client
        .push(PushRequest {
            features: strings(&[
                ("driver_id", "1001"),
                ("event_timestamp", "2026-11-30T07:00:00Z"),
                ("conv_rate", "0.5"),
                ("avg_daily_trips", "7"),
                ("city", "Lyon"),
            ]),
            stream_feature_view: "driver_events".into(),
            to: "online".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(pushed.into_inner().status);
    let typed = |v: Val| PbValue { val: Some(v) };
    let written = client
        .write_to_online_store(WriteToOnlineStoreRequest {
            typed_features: [
                ("driver_id".to_string(), typed(Val::Int64Val(1002))),
                (
                    "event_timestamp".to_string(),
                    typed(Val::UnixTimestampVal(1_796_022_000)),
                ),
                ("conv_rate".to_string(), typed(Val::FloatVal(0.25))),
                ("avg_daily_trips".to_string(), typed(Val::Int64Val(8))),
                ("city".to_string(), typed(Val::StringVal("Nice".into()))),
            ]
            .into(),
            feature_view_name: "driver_live".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(written.into_inner().status);
    let got = read(server.http, &[1001, 1002]).await;
    assert_eq!(column(&got, 1).0, [json!(0.5), json!(0.25)]);
    assert_eq!(column(&got, 3).0, [json!("Lyon"), json!("Nice")]);
    assert_eq!(
        got["results"][1]["event_timestamps"][1],
        "2026-11-30T07:00:00Z"
    );

    // Refusals carry gRPC codes: both maps, an unknown source, a missing feature.
    let both = client
        .push(PushRequest {
            features: strings(&[("driver_id", "1")]),
            typed_features: [("city".to_string(), typed(Val::StringVal("x".into())))].into(),
            stream_feature_view: "driver_events".into(),
            to: "online".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(both.code(), tonic::Code::InvalidArgument, "{both:?}");
    let unknown = client
        .push(PushRequest {
            stream_feature_view: "nope".into(),
            to: "online".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    let missing = client
        .push(PushRequest {
            features: strings(&[
                ("driver_id", "1003"),
                ("event_timestamp", "2026-11-30T07:00:00Z"),
            ]),
            stream_feature_view: "driver_events".into(),
            to: "online".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::InvalidArgument, "{missing:?}");
    assert!(missing.message().contains("no column"), "{missing:?}");
    server.stop().await;
}

/// Feast 0.67's own SDK (`online_store: type: remote`) pushing and writing through Quiver, then
/// reading back (`tests/feast/sdk_push_against_quiver.py`). Runs where `QUIVER_FEAST_PYTHON`
/// names a Python with `feast==0.67.*` (`.ci/run` installs one); elsewhere it says so loudly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feast_sdk_pushes_and_writes_through_quiver() {
    let Some(python) = std::env::var_os("QUIVER_FEAST_PYTHON") else {
        eprintln!(
            "!! SKIPPED: QUIVER_FEAST_PYTHON is not set, so the Feast SDK did not push through Quiver (.ci/run sets it)"
        );
        return;
    };
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    push_demo(repo, &redis, "data/driver_stats.parquet");
    let server = start(repo).await;
    wait_ready(server.http).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("feast/sdk_push_against_quiver.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .args(["--url", &format!("http://{}", server.http)])
        .output()
        .await
        .unwrap();
    server.stop().await;
    assert!(out.status.success(), "{}", quiver_tests::describe(&out));
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
}

/// A project with a batch source at `source_path` (one seed row, written at
/// `data/driver_stats.parquet` or `data/driver_stats/seed.parquet` for a directory), a push
/// source over it and a view over the push source; applied.
fn push_demo(repo: &Path, redis: &RedisServer, source_path: &str) {
    std::fs::write(
        repo.join("quiver.yaml"),
        format!(
            "project: push_demo\ndefinitions: [\"features/*.yaml\"]\n{}",
            crate::materialize::redis_yaml(&redis.url())
        ),
    )
    .unwrap();
    std::fs::create_dir_all(repo.join("features")).unwrap();
    std::fs::write(
        repo.join("features/defs.yaml"),
        PUSH_DEMO.replace("data/driver_stats.parquet", source_path),
    )
    .unwrap();
    let seed = if source_path.ends_with(".parquet") {
        repo.join(source_path)
    } else {
        repo.join(source_path).join("seed.parquet")
    };
    write_driver_stats(&seed);
    json(&quiver(repo, &["--format", "json", "apply"]));
}

const PUSH_DEMO: &str = "
entities:
  - name: driver
    join_keys: [{name: driver_id, type: int64}]
sources:
  - name: driver_stats_source
    path: data/driver_stats.parquet
    timestamp_field: event_timestamp
    created_timestamp_field: created
push_sources:
  - name: driver_events
    batch_source: driver_stats_source
    schema: {driver_id: int64, event_timestamp: timestamp, created: timestamp,
             conv_rate: float32, trips: int64, label: string}
feature_views:
  - name: driver_live
    entities: [driver]
    source: driver_events
    ttl: 3650d
    features:
      - {name: conv_rate, type: float32}
      - {name: trips, type: int64}
      - {name: label, type: string}
";

/// Offline pushes (`to: offline`, `online_and_offline`) become new Parquet files of the batch
/// source — whole, fsynced, renamed — that materialization then reads; a batch source that is
/// one file, or a push source without one, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_pushes_become_files_that_materialization_reads() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    push_demo(repo, &redis, "data/driver_stats/");
    let server = start(repo).await;
    wait_ready(server.http).await;
    let push = |to: &str, driver: i64, rate: f64| {
        json!({"push_source_name": "driver_events", "to": to, "df": {
            "driver_id": [driver], "event_timestamp": ["2026-11-30T07:00:00Z"],
            "conv_rate": [rate], "trips": [driver], "label": [format!("d{driver}")]}})
        .to_string()
    };
    let (status, answer) = http(server.http, "POST", "/push", &push("offline", 2001, 0.5)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["views"], json!([]), "nothing online: {answer}");
    let (status, answer) = http(
        server.http,
        "POST",
        "/push",
        &push("online_and_offline", 2002, 0.25),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["stored"], 1, "{answer}");
    let mut files: Vec<String> = std::fs::read_dir(repo.join("data/driver_stats"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        3,
        "seed + two pushes, no temporary file left: {files:?}"
    );
    assert!(
        files.iter().filter(|f| f.starts_with("push-")).count() == 2,
        "{files:?}"
    );
    let body = |drivers: &[i64]| {
        json!({"features": ["driver_live:conv_rate"], "entities": {"driver_id": drivers}})
            .to_string()
    };
    let (_, got) = http(
        server.http,
        "POST",
        "/get-online-features",
        &body(&[2001, 2002]),
    )
    .await;
    assert_eq!(
        got["results"][1]["statuses"],
        json!(["NOT_FOUND", "PRESENT"]),
        "{got}"
    );

    // Materialization reads the pushed files with the rest of the source.
    json(&quiver(
        repo,
        &[
            "--format",
            "json",
            "materialize",
            "2026-11-29T00:00:00Z",
            "2026-11-30T08:00:00Z",
        ],
    ));
    let (_, got) = http(
        server.http,
        "POST",
        "/get-online-features",
        &body(&[1, 2001, 2002]),
    )
    .await;
    assert_eq!(
        got["results"][1]["statuses"],
        json!(["PRESENT", "PRESENT", "PRESENT"]),
        "{got}"
    );
    assert_eq!(
        got["results"][1]["values"],
        json!([0.1f32 as f64, 0.5, 0.25]),
        "{got}"
    );
    server.stop().await;

    // A batch source that is one file cannot take new files.
    let other = tempfile::tempdir().unwrap();
    push_demo(other.path(), &redis, "data/driver_stats.parquet");
    let server = start(other.path()).await;
    wait_ready(server.http).await;
    let (status, answer) = http(server.http, "POST", "/push", &push("offline", 2001, 0.5)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("reads one file"), "{answer}");
    let (status, answer) = http(
        server.http,
        "POST",
        "/push",
        &push("online_and_offline", 2003, 0.5),
    )
    .await;
    assert_eq!(status, 400, "nothing written online either: {answer}");
    let (_, got) = http(server.http, "POST", "/get-online-features", &body(&[2003])).await;
    assert_eq!(got["results"][1]["statuses"], json!(["NOT_FOUND"]), "{got}");
    server.stop().await;
}

/// One seed row of the batch source, with the columns the push source declares.
fn write_driver_stats(path: &Path) {
    use arrow::array::{Float32Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("driver_id", DataType::Int64, false),
        Field::new("event_timestamp", ts(), false),
        Field::new("created", ts(), true),
        Field::new("conv_rate", DataType::Float32, true),
        Field::new("trips", DataType::Int64, true),
        Field::new("label", DataType::Utf8, true),
    ]));
    let t0 = 1_796_018_400_000_000i64; // 2026-11-30T06:00:00Z
    let batch = arrow::record_batch::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(TimestampMicrosecondArray::from(vec![t0]).with_timezone("UTC")),
            Arc::new(TimestampMicrosecondArray::from(vec![t0]).with_timezone("UTC")),
            Arc::new(Float32Array::from(vec![0.1])),
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(StringArray::from(vec!["seed"])),
        ],
    )
    .unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Push sources are part of the registry like everything else: `plan` lists them, `registry
/// describe` and `list` show them, and a push source that feeds no online view refuses online
/// pushes instead of answering 200 for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_sources_show_in_plan_describe_and_list() {
    let redis = RedisServer::start().unwrap();
    let (_tmp, repo) = setup(&redis);
    std::fs::write(repo.join("features/push.yaml"), PUSH_DEFINITIONS).unwrap();
    let plan = json(&quiver(&repo, &["--format", "json", "plan"]));
    let changes = plan["changes"].as_array().unwrap();
    assert!(
        changes.iter().any(|c| c["kind"] == "push_source"
            && c["name"] == "driver_events"
            && c["action"] == "add"),
        "{plan}"
    );
    json(&quiver(&repo, &["--format", "json", "apply"]));
    // Only a push source's schema changes: the plan says so (it once said "no changes").
    std::fs::write(
        repo.join("features/push.yaml"),
        PUSH_DEFINITIONS.replace(
            "      city: string\n",
            "      city: string\n      acc_rate: float32\n",
        ),
    )
    .unwrap();
    let plan = json(&quiver(&repo, &["--format", "json", "plan"]));
    assert!(
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "push_source" && c["action"] == "change"),
        "{plan}"
    );
    let described = json(&quiver(
        &repo,
        &["--format", "json", "registry", "describe", "driver_events"],
    ));
    assert_eq!(
        described["batch_source"], "driver_stats_source",
        "{described}"
    );
    let listed = json(&quiver(&repo, &["--format", "json", "registry", "list"]));
    assert_eq!(
        listed["push_sources"][0]["name"], "driver_events",
        "{listed}"
    );

    // A push source whose views are all offline only: an online push is refused.
    std::fs::write(
        repo.join("features/push.yaml"),
        PUSH_DEFINITIONS.replace("    ttl: 0\n", "    ttl: 0\n    online: false\n"),
    )
    .unwrap();
    json(&quiver(&repo, &["--format", "json", "apply"]));
    let server = start(&repo).await;
    wait_ready(server.http).await;
    let body = json!({"push_source_name": "driver_events", "df": {"driver_id": [1]}});
    let (status, answer) = http(server.http, "POST", "/push", &body.to_string()).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        error_message(&answer).contains("feeds no online feature view"),
        "{answer}"
    );
    server.stop().await;
}

/// `quiver push SOURCE FILE`: JSON lines and CSV pushed straight to the stores, through the
/// same checks; a bad row fails the command (exit 2) naming it, with what was pushed before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pushes_files_online_and_offline() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    push_demo(repo, &redis, "data/driver_stats/");
    let lines = [
        r#"{"driver_id": 3001, "event_timestamp": "2026-11-30T07:00:00Z", "conv_rate": 0.5, "trips": 1, "label": "a"}"#,
        r#"{"driver_id": 3002, "event_timestamp": "2026-11-30T07:00:00Z", "conv_rate": 0.25, "trips": 2, "label": "b"}"#,
        r#"{"driver_id": 3003, "event_timestamp": "2026-11-30T07:00:00Z", "conv_rate": 0.75, "trips": 3, "label": null}"#,
    ];
    std::fs::write(repo.join("rows.jsonl"), lines.join("\n")).unwrap();
    let out = json(&quiver(
        repo,
        &[
            "--format",
            "json",
            "push",
            "driver_events",
            "rows.jsonl",
            "--to",
            "online_and_offline",
            "--batch-rows",
            "2",
        ],
    ));
    assert_eq!(
        (
            out["rows"].clone(),
            out["writes"].clone(),
            out["stored"].clone()
        ),
        (json!(3), json!(2), json!(3)),
        "{out}"
    );
    let pushed_files = std::fs::read_dir(repo.join("data/driver_stats"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("push-")
        })
        .count();
    assert_eq!(pushed_files, 2, "one file per write");
    let got = json(&quiver(
        repo,
        &[
            "--format",
            "json",
            "online",
            "get",
            "driver_live",
            "--key",
            "driver_id=3002",
        ],
    ));
    assert!(got.to_string().contains("0.25"), "{got}");

    std::fs::write(
        repo.join("rows.csv"),
        "driver_id,event_timestamp,conv_rate,trips,label\n3004,2026-11-30T08:00:00Z,0.5,4,x\n3005,2026-11-30T08:00:00Z,abc,5,y\n",
    )
    .unwrap();
    let out = quiver(repo, &["push", "driver_events", "rows.csv"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        quiver_tests::describe(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("conv_rate") && err.contains("0 rows pushed before this"),
        "{err}"
    );
    let got = json(&quiver(
        repo,
        &[
            "--format",
            "json",
            "online",
            "get",
            "driver_live",
            "--key",
            "driver_id=3004",
        ],
    ));
    assert!(
        !got.to_string().contains("\"x\""),
        "nothing of the failed write: {got}"
    );
}

/// A small deterministic generator (SplitMix64), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One row of the oracle: entity, event and created time (ns), and a unique id (stored as
/// `trips`, so the served value names the row that won).
#[derive(Clone, Copy, Debug)]
struct Row {
    driver: i64,
    event: i64,
    created: i64,
    id: i64,
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// The batch source's history as one Parquet file of `rows`.
fn write_history(path: &Path, rows: &[Row]) {
    use arrow::array::{Float32Array, Int64Array, StringArray, TimestampNanosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;
    let ts = || DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("driver_id", DataType::Int64, false),
        Field::new("event_timestamp", ts(), false),
        Field::new("created", ts(), true),
        Field::new("conv_rate", DataType::Float32, true),
        Field::new("trips", DataType::Int64, true),
        Field::new("label", DataType::Utf8, true),
    ]));
    let times = |f: fn(&Row) -> i64| {
        Arc::new(
            TimestampNanosecondArray::from(rows.iter().map(f).collect::<Vec<_>>())
                .with_timezone("UTC"),
        )
    };
    let batch = arrow::record_batch::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.driver).collect::<Vec<_>>(),
            )),
            times(|r| r.event),
            times(|r| r.created),
            Arc::new(Float32Array::from(vec![0.5; rows.len()])),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.id).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(vec!["batch"; rows.len()])),
        ],
    )
    .unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// The monotonic rule under concurrency (issue 12): pushes from four clients and a
/// materialization of the same entities, interleaved however the machine runs them; every
/// entity ends with the row of greatest `(event_ts, created_ts)` among all pushed and batch rows.
/// Event times are drawn from a few values, so ties on event time are common and the created
/// time decides. Three seeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_and_materialization_keep_the_greatest_row() {
    let redis = RedisServer::start().unwrap();
    for seed in [1u64, 2, 3] {
        let mut rng = Rng(seed);
        let t0 = 1_796_018_400_000_000_000i64; // 2026-11-30T06:00:00Z
        let drivers = 12i64;
        let mut next_id = 0i64;
        let mut row = |rng: &mut Rng| {
            next_id += 1;
            Row {
                driver: 1 + rng.below(drivers as u64) as i64,
                event: t0 + rng.below(4) as i64 * 60_000_000_000,
                created: t0 + next_id * 1_000 + rng.below(500) as i64 * 1_000_000,
                id: next_id,
            }
        };
        let history: Vec<Row> = (0..200).map(|_| row(&mut rng)).collect();
        let clients: Vec<Vec<Vec<Row>>> = (0..4)
            .map(|_| {
                (0..25)
                    .map(|_| (0..1 + rng.below(4)).map(|_| row(&mut rng)).collect())
                    .collect()
            })
            .collect();

        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path();
        let () = redis::cmd("FLUSHALL")
            .query(&mut redis.client().unwrap())
            .unwrap();
        push_demo(repo, &redis, "data/driver_stats/");
        std::fs::remove_file(repo.join("data/driver_stats/seed.parquet")).unwrap();
        write_history(&repo.join("data/driver_stats/history.parquet"), &history);
        let server = start(repo).await;
        wait_ready(server.http).await;

        let materialize = tokio::process::Command::new(quiver_tests::quiver_bin())
            .current_dir(repo)
            .args([
                "materialize",
                "2026-11-30T00:00:00Z",
                "2026-11-30T12:00:00Z",
            ])
            .output();
        let pushes = clients.iter().map(|requests| {
            let addr = server.http;
            async move {
                for rows in requests {
                    let body = json!({"push_source_name": "driver_events", "df": {
                        "driver_id": rows.iter().map(|r| r.driver).collect::<Vec<_>>(),
                        "event_timestamp": rows.iter().map(|r| rfc3339(r.event)).collect::<Vec<_>>(),
                        "created": rows.iter().map(|r| rfc3339(r.created)).collect::<Vec<_>>(),
                        "conv_rate": vec![0.25; rows.len()],
                        "trips": rows.iter().map(|r| r.id).collect::<Vec<_>>(),
                        "label": vec!["pushed"; rows.len()],
                    }});
                    let (status, answer) = http(addr, "POST", "/push", &body.to_string()).await;
                    assert_eq!(status, 200, "{answer}");
                }
            }
        });
        let (done, ()) = tokio::join!(materialize, async {
            futures::future::join_all(pushes).await;
        });
        let done = done.unwrap();
        assert!(done.status.success(), "{}", quiver_tests::describe(&done));

        let everything = history.iter().chain(clients.iter().flatten().flatten());
        let mut want = std::collections::BTreeMap::new();
        for r in everything {
            let best = want.entry(r.driver).or_insert(*r);
            if (r.event, r.created) > (best.event, best.created) {
                *best = *r;
            }
        }
        let ids: Vec<i64> = (1..=drivers).collect();
        let body = json!({"features": ["driver_live:trips"], "entities": {"driver_id": ids}});
        let (_, got) = http(
            server.http,
            "POST",
            "/get-online-features",
            &body.to_string(),
        )
        .await;
        let served: Vec<J> = got["results"][1]["values"].as_array().unwrap().clone();
        for (i, driver) in (1..=drivers).enumerate() {
            let expected = want.get(&driver).map_or(J::Null, |r| json!(r.id));
            assert_eq!(
                served[i],
                expected,
                "seed {seed}, driver {driver}: {:?}",
                want.get(&driver)
            );
        }
        server.stop().await;
    }
}

/// A push whose offline file was written but whose online write failed (Redis killed between
/// the two) answers 503; retried once Redis is back, it leaves everything consistent: the
/// online value, a history whose duplicate row is identical, and `verify` agreeing after a
/// materialization.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_failing_between_offline_and_online_is_made_whole_by_its_retry() {
    let mut redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    push_demo(repo, &redis, "data/driver_stats/");
    let server = start(repo).await;
    wait_ready(server.http).await;
    let body = json!({"push_source_name": "driver_events", "to": "online_and_offline", "df": {
        "driver_id": [4001], "event_timestamp": ["2026-11-30T07:00:00Z"],
        "created": ["2026-11-30T07:00:01Z"], "conv_rate": [0.5], "trips": [41], "label": ["x"]}})
    .to_string();
    redis.stop();
    let (status, answer) = http(server.http, "POST", "/push", &body).await;
    assert_eq!(status, 503, "{answer}");
    let files = || {
        std::fs::read_dir(repo.join("data/driver_stats"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("push-")
            })
            .count()
    };
    assert_eq!(files(), 1, "the history was written first");
    redis.restart().unwrap();
    wait_ready(server.http).await;
    let (status, answer) = http(server.http, "POST", "/push", &body).await;
    assert_eq!(status, 200, "the retry: {answer}");
    assert_eq!(files(), 2, "the retry appends the same row again");
    let read =
        json!({"features": ["driver_live:trips"], "entities": {"driver_id": [4001]}}).to_string();
    let (_, got) = http(server.http, "POST", "/get-online-features", &read).await;
    assert_eq!(got["results"][1]["values"], json!([41]), "{got}");
    json(&quiver(
        repo,
        &[
            "--format",
            "json",
            "materialize",
            "2026-11-30T00:00:00Z",
            "2026-11-30T12:00:00Z",
        ],
    ));
    let (_, got) = http(server.http, "POST", "/get-online-features", &read).await;
    assert_eq!(got["results"][1]["values"], json!([41]), "{got}");
    let verified = quiver(repo, &["--format", "json", "verify"]);
    assert!(
        verified.status.success(),
        "{}",
        quiver_tests::describe(&verified)
    );
    server.stop().await;
}

/// Writing needs a write scope (issue 12): `online:write` for online pushes and writes,
/// `offline:write` as well for `to: offline`; a read-only token is refused (403) and writes
/// nothing, over HTTP and gRPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_a_write_scope() {
    use quiver_feature_server::auth::hash_token;
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    push_demo(repo, &redis, "data/driver_stats/");
    let token = |name: &str, secret: &str, scopes: &[&str]| quiver_registry::TokenConfig {
        name: name.into(),
        sha256: Some(hash_token(secret)),
        token_file: None,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
    };
    let config = quiver_registry::AuthConfig {
        tokens: vec![
            token("reader", "reader-secret-0123456789", &["online:read"]),
            token(
                "writer",
                "writer-secret-0123456789",
                &["online:write", "online:read"],
            ),
            token(
                "both",
                "both-secret-0123456789",
                &["online:write", "offline:write"],
            ),
        ],
        metrics_public: true,
    };
    let auth = quiver_feature_server::Authenticator::from_config(Some(&config), repo).unwrap();
    let server =
        crate::serve::start_full(repo, auth, None, std::time::Duration::from_secs(2)).await;
    let push = |to: &str| {
        json!({"push_source_name": "driver_events", "to": to, "df": {
            "driver_id": [5001], "event_timestamp": ["2026-11-30T07:00:00Z"],
            "conv_rate": [0.5], "trips": [1], "label": ["x"]}})
        .to_string()
    };
    let send = |body: String, token: Option<&'static str>| async move {
        crate::security::request(server.http, "POST", "/push", &body, token)
            .await
            .0
    };
    assert_eq!(send(push("online"), None).await, 401);
    assert_eq!(
        send(push("online"), Some("reader-secret-0123456789")).await,
        403
    );
    assert_eq!(
        send(push("offline"), Some("writer-secret-0123456789")).await,
        403
    );
    assert_eq!(
        send(push("online_and_offline"), Some("writer-secret-0123456789")).await,
        403
    );
    let files = || {
        std::fs::read_dir(repo.join("data/driver_stats"))
            .unwrap()
            .count()
    };
    assert_eq!(files(), 1, "no refused push wrote a file");
    let read =
        json!({"features": ["driver_live:trips"], "entities": {"driver_id": [5001]}}).to_string();
    let (_, got) = crate::security::request(
        server.http,
        "POST",
        "/get-online-features",
        &read,
        Some("writer-secret-0123456789"),
    )
    .await;
    assert!(got.contains("NOT_FOUND"), "nothing written: {got}");
    assert_eq!(
        send(push("online"), Some("writer-secret-0123456789")).await,
        200
    );
    assert_eq!(
        send(push("online_and_offline"), Some("both-secret-0123456789")).await,
        200
    );
    assert_eq!(files(), 2);
    server.stop().await;
}
