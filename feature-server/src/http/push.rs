//! `POST /push` and `POST /write-to-online-store`: Feast's request shapes (unknown fields
//! ignored, as Feast's server does), answered with what was written.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value as J, json};

use super::{HttpState, read_body};
use crate::auth::Need;
use crate::error::ServiceError;
use crate::push::{Destination, Target, WriteOutcome, WriteRequest};

/// Feast's `PushFeaturesRequest` (`allow_registry_cache`, `transform_on_write` are accepted
/// and have no effect: every request reads the server's current registry version, and there
/// are no on-demand transformations).
#[derive(Deserialize)]
struct PushBody {
    push_source_name: String,
    df: Map<String, J>,
    #[serde(default)]
    to: Option<String>,
}

/// Feast's `WriteToFeatureStoreRequest`.
#[derive(Deserialize)]
struct WriteBody {
    feature_view_name: String,
    df: Map<String, J>,
}

pub(super) async fn push(
    State(state): State<HttpState>,
    request: axum::extract::Request,
    max_body_bytes: usize,
) -> Result<Response, ServiceError> {
    json_content(&request)?;
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    crate::metrics::timed("http_push", async {
        let body = read_body(request, max_body_bytes, state.body_timeout).await?;
        let body: PushBody = parse(&body)?;
        let to = Destination::parse(body.to.as_deref().unwrap_or("online"))?;
        // The scopes the destination needs: `online:write`, `offline:write`, or both.
        let needs = [
            (to.online(), Need::OnlineWrite),
            (to.offline(), Need::OfflineWrite),
        ];
        for (_, need) in needs.into_iter().filter(|(wanted, _)| *wanted) {
            if let Err(e) = state.auth.check(header.as_deref(), need) {
                crate::auth::record_failure("http", &e);
                return Err(e);
            }
        }
        let request = WriteRequest {
            target: Target::PushSource(body.push_source_name),
            to,
            df: columns(body.df)?,
        };
        Ok(answer(state.service.write(request).await?))
    })
    .await
}

pub(super) async fn write_to_online_store(
    State(state): State<HttpState>,
    request: axum::extract::Request,
    max_body_bytes: usize,
) -> Result<Response, ServiceError> {
    json_content(&request)?;
    crate::metrics::timed("http_write_to_online_store", async {
        let body = read_body(request, max_body_bytes, state.body_timeout).await?;
        let body: WriteBody = parse(&body)?;
        let request = WriteRequest {
            target: Target::View(body.feature_view_name),
            to: Destination::Online,
            df: columns(body.df)?,
        };
        Ok(answer(state.service.write(request).await?))
    })
    .await
}

/// Writes must say they are JSON (as Feast's server requires): a form or text body is what a
/// web page can send cross-site without asking, and must not write into the online store.
fn json_content(request: &axum::extract::Request) -> Result<(), ServiceError> {
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if json {
        return Ok(());
    }
    Err(ServiceError::new(
        crate::error::ErrorCode::UnsupportedMediaType,
        "a write must be sent with `Content-Type: application/json`",
    ))
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(body).map_err(|e| ServiceError::invalid(format!("request body: {e}")))
}

/// The `df` as columns; each must be a list of values.
fn columns(df: Map<String, J>) -> Result<Vec<(String, Vec<J>)>, ServiceError> {
    df.into_iter()
        .map(|(name, values)| match values {
            J::Array(values) => Ok((name, values)),
            other => Err(ServiceError::invalid(format!(
                "df column `{name}` is {}, not a list of values (the df is columnar: {{column: [value, …]}})",
                kind(&other)
            ))),
        })
        .collect()
}

fn kind(v: &J) -> &'static str {
    match v {
        J::Null => "null",
        J::Bool(_) => "a boolean",
        J::Number(_) => "a number",
        J::String(_) => "a string",
        J::Array(_) => "a list",
        J::Object(_) => "an object",
    }
}

fn answer(outcome: WriteOutcome) -> Response {
    axum::Json(json!({
        "rows": outcome.rows,
        "views": outcome.views,
        "values": outcome.entities,
        "stored": outcome.stored,
    }))
    .into_response()
}
