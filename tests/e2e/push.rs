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
pub(crate) fn push_demo(repo: &Path, redis: &RedisServer, source_path: &str) {
    push_demo_on(
        repo,
        &crate::materialize::redis_yaml(&redis.url()),
        source_path,
    );
}

/// [`push_demo`] with any `online_store:` block.
pub(crate) fn push_demo_on(repo: &Path, online_store: &str, source_path: &str) {
    std::fs::write(
        repo.join("quiver.yaml"),
        format!("project: push_demo\ndefinitions: [\"features/*.yaml\"]\n{online_store}"),
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

/// Writing needs a write scope (issue 12): `online:write` for online pushes and writes,
/// `offline:write` as well for `to: offline`; a read-only token is refused (403) and writes
/// nothing (HTTP here; gRPC goes through the same `Authenticator::check`).
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
