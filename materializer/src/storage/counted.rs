//! A store that counts what is read through it (data requests, bytes, distinct files) and
//! hides, from listings, what lies below a dataset's directory under a name starting with `.`
//! or `_` (writers' temporary files, `_SUCCESS` markers, `_temporary/` directories), as local
//! directory sources always have.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// What a job read: requests for data (not `HEAD`s or listings), bytes, distinct files.
#[derive(Debug, Default)]
pub struct Reads {
    requests: AtomicU64,
    bytes: AtomicU64,
    files: Mutex<HashSet<String>>,
    /// Dataset directories read in this session, by store (`s3://bucket`).
    datasets: Mutex<HashMap<String, Vec<Path>>>,
}

impl Reads {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    pub fn files(&self) -> u64 {
        self.files.lock().map_or(0, |f| f.len() as u64)
    }

    /// Bytes read outside a store wrapped by [`Counted`] (a footer read to plan a scan).
    pub fn add_bytes(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Names below `prefix` in the store at `root` that start with `.` or `_` are hidden.
    pub fn add_dataset(&self, root: &url::Url, prefix: &Path) {
        if let Ok(mut d) = self.datasets.lock() {
            let prefixes = d.entry(root.to_string()).or_default();
            if !prefixes.contains(prefix) {
                prefixes.push(prefix.clone());
            }
        }
    }

    /// Whether `location` lies below a dataset directory of `root` under a hidden name.
    fn hidden(&self, root: &str, location: &Path) -> bool {
        let Ok(d) = self.datasets.lock() else {
            return false;
        };
        d.get(root).is_some_and(|prefixes| {
            prefixes.iter().any(|p| {
                location
                    .prefix_match(p)
                    .is_some_and(|mut parts| parts.any(|s| s.as_ref().starts_with(['.', '_'])))
            })
        })
    }

    fn record(&self, store: &str, location: &Path, bytes: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Ok(mut files) = self.files.lock() {
            files.insert(format!("{store}/{location}"));
        }
    }
}

/// `inner`, counting reads into `reads`.
#[derive(Debug)]
pub struct Counted {
    inner: Arc<dyn ObjectStore>,
    reads: Arc<Reads>,
    name: String,
    root: String,
}

impl Counted {
    /// `inner`, the store at `root` (`s3://bucket`, `file://`).
    pub fn new(inner: Arc<dyn ObjectStore>, reads: Arc<Reads>, root: &url::Url) -> Counted {
        let name = inner.to_string();
        Counted {
            inner,
            reads,
            name,
            root: root.to_string(),
        }
    }
}

impl fmt::Display for Counted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counted({})", self.inner)
    }
}

impl Counted {
    /// `listing` without what [`Reads::add_dataset`] hides.
    fn visible(
        &self,
        listing: BoxStream<'static, Result<ObjectMeta>>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let (reads, root) = (self.reads.clone(), self.root.clone());
        listing
            .filter(move |m| {
                let keep = m
                    .as_ref()
                    .map_or(true, |m| !reads.hidden(&root, &m.location));
                futures::future::ready(keep)
            })
            .boxed()
    }
}

#[async_trait]
impl ObjectStore for Counted {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let head = options.head;
        let result = self.inner.get_opts(location, options).await?;
        if !head {
            self.reads
                .record(&self.name, location, result.range.end - result.range.start);
        }
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let out = self.inner.get_ranges(location, ranges).await?;
        let bytes = out.iter().map(|b| b.len() as u64).sum();
        self.reads.record(&self.name, location, bytes);
        Ok(out)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.visible(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.visible(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut listed = self.inner.list_with_delimiter(prefix).await?;
        listed
            .common_prefixes
            .retain(|p| !self.reads.hidden(&self.root, p));
        listed
            .objects
            .retain(|m| !self.reads.hidden(&self.root, &m.location));
        Ok(listed)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
