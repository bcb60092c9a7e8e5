//! The HTTP API through the router (no socket), over an embedded store filled by hand so that
//! every status appears: Feast's JSON shapes, statuses, limits and bad input.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use quiver_feature_server::auth::hash_token;
use quiver_feature_server::http::{HttpState, router};
use quiver_feature_server::{Authenticator, FeatureService, Limits, Snapshot, Training};
use quiver_online_store::key_codec::{KeyValue, entity_key, online_key, view_prefix};
use quiver_online_store::value_codec::ValueEncoder;
use quiver_online_store::{EmbeddedStore, OnlineStore, WriteEntry};
use quiver_registry::config::DEFAULT_MAX_RESPONSE_VALUES;
use quiver_registry::store::RegistryVersion;
use quiver_registry::{
    FeatureRef, FeatureService as Service, FeatureView, Field, Registry, Ttl, ValueType,
};
use serde_json::{Value as J, json};
use tower::ServiceExt;

const HOUR_NS: i64 = 3_600_000_000_000;

fn field(name: &str, t: &str) -> Field {
    Field {
        name: name.into(),
        value_type: t.parse::<ValueType>().unwrap(),
        description: String::new(),
    }
}

fn registry() -> Registry {
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
    let view = FeatureView {
        name: "stats".into(),
        entities: vec!["driver".into()],
        source: "src".into(),
        query: None,
        features: vec![
            field("rate", "float32"),
            field("city", "string"),
            field("tags", "list<int64>"),
        ],
        ttl: Ttl { seconds: 7200 },
        online: true,
        aggregations: None,
        generation: 3,
        description: String::new(),
        owner: String::new(),
        tags: Default::default(),
    };
    r.feature_views.insert("stats".into(), view);
    r.feature_services.insert(
        "model".into(),
        Service {
            name: "model".into(),
            features: ["rate", "city"]
                .iter()
                .map(|f| FeatureRef {
                    view: "stats".into(),
                    feature: f.to_string(),
                })
                .collect(),
            description: String::new(),
            tags: Default::default(),
        },
    );
    r
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap()
}

/// Driver 1: fresh, all present. Driver 2: fresh, city null. Driver 3: older than the ttl.
/// Driver 4: nothing stored. Driver 5: written before `tags` existed (two values only).
async fn app(limits: Limits) -> (axum::Router, tempfile::TempDir, i64) {
    app_with(limits, Authenticator::open()).await
}

async fn app_with(limits: Limits, auth: Authenticator) -> (axum::Router, tempfile::TempDir, i64) {
    app_full(limits, auth, None).await
}

/// Like `app_with`, with training retrieval when `training` is given.
async fn app_full(
    limits: Limits,
    auth: Authenticator,
    training: Option<Training>,
) -> (axum::Router, tempfile::TempDir, i64) {
    app_bounded(limits, DEFAULT_MAX_RESPONSE_VALUES, auth, training).await
}

/// Like `app_full`, with at most `max_response_values` values per answer.
async fn app_bounded(
    limits: Limits,
    max_response_values: usize,
    auth: Authenticator,
    training: Option<Training>,
) -> (axum::Router, tempfile::TempDir, i64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("online.redb")).unwrap());
    let prefix = view_prefix("demo", "stats", 3);
    let fresh = (now_ns() / 1_000_000_000) * 1_000_000_000 - HOUR_NS;
    let blob = |event: i64, rate: f32, city: Option<&str>, tags: Option<&[i64]>| {
        let n = if tags.is_some() { 3 } else { 2 };
        let mut e = ValueEncoder::new(event, None, n);
        e.f32(rate);
        match city {
            Some(c) => e.bytes(c.as_bytes()),
            None => e.null(),
        }
        if let Some(t) = tags {
            e.list(
                quiver_registry::ScalarType::Int64,
                t.iter()
                    .map(|x| Some(quiver_online_store::value_codec::Scalar::Int(*x))),
            );
        }
        e.finish()
    };
    let entry = |id: i64, blob: Vec<u8>| WriteEntry {
        key: online_key(&prefix, &entity_key(&[KeyValue::Int(id)])),
        blob,
        expire_at_ms: None,
    };
    store
        .write(vec![
            entry(1, blob(fresh, 0.5, Some("Paris"), Some(&[1, 2]))),
            entry(2, blob(fresh, 0.25, None, Some(&[]))),
            entry(3, blob(fresh - 3 * HOUR_NS, 0.75, Some("Oslo"), Some(&[3]))),
            entry(5, blob(fresh, 1.5, Some("Rome"), None)),
        ])
        .await
        .unwrap();
    let version = RegistryVersion {
        version: 7,
        hash: "h".into(),
        applied_at: String::new(),
        quiver_version: String::new(),
        registry: registry(),
    };
    let service = Arc::new(
        FeatureService::new(Snapshot::new(version), store, None, limits)
            .with_max_response_values(max_response_values),
    );
    (
        router(
            HttpState {
                service,
                ready_timeout: Duration::from_millis(200),
                training: training.map(Arc::new),
                auth: Arc::new(auth),
                body_timeout: Duration::from_secs(10),
                registry: None,
                grpc: None,
                tls: false,
            },
            4096,
        ),
        dir,
        fresh,
    )
}

async fn post(app: &axum::Router, body: &str) -> (StatusCode, J) {
    let request = Request::post("/get-online-features")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(J::String(String::from_utf8_lossy(&bytes).into())),
    )
}

fn ts(ns: i64) -> String {
    quiver_feature_server::http::rfc3339(ns)
}

#[tokio::test]
async fn every_status_in_feasts_json_shape() {
    let (app, _dir, fresh) = app(Limits {
        max_entity_rows: 100,
    })
    .await;
    let (status, body) = post(&app, r#"{"features": ["stats:rate", "stats:city", "stats:tags"], "entities": {"driver_id": [1, 2, 3, 4, 5, 1]}}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let old = fresh - 3 * HOUR_NS;
    let expected = json!({
        "metadata": {"feature_names": ["driver_id", "rate", "city", "tags"]},
        "results": [
            {"values": [1, 2, 3, 4, 5, 1], "statuses": vec!["PRESENT"; 6], "event_timestamps": vec!["1970-01-01T00:00:00Z"; 6]},
            {"values": [0.5, 0.25, null, null, 1.5, 0.5],
             "statuses": ["PRESENT", "PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND", "PRESENT", "PRESENT"],
             "event_timestamps": [ts(fresh), ts(fresh), ts(old), ts(0), ts(fresh), ts(fresh)]},
            {"values": ["Paris", null, null, null, "Rome", "Paris"],
             "statuses": ["PRESENT", "NULL_VALUE", "OUTSIDE_MAX_AGE", "NOT_FOUND", "PRESENT", "PRESENT"],
             "event_timestamps": [ts(fresh), ts(fresh), ts(old), ts(0), ts(fresh), ts(fresh)]},
            {"values": [[1, 2], [], null, null, null, [1, 2]],
             "statuses": ["PRESENT", "PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND", "NOT_FOUND", "PRESENT"],
             "event_timestamps": [ts(fresh), ts(fresh), ts(old), ts(0), ts(0), ts(fresh)]},
        ]
    });
    assert_eq!(body, expected);

    let (status, body) = post(&app, r#"{"feature_service": "model", "entities": {"driver_id": [1]}, "full_feature_names": true}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["metadata"]["feature_names"],
        json!(["driver_id", "stats__rate", "stats__city"])
    );
    assert!(body["metadata"].get("feature_view_metadata").is_none());

    // The body Feast 0.67's SDK (`online_store: type: remote`) sends, with the view metadata
    // asked for: each view read, with the registry version served.
    let (status, body) = post(&app, r#"{"entities": {"driver_id": [1]}, "full_feature_names": false, "include_feature_view_version_metadata": true, "features": ["stats:rate"]}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["metadata"]["feature_view_metadata"],
        json!([{"name": "stats", "version": 7}])
    );
}

#[tokio::test]
async fn bad_requests_get_400_with_a_message_naming_the_problem() {
    let (app, _dir, _) = app(Limits { max_entity_rows: 3 }).await;
    let cases: &[(&str, StatusCode, &str)] = &[
        ("{not json", StatusCode::BAD_REQUEST, "not valid JSON"),
        ("[1]", StatusCode::BAD_REQUEST, "must be a JSON object"),
        (
            r#"{"features": ["stats:rate"]}"#,
            StatusCode::BAD_REQUEST,
            "`entities` must be an object",
        ),
        (
            r#"{"entities": {"driver_id": [1]}}"#,
            StatusCode::BAD_REQUEST,
            "give `features`",
        ),
        (
            r#"{"features": ["stats:rat"], "entities": {"driver_id": [1]}}"#,
            StatusCode::BAD_REQUEST,
            "did you mean `rate`?",
        ),
        (
            r#"{"features": ["stat:rate"], "entities": {"driver_id": [1]}}"#,
            StatusCode::NOT_FOUND,
            "unknown feature view `stat`",
        ),
        (
            r#"{"features": ["rate"], "entities": {"driver_id": [1]}}"#,
            StatusCode::BAD_REQUEST,
            "is not `view:feature`",
        ),
        (
            r#"{"feature_service": "modle", "entities": {"driver_id": [1]}}"#,
            StatusCode::NOT_FOUND,
            "did you mean `model`?",
        ),
        (
            r#"{"features": ["stats:rate"], "entities": {"driver": [1]}}"#,
            StatusCode::BAD_REQUEST,
            "needs entity key `driver_id` in `entities` (did you mean `driver`?)",
        ),
        (
            r#"{"features": ["stats:rate"], "entities": {"driver_id": [1.5]}}"#,
            StatusCode::BAD_REQUEST,
            "not an integer",
        ),
        (
            r#"{"features": ["stats:rate"], "entities": {"driver_id": [null]}}"#,
            StatusCode::BAD_REQUEST,
            "got null",
        ),
        (
            r#"{"features": ["stats:rate"], "entities": {"driver_id": []}}"#,
            StatusCode::OK,
            "",
        ),
        (
            r#"{"features": ["stats:rate"], "entities": {"driver_id": [1,2,3,4]}}"#,
            StatusCode::PAYLOAD_TOO_LARGE,
            "exceed the limit of 3",
        ),
        (
            r#"{"features": ["stats:rate", "stats:rate"], "entities": {"driver_id": [1]}}"#,
            StatusCode::BAD_REQUEST,
            "feature `stats:rate` is requested more than once",
        ),
        // Unknown fields are ignored, as Feast's server ignores them; Feast's own are known.
        (
            r#"{"features": ["stats:rate"], "entities": {"driver_id": [1]}, "colour": 1}"#,
            StatusCode::OK,
            "",
        ),
        (
            r#"{"features": ["stats:rate"], "entities": {"driver_id": [1]}, "include_feature_view_version_metadata": "yes"}"#,
            StatusCode::BAD_REQUEST,
            "`include_feature_view_version_metadata` must be true or false",
        ),
        (
            // Request data for on-demand features: none exist, so it is ignored, as by Feast.
            r#"{"features": ["stats:rate"], "entities": {"driver_id": [1]}, "request_context": {"x": [1]}}"#,
            StatusCode::OK,
            "",
        ),
        (
            r#"{"features": ["stats:rate"], "entities": {"driver_id": [1]}, "request_context": [1]}"#,
            StatusCode::BAD_REQUEST,
            "`request_context` must be an object",
        ),
        // Feast's leniency for integer keys: integral floats, numeric strings, booleans.
        (
            r#"{"features": ["stats:rate"], "entities": {"driver_id": [1.0, "2", true]}}"#,
            StatusCode::OK,
            "",
        ),
        (
            r#"{"features": ["stats:rate"], "entities": {"driver_id": [1.5]}}"#,
            StatusCode::BAD_REQUEST,
            "1.5 is not an integer key",
        ),
        (
            r#"{"features": ["stats:rate"], "entities": {"driver_id": ["1x"]}}"#,
            StatusCode::BAD_REQUEST,
            "expected int64, got the string \"1x\", which is not an integer",
        ),
        // Columns the features do not need are accepted and ignored (not echoed).
        (
            r#"{"features": ["stats:rate"], "entities": {"driver_id": [1], "user": ["a"]}}"#,
            StatusCode::OK,
            "",
        ),
        (
            r#"{"features": ["stats:rate"], "entities": {"driver_idd": [1]}}"#,
            StatusCode::BAD_REQUEST,
            "needs entity key `driver_id` in `entities` (did you mean `driver_idd`?)",
        ),
    ];
    for (body, code, message) in cases {
        let (status, reply) = post(&app, body).await;
        assert_eq!(status, *code, "{body}: {reply}");
        if !message.is_empty() {
            let text = error_text(&reply);
            assert!(text.contains(message), "{body}: {reply}");
        }
    }
    // Bodies over the limit are refused before parsing.
    let huge = format!(
        r#"{{"features": ["stats:rate"], "entities": {{"driver_id": [{}]}}}}"#,
        vec!["1"; 3000].join(",")
    );
    let (status, _) = post(&app, &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// Every 413 is a JSON error like the others, naming the limit and the `quiver.yaml` key that
/// raises it, on the online endpoint (`serving.max_request_bytes`) and on training retrieval
/// (`serving.max_training_upload_bytes`).
/// rows × features is bounded by `max_response_values` (413 naming the key), checked with the
/// other request-shape checks before any answer is built: a feature listed many times over more
/// rows than allowed is refused as a duplicate, not after building its columns.
#[tokio::test]
async fn answers_over_max_response_values_get_a_413_naming_the_key() {
    let (app, _dir, _) = app_bounded(
        Limits {
            max_entity_rows: 100,
        },
        10,
        Authenticator::open(),
        None,
    )
    .await;
    let request = |features: &[&str], rows: usize| {
        let ids: Vec<String> = (1..=rows).map(|i| i.to_string()).collect();
        format!(
            r#"{{"features": {}, "entities": {{"driver_id": [{}]}}}}"#,
            serde_json::to_string(features).unwrap(),
            ids.join(",")
        )
    };
    let three = ["stats:rate", "stats:city", "stats:tags"];
    let (status, body) = post(&app, &request(&three, 3)).await;
    assert_eq!(status, StatusCode::OK, "9 values: {body}");
    let (status, body) = post(&app, &request(&three, 4)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "12 values: {body}");
    let message = error_text(&body);
    for part in [
        "4 entity rows × 3 features = 12 values",
        "limit of 10",
        "`serving.max_response_values`",
    ] {
        assert!(message.contains(part), "{message}");
    }
    let (status, body) = post(&app, &request(&["stats:rate"; 50], 100)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        error_text(&body).contains("`stats:rate` is requested more than once"),
        "{body}"
    );
    // The feature service path is bounded the same way (2 features).
    let (status, _) = post(
        &app,
        r#"{"feature_service": "model", "entities": {"driver_id": [1, 2, 3, 4, 5, 6]}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn oversized_bodies_get_a_json_413_naming_the_limit_and_its_key() {
    let root = tempfile::tempdir().unwrap();
    let training = Training::new(root.path().to_path_buf(), 1024);
    let (app, _dir, _) = app_full(
        Limits {
            max_entity_rows: 100,
        },
        Authenticator::open(),
        Some(training),
    )
    .await;
    let huge = format!(
        r#"{{"features": ["stats:rate"], "entities": {{"driver_id": [{}]}}}}"#,
        vec!["1"; 3000].join(",")
    );
    for (path, limit, key) in [
        ("/get-online-features", "4096", "serving.max_request_bytes"),
        (
            "/get-historical-features?features=stats:rate",
            "1024",
            "serving.max_training_upload_bytes",
        ),
    ] {
        let request = Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(huge.clone()))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers().get("content-type").cloned();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {text}");
        assert_eq!(content_type.unwrap(), "application/json", "{path}: {text}");
        let body: J =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
        let message = error_text(&body);
        assert!(
            message.contains(limit) && message.contains(key),
            "{path}: {body}"
        );
    }
}

#[tokio::test]
async fn health_ready_metrics_and_registry_listings() {
    let (app, _dir, _) = app(Limits {
        max_entity_rows: 10,
    })
    .await;
    let get = |path: &str| {
        let app = app.clone();
        let request = Request::get(path).body(Body::empty()).unwrap();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&bytes).to_string())
        }
    };
    assert_eq!(get("/health").await.0, StatusCode::OK);
    let (status, ready) = get("/ready").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert!(ready.contains("\"registry_version\":7"), "{ready}");
    post(
        &app,
        r#"{"features": ["stats:rate"], "entities": {"driver_id": [1]}}"#,
    )
    .await;
    let (_, metrics) = get("/metrics").await;
    assert!(
        metrics.contains("quiver_request_duration_seconds_bucket"),
        "{metrics}"
    );
    let (_, listing) = get("/registry").await;
    assert!(
        listing.contains("\"feature_views\":[\"stats\"]"),
        "{listing}"
    );
    let (status, view) = get("/registry/feature-views/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert!(view.contains("\"generation\":3"), "{view}");
    assert_eq!(
        get("/registry/feature-views/nope").await.0,
        StatusCode::NOT_FOUND
    );
}

/// With tokens configured: 401 without a valid token (with `WWW-Authenticate: Bearer`), 403 for a
/// token without the scope, health and readiness open, metrics as configured.
#[tokio::test]
async fn tokens_and_scopes_guard_every_endpoint_but_health() {
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
            token("ops", "ops-secret", "admin"),
        ],
        metrics_public: false,
    };
    let auth = Authenticator::from_config(Some(&config), std::path::Path::new(".")).unwrap();
    let (app, _dir, _) = app_with(
        Limits {
            max_entity_rows: 100,
        },
        auth,
    )
    .await;
    let online = r#"{"features": ["stats:rate"], "entities": {"driver_id": [1]}}"#;
    let cases: &[(&str, &str, Option<&str>, StatusCode)] = &[
        (
            "POST",
            "/get-online-features",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "POST",
            "/get-online-features",
            Some("Bearer wrong"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "POST",
            "/get-online-features",
            Some("app-secret"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "POST",
            "/get-online-features",
            Some("Bearer train-secret"),
            StatusCode::FORBIDDEN,
        ),
        (
            "POST",
            "/get-online-features",
            Some("Bearer app-secret"),
            StatusCode::OK,
        ),
        (
            "POST",
            "/get-online-features",
            Some("Bearer ops-secret"),
            StatusCode::OK,
        ),
        // Training retrieval is off in this app (400) once past the token check.
        (
            "POST",
            "/get-historical-features",
            Some("Bearer app-secret"),
            StatusCode::FORBIDDEN,
        ),
        (
            "POST",
            "/get-historical-features",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "POST",
            "/get-historical-features",
            Some("Bearer train-secret"),
            StatusCode::BAD_REQUEST,
        ),
        ("GET", "/registry", None, StatusCode::UNAUTHORIZED),
        (
            "GET",
            "/registry",
            Some("Bearer app-secret"),
            StatusCode::OK,
        ),
        (
            "GET",
            "/registry/feature-views/stats",
            Some("Bearer train-secret"),
            StatusCode::OK,
        ),
        ("GET", "/metrics", None, StatusCode::UNAUTHORIZED),
        (
            "GET",
            "/metrics",
            Some("Bearer app-secret"),
            StatusCode::FORBIDDEN,
        ),
        ("GET", "/metrics", Some("Bearer ops-secret"), StatusCode::OK),
        ("GET", "/health", None, StatusCode::OK),
        ("GET", "/ready", None, StatusCode::OK),
    ];
    for (method, path, header, want) in cases {
        let mut request = Request::builder().method(*method).uri(*path);
        if let Some(h) = header {
            request = request.header("authorization", *h);
        }
        let body = if *method == "POST" {
            Body::from(online)
        } else {
            Body::empty()
        };
        let response = app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let www = response.headers().get("www-authenticate").cloned();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(status, *want, "{method} {path} {header:?}: {text}");
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(www.unwrap(), "Bearer");
        }
        if status.is_client_error() {
            assert!(text.contains("\"error\""), "{text}");
            assert!(!text.contains("secret"), "a token leaked into {text}");
        }
    }
}

/// The message of an error body: `{"error": m}`, or Feast's shape — a JSON string holding
/// `{"module": "feast.errors", "class", "message": m}` — for errors Feast has a class for.
fn error_text(body: &serde_json::Value) -> String {
    if let Some(m) = body["error"].as_str() {
        return m.to_string();
    }
    let inner: serde_json::Value = body
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    assert_eq!(inner["module"], "feast.errors", "{body}");
    inner["message"].as_str().unwrap_or_default().to_string()
}
