//! Uploads: each request's entity table is spooled to a directory of its own inside the upload
//! directory, removed with the request; what a server that is gone left there is removed at
//! start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::Training;
use crate::error::{ErrorCode, ServiceError};

/// Spool directories of uploads are named `upload-PID-…` inside the upload directory.
const UPLOAD_PREFIX: &str = "upload-";

impl Training {
    /// Creates the upload directory and removes what a server that is gone (crashed, killed)
    /// left in it; uploads of live servers sharing the directory are kept. Returns how many
    /// were removed.
    pub fn prepare(&self) -> std::io::Result<usize> {
        std::fs::create_dir_all(&self.upload_dir)?;
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.upload_dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(UPLOAD_PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
            if !alive && std::fs::remove_dir_all(entry.path()).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, dir = %self.upload_dir.display(), "removed the uploads of a server that is gone");
        }
        Ok(removed)
    }

    /// A spool directory for one upload, removed when dropped.
    pub(super) fn spool_dir(&self) -> std::io::Result<tempfile::TempDir> {
        std::fs::create_dir_all(&self.upload_dir)?;
        tempfile::Builder::new()
            .prefix(&format!("{UPLOAD_PREFIX}{}-", std::process::id()))
            .tempdir_in(&self.upload_dir)
    }
}

/// Writes the request body to a file in `dir`, refusing more than `limit` bytes. A client that
/// sends nothing more for `idle` is answered 408: an upload may be large and slow, but every
/// wait for it is bounded.
pub(super) async fn spool(
    body: Body,
    dir: &tempfile::TempDir,
    csv: bool,
    limit: u64,
    idle: Duration,
) -> Result<PathBuf, ServiceError> {
    let path = dir
        .path()
        .join(if csv { "entities.csv" } else { "entities" });
    // The path goes to the log only (a 500's message), never to the client.
    let internal = |e: std::io::Error| ServiceError {
        code: ErrorCode::Internal,
        message: format!("spooling the entity table to {}: {e}", path.display()),
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
