//! HTTP adapter (axum): Feast's JSON shapes for `POST /get-online-features`, plus health,
//! readiness, Prometheus metrics and registry listings. Handlers only convert and call the core.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value as J, json};

mod json;
mod push;
mod request;
pub use json::{render, value_json};
pub use request::parse_request;

use crate::auth::{Authenticator, Need};
use crate::console;
use crate::error::ServiceError;
use crate::service::FeatureService;

/// Shared by every handler.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub service: Arc<FeatureService>,
    /// Bound on the readiness probe's store ping.
    pub ready_timeout: Duration,
    /// Training retrieval (`/get-historical-features`); off when absent.
    pub training: Option<Arc<crate::training::Training>>,
    /// Who may call what; open by default.
    pub auth: Arc<Authenticator>,
    /// Longest a client may take to send a request body (`serving.body_timeout_ms`): the whole
    /// body of an online request, each wait for more of a training upload.
    pub body_timeout: Duration,
    /// Where registry versions and run records are read for the console's endpoints
    /// (`/registry/versions`, `/registry/runs`, …); those answer 404 without one.
    pub registry: Option<Arc<dyn quiver_registry::RegistryStore>>,
    /// Where this server's gRPC port listens and whether both ports use TLS (the console's
    /// `grpcurl` snippet).
    pub grpc: Option<std::net::SocketAddr>,
    pub tls: bool,
}

/// Lets a request through only with a token that has what `need` says.
async fn require(
    State((auth, need)): State<(Arc<Authenticator>, Need)>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match auth.check(header, need) {
        Ok(_) => next.run(request).await,
        Err(e) => {
            crate::auth::record_failure("http", &e);
            e.into_response()
        }
    }
}

/// The HTTP API. `max_body_bytes` bounds every request body read through axum's extractors (a
/// JSON 413 beyond it, see [`body_rejection`]); `/get-historical-features` streams its body to
/// disk under its own limit (`Training::max_upload_bytes`).
pub fn router(state: HttpState, max_body_bytes: usize) -> Router {
    crate::metrics::handle();
    let auth = state.auth.clone();
    let guard = |need: Need| middleware::from_fn_with_state((auth.clone(), need), require);
    let metrics_route = match auth.metrics_need() {
        Some(need) => get(metrics).layer(guard(need)),
        None => get(metrics),
    };
    Router::new()
        .route(
            "/get-online-features",
            post(move |state, request| get_online_features(state, request, max_body_bytes))
                .layer(guard(Need::OnlineRead)),
        )
        .route(
            "/push",
            post(move |state, request| push::push(state, request, max_body_bytes)),
        )
        .route(
            "/write-to-online-store",
            post(move |state, request| push::write_to_online_store(state, request, max_body_bytes))
                .layer(guard(Need::OnlineWrite)),
        )
        .route(
            "/get-historical-features",
            post(get_historical_features).layer(guard(Need::OfflineRead)),
        )
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", metrics_route)
        .route("/registry", get(registry).layer(guard(Need::Authenticated)))
        .route(
            "/registry/feature-views/{name}",
            get(feature_view).layer(guard(Need::Authenticated)),
        )
        .route(
            "/registry/feature-services/{name}",
            get(feature_service).layer(guard(Need::Authenticated)),
        )
        .route(
            "/registry/overview",
            get(console::overview).layer(guard(Need::Authenticated)),
        )
        .route(
            "/registry/versions",
            get(console::versions).layer(guard(Need::Authenticated)),
        )
        .route(
            "/registry/versions/{version}",
            get(console::version).layer(guard(Need::Authenticated)),
        )
        .route(
            "/registry/diff",
            get(console::diff).layer(guard(Need::Authenticated)),
        )
        .route(
            "/registry/runs",
            get(console::runs).layer(guard(Need::Authenticated)),
        )
        .route(
            "/registry/sources/{name}/schema",
            get(console::source_schema).layer(guard(Need::Authenticated)),
        )
        .route(
            "/serving-stats",
            // The same samples as `/metrics`: the same need (admin when metrics are not public).
            get(console::serving_stats)
                .layer(guard(auth.metrics_need().unwrap_or(Need::Authenticated))),
        )
        // The page is open (it holds nothing); it asks for a token and sends it on every call.
        .route("/ui", get(console::assets::index))
        .route("/ui/", get(console::assets::index))
        .route("/ui/{file}", get(console::assets::file))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(close_after_timeout))
        .with_state(state)
}

/// A request whose body did not arrive in time (408) ends its HTTP/1 connection: the rest of
/// the body may still be on its way, so the connection cannot carry another request. (HTTP/2
/// ends only the stream: hyper answers and resets it.)
///
/// Every answer of 400 or more is counted in `quiver_request_errors_total{protocol="http", code}`
/// here, whatever produced it (a handler, an extractor's rejection, a missing route, auth).
async fn close_after_timeout(request: axum::extract::Request, next: Next) -> Response {
    let http1 = request.version() < axum::http::Version::HTTP_2;
    let mut response = next.run(request).await;
    if response.status().as_u16() >= 400 {
        metrics::counter!("quiver_request_errors_total", "protocol" => "http", "code" => response.status().as_str().to_string())
            .increment(1);
    }
    if http1 && response.status() == StatusCode::REQUEST_TIMEOUT {
        response.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// The whole body of `request`, at most `limit` bytes (413 beyond, see [`body_rejection`]),
/// within `timeout` (408 after it: a client that stops sending mid-body is not waited for).
pub async fn read_body(
    request: axum::extract::Request,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ServiceError> {
    use axum::extract::FromRequest;
    match tokio::time::timeout(timeout, Bytes::from_request(request, &())).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(rejection)) => Err(body_rejection(&rejection, limit)),
        Err(_) => Err(ServiceError::body_timeout(timeout)),
    }
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %self.message, "request failed");
        }
        // Where Feast has an exception class for the error, its shape: a JSON string holding
        // `{"module", "class", "message"}` (what Feast's server sends and its SDK parses back
        // into the exception); otherwise `{"error": message}`.
        let body = match self.code.feast_class() {
            Some(class) => J::String(
                json!({"module": "feast.errors", "class": class, "message": self.public_message()})
                    .to_string(),
            ),
            None => json!({"error": self.public_message()}),
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// A body axum's extractor refused, as the JSON error every other failure is: over the limit
/// it is a 413 naming the limit and the key that raises it (axum's own rejection is plain text).
pub fn body_rejection(rejection: &BytesRejection, limit: usize) -> ServiceError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ServiceError::body_too_large("the request body", limit as u64, "max_request_bytes")
    } else {
        ServiceError::invalid(format!(
            "reading the request body: {}",
            rejection.body_text()
        ))
    }
}

async fn get_online_features(
    State(state): State<HttpState>,
    request: axum::extract::Request,
    max_body_bytes: usize,
) -> Result<Response, ServiceError> {
    let started = Instant::now();
    let result = async {
        // Read here rather than by an extractor, so the 413 and the 408 are JSON and counted.
        let body = read_body(request, max_body_bytes, state.body_timeout).await?;
        let request = parse_request(&body)?;
        let response = state.service.get_online_features(request).await?;
        Ok((
            [(header::CONTENT_TYPE, "application/json")],
            render(&response),
        )
            .into_response())
    }
    .await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::histogram!("quiver_request_duration_seconds", "endpoint" => "http_get_online_features", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    result
}

/// `POST /get-historical-features`: point-in-time retrieval, see [`crate::training`].
async fn get_historical_features(
    State(state): State<HttpState>,
    Query(query): Query<HashMap<String, String>>,
    headers: header::HeaderMap,
    body: axum::body::Body,
) -> Response {
    crate::training::get_historical_features(
        &state.service,
        state.training.as_ref(),
        state.body_timeout,
        &query,
        &headers,
        body,
    )
    .await
}

/// Protobuf-JSON timestamps: RFC 3339 in UTC, `Z`, fractional seconds only when needed.
pub use quiver_materializer::rfc3339;

/// Whether the request's token may see details (addresses, errors): `admin`, or anyone when
/// authentication is off.
pub(crate) fn is_admin(state: &HttpState, headers: &header::HeaderMap) -> bool {
    state
        .auth
        .check(
            headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
            Need::Admin,
        )
        .is_ok()
}

/// Readiness, open to every prober: status words only (the same check as gRPC health,
/// [`crate::health::readiness`]). The reasons (the store's address and error, the registry's
/// path and parser errors) go to the log, and to callers allowed `admin` (everyone when
/// authentication is off).
async fn ready(State(state): State<HttpState>, headers: header::HeaderMap) -> Response {
    let r = crate::health::readiness(&state.service, state.ready_timeout).await;
    r.log();
    let detailed = is_admin(&state, &headers);
    let words = |word: &str, detail: &Option<String>, joined: bool| match detail {
        Some(d) if detailed && joined => format!("{word}: {d}"),
        Some(d) if detailed => d.clone(),
        _ => word.to_string(),
    };
    let registry = words(r.registry, &r.registry_detail, true);
    // An admin sees the store's error itself (as before), or the timeout.
    let store = words(r.online_store, &r.online_store_detail, false);
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let data = words(r.online_data, &r.online_data_detail, true);
    let body = json!({"ready": r.ready, "registry_version": r.registry_version, "registry": registry, "online_store": store, "online_data": data});
    (status, Json(body)).into_response()
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
        .into_response()
}

async fn registry(State(state): State<HttpState>) -> Result<Json<J>, ServiceError> {
    let snap = loaded(&state)?;
    let r = &snap.version.registry;
    Ok(Json(json!({
        "project": r.project,
        "version": snap.version.version,
        "hash": snap.version.hash,
        "entities": r.entities.keys().collect::<Vec<_>>(),
        "push_sources": r.push_sources.keys().collect::<Vec<_>>(),
        "feature_views": r.feature_views.keys().collect::<Vec<_>>(),
        "feature_services": r.feature_services.keys().collect::<Vec<_>>(),
    })))
}

/// The snapshot served, or 503 before the first registry version has loaded.
pub(crate) fn loaded(state: &HttpState) -> Result<Arc<crate::snapshot::Snapshot>, ServiceError> {
    let snap = state.service.snapshot();
    if snap.loaded() {
        Ok(snap)
    } else {
        Err(ServiceError::registry_not_loaded())
    }
}

fn found<T: serde::Serialize>(what: &str, name: &str, item: Option<&T>) -> Response {
    match item {
        Some(item) => {
            Json(serde_json::to_value(item).unwrap_or(J::Object(Map::new()))).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no {what} named `{name}`")})),
        )
            .into_response(),
    }
}

async fn feature_view(State(state): State<HttpState>, Path(name): Path<String>) -> Response {
    let snap = match loaded(&state) {
        Ok(snap) => snap,
        Err(e) => return e.into_response(),
    };
    found(
        "feature view",
        &name,
        snap.version.registry.feature_views.get(&name),
    )
}

async fn feature_service(State(state): State<HttpState>, Path(name): Path<String>) -> Response {
    let snap = match loaded(&state) {
        Ok(snap) => snap,
        Err(e) => return e.into_response(),
    };
    found(
        "feature service",
        &name,
        snap.version.registry.feature_services.get(&name),
    )
}
