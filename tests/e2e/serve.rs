//! The feature server on real sockets (port 0) over Redis: gRPC and HTTP agree, one store round
//! trip per request, registry hot reload under traffic, Redis down → 503 and recovery.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_feature_server::{FeatureService, Limits, ServeOptions, Snapshot};
use quiver_proto::feast::serving::get_online_features_request::Kind;
use quiver_proto::feast::serving::serving_service_client::ServingServiceClient;
use quiver_proto::feast::serving::{
    GetFeastServingInfoRequest, GetFeastServingInfoResponse, GetOnlineFeaturesRequest,
};
use quiver_proto::feast::types::{RepeatedValue, Value as PbValue, value::Val};
use quiver_registry::Repository;
use quiver_tests::{RedisServer, describe, quiver};
use serde_json::Value as J;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::materialize::{json, redis_yaml, repo_ending};

pub(crate) struct Running {
    pub(crate) http: SocketAddr,
    pub(crate) grpc: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Serves the applied registry of `repo` on two fresh ports.
pub(crate) async fn start(repo: &Path) -> Running {
    start_with(repo, quiver_feature_server::Authenticator::open()).await
}

/// Like `start`, with authentication.
async fn start_with(repo: &Path, auth: quiver_feature_server::Authenticator) -> Running {
    start_full(repo, auth, None, Duration::from_millis(500)).await
}

/// Like `start`, with authentication, TLS and a request-head timeout.
pub(crate) async fn start_full(
    repo: &Path,
    auth: quiver_feature_server::Authenticator,
    tls: Option<quiver_feature_server::listener::TlsFiles>,
    header_timeout: Duration,
) -> Running {
    let repository = Repository::open(repo, None, &|_| None).unwrap();
    let registry: Arc<dyn quiver_registry::RegistryStore> = Arc::from(repository.store().unwrap());
    let version = registry.latest().unwrap().unwrap();
    let store = quiver_online_store::open(&repository.config.online_store, &repository.root)
        .await
        .unwrap();
    let service = Arc::new(
        FeatureService::new(
            Snapshot::new(version),
            store,
            None,
            Limits {
                max_entity_rows: 1000,
            },
        )
        .with_repository_root(repository.root.clone()),
    );
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http_addr, grpc_addr) = (http.local_addr().unwrap(), grpc.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let options = ServeOptions {
        max_body_bytes: 1 << 20,
        registry_poll: Duration::from_millis(100),
        ready_timeout: Duration::from_millis(300),
        training: Some(quiver_feature_server::Training::new(
            repository.root.clone(),
            1 << 20,
        )),
        auth: Arc::new(auth),
        tls,
        header_timeout,
        body_timeout: Duration::from_secs(10),
        shutdown_grace: Duration::from_secs(10),
        connections: Default::default(),
    };
    let task = tokio::spawn(quiver_feature_server::serve(
        http,
        Some(grpc),
        service,
        registry,
        options,
        async move {
            let _ = rx.await;
        },
    ));
    Running {
        http: http_addr,
        grpc: grpc_addr,
        stop: Some(tx),
        task,
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
pub(crate) async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, J) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    let status: u16 = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
    (
        status,
        serde_json::from_str(body).unwrap_or(J::String(body.to_string())),
    )
}

/// Waits (up to 5 s) for `/ready` to be 200 — a server checks its store's data once after it
/// starts before it says ready — and returns its body.
pub(crate) async fn wait_ready(addr: SocketAddr) -> J {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = http(addr, "GET", "/ready", "").await;
        if status == 200 {
            return body;
        }
        assert!(Instant::now() < deadline, "not ready: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) const MODEL_V1: &str = r#"{"feature_service": "model_v1", "entities": {"driver_id": [1001, 1002, 1001], "customer_id": [1, 2, 99999]}}"#;

pub(crate) fn setup(redis: &RedisServer) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    // Data ending now, so values are within their ttl.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let repo = repo_ending(tmp.path(), 50, 3, &redis_yaml(&redis.url()), &now);
    json(&quiver(
        &repo,
        &["--format", "json", "materialize-incremental"],
    ));
    (tmp, repo)
}

/// A gRPC channel is one HTTP/2 connection carrying many calls at once; the server runs the
/// first calls in flight on the connection's task and spawns the rest. Every call must get its
/// own entity's answer whichever way it ran; the health service and an unknown method answer on
/// the same port; HTTP/1.1 there is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_grpc_connection_carries_many_concurrent_calls() {
    let redis = RedisServer::start().unwrap();
    let (_tmp, repo) = setup(&redis);
    let server = start(&repo).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = ServingServiceClient::new(channel.clone());
    let request = |driver: i64| GetOnlineFeaturesRequest {
        kind: Some(Kind::FeatureService("model_v1".into())),
        entities: [
            ("driver_id".to_string(), ints(&[driver])),
            ("customer_id".to_string(), ints(&[1 + driver % 3])),
        ]
        .into(),
        ..Default::default()
    };
    // Known drivers and unknown ones (NOT_FOUND), so answers differ from call to call.
    let drivers: Vec<i64> = (1001..1051).chain(90_000..90_014).collect();
    let mut one_by_one = Vec::new();
    for &d in &drivers {
        let mut c = client.clone();
        one_by_one.push(
            c.get_online_features(request(d))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let found = |r: &quiver_proto::feast::serving::GetOnlineFeaturesResponse| {
        r.results[2].statuses[0] == quiver_proto::feast::serving::FieldStatus::Present as i32
    };
    assert!(found(&one_by_one[0]) && !found(&one_by_one[60]));
    for round in 0..3 {
        let calls = drivers.iter().map(|&d| {
            let mut c = client.clone();
            async move { c.get_online_features(request(d)).await }
        });
        let at_once = futures::future::join_all(calls).await;
        for ((d, got), want) in drivers.iter().zip(at_once).zip(&one_by_one) {
            assert_eq!(
                &got.unwrap().into_inner(),
                want,
                "driver {d}, round {round}"
            );
        }
    }

    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "feast.serving.ServingService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    let mut raw = tonic::client::Grpc::new(channel);
    raw.ready().await.unwrap();
    let unknown = raw
        .unary::<_, GetFeastServingInfoResponse, _>(
            tonic::Request::new(GetFeastServingInfoRequest {}),
            "/feast.serving.ServingService/NoSuchMethod"
                .parse()
                .unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::Unimplemented);

    let mut h1 = tokio::net::TcpStream::connect(server.grpc).await.unwrap();
    h1.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), h1.read_to_end(&mut got)).await;
    assert!(
        !String::from_utf8_lossy(&got).contains("200 OK"),
        "HTTP/1.1 answered on the gRPC port"
    );
    server.stop().await;
}

fn ints(v: &[i64]) -> RepeatedValue {
    RepeatedValue {
        val: v
            .iter()
            .map(|i| PbValue {
                val: Some(Val::Int64Val(*i)),
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_http_serve_the_same_vectors() {
    let redis = RedisServer::start().unwrap();
    let (_tmp, repo) = setup(&redis);
    let server = start(&repo).await;
    let (status, body) = http(server.http, "POST", "/get-online-features", MODEL_V1).await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<String> =
        serde_json::from_value(body["metadata"]["feature_names"].clone()).unwrap();
    assert_eq!(names.len(), 22, "2 join keys + 20 features: {names:?}");

    let mut client = ServingServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    let info = client
        .get_feast_serving_info(GetFeastServingInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(info.version.starts_with("quiver"));
    let ints = |v: &[i64]| RepeatedValue {
        val: v
            .iter()
            .map(|i| PbValue {
                val: Some(Val::Int64Val(*i)),
            })
            .collect(),
    };
    let request = GetOnlineFeaturesRequest {
        kind: Some(Kind::FeatureService("model_v1".into())),
        entities: [
            ("driver_id".to_string(), ints(&[1001, 1002, 1001])),
            ("customer_id".to_string(), ints(&[1, 2, 99999])),
        ]
        .into(),
        ..Default::default()
    };
    let reply = client
        .get_online_features(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.metadata.unwrap().feature_names.unwrap().val, names);
    let statuses = |i: usize| {
        body["results"][i]["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    for (i, vector) in reply.results.iter().enumerate() {
        let grpc_statuses: Vec<String> = vector
            .statuses
            .iter()
            .map(|s| {
                quiver_proto::feast::serving::FieldStatus::try_from(*s)
                    .unwrap()
                    .as_str_name()
                    .to_string()
            })
            .collect();
        assert_eq!(grpc_statuses, statuses(i), "column {}", names[i]);
        let http_ts = body["results"][i]["event_timestamps"].as_array().unwrap();
        for (ts, h) in vector.event_timestamps.iter().zip(http_ts) {
            let ns = ts.seconds * 1_000_000_000 + i64::from(ts.nanos);
            assert_eq!(
                quiver_feature_server::http::rfc3339(ns),
                h.as_str().unwrap()
            );
        }
    }
    // conv_rate (float32) agrees to the bit; the unknown customer is NOT_FOUND.
    let conv = names.iter().position(|n| n == "conv_rate").unwrap();
    let Some(Val::FloatVal(x)) = reply.results[conv].values[0].val else {
        panic!("float")
    };
    assert_eq!(
        body["results"][conv]["values"][0].as_f64().unwrap(),
        f64::from(x),
        "float32 in JSON is its exact float64 widening, as Feast writes it"
    );
    let balance = names.iter().position(|n| n == "current_balance").unwrap();
    assert_eq!(statuses(balance)[2], "NOT_FOUND");

    // Bad input over gRPC: a clear status and message, never INTERNAL or a dropped connection.
    let service = |name: &str| Some(Kind::FeatureService(name.into()));
    let refs = |r: &[&str]| {
        Some(Kind::Features(quiver_proto::feast::serving::FeatureList {
            val: r.iter().map(|s| s.to_string()).collect(),
        }))
    };
    let floats = RepeatedValue {
        val: vec![PbValue {
            val: Some(Val::DoubleVal(1.5)),
        }],
    };
    let many: Vec<i64> = (0..1001).collect();
    type Case<'a> = (
        Option<Kind>,
        Vec<(&'a str, RepeatedValue)>,
        tonic::Code,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            service("nope"),
            vec![("driver_id", ints(&[1]))],
            tonic::Code::NotFound,
            "unknown feature service",
        ),
        (
            None,
            vec![("driver_id", ints(&[1]))],
            tonic::Code::InvalidArgument,
            "give `features` or `feature_service`",
        ),
        (
            refs(&["driver_hourly_stats:nope"]),
            vec![("driver_id", ints(&[1]))],
            tonic::Code::InvalidArgument,
            "no feature `nope`",
        ),
        (
            refs(&["conv_rate"]),
            vec![("driver_id", ints(&[1]))],
            tonic::Code::InvalidArgument,
            "not `view:feature`",
        ),
        (
            service("model_v1"),
            vec![("driver_id", ints(&[1, 2])), ("customer_id", ints(&[1]))],
            tonic::Code::InvalidArgument,
            "customer_id",
        ),
        (
            service("model_v1"),
            vec![("driver_id", floats.clone()), ("customer_id", ints(&[1]))],
            tonic::Code::InvalidArgument,
            "entity key",
        ),
        (
            service("model_v1"),
            vec![("driver_id", ints(&[1]))],
            tonic::Code::InvalidArgument,
            "customer_id",
        ),
        (
            refs(&["driver_hourly_stats:conv_rate"]),
            vec![("driver_id", ints(&many))],
            tonic::Code::ResourceExhausted,
            "1000",
        ),
    ];
    for (kind, entities, code, text) in cases {
        let request = GetOnlineFeaturesRequest {
            kind,
            entities: entities
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            ..Default::default()
        };
        let err = client.get_online_features(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert!(err.message().contains(text), "expected `{text}` in {err}");
    }
    let mut with_context = GetOnlineFeaturesRequest {
        kind: service("model_v1"),
        ..Default::default()
    };
    with_context
        .request_context
        .insert("x".to_string(), ints(&[1]));
    with_context.entities = [
        ("driver_id".to_string(), ints(&[1001])),
        ("customer_id".to_string(), ints(&[1])),
        // A column the service does not need: ignored, as by Feast.
        ("unused".to_string(), ints(&[7])),
    ]
    .into();
    let answer = client.get_online_features(with_context).await.unwrap();
    let names = &answer.get_ref().metadata.as_ref().unwrap().feature_names;
    assert!(
        !names.as_ref().unwrap().val.contains(&"unused".to_string()),
        "{names:?}"
    );
    // A message over the size limit (1 MiB here).
    let huge = GetOnlineFeaturesRequest {
        kind: refs(&[&"x".repeat(2 << 20)]),
        ..Default::default()
    };
    let err = client.get_online_features(huge).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("max_request_bytes"), "{err}");
    // The connection still serves.
    assert!(
        client
            .get_feast_serving_info(GetFeastServingInfoRequest {})
            .await
            .is_ok()
    );
    server.stop().await;
}

fn mget_calls(redis: &RedisServer) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.client().unwrap())
        .unwrap();
    let calls = |cmd: &str| {
        info.lines()
            .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
            .and_then(|l| l.split("calls=").nth(1))
            .and_then(|r| r.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    (
        calls("mget"),
        calls("get") + calls("hget") + calls("evalsha"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_store_round_trip_per_request() {
    let redis = RedisServer::start().unwrap();
    let (_tmp, repo) = setup(&redis);
    let repository = Repository::open(&repo, None, &|_| None).unwrap();
    let version = repository.store().unwrap().latest().unwrap().unwrap();
    let store = quiver_online_store::open(&repository.config.online_store, &repository.root)
        .await
        .unwrap();
    let service = FeatureService::new(
        Snapshot::new(version),
        store,
        None,
        Limits {
            max_entity_rows: 100,
        },
    );
    let request = quiver_feature_server::http::parse_request(MODEL_V1.as_bytes()).unwrap();
    let before = mget_calls(&redis);
    let response = service.get_online_features(request).await.unwrap();
    let after = mget_calls(&redis);
    assert_eq!(
        after.0 - before.0,
        1,
        "exactly one MGET for two views and three rows"
    );
    assert_eq!(after.1, before.1, "and no other reads");
    assert_eq!(response.columns[0].values.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_registry_version_is_served_within_a_second_under_traffic() {
    let redis = RedisServer::start().unwrap();
    let (_tmp, repo) = setup(&redis);
    let server = start(&repo).await;
    let addr = server.http;
    let traffic = tokio::spawn(async move {
        let mut served = 0;
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let (status, body) = http(addr, "POST", "/get-online-features", MODEL_V1).await;
            assert_eq!(status, 200, "{body}");
            served += 1;
        }
        served
    });
    let v2 = r#"{"feature_service": "quality_v2", "entities": {"driver_id": [1001]}}"#;
    assert_eq!(http(addr, "POST", "/get-online-features", v2).await.0, 404);
    let defs = repo.join("features/customers.yaml");
    let yaml = std::fs::read_to_string(&defs).unwrap();
    std::fs::write(
        &defs,
        format!("{yaml}\n  - name: quality_v2\n    features: [driver_hourly_stats:rating]\n"),
    )
    .unwrap();
    let out = quiver(&repo, &["apply"]);
    assert!(out.status.success(), "{}", describe(&out));
    let applied = Instant::now();
    loop {
        let (status, body) = http(addr, "POST", "/get-online-features", v2).await;
        if status == 200 {
            assert_eq!(
                body["metadata"]["feature_names"],
                serde_json::json!(["driver_id", "rating"])
            );
            break;
        }
        assert!(
            applied.elapsed() < Duration::from_secs(1),
            "version 2 not served after {:?}",
            applied.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(traffic.await.unwrap() > 10, "traffic kept flowing");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_503_quickly_and_the_server_recovers_by_itself() {
    let mut redis = RedisServer::start_persistent().unwrap();
    let (_tmp, repo) = setup(&redis);
    let server = start(&repo).await;
    assert_eq!(
        http(server.http, "POST", "/get-online-features", MODEL_V1)
            .await
            .0,
        200
    );
    redis.stop();
    let started = Instant::now();
    let (status, body) = http(server.http, "POST", "/get-online-features", MODEL_V1).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(http(server.http, "GET", "/ready", "").await.0, 503);
    assert_eq!(
        http(server.http, "GET", "/health", "").await.0,
        200,
        "alive, just not ready"
    );
    redis.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http(server.http, "POST", "/get-online-features", MODEL_V1).await;
        if status == 200 {
            assert_eq!(body["results"][2]["statuses"][0], "PRESENT", "data is back");
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_serves_on_a_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let repo = repo_ending(
        tmp.path(),
        20,
        2,
        "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
        &now,
    );
    json(&quiver(
        &repo,
        &["--format", "json", "materialize-incremental"],
    ));
    let server = start(&repo).await;
    let (status, body) = http(server.http, "POST", "/get-online-features", r#"{"features": ["driver_hourly_stats:city", "driver_derived:city_slug"], "entities": {"driver_id": [1001, 5]}}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][1]["statuses"][1], "NOT_FOUND", "{body}");
    let city = &body["results"][1]["values"][0];
    let status0 = body["results"][1]["statuses"][0].as_str().unwrap();
    assert!(
        status0 == "PRESENT" && city.is_string() || status0 == "NULL_VALUE",
        "{body}"
    );
    wait_ready(server.http).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_is_emptied_when_a_materialization_commits() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // Data ending an hour ago: a later run adds the newest hour.
    let end = (chrono::Utc::now() - chrono::Duration::minutes(30))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let repo = repo_ending(tmp.path(), 20, 3, &redis_yaml(&redis.url()), &end);
    let config = repo.join("quiver.yaml");
    let yaml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{yaml}serving:\n  cache:\n    max_staleness_ms: 600000\n"),
    )
    .unwrap();
    let mid = (chrono::Utc::now() - chrono::Duration::minutes(60))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json(&quiver(
        &repo,
        &[
            "--format",
            "json",
            "materialize",
            "2020-01-01",
            &mid,
            "--views",
            "driver_hourly_stats",
        ],
    ));

    // Serve with the configured cache (the library path `quiver serve` takes).
    let repository = Repository::open(&repo, None, &|_| None).unwrap();
    let registry: Arc<dyn quiver_registry::RegistryStore> = Arc::from(repository.store().unwrap());
    let version = registry.latest().unwrap().unwrap();
    let store = quiver_online_store::open(&repository.config.online_store, &repository.root)
        .await
        .unwrap();
    let cache = repository.config.serving.cache.as_ref().map(|c| {
        quiver_feature_server::cache::BlobCache::new(
            Duration::from_millis(c.max_staleness_ms),
            c.max_entries,
        )
    });
    assert!(cache.is_some());
    let service = Arc::new(FeatureService::new(
        Snapshot::new(version),
        store,
        cache,
        Limits {
            max_entity_rows: 10,
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let options = ServeOptions {
        max_body_bytes: 1 << 16,
        registry_poll: Duration::from_millis(100),
        ready_timeout: Duration::from_millis(300),
        training: None,
        auth: Arc::new(quiver_feature_server::Authenticator::open()),
        tls: None,
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
        shutdown_grace: Duration::from_secs(10),
        connections: Default::default(),
    };
    let task = tokio::spawn(quiver_feature_server::serve(
        listener,
        None,
        service,
        registry,
        options,
        async move {
            let _ = rx.await;
        },
    ));
    let ask = r#"{"features": ["driver_hourly_stats:rating"], "entities": {"driver_id": [1001]}}"#;
    // Ready once the reload loop's first pass has read (and recorded) the current watermarks:
    // the next commit is a change it sees.
    wait_ready(addr).await;
    let (_, before) = http(addr, "POST", "/get-online-features", ask).await;
    let old_ts = before["results"][1]["event_timestamps"][0].clone();
    json(&quiver(
        &repo,
        &[
            "--format",
            "json",
            "materialize-incremental",
            "--views",
            "driver_hourly_stats",
        ],
    ));
    let committed = Instant::now();
    loop {
        let (_, now) = http(addr, "POST", "/get-online-features", ask).await;
        if now["results"][1]["event_timestamps"][0] != old_ts {
            break;
        }
        assert!(
            committed.elapsed() < Duration::from_secs(2),
            "still serving the cached value: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}

/// A blocking one-shot HTTP request, for tests that drive the `quiver` binary.
fn http_blocking(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, buf))
}

/// Polls `done` every few milliseconds until it holds, failing the test with `what` (and the
/// server's log) after `limit`.
fn poll_until(limit: Duration, what: &str, log: impl Fn() -> String, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGTERM while a request waits on the store: the server stops accepting, the request still
/// gets its answer once the store does, and the process exits 0. Every step waits for evidence
/// instead of a time: the request's store read has reached (frozen) Redis before the signal is
/// sent, and the server has closed its port before Redis is thawed.
#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // A store bound far beyond the test, so the request waits for Redis as long as it is frozen;
    // registry and watermark polling only at start, so that once the server is ready the request
    // is the only thing that talks to Redis.
    let yaml = format!(
        "online_store:\n  type: redis\n  url: {}\n  timeout_ms: 60000\n",
        redis.url()
    );
    let repo = repo_ending(tmp.path(), 20, 2, &yaml, &now);
    let config = repo.join("quiver.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}serving:\n  registry_poll_ms: 3600000\n"),
    )
    .unwrap();
    json(&quiver(
        &repo,
        &["--format", "json", "materialize-incremental"],
    ));
    let mut server = quiver_tests::QuiverServer::start(&repo, false).unwrap();
    server.wait_ready(Duration::from_secs(10));
    let addr = server.http.to_string();
    let log = || server.log();
    assert_eq!(redis.unread_input().unwrap(), 0, "Redis is idle");

    redis.pause();
    let request = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            http_blocking(
                &addr,
                "POST",
                "/get-online-features",
                r#"{"features": ["driver_hourly_stats:rating"], "entities": {"driver_id": [1001]}}"#,
            )
        })
    };
    // In flight: the server has taken the request and sent its store read to Redis, which
    // holds it unread while frozen.
    poll_until(
        Duration::from_secs(10),
        "the request's store read reaching Redis",
        log,
        || request.is_finished() || redis.unread_input().unwrap() > 0,
    );
    assert!(
        !request.is_finished(),
        "answered with Redis frozen: {:?}",
        request.join()
    );
    server.sigterm();
    // Shutting down: the port refuses new connections.
    poll_until(
        Duration::from_secs(10),
        "the port closed after SIGTERM",
        log,
        || {
            std::net::TcpStream::connect(&addr)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
        },
    );
    assert!(
        !request.is_finished(),
        "the request ended before its store read was answered: {:?}",
        request.join()
    );
    redis.resume();
    let (status, body) = request.join().unwrap().unwrap();
    assert_eq!(
        status,
        200,
        "the in-flight request completed: {body}\n{}",
        server.log()
    );
    let exit = server.exited_within(Duration::from_secs(10));
    assert!(
        exit.is_some_and(|e| e.success()),
        "exit after SIGTERM: {exit:?}\n{}",
        server.log()
    );
}

/// Tokens are enforced identically on both protocols: UNAUTHENTICATED / 401 without a valid
/// token, PERMISSION_DENIED / 403 for one without `online:read`, success with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_http_enforce_the_same_tokens() {
    use quiver_feature_server::auth::hash_token;
    let redis = RedisServer::start().unwrap();
    let (_tmp, repo) = setup(&redis);
    let token = |name: &str, secret: &str, scope: &str| quiver_registry::TokenConfig {
        name: name.into(),
        sha256: Some(hash_token(secret)),
        token_file: None,
        scopes: vec![scope.into()],
    };
    let config = quiver_registry::AuthConfig {
        tokens: vec![
            token("app", "app-secret", "online:read"),
            token("trainer", "train-secret", "offline:read"),
        ],
        metrics_public: true,
    };
    let auth = quiver_feature_server::Authenticator::from_config(Some(&config), &repo).unwrap();
    let server = start_with(&repo, auth).await;
    let mut client = ServingServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    let request = |token: Option<&str>| {
        let mut r = tonic::Request::new(GetOnlineFeaturesRequest {
            kind: Some(Kind::FeatureService("model_v1".into())),
            entities: [
                (
                    "driver_id".to_string(),
                    RepeatedValue {
                        val: vec![PbValue {
                            val: Some(Val::Int64Val(1001)),
                        }],
                    },
                ),
                (
                    "customer_id".to_string(),
                    RepeatedValue {
                        val: vec![PbValue {
                            val: Some(Val::Int64Val(1)),
                        }],
                    },
                ),
            ]
            .into(),
            ..Default::default()
        });
        if let Some(t) = token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        r
    };
    for (token, code, http_status) in [
        (None, Some(tonic::Code::Unauthenticated), 401),
        (Some("wrong"), Some(tonic::Code::Unauthenticated), 401),
        (
            Some("train-secret"),
            Some(tonic::Code::PermissionDenied),
            403,
        ),
        (Some("app-secret"), None, 200),
    ] {
        let got = client.get_online_features(request(token)).await;
        match code {
            Some(c) => assert_eq!(got.unwrap_err().code(), c, "{token:?}"),
            None => assert!(got.is_ok(), "{token:?}: {got:?}"),
        }
        let mut s = tokio::net::TcpStream::connect(server.http).await.unwrap();
        let auth_line = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "POST /get-online-features HTTP/1.1\r\nHost: x\r\n{auth_line}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{MODEL_V1}",
            MODEL_V1.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let status: u16 = String::from_utf8_lossy(&buf[9..12]).parse().unwrap();
        assert_eq!(status, http_status, "{token:?}");
    }
    // Health stays open on both.
    let (status, _) = http(server.http, "GET", "/health", "").await;
    assert_eq!(status, 200);
    server.stop().await;
}
