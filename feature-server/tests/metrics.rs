//! `GET /metrics` against a real server on port 0 (and the router for rejected bodies): the
//! registry version is exported from the start, a view's freshness disappears with the view (or
//! its generation), and 413s are counted like every other rejected request.
//!
//! The metrics recorder is process-wide, so the tests of this binary take `LOCK` and never run
//! side by side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use quiver_feature_server::http::{HttpState, router};
use quiver_feature_server::{Authenticator, FeatureService, Limits, ServeOptions, Snapshot};
use quiver_online_store::{EmbeddedStore, OnlineStore};
use quiver_registry::store::{LocalStore, RegistryVersion};
use quiver_registry::{FeatureView, Field, Registry, RegistryStore, Ttl, ValueType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn field(name: &str, t: &str) -> Field {
    Field {
        name: name.into(),
        value_type: t.parse::<ValueType>().unwrap(),
        description: String::new(),
    }
}

/// Version `version` of project `demo`: one online view per `(name, generation)`.
fn version(version: u64, views: &[(&str, u64)]) -> RegistryVersion {
    let mut r = Registry {
        project: "demo".into(),
        ..Registry::default()
    };
    r.entities.insert(
        "driver".into(),
        quiver_registry::Entity {
            name: "driver".into(),
            join_keys: vec![field("driver_id", "int64")],
            description: String::new(),
            tags: Default::default(),
        },
    );
    for (name, generation) in views {
        r.feature_views.insert(
            name.to_string(),
            FeatureView {
                name: name.to_string(),
                entities: vec!["driver".into()],
                source: "src".into(),
                query: None,
                features: vec![field("rate", "float32")],
                ttl: Ttl { seconds: 7200 },
                online: true,
                aggregations: None,
                generation: *generation,
                description: String::new(),
                owner: String::new(),
                tags: Default::default(),
            },
        );
    }
    RegistryVersion {
        version,
        hash: format!("h{version}"),
        applied_at: String::new(),
        quiver_version: String::new(),
        registry: r,
    }
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap()
}

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Serves the newest version of `registry` over `store` on a fresh port.
async fn serve(registry: &LocalStore, store: Arc<EmbeddedStore>, poll: Duration) -> Server {
    let current = registry.latest().unwrap().unwrap();
    let service = Arc::new(FeatureService::new(
        Snapshot::new(current),
        store,
        None,
        Limits {
            max_entity_rows: 100,
        },
    ));
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let options = ServeOptions {
        max_body_bytes: 4096,
        registry_poll: poll,
        ready_timeout: Duration::from_millis(300),
        training: None,
        auth: Arc::new(Authenticator::open()),
        tls: None,
        header_timeout: Duration::from_secs(5),
        body_timeout: Duration::from_secs(5),
        shutdown_grace: Duration::from_secs(5),
        connections: Default::default(),
    };
    let task = tokio::spawn(quiver_feature_server::serve(
        http,
        None,
        service,
        Arc::new(registry.clone()),
        options,
        async move {
            let _ = rx.await;
        },
    ));
    Server {
        addr,
        stop: Some(tx),
        task,
    }
}

/// `GET /metrics` over a real connection.
async fn scrape(addr: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    raw.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// The value of the sample named exactly `series` (name and labels), if exported.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().unwrap())
    })
}

/// Scrapes until `ok` holds, for at most five seconds.
async fn scrape_until(addr: SocketAddr, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = scrape(addr).await;
        if ok(&metrics) {
            return metrics;
        }
        assert!(Instant::now() < deadline, "never {what}:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn registry_version_is_exported_before_any_reload() {
    let _serial = LOCK.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalStore::new(dir.path().join("registry"));
    registry.commit(None, &version(1, &[("stats", 3)])).unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("online.redb")).unwrap());
    // No reload happens during this test.
    let server = serve(&registry, store, Duration::from_secs(3600)).await;
    let metrics = scrape(server.addr).await;
    assert_eq!(
        sample(&metrics, "quiver_registry_version"),
        Some(1.0),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn freshness_of_removed_or_regenerated_views_is_dropped() {
    let _serial = LOCK.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalStore::new(dir.path().join("registry"));
    registry
        .commit(None, &version(1, &[("stats", 3), ("gone", 1)]))
        .unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("online.redb")).unwrap());
    let minute_ago = now_ns() - 60_000_000_000;
    store
        .advance_watermark("demo", "stats", 3, minute_ago)
        .await
        .unwrap();
    store
        .advance_watermark("demo", "gone", 1, minute_ago)
        .await
        .unwrap();
    let server = serve(&registry, store.clone(), Duration::from_millis(50)).await;
    let stats = r#"quiver_view_freshness_seconds{view="stats"}"#;
    let gone = r#"quiver_view_freshness_seconds{view="gone"}"#;
    let metrics = scrape_until(server.addr, "showed both views' freshness", |m| {
        sample(m, stats).is_some() && sample(m, gone).is_some()
    })
    .await;
    let lag = sample(&metrics, stats).unwrap();
    assert!((59.0..120.0).contains(&lag), "{metrics}");

    // Version 2 drops `gone` and gives `stats` a new generation, not materialized yet: neither
    // may keep reporting the old generation's freshness.
    registry
        .commit(Some(1), &version(2, &[("stats", 4)]))
        .unwrap();
    scrape_until(
        server.addr,
        "dropped the freshness of a removed view and of an old generation",
        |m| {
            sample(m, "quiver_registry_version") == Some(2.0)
                && sample(m, stats).is_none()
                && sample(m, gone).is_none()
        },
    )
    .await;

    // The new generation's first materialization brings it back.
    store
        .advance_watermark("demo", "stats", 4, now_ns() - 5_000_000_000)
        .await
        .unwrap();
    let metrics = scrape_until(server.addr, "showed the new generation's freshness", |m| {
        sample(m, stats).is_some()
    })
    .await;
    let lag = sample(&metrics, stats).unwrap();
    assert!((4.0..59.0).contains(&lag), "{metrics}");
    assert_eq!(sample(&metrics, gone), None, "{metrics}");
    server.stop().await;
}

async fn call(app: &axum::Router, request: Request<Body>) -> (StatusCode, Option<String>, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8_lossy(&bytes).to_string(),
    )
}

#[tokio::test]
async fn oversized_bodies_are_counted_as_errors() {
    let _serial = LOCK.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("online.redb")).unwrap());
    let service = Arc::new(FeatureService::new(
        Snapshot::new(version(1, &[("stats", 3)])),
        store,
        None,
        Limits {
            max_entity_rows: 100,
        },
    ));
    let app = router(
        HttpState {
            service,
            ready_timeout: Duration::from_millis(200),
            training: Some(Arc::new(quiver_feature_server::Training::new(
                dir.path().to_path_buf(),
                1024,
            ))),
            auth: Arc::new(Authenticator::open()),
            body_timeout: Duration::from_secs(5),
            registry: None,
            grpc: None,
            tls: false,
        },
        4096,
    );
    let errors = |endpoint: &str| {
        let app = app.clone();
        let series = format!(
            r#"quiver_request_duration_seconds_count{{endpoint="{endpoint}",outcome="error"}}"#
        );
        async move {
            let (_, _, metrics) =
                call(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
            sample(&metrics, &series).unwrap_or(0.0)
        }
    };
    let huge = format!(
        r#"{{"features": ["stats:rate"], "entities": {{"driver_id": [{}]}}}}"#,
        vec!["1"; 5000].join(",")
    );
    for (endpoint, path) in [
        ("http_get_online_features", "/get-online-features"),
        (
            "http_get_historical_features",
            "/get-historical-features?features=stats:rate",
        ),
    ] {
        let before = errors(endpoint).await;
        let request = Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(huge.clone()))
            .unwrap();
        let (status, _, body) = call(&app, request).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {body}");
        assert_eq!(errors(endpoint).await, before + 1.0, "{path}");
    }
}
