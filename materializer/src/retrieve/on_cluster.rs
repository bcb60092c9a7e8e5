//! A view's merge on a Ballista cluster (`engine: ballista`): the whole join runs on the
//! executors — the view's scan, filter and sort, the entity keys' sort, and the merge itself
//! ([`super::asof::AsOfExec`] or [`super::window::WindowAggExec`], split by the join keys'
//! hash into the cluster's partitions) — and only its output, one row per entity row, comes
//! back to be put in input order.
//!
//! The plan is built here as DataFusion physical operators (the same ones the local engine
//! runs) and submitted to the scheduler as a physical plan; Quiver's merges travel through
//! [`crate::cluster::QuiverPhysicalCodec`], which the scheduler and executors register.
//!
//! The executors read the entity keys (cast to the view's key types, with their times and
//! positions) from a Parquet file this process writes to `engine.staging` — by default a
//! directory of this process's own in the system's temporary directory (made by it, mode 0700:
//! no other user can read the keys or put a file in their place), readable by executors on
//! this machine running as the same user; a shared directory or an object-store URL for
//! executors elsewhere — and removes when the view's output has been read (or the retrieval is
//! dropped, or [`remove_staged`] is called). A bad entity key fails here, while staging, with the local engine's
//! message.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use arrow::datatypes::SchemaRef;
use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt as _;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::{ObjectStore, ObjectStoreExt as _};
use parquet::arrow::ArrowWriter;

use crate::cluster::{Cluster, QuiverPhysicalCodec};
use crate::error::{Error, Result};
use crate::storage::{StoreUrl, Upload, open};

/// A staged file of entity keys, removed when dropped (or by [`Staged::remove`]).
#[derive(Debug)]
pub(super) struct Staged {
    /// The file as the executors read it (a path or URL).
    location: String,
    place: Place,
}

#[derive(Debug)]
enum Place {
    Local(PathBuf),
    Remote {
        store: Arc<dyn ObjectStore>,
        url: StoreUrl,
    },
}

impl Staged {
    /// Removes the file now; a failure is only logged (the run's result does not depend on it).
    async fn remove(&self) {
        match &self.place {
            Place::Local(path) => remove_local(path),
            Place::Remote { store, url } => {
                if let Err(e) = store.delete(&url.path).await {
                    tracing::warn!(file = %url.shown, error = %e, "could not remove staged entity keys");
                }
            }
        }
    }
}

fn remove_local(path: &std::path::Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(file = %path.display(), error = %e, "could not remove staged entity keys");
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        match &self.place {
            Place::Local(path) => remove_local(path),
            Place::Remote { store, url } => {
                // Usually removed already at the end of the output; this covers a retrieval
                // dropped before it. Pending until done, so that [`remove_staged`] finishes it
                // when the runtime is left before the spawned delete ran.
                static NEXT: AtomicU64 = AtomicU64::new(0);
                let id = NEXT.fetch_add(1, Ordering::Relaxed);
                let (store, path) = (store.clone(), url.path.clone());
                pending()
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, (store.clone(), path.clone()));
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        if store.delete(&path).await.is_ok() {
                            pending()
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .remove(&id);
                        }
                    });
                }
            }
        }
    }
}

/// Staged objects whose retrieval was dropped, until their delete is done.
type PendingDeletes =
    std::collections::HashMap<u64, (Arc<dyn ObjectStore>, object_store::path::Path)>;

fn pending() -> &'static Mutex<PendingDeletes> {
    static PENDING: OnceLock<Mutex<PendingDeletes>> = OnceLock::new();
    PENDING.get_or_init(Default::default)
}

/// The staged files of this process that may still exist.
fn live() -> &'static Mutex<Vec<Weak<Staged>>> {
    static LIVE: OnceLock<Mutex<Vec<Weak<Staged>>>> = OnceLock::new();
    LIVE.get_or_init(Default::default)
}

/// Removes the entity keys staged by retrievals of this process that are still held — by
/// work an ended retrieval left running, which a process about to exit does not wait for (a
/// dropped retrieval's files go when its work is dropped). Call before such an exit.
pub async fn remove_staged() {
    let held: Vec<Arc<Staged>> = {
        let mut live = live().lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|w| w.strong_count() > 0);
        live.iter().filter_map(Weak::upgrade).collect()
    };
    for staged in held {
        staged.remove().await;
    }
    let dropped: Vec<_> = pending()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .map(|(_, v)| v)
        .collect();
    for (store, path) in dropped {
        if let Err(e) = store.delete(&path).await {
            tracing::warn!(file = %path, error = %e, "could not remove staged entity keys");
        }
    }
    // This process's own directory goes too once empty (a retrieval still running keeps it).
    let mut dir = private_dir().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = dir.as_ref()
        && std::fs::remove_dir(path).is_ok()
    {
        *dir = None;
    }
}

/// A name no other staged file of this or another process has.
fn staged_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "quiver-entities-{}-{nanos}-{}.parquet",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// This process's own staging directory, made on first use in the system's temporary
/// directory with mode 0700 by this process (a name that existed is never reused: another
/// user cannot have made it, nor read or replace the files in it).
fn private_staging() -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    let mut dir = private_dir().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = dir.as_ref().filter(|p| p.is_dir()) {
        return Ok(path.clone());
    }
    let tmp = std::env::temp_dir();
    for attempt in 0..16 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = tmp.join(format!(
            "quiver-staging-{}-{nanos}-{attempt}",
            std::process::id()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {
                *dir = Some(path.clone());
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(Error::Unavailable(format!(
                    "creating a staging directory in {} for the cluster's executors: {e}; set `engine.staging`",
                    tmp.display()
                )));
            }
        }
    }
    Err(Error::Unavailable(format!(
        "could not create a new staging directory in {}; set `engine.staging`",
        tmp.display()
    )))
}

fn private_dir() -> &'static Mutex<Option<PathBuf>> {
    static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
    &DIR
}

/// Writes `entities` (the entity keys of one view, run here) to a Parquet file under the
/// cluster's staging location; returns the plan that reads it (with `entities`' schema) and
/// the file. A staging store's `storage:` map is recorded in `cluster_ctx`, so the job's
/// processes open it the same way.
pub(super) async fn stage(
    ctx: &SessionContext,
    cluster_ctx: &SessionContext,
    entities: Arc<dyn ExecutionPlan>,
    cluster: &Cluster,
) -> Result<(Arc<dyn ExecutionPlan>, Arc<Staged>)> {
    let schema = entities.schema();
    let name = staged_name();
    let remote = cluster
        .staging
        .as_deref()
        .filter(|s| quiver_registry::source_schema::is_url(s) && !s.starts_with("file://"));
    // The file is written locally first: in the configured directory, else (also before an
    // upload) in this process's private one.
    let (local_dir, private) = match (&cluster.staging, remote) {
        (Some(dir), None) => {
            let dir = match quiver_registry::source_schema::file_url_local(dir) {
                Some(path) => PathBuf::from(path),
                None => std::path::absolute(dir)
                    .map_err(|e| Error::Invalid(format!("engine.staging `{dir}`: {e}")))?,
            };
            std::fs::create_dir_all(&dir).map_err(|e| {
                Error::Unavailable(format!(
                    "creating the staging directory {} (engine.staging): {e}",
                    dir.display()
                ))
            })?;
            (dir, false)
        }
        _ => (private_staging()?, true),
    };
    let local = local_dir.join(&name);
    // Owned from here on: a failure below removes what was written.
    let local_file = Staged {
        location: local.display().to_string(),
        place: Place::Local(local.clone()),
    };
    write_parquet(ctx, entities, &local, private).await?;
    let staged = match remote {
        None => local_file,
        Some(prefix) => {
            let text = format!("{}/{name}", prefix.trim_end_matches('/'));
            let url = StoreUrl::parse(&text)?;
            let store = open(&url, &cluster.staging_storage, &|v| std::env::var(v).ok())?;
            crate::cluster::forward_storage(cluster_ctx, &url.root, &cluster.staging_storage)?;
            // Owned before the upload: an upload dropped part-way may still have stored it.
            let remote_file = Staged {
                location: text.clone(),
                place: Place::Remote {
                    store: store.clone(),
                    url: url.clone(),
                },
            };
            let uploaded = Upload::file(
                store.clone(),
                &url.path,
                &local,
                &url.shown,
                std::future::pending(),
            )
            .await;
            drop(local_file);
            uploaded?;
            // A source's store in the same bucket (with its read counters) stays registered.
            let registered = datafusion::execution::object_store::ObjectStoreUrl::parse(&url.root)
                .is_ok_and(|root| ctx.runtime_env().object_store(&root).is_ok());
            if !registered {
                ctx.register_object_store(&url.root, store);
            }
            remote_file
        }
    };
    let staged = Arc::new(staged);
    {
        let mut live = live().lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(&staged));
    }
    let options = ParquetReadOptions::default().schema(&schema);
    let plan = ctx
        .read_parquet(staged.location.as_str(), options)
        .await
        .map_err(Error::engine("reading the staged entity keys"))?
        .create_physical_plan()
        .await
        .map_err(Error::engine("reading the staged entity keys"))?;
    Ok((plan, staged))
}

/// Writes `entities` to a new file at `path` (never one put there, nor a link followed); in
/// this process's `private` directory readable by this user only, in a configured one with
/// the directory's usual permissions (executors there may run as another user).
async fn write_parquet(
    ctx: &SessionContext,
    entities: Arc<dyn ExecutionPlan>,
    path: &std::path::Path,
    private: bool,
) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |e: std::io::Error| {
        Error::Unavailable(format!(
            "staging the entity keys in {} (engine.staging): {e}",
            path.display()
        ))
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o666 })
        .open(path)
        .map_err(io)?;
    let mut writer = ArrowWriter::try_new(file, entities.schema(), None)
        .map_err(|e| Error::Unavailable(format!("staging the entity keys: {e}")))?;
    let mut stream =
        execute_stream(entities, ctx.task_ctx()).map_err(Error::engine("the entity table"))?;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(super::stream_error)?;
        writer
            .write(&batch)
            .map_err(|e| Error::Unavailable(format!("staging the entity keys: {e}")))?;
    }
    writer
        .close()
        .map_err(|e| Error::Unavailable(format!("staging the entity keys: {e}")))?;
    Ok(())
}

/// `plan` (a view's merge, reading `staged`) as one job of the cluster whose session is
/// `cluster_ctx`: a plan of one partition, here, that submits the job when executed and
/// streams its output; the staged file is removed once the output has been read.
pub(super) async fn job(
    ctx: &SessionContext,
    cluster_ctx: &SessionContext,
    cluster: &Cluster,
    plan: Arc<dyn ExecutionPlan>,
    staged: Arc<Staged>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = plan.schema();
    let job = Arc::new(Job {
        schema: schema.clone(),
        plan,
        scheduler: format!("http://{}:{}", cluster.host, cluster.port),
        session_id: cluster_ctx.session_id(),
        config: cluster_ctx.copied_config(),
        staged,
    });
    let table =
        StreamingTable::try_new(schema, vec![job]).map_err(Error::engine("the cluster's job"))?;
    ctx.read_table(Arc::new(table))
        .map_err(Error::engine("the cluster's job"))?
        .create_physical_plan()
        .await
        .map_err(Error::engine("the cluster's job"))
}

#[derive(Debug)]
struct Job {
    schema: SchemaRef,
    plan: Arc<dyn ExecutionPlan>,
    scheduler: String,
    session_id: String,
    config: SessionConfig,
    staged: Arc<Staged>,
}

impl PartitionStream for Job {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (scheduler, plan, session_id, config) = (
            self.scheduler.clone(),
            self.plan.clone(),
            self.session_id.clone(),
            self.config.clone(),
        );
        let submitted = async move {
            execute_physical_plan::<PhysicalPlanNode>(
                scheduler,
                &config.ballista_config(),
                plan,
                &QuiverPhysicalCodec::default(),
                session_id,
                config,
            )
            .await
        };
        let location = self.staged.location.clone();
        let staged = self.staged.clone();
        let cleanup = futures::stream::once(async move {
            staged.remove().await;
            None
        })
        .filter_map(futures::future::ready);
        let output = futures::stream::once(submitted)
            .try_flatten()
            .map_err(move |e| unreadable_staging(e, &location))
            .chain(cleanup);
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), output))
    }
}

/// `stream` (a retrieval's output on the cluster at `url`) with the failure of its row checks
/// said as what it means there: the cluster returned rows missing or repeated for some entity
/// rows — seen after Ballista re-ran the tasks of a lost executor — so nothing is written and
/// the run can be repeated.
pub(super) fn checked(stream: SendableRecordBatchStream, url: &str) -> SendableRecordBatchStream {
    let schema = stream.schema();
    let url = url.to_string();
    let checked = stream.map_err(move |e| {
        let text = e.to_string();
        // The checks that every entity row comes back exactly once (gather, zip).
        let inconsistent = [
            "as-of join lost an entity row",
            "as-of join out of step",
            "as-of join ended ",
            "as-of join row ",
        ];
        if inconsistent.iter().any(|m| text.contains(m)) {
            DataFusionError::External(Box::new(Error::Unavailable(format!(
                "the Ballista cluster at {url} returned an inconsistent result (rows missing or repeated; seen after it re-ran the tasks of a lost executor): nothing was written; run it again ({text})"
            ))))
        } else {
            e
        }
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, checked))
}

/// An error of a job that could not read its staged entity keys (at `location`) says where
/// they were and what to set: executors elsewhere cannot read this machine's directories.
fn unreadable_staging(e: DataFusionError, location: &str) -> DataFusionError {
    let name = location.rsplit('/').next().unwrap_or(location);
    if !e.to_string().contains(name) {
        return e;
    }
    DataFusionError::External(Box::new(Error::Unavailable(format!(
        "the cluster could not read the entity keys staged at {}: set `engine.staging` in quiver.yaml to a place every executor can read (a shared directory, or an object-store URL such as s3://bucket/quiver-staging/ with `engine.staging_storage`) ({e})",
        quiver_registry::validate::redact(location)
    ))))
}

#[cfg(test)]
mod tests {
    use datafusion::error::DataFusionError;

    use super::unreadable_staging;

    #[test]
    fn a_staged_file_the_executors_cannot_read_says_what_to_set() {
        let location = "/tmp/quiver-staging/quiver-entities-1-2-3.parquet";
        let missing = DataFusionError::Execution(
            "Job 03 failed: Error executing task: Object at location tmp/quiver-staging/quiver-entities-1-2-3.parquet not found".into(),
        );
        let text = unreadable_staging(missing, location).to_string();
        assert!(
            text.contains("engine.staging")
                && text.contains(location)
                && text.contains("not found"),
            "{text}"
        );
        let other = DataFusionError::Execution("Job 03 failed: division by zero".into());
        assert_eq!(
            unreadable_staging(other, location).to_string(),
            "Execution error: Job 03 failed: division by zero"
        );
    }
}
