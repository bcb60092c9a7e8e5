//! `POST /get-historical-features`: point-in-time retrieval over HTTP, on the same engine as
//! `quiver retrieve`. The entity table comes in as the body (Parquet, Arrow IPC file or stream,
//! or CSV with `Content-Type: text/csv`) and is spooled to a temporary file, never held in memory;
//! the table goes out as an Arrow IPC stream, batch by batch, as the join produces it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use quiver_materializer::retrieve::{
    Engine, EntityInput, Options, Request, resolve_selection, retrieve,
};
use tokio::io::AsyncWriteExt;

use crate::error::{ErrorCode, ServiceError};
use crate::http::HttpState;

pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// What the training endpoint needs beyond the serving core.
#[derive(Debug, Clone)]
pub struct Training {
    /// The repository root: source paths are relative to it.
    pub root: PathBuf,
    /// Largest entity table accepted, in bytes.
    pub max_upload_bytes: u64,
    pub engine: Engine,
}

fn materializer_error(e: quiver_materializer::Error) -> ServiceError {
    let code = match e {
        quiver_materializer::Error::Invalid(_) => ErrorCode::InvalidArgument,
        quiver_materializer::Error::Store(ref s)
            if matches!(s, quiver_online_store::Error::Unavailable(_)) =>
        {
            ErrorCode::Unavailable
        }
        _ => ErrorCode::Internal,
    };
    ServiceError {
        code,
        message: e.to_string(),
    }
}

fn flag(query: &HashMap<String, String>, name: &str) -> Result<bool, ServiceError> {
    match query.get(name).map(String::as_str) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(ServiceError::invalid(format!(
            "query parameter `{name}` must be true or false, not `{other}`"
        ))),
    }
}

/// Writes the request body to a file in `dir`, refusing more than `limit` bytes. A client that
/// sends nothing more for `idle` is answered 408: an upload may be large and slow, but every
/// wait for it is bounded.
async fn spool(
    body: Body,
    dir: &tempfile::TempDir,
    csv: bool,
    limit: u64,
    idle: std::time::Duration,
) -> Result<PathBuf, ServiceError> {
    let path = dir
        .path()
        .join(if csv { "entities.csv" } else { "entities" });
    let internal = |e: std::io::Error| ServiceError {
        code: ErrorCode::Internal,
        message: format!("spooling the entity table: {e}"),
    };
    let mut file = tokio::fs::File::create(&path).await.map_err(internal)?;
    let mut stream = body.into_data_stream();
    let mut written = 0u64;
    loop {
        let Some(chunk) = tokio::time::timeout(idle, stream.next())
            .await
            .map_err(|_| ServiceError::body_timeout(idle))?
        else {
            break;
        };
        let chunk =
            chunk.map_err(|e| ServiceError::invalid(format!("reading the request body: {e}")))?;
        written += chunk.len() as u64;
        if written > limit {
            return Err(ServiceError::body_too_large(
                "the entity table",
                limit,
                "max_training_upload_bytes",
            ));
        }
        file.write_all(&chunk).await.map_err(internal)?;
    }
    file.flush().await.map_err(internal)?;
    if written == 0 {
        return Err(ServiceError::invalid(
            "empty body: send the entity table (Parquet, Arrow IPC, or CSV with Content-Type: text/csv)",
        ));
    }
    Ok(path)
}

pub async fn get_historical_features(
    State(state): State<HttpState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let result = start(&state, &query, &headers, body).await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::histogram!("quiver_request_duration_seconds", "endpoint" => "http_get_historical_features", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Checks the request, starts the join and returns the streaming response; what goes wrong
/// before the first byte is a 4xx/5xx, what goes wrong later aborts the stream.
async fn start(
    state: &HttpState,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ServiceError> {
    let Some(training) = state.training.clone() else {
        return Err(ServiceError::invalid(
            "training retrieval is not enabled on this server",
        ));
    };
    for key in query.keys() {
        if !matches!(
            key.as_str(),
            "features"
                | "feature_service"
                | "full_feature_names"
                | "created_cutoff"
                | "timestamp_column"
        ) {
            return Err(ServiceError::invalid(format!(
                "unknown query parameter `{key}` (known: features, feature_service, full_feature_names, created_cutoff, timestamp_column)"
            )));
        }
    }
    let selection = query
        .get("features")
        .or_else(|| query.get("feature_service"))
        .ok_or_else(|| {
            ServiceError::invalid(
                "give `features` (a feature service or comma-separated view:feature references) as a query parameter",
            )
        })?;
    let options = Options {
        full_feature_names: flag(query, "full_feature_names")?,
        created_cutoff: flag(query, "created_cutoff")?,
    };
    let snapshot = state.service.snapshot();
    if !snapshot.loaded() {
        return Err(ServiceError::registry_not_loaded());
    }
    let registry = &snapshot.version.registry;
    let features = resolve_selection(registry, selection).map_err(materializer_error)?;
    let csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/csv"));
    let dir = tempfile::tempdir().map_err(|e| ServiceError {
        code: ErrorCode::Internal,
        message: format!("temporary directory: {e}"),
    })?;
    let path = spool(
        body,
        &dir,
        csv,
        training.max_upload_bytes,
        state.body_timeout,
    )
    .await?;
    let input = EntityInput::open(&path, query.get("timestamp_column").map(String::as_str))
        .map_err(|e| {
            // The spool file's name means nothing to the client.
            ServiceError::invalid(e.to_string().replace(
                &format!("entity table {}: ", path.display()),
                "entity table: ",
            ))
        })?;
    let request = Request {
        registry,
        root: &training.root,
        features: &features,
        entities: &input,
        options,
    };
    let retrieval = retrieve(&request, &training.engine)
        .await
        .map_err(materializer_error)?;
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &retrieval.schema)
        .map_err(|e| ServiceError {
            code: ErrorCode::Internal,
            message: e.to_string(),
        })?;
    let head = Bytes::from(std::mem::take(writer.get_mut()));
    // The spool directory lives until the stream ends.
    let state = Arc::new(dir);
    let batches =
        futures::stream::unfold(Some((writer, retrieval.stream, state)), |step| async move {
            let (mut writer, mut stream, dir) = step?;
            match stream.next().await {
                Some(Ok(batch)) => match writer.write(&batch) {
                    Ok(()) => {
                        let bytes = Bytes::from(std::mem::take(writer.get_mut()));
                        Some((Ok(bytes), Some((writer, stream, dir))))
                    }
                    Err(e) => Some((Err(std::io::Error::other(e)), None)),
                },
                Some(Err(e)) => {
                    let e = quiver_materializer::retrieve::stream_error(e);
                    tracing::warn!(error = %e, "training retrieval failed mid-stream");
                    Some((Err(std::io::Error::other(e.to_string())), None))
                }
                None => match writer.finish() {
                    Ok(()) => {
                        let bytes = Bytes::from(std::mem::take(writer.get_mut()));
                        drop(dir);
                        Some((Ok(bytes), None))
                    }
                    Err(e) => Some((Err(std::io::Error::other(e)), None)),
                },
            }
        });
    let body = Body::from_stream(futures::stream::once(async move { Ok(head) }).chain(batches));
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ARROW_STREAM));
    if let Ok(v) = HeaderValue::from_str(&snapshot.version.version.to_string()) {
        h.insert("x-quiver-registry-version", v);
    }
    Ok(response)
}
