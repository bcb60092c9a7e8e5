//! The console's JSON endpoints and assets through the router, over a real registry store (a
//! local directory): versions, the diff between any two, run records, their errors (a bad
//! number 400, a missing version 404, an unreadable store 503 that says it is the registry),
//! the page's security headers, and authentication (the page open, the data not).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use quiver_feature_server::auth::hash_token;
use quiver_feature_server::http::{HttpState, router};
use quiver_feature_server::{Authenticator, FeatureService, Limits, Snapshot};
use quiver_online_store::EmbeddedStore;
use quiver_registry::store::{
    FeatureStats, LocalStore, MaterializationRun, RegistryStore, RegistryVersion,
};
use quiver_registry::{Entity, FeatureView, Field, Registry, Ttl, ValueType};
use serde_json::Value as J;
use tower::ServiceExt;

fn registry(ttl: u64) -> Registry {
    let mut r = Registry {
        project: "demo".into(),
        ..Registry::default()
    };
    let field = |name: &str, t: &str| Field {
        name: name.into(),
        value_type: t.parse::<ValueType>().unwrap(),
        description: String::new(),
    };
    r.entities.insert(
        "driver".into(),
        Entity {
            name: "driver".into(),
            join_keys: vec![field("driver_id", "int64")],
            description: String::new(),
            tags: Default::default(),
        },
    );
    r.feature_views.insert(
        "stats".into(),
        FeatureView {
            name: "stats".into(),
            entities: vec!["driver".into()],
            source: "src".into(),
            query: None,
            features: vec![field("rate", "float32")],
            ttl: Ttl { seconds: ttl },
            online: true,
            aggregations: None,
            generation: 3,
            description: String::new(),
            owner: String::new(),
            tags: Default::default(),
        },
    );
    r
}

fn version(n: u64, ttl: u64) -> RegistryVersion {
    let registry = registry(ttl);
    RegistryVersion {
        version: n,
        hash: registry.content_hash(),
        applied_at: format!("2026-11-30T0{n}:00:00Z"),
        quiver_version: "test".into(),
        registry,
    }
}

fn run(view: &str, rows: u64) -> MaterializationRun {
    MaterializationRun {
        view: view.into(),
        generation: 3,
        registry_version: 2,
        start: None,
        end: "2026-11-30T03:00:00Z".into(),
        rows_read: rows,
        files_read: Some(1),
        bytes_read: Some(10),
        engine: None,
        entities: rows,
        keys_written: rows,
        seconds: 0.5,
        finished_at: "2026-11-30T03:00:01Z".into(),
        features: [(
            "rate".to_string(),
            FeatureStats {
                null_count: 1,
                min: Some(0.0),
                max: Some(1.0),
                mean: Some(0.5),
            },
        )]
        .into(),
        watermark: Some("2026-11-30T03:00:00Z".into()),
        watermark_note: None,
        evicted_keys: None,
        warnings: vec![],
    }
}

struct App {
    router: axum::Router,
    _dir: tempfile::TempDir,
}

fn app_with(store: Option<Arc<dyn RegistryStore>>, auth: Authenticator) -> App {
    let dir = tempfile::tempdir().unwrap();
    let online = Arc::new(EmbeddedStore::open(&dir.path().join("online.redb")).unwrap());
    let service = Arc::new(FeatureService::new(
        Snapshot::new(version(2, 7200)),
        online,
        None,
        Limits {
            max_entity_rows: 100,
        },
    ));
    App {
        router: router(
            HttpState {
                service,
                ready_timeout: Duration::from_millis(200),
                training: None,
                auth: Arc::new(auth),
                body_timeout: Duration::from_secs(5),
                registry: store,
                grpc: None,
                tls: false,
            },
            4096,
        ),
        _dir: dir,
    }
}

/// Two versions (the second changes the view's ttl) and three runs, two of them of `stats`.
fn app() -> (App, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("registry"));
    store.commit(None, &version(1, 3600)).unwrap();
    store.commit(Some(1), &version(2, 7200)).unwrap();
    store.record_run(&run("stats", 10)).unwrap();
    store.record_run(&run("other", 5)).unwrap();
    store.record_run(&run("stats", 20)).unwrap();
    (app_with(Some(Arc::new(store)), Authenticator::open()), dir)
}

async fn get(app: &App, path: &str, token: Option<&str>) -> (StatusCode, String, J) {
    let mut request = Request::get(path);
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    let response = app
        .router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = format!("{:?}", response.headers());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| J::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, body)
}

#[tokio::test]
async fn versions_and_the_diff_between_any_two() {
    let (app, _dir) = app();
    let (status, _, body) = get(&app, "/registry/versions", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let versions = body["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["version"], 1);
    assert_eq!(versions[1]["applied_at"], "2026-11-30T02:00:00Z");

    let (status, _, body) = get(&app, "/registry/versions/1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["registry"]["feature_views"]["stats"]["ttl"], "1h");

    let (_, _, body) = get(&app, "/registry/diff?from=1&to=2", None).await;
    let changes = body["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{body}");
    assert_eq!(changes[0]["action"], "change");
    assert_eq!(changes[0]["name"], "stats");
    assert_eq!(changes[0]["details"][0], "ttl: 1h → 2h");
    // Backwards, and from nothing; `to` defaults to the newest.
    let (_, _, body) = get(&app, "/registry/diff?from=2&to=1", None).await;
    assert_eq!(body["changes"][0]["details"][0], "ttl: 2h → 1h");
    let (_, _, body) = get(&app, "/registry/diff?from=0", None).await;
    assert_eq!(body["to"], 2);
    assert!(
        body["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["action"] == "add")
    );
    let (_, _, body) = get(&app, "/registry/diff?from=2&to=2", None).await;
    assert_eq!(body["changes"], J::Array(vec![]));

    for (path, status, says) in [
        ("/registry/versions/9", StatusCode::NOT_FOUND, "9"),
        ("/registry/versions/x", StatusCode::BAD_REQUEST, "`x`"),
        ("/registry/diff?to=2", StatusCode::BAD_REQUEST, "from"),
        ("/registry/diff?from=1&to=9", StatusCode::NOT_FOUND, "9"),
        ("/registry/diff?from=-1", StatusCode::BAD_REQUEST, "-1"),
    ] {
        let (got, _, body) = get(&app, path, None).await;
        assert_eq!(got, status, "{path}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{path}: {body}");
    }
}

#[tokio::test]
async fn run_records_by_view_with_their_statistics() {
    let (app, _dir) = app();
    let (status, _, body) = get(&app, "/registry/runs", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["runs"].as_array().unwrap().len(), 3);
    let (_, _, body) = get(&app, "/registry/runs?view=stats", None).await;
    let runs = body["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(body["total"], 2);
    assert_eq!(runs[0]["rows_read"], 10, "oldest first");
    assert_eq!(runs[1]["features"]["rate"]["mean"], 0.5);
    let (_, _, body) = get(&app, "/registry/runs?view=stats&limit=1", None).await;
    assert_eq!(body["runs"][0]["rows_read"], 20, "the newest one");
    assert_eq!(body["total"], 2);
    let (_, _, body) = get(&app, "/registry/runs?view=nope", None).await;
    assert_eq!(body["runs"], J::Array(vec![]));
    for limit in ["0", "x", "10001"] {
        let (status, _, body) = get(&app, &format!("/registry/runs?limit={limit}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{limit}: {body}");
    }
}

#[tokio::test]
async fn the_overview_reports_each_view_and_its_last_run() {
    let (app, _dir) = app();
    let (status, _, body) = get(&app, "/registry/overview", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["project"], "demo");
    assert_eq!(body["version"], 2);
    assert_eq!(body["counts"]["feature_views"], 1);
    assert_eq!(body["counts"]["features"], 1);
    assert_eq!(body["online_store"]["kind"], "embedded");
    let view = &body["views"][0];
    assert_eq!(view["name"], "stats");
    assert_eq!(view["ttl_seconds"], 7200);
    // No watermark has been read by this server: never materialized as far as it knows.
    assert_eq!(view["freshness"], "never");
    assert_eq!(view["last_run"]["rows_read"], 20);
}

#[tokio::test]
async fn a_registry_store_that_cannot_be_read_is_a_503_naming_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the store's directory should be.
    let path = dir.path().join("registry");
    std::fs::write(&path, "not a directory").unwrap();
    let app = app_with(Some(Arc::new(LocalStore::new(path))), Authenticator::open());
    for path in [
        "/registry/versions",
        "/registry/runs",
        "/registry/diff?from=1",
    ] {
        let (status, _, body) = get(&app, path, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("registry store"),
            "{path}: {body}"
        );
    }
    // The overview still answers from the served version, saying runs could not be read.
    let (status, _, body) = get(&app, "/registry/overview", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["runs_readable"], false);
    // A store moved away under the server: it holds no versions, not even the served one.
    let app = app_with(
        Some(Arc::new(LocalStore::new(dir.path().join("moved")))),
        Authenticator::open(),
    );
    let (status, _, body) = get(&app, "/registry/versions", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no longer holds the served version 2"),
        "{body}"
    );
    // The served version itself is still shown (the page's registry views need it).
    let (status, _, body) = get(&app, "/registry/versions/2", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["registry"]["project"], "demo");
    // A server without a registry store says so.
    let app = app_with(None, Authenticator::open());
    let (status, _, body) = get(&app, "/registry/versions", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn the_page_is_compiled_in_with_a_strict_policy() {
    let (app, _dir) = app();
    for path in ["/ui", "/ui/", "/ui/index.html"] {
        let (status, headers, body) = get(&app, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            body.as_str()
                .unwrap()
                .contains("<title>Quiver console</title>")
        );
        assert!(headers.contains("script-src 'self'"), "{headers}");
        assert!(headers.contains("frame-ancestors 'none'"), "{headers}");
    }
    for script in ["core.js", "charts.js", "pages.js", "live.js"] {
        let (status, headers, body) = get(&app, &format!("/ui/{script}"), None).await;
        assert_eq!(status, StatusCode::OK, "{script}");
        assert!(headers.contains("text/javascript"), "{headers}");
        // No page loads anything from elsewhere.
        let text = body.as_str().unwrap();
        assert!(
            !text.contains("https://") && !text.contains("http://cdn"),
            "{script}"
        );
    }
    assert_eq!(
        get(&app, "/ui/../Cargo.toml", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/ui/nope.js", None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn with_tokens_the_page_is_open_and_its_data_needs_any_valid_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("registry"));
    store.commit(None, &version(1, 3600)).unwrap();
    let config = quiver_registry::AuthConfig {
        tokens: vec![quiver_registry::TokenConfig {
            name: "trainer".into(),
            sha256: Some(hash_token("train-secret")),
            token_file: None,
            scopes: vec!["offline:read".into()],
        }],
        metrics_public: false,
    };
    let auth = Authenticator::from_config(Some(&config), std::path::Path::new(".")).unwrap();
    let app = app_with(Some(Arc::new(store)), auth);
    assert_eq!(get(&app, "/ui", None).await.0, StatusCode::OK);
    assert_eq!(get(&app, "/ui/core.js", None).await.0, StatusCode::OK);
    for path in [
        "/registry/overview",
        "/registry/versions",
        "/registry/versions/1",
        "/registry/diff?from=0",
        "/registry/runs",
        "/registry/sources/src/schema",
    ] {
        assert_eq!(
            get(&app, path, None).await.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            get(&app, path, Some("wrong")).await.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        let (status, _, body) = get(&app, path, Some("train-secret")).await;
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert_ne!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    // The store's address is for admins only, also in a 404's words.
    let (_, _, body) = get(&app, "/registry/overview", Some("train-secret")).await;
    assert_eq!(body["online_store"]["location"], J::Null);
    let (status, _, body) = get(&app, "/registry/versions/9", Some("train-secret")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let where_ = dir.path().to_string_lossy().to_string();
    assert!(!body.to_string().contains(&where_), "{body}");
    let (status, _, body) = get(&app, "/registry/sources/nope/schema", Some("train-secret")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The metrics as JSON need what `/metrics` needs: admin, as metrics are not public here.
    assert_eq!(
        get(&app, "/serving-stats", Some("train-secret")).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn serving_stats_are_the_metrics_as_json() {
    let (app, _dir) = app();
    // An error first: it is counted, by protocol and code.
    assert_eq!(
        get(&app, "/registry/versions/x", None).await.0,
        StatusCode::BAD_REQUEST
    );
    let (status, _, body) = get(&app, "/serving-stats", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["unix_seconds"].as_f64().unwrap() > 1.7e9);
    let samples = body["samples"].as_array().unwrap();
    assert!(
        samples
            .iter()
            .all(|s| s["name"].as_str().unwrap().starts_with("quiver_"))
    );
    let errors = samples
        .iter()
        .find(|s| {
            s["name"] == "quiver_request_errors_total"
                && s["labels"]["protocol"] == "http"
                && s["labels"]["code"] == "400"
        })
        .unwrap_or_else(|| panic!("no error count in {body}"));
    assert!(errors["value"].as_f64().unwrap() >= 1.0);
}
