//! `POST /get-historical-features`: point-in-time retrieval over HTTP, on the same engine as
//! `quiver retrieve`. The entity table comes in as the body (Parquet, Arrow IPC file or stream,
//! or CSV with `Content-Type: text/csv`) and is spooled to a file in the server's upload
//! directory, never held in memory; the table goes out as an Arrow IPC stream, batch by batch,
//! as the join produces it.
//!
//! What training may take from the process that also serves online traffic is bounded: at most
//! `max_requests` run at once (more get 503 with `Retry-After`), their sorts share one memory
//! budget (each request's engine gets an equal part and spills beyond it), and an upload may
//! decode to at most `max_decoded_bytes` (413 naming the limit), however small it is. Their CPU
//! work runs on a runtime of its own ([`training_runtime`]), so online answers never queue
//! behind a sort; a client that goes away cancels its retrieval at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use quiver_materializer::retrieve::{Engine, EntityLimits, Options, resolve_selection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::error::{ErrorCode, ServiceError};
use crate::service::FeatureService;

mod job;
mod spool;
use job::{Job, Part, training_runtime};
use spool::spool;

pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// How messages name an upload: never by its path on the server.
pub const UPLOAD_NAME: &str = "the uploaded entity table";

/// Defaults of the `serving` training settings (`quiver.yaml`).
pub const DEFAULT_MEMORY_LIMIT: u64 = 1 << 30;
pub const DEFAULT_MAX_REQUESTS: usize = 2;
pub const DEFAULT_MAX_DECODED_BYTES: u64 = 1 << 30;
/// Longest CSV record of an upload.
pub const MAX_CSV_RECORD_BYTES: u64 = 1 << 20;
/// The `Retry-After` of a 503 when every training slot is taken, in seconds.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// What the training endpoint needs beyond the serving core.
#[derive(Debug, Clone)]
pub struct Training {
    /// The repository root: source paths are relative to it.
    pub root: PathBuf,
    /// Largest entity table accepted, in bytes.
    pub max_upload_bytes: u64,
    /// One request's engine; its memory limit is the request's share of the training budget.
    pub engine: Engine,
    /// What an upload may decode to.
    pub limits: EntityLimits,
    /// Where uploads are spooled (one directory per request, removed with it).
    pub upload_dir: PathBuf,
    /// One permit per running request.
    slots: Arc<Semaphore>,
    max_requests: usize,
}

impl Training {
    /// Training over the repository at `root`, with the default budget, concurrency, decoded
    /// size limit and upload directory (`.quiver/uploads`).
    pub fn new(root: PathBuf, max_upload_bytes: u64) -> Self {
        let upload_dir = root.join(".quiver").join("uploads");
        Training {
            root,
            max_upload_bytes,
            engine: Engine::default(),
            limits: EntityLimits::default(),
            upload_dir,
            slots: Arc::new(Semaphore::new(1)),
            max_requests: 1,
        }
        .with_budget(DEFAULT_MEMORY_LIMIT, DEFAULT_MAX_REQUESTS)
        .with_max_decoded_bytes(DEFAULT_MAX_DECODED_BYTES)
    }

    /// At most `max_requests` retrievals at once (at least one), sharing `memory_limit` bytes
    /// for their sorts: each gets an equal part, beyond which its sorts spill to disk.
    pub fn with_budget(mut self, memory_limit: u64, max_requests: usize) -> Self {
        let max_requests = max_requests.max(1);
        let share = memory_limit / max_requests as u64;
        self.engine.memory_limit = usize::try_from(share).unwrap_or(usize::MAX);
        self.slots = Arc::new(Semaphore::new(max_requests));
        self.max_requests = max_requests;
        self
    }

    /// An upload may decode to at most `bytes` (and its CSV records may be at most
    /// [`MAX_CSV_RECORD_BYTES`] long).
    pub fn with_max_decoded_bytes(mut self, bytes: u64) -> Self {
        self.limits = EntityLimits {
            max_decoded_bytes: Some(bytes),
            max_csv_record_bytes: Some(MAX_CSV_RECORD_BYTES.min(bytes)),
            hint: "raise `serving.max_training_decoded_bytes` in quiver.yaml to accept it \
                   (CSV records: send long values as Parquet or Arrow IPC)"
                .into(),
        };
        self
    }

    /// Uploads go to `dir` (relative paths are relative to the repository root).
    pub fn with_upload_dir(mut self, dir: &Path) -> Self {
        self.upload_dir = self.root.join(dir);
        self
    }

    /// Most retrievals at once.
    pub fn max_requests(&self) -> usize {
        self.max_requests
    }
}

/// A running request's slot. When the last running request gives its slot back, the memory it
/// freed is handed back to the operating system (see [`return_memory`]).
#[derive(Debug)]
struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    slots: Arc<Semaphore>,
    max_requests: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.permit.take());
        if self.slots.available_permits() == self.max_requests
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(return_memory(self.slots.clone(), self.max_requests));
        }
    }
}

/// The process's allocator (mimalloc) gives memory freed to its arenas back to the operating
/// system lazily: during later allocations, once it has been free for a purge delay (1 s). An
/// idle server would never purge what a finished training request freed. So once no training
/// request runs, a few large allocations, a little apart, let it purge; a request that starts
/// meanwhile stops this. (Pages still held by threads' own heaps stay: the bounded budget is
/// what keeps those small.)
async fn return_memory(slots: Arc<Semaphore>, max_requests: usize) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..8 {
        if slots.available_permits() < max_requests {
            return;
        }
        let block = std::hint::black_box(vec![1u8; 8 << 20]);
        drop(block);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// The answer when every training slot is taken: 503, `Retry-After`, a JSON message.
fn busy(max_requests: usize) -> Response {
    let message = format!(
        "the server is running its limit of {max_requests} training retrievals (`serving.max_training_requests`); retry in a few seconds"
    );
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    response
}

/// What the server says instead of the CLI's `--memory-limit` hint.
const SERVER_MEMORY_HINT: &str = "raise `serving.training_memory_limit` in quiver.yaml (each of the `serving.max_training_requests` running requests gets an equal part of it)";

fn materializer_error(e: quiver_materializer::Error) -> ServiceError {
    let e = match e {
        quiver_materializer::Error::Invalid(m) => quiver_materializer::Error::Invalid(m.replace(
            quiver_materializer::retrieve::MEMORY_HINT,
            SERVER_MEMORY_HINT,
        )),
        e => e,
    };
    let code = match e {
        quiver_materializer::Error::Invalid(_) => ErrorCode::InvalidArgument,
        quiver_materializer::Error::TooLarge(_) => ErrorCode::TooLarge,
        // An object store or the engine's cluster did not answer: retry later.
        quiver_materializer::Error::Unavailable(_) => ErrorCode::Unavailable,
        quiver_materializer::Error::Store(ref s)
            if matches!(s, quiver_online_store::Error::Unavailable(_)) =>
        {
            ErrorCode::Unavailable
        }
        _ => ErrorCode::Internal,
    };
    let message = match code {
        // Told to the client as TRAINING_UNAVAILABLE_MESSAGE; the detail goes to the log.
        ErrorCode::Unavailable => format!("training: {e}"),
        _ => e.to_string(),
    };
    ServiceError { code, message }
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

/// `POST /get-historical-features` for the serving core `service`, with `training` (off when
/// absent) and `body_timeout`, the longest wait for more of the upload.
pub async fn get_historical_features(
    service: &FeatureService,
    training: Option<&Arc<Training>>,
    body_timeout: Duration,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let result = match training {
        // A slot for the whole request: the upload, the retrieval, the response stream.
        Some(training) => match training.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let slot = Slot {
                    permit: Some(permit),
                    slots: training.slots.clone(),
                    max_requests: training.max_requests,
                };
                let upload = Upload {
                    query,
                    headers,
                    body,
                    body_timeout,
                };
                start(service, training, upload, slot).await
            }
            Err(_) => {
                metrics::counter!("quiver_training_requests_refused_total").increment(1);
                return busy(training.max_requests);
            }
        },
        None => Err(ServiceError::invalid(
            "training retrieval is not enabled on this server",
        )),
    };
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::histogram!("quiver_request_duration_seconds", "endpoint" => "http_get_historical_features", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// One request's upload and its parameters.
struct Upload<'a> {
    query: &'a HashMap<String, String>,
    headers: &'a HeaderMap,
    body: Body,
    /// Longest wait for more of the body.
    body_timeout: Duration,
}

/// Checks the request, starts the join and returns the streaming response; what goes wrong
/// before the first byte is a 4xx/5xx, what goes wrong later aborts the stream.
async fn start(
    service: &FeatureService,
    training: &Arc<Training>,
    upload: Upload<'_>,
    slot: Slot,
) -> Result<Response, ServiceError> {
    let Upload {
        query,
        headers,
        body,
        body_timeout,
    } = upload;
    let (selection, options) = parameters(query)?;
    let snapshot = service.snapshot();
    if !snapshot.loaded() {
        return Err(ServiceError::registry_not_loaded());
    }
    let registry = &snapshot.version.registry;
    let features = resolve_selection(registry, selection).map_err(materializer_error)?;
    let csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/csv"));
    let dir = training.spool_dir().map_err(|e| ServiceError {
        code: ErrorCode::Internal,
        message: format!(
            "creating a spool directory in {}: {e}",
            training.upload_dir.display()
        ),
    })?;
    let path = spool(body, &dir, csv, training.max_upload_bytes, body_timeout).await?;
    // The retrieval's CPU work (decoding, sorting, joining) runs on the training runtime, not
    // on the workers answering online requests: a large training table never holds up an
    // online answer behind it. The response streams through a small channel.
    let (tx, mut rx) = mpsc::channel(4);
    let job = Job {
        snapshot: snapshot.clone(),
        training: training.clone(),
        features,
        path,
        timestamp_column: query.get("timestamp_column").cloned(),
        options,
        held: (dir, slot),
    };
    training_runtime().spawn(job.run(tx));
    // What can be refused is refused before the first byte (see `Job::run`).
    let head = match rx.recv().await {
        Some(Part::Head(head)) => head,
        Some(Part::Refused(e)) => return Err(e),
        Some(Part::Data(_) | Part::Failed(_)) | None => {
            return Err(ServiceError {
                code: ErrorCode::Internal,
                message: "the training retrieval ended before its first batch".into(),
            });
        }
    };
    Ok(streaming(head, rx, snapshot.version.version))
}

/// The query parameters: the selection (`features`, or `feature_service`) and the options.
fn parameters(query: &HashMap<String, String>) -> Result<(&str, Options), ServiceError> {
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
    Ok((selection, options))
}

/// The response: `head`, then what the retrieval sends through `rx`; a failure mid-stream
/// aborts it.
fn streaming(head: Bytes, mut rx: mpsc::Receiver<Part>, version: u64) -> Response {
    let batches = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(|part| match part {
        Part::Data(bytes) | Part::Head(bytes) => Ok(bytes),
        Part::Failed(e) | Part::Refused(ServiceError { message: e, .. }) => {
            Err(std::io::Error::other(e))
        }
    });
    let body = Body::from_stream(futures::stream::once(async move { Ok(head) }).chain(batches));
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ARROW_STREAM));
    if let Ok(v) = HeaderValue::from_str(&version.to_string()) {
        h.insert("x-quiver-registry-version", v);
    }
    response
}
