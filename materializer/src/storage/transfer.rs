//! Whole files in and out of a store.

use std::io::{Read as _, Write as _};
use std::sync::Arc;

use futures::StreamExt as _;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt as _, PutPayload, WriteMultipart};

use super::open::failure;
use crate::error::{Error, Result};

/// Parts of an upload; objects up to this size are written with one `PUT` (atomic too).
const PART_BYTES: usize = 8 << 20;

/// The object's metadata (size, ETag, version), for fingerprints.
pub async fn head(store: &dyn ObjectStore, path: &Path, shown: &str) -> Result<ObjectMeta> {
    store.head(path).await.map_err(|e| failure(shown, &e))
}

/// The object copied whole into a new temporary file (removed when dropped).
pub async fn fetch_to_temp(
    store: &dyn ObjectStore,
    path: &Path,
    shown: &str,
) -> Result<(tempfile::NamedTempFile, ObjectMeta)> {
    let fail = |e: object_store::Error| failure(shown, &e);
    let got = store.get(path).await.map_err(fail)?;
    let meta = got.meta.clone();
    // Named with the object's extension: readers tell formats by it.
    let suffix = path
        .extension()
        .map(|e| format!(".{e}"))
        .unwrap_or_default();
    let mut file = tempfile::Builder::new()
        .prefix(".quiver-fetch-")
        .suffix(&suffix)
        .tempfile()
        .map_err(|e| Error::Invalid(format!("{shown}: cannot create a temporary file: {e}")))?;
    let mut stream = got.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(fail)?;
        file.write_all(&chunk)
            .map_err(|e| Error::Invalid(format!("{shown}: writing a temporary copy: {e}")))?;
    }
    file.flush()
        .map_err(|e| Error::Invalid(format!("{shown}: writing a temporary copy: {e}")))?;
    Ok((file, meta))
}

/// An object written from a finished local file: one `PUT` when small, else a multipart upload
/// completed only after its last part (aborted on any failure, or when `cancel` resolves — with
/// the name of what cancelled it — before the last part), so the key holds either the previous
/// object or the whole new one.
#[derive(Debug)]
pub struct Upload;

impl Upload {
    pub async fn file(
        store: Arc<dyn ObjectStore>,
        path: &Path,
        local: &std::path::Path,
        shown: &str,
        cancel: impl std::future::Future<Output = &'static str>,
    ) -> Result<()> {
        let mut cancel = std::pin::pin!(cancel);
        let context = format!("uploading to {shown}");
        let fail = |e: object_store::Error| failure(&context, &e);
        let io = |e: std::io::Error| {
            Error::Invalid(format!("uploading {} to {shown}: {e}", local.display()))
        };
        let size = std::fs::metadata(local).map_err(io)?.len();
        if size as usize <= PART_BYTES {
            let bytes = std::fs::read(local).map_err(io)?;
            store
                .put(path, PutPayload::from(bytes))
                .await
                .map_err(fail)?;
            return Ok(());
        }
        let upload = store.put_multipart(path).await.map_err(fail)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let result: Result<()> = async {
            let mut file = std::fs::File::open(local).map_err(io)?;
            let mut buffer = vec![0u8; PART_BYTES];
            loop {
                let n = file.read(&mut buffer).map_err(io)?;
                if n == 0 {
                    break;
                }
                // At most two parts in flight: bounded memory, a failure seen early.
                tokio::select! {
                    biased;
                    by = &mut cancel => {
                        return Err(Error::Invalid(format!(
                            "interrupted by {by}: the upload to {shown} was aborted, nothing written"
                        )));
                    }
                    ready = writer.wait_for_capacity(2) => ready.map_err(fail)?,
                }
                writer.write(&buffer[..n]);
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => writer.finish().await.map(|_| ()).map_err(fail),
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(target = %shown, error = %abort, "could not abort the multipart upload; the store keeps its parts until its lifecycle rule removes them");
                }
                Err(e)
            }
        }
    }
}
