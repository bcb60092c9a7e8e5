//! One training request's retrieval, run on the training runtime: it owns what the request
//! needs (snapshot, features, the spooled upload, its slot) and streams Arrow IPC parts back to
//! the response through a channel.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use futures::StreamExt;
use quiver_materializer::retrieve::{EntityInput, Options, Request, retrieve};

use super::{SERVER_MEMORY_HINT, Slot, Training, UPLOAD_NAME, materializer_error};
use crate::error::{ErrorCode, ServiceError};

/// What the retrieval task sends the response: the stream's head (schema) once the first batch
/// exists, then the batches; or why it refused (before any byte) or failed (mid-stream).
pub(super) enum Part {
    Head(Bytes),
    Data(Bytes),
    Refused(ServiceError),
    Failed(String),
}

/// One request's retrieval, owned, to run on the training runtime.
pub(super) struct Job {
    pub(super) snapshot: Arc<crate::snapshot::Snapshot>,
    pub(super) training: Arc<Training>,
    pub(super) features: Vec<quiver_registry::FeatureRef>,
    pub(super) path: PathBuf,
    pub(super) timestamp_column: Option<String>,
    pub(super) options: Options,
    /// The spool directory and the request's slot: released when the retrieval ends, or when
    /// the client goes away (the next send fails).
    pub(super) held: (tempfile::TempDir, Slot),
}

impl Job {
    /// Runs until the table is sent or the client goes away (the response, and with it the
    /// channel's receiver, dropped): then the retrieval is dropped at once, even mid-sort.
    pub(super) async fn run(self, tx: tokio::sync::mpsc::Sender<Part>) {
        let last = tokio::select! {
            sent = self.stream(&tx) => Some(sent.unwrap_or_else(|last| last)),
            () = tx.closed() => None,
        };
        // The slot and the spooled upload are given back before the client hears how the
        // request ended: one that sends its next request at once finds the slot free (CI saw
        // a 503 "running its limit" right after a 413, the refused request's slot still held).
        drop(self.held);
        if let Some(last) = last {
            let _ = tx.send(last).await;
        }
    }

    /// Sends the head and every batch but the end of the stream; returns the last part to send
    /// (the end, or the error), which goes out after the slot is released: a client returns
    /// as soon as it reads the end.
    async fn stream(&self, tx: &tokio::sync::mpsc::Sender<Part>) -> Result<Part, Part> {
        let refused = |e| Part::Refused(materializer_error(e));
        let input = EntityInput::open_with(
            &self.path,
            self.timestamp_column.as_deref(),
            UPLOAD_NAME,
            self.training.limits.clone(),
        )
        .map_err(refused)?;
        let request = Request {
            registry: &self.snapshot.version.registry,
            root: &self.training.root,
            features: &self.features,
            entities: &input,
            options: self.options,
        };
        let mut retrieval = retrieve(&request, &self.training.engine)
            .await
            .map_err(refused)?;
        // The first batch comes only after the whole entity table was read, cast and sorted
        // (the as-of join needs it in key order): a bad key anywhere in it, even deep in a
        // large upload, is a 400 here instead of a 200 whose stream breaks off.
        let first = match retrieval.stream.next().await {
            Some(Err(e)) => {
                return Err(refused(quiver_materializer::retrieve::stream_error(e)));
            }
            first => first,
        };
        let internal = |e: arrow::error::ArrowError| {
            Part::Refused(ServiceError {
                code: ErrorCode::Internal,
                message: e.to_string(),
            })
        };
        let mut writer = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &retrieval.schema)
            .map_err(internal)?;
        let gone = |_| Part::Failed("the client went away".into());
        tx.send(Part::Head(Bytes::from(std::mem::take(writer.get_mut()))))
            .await
            .map_err(gone)?;
        let mut stream = futures::stream::iter(first).chain(retrieval.stream);
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| {
                let e = quiver_materializer::retrieve::stream_error(e)
                    .to_string()
                    .replace(
                        quiver_materializer::retrieve::MEMORY_HINT,
                        SERVER_MEMORY_HINT,
                    );
                tracing::warn!(error = %e, "training retrieval failed mid-stream");
                Part::Failed(e)
            })?;
            writer
                .write(&batch)
                .map_err(|e| Part::Failed(e.to_string()))?;
            tx.send(Part::Data(Bytes::from(std::mem::take(writer.get_mut()))))
                .await
                .map_err(gone)?;
        }
        writer.finish().map_err(|e| Part::Failed(e.to_string()))?;
        Ok(Part::Data(Bytes::from(std::mem::take(writer.get_mut()))))
    }
}

/// The runtime training retrievals run on, apart from the one serving online requests (one
/// worker per core; the operating system shares the cores between both).
pub(super) fn training_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .thread_name("quiver-training")
            .enable_all()
            .build()
            .expect("the training runtime starts")
    })
}
