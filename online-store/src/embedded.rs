//! The embedded backend: one redb file on disk, same semantics as Redis, no server.
//! A redb file is opened by one process at a time.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

use crate::error::{Error, Result};
use crate::key_codec::watermark_key;
use crate::store::{OnlineStore, SwapEntry, WriteEntry, swap_expected};
use crate::value_codec::should_store;

const VALUES: TableDefinition<&str, &[u8]> = TableDefinition::new("values");
const WATERMARKS: TableDefinition<&str, i64> = TableDefinition::new("watermarks");

#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    db: Arc<Db>,
    path: PathBuf,
}

/// The store file, opened for writing, or — when this process may not write it (a read-only
/// file or file system, an immutable file) — for reading only: serving needs nothing more.
enum Db {
    Writable(Database),
    ReadOnly(redb::ReadOnlyDatabase),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Db::Writable(_) => "Db::Writable",
            Db::ReadOnly(_) => "Db::ReadOnly",
        })
    }
}

impl Db {
    fn begin_read(&self) -> Result<redb::ReadTransaction> {
        match self {
            Db::Writable(d) => d.begin_read(),
            Db::ReadOnly(d) => d.begin_read(),
        }
        .map_err(backend)
    }

    fn begin_write(&self, path: &Path) -> Result<redb::WriteTransaction> {
        match self {
            Db::Writable(d) => d.begin_write().map_err(backend),
            Db::ReadOnly(_) => Err(Error::Config(format!(
                "the embedded store {} is read-only to this process (opened for reading only): writing needs write access to it",
                path.display()
            ))),
        }
    }
}

fn backend(e: impl Into<redb::Error>) -> Error {
    Error::Backend(e.into().to_string())
}

impl EmbeddedStore {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Config(format!("cannot create {}: {e}", dir.display())))?;
        }
        // An existing empty file is a truncated store, not a new one: opening it would serve an
        // empty store as if nothing had been materialized.
        if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
            return Err(corrupt(path, "the file is empty (0 bytes)"));
        }
        let opened = catch_storage_panic(|| Database::create(path))
            .map_err(|p| corrupt(path, &panic_text(&*p)))?;
        if let Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))) = &opened
            && e.kind() == std::io::ErrorKind::PermissionDenied
            && path.is_file()
        {
            return Self::open_read_only(path);
        }
        let db = opened.map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::Unavailable(format!(
                "{} is open in another process, or by another open store in this one (a `quiver serve`, a Python FeatureStore not yet closed): the embedded store allows one at a time; close the other, or use Redis to share it",
                path.display()
            )),
            redb::DatabaseError::Storage(redb::StorageError::Io(e))
                if e.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Error::Config(format!("cannot open embedded store {}: {e}", path.display()))
            }
            // An existing file redb cannot open is damaged (truncated, overwritten, bad header).
            other if path.is_file() => corrupt(path, &other.to_string()),
            other => Error::Config(format!("cannot open embedded store {}: {other}", path.display())),
        })?;
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(VALUES).map_err(backend)?;
        txn.open_table(WATERMARKS).map_err(backend)?;
        txn.commit().map_err(backend)?;
        Ok(EmbeddedStore {
            db: Arc::new(Db::Writable(db)),
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing store this process may not write, for reading (serving) only.
    fn open_read_only(path: &Path) -> Result<Self> {
        let opened = catch_storage_panic(|| redb::Builder::new().open_read_only(path))
            .map_err(|p| corrupt(path, &panic_text(&*p)))?;
        let db = opened.map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::Unavailable(format!(
                "{} is open for writing in another process (the embedded store allows one writer; use Redis to share it)",
                path.display()
            )),
            other => corrupt(path, &other.to_string()),
        })?;
        let store = EmbeddedStore {
            db: Arc::new(Db::ReadOnly(db)),
            path: path.to_path_buf(),
        };
        // A file that never held a materialization has no tables: nothing to serve from it.
        let txn = store.db.begin_read()?;
        for table in [VALUES.name(), WATERMARKS.name()] {
            let found = txn
                .list_tables()
                .map_err(backend)?
                .any(|t| t.name() == table);
            if !found {
                return Err(corrupt(path, &format!("it has no `{table}` table")));
            }
        }
        tracing::warn!(
            path = %path.display(),
            "the embedded store is not writable by this process: opened read-only (serving works, materializing into it does not)"
        );
        Ok(store)
    }

    /// In one transaction, each entry's key gets `next(current value, entry)` when that is
    /// `Some` (a compare-and-set: `None` leaves it). Returns, per entry, whether it was stored.
    async fn replace_each<E: Send + Sync + 'static>(
        &self,
        entries: Vec<E>,
        key: fn(&E) -> &String,
        next: NextValue<E>,
    ) -> Result<Vec<bool>> {
        self.blocking(move |db, path| {
            let txn = db.begin_write(path)?;
            let mut stored = Vec::with_capacity(entries.len());
            {
                let mut table = txn.open_table(VALUES).map_err(backend)?;
                for e in &entries {
                    let k = key(e).as_str();
                    let value = next(
                        table.get(k).map_err(backend)?.as_ref().map(|v| v.value()),
                        e,
                    );
                    if let Some(value) = &value {
                        table.insert(k, value.as_slice()).map_err(backend)?;
                    }
                    stored.push(value.is_some());
                }
            }
            txn.commit().map_err(backend)?;
            Ok(stored)
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db, &Path) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        let path = self.path.clone();
        // redb panics on some corruptions: a corrupt store is an error, never a crash.
        tokio::task::spawn_blocking(move || {
            catch_storage_panic(|| f(&db, &path))
                .unwrap_or_else(|p| Err(corrupt(&path, &panic_text(&*p))))
        })
        .await
        .map_err(|e| Error::Backend(format!("embedded store task failed: {e}")))?
    }
}

/// A compare-and-set's new value from the current one (`None`: leave it).
type NextValue<E> = fn(Option<&[u8]>, &E) -> Option<Vec<u8>>;

thread_local! {
    /// Set while this thread runs storage code whose panics are caught and reported as errors.
    static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic of the storage engine (redb panics on some damaged files) into
/// `Err`: the caller reports the store as damaged, with how to rebuild it. The panic's own
/// message and backtrace, which would precede that error on stderr, are kept for the debug
/// log only; panics anywhere else are printed as before.
fn catch_storage_panic<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(std::cell::Cell::get) {
                tracing::debug!(%info, "storage engine panic caught");
            } else {
                previous(info);
            }
        }));
    });
    let was = CATCHING.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(was));
    result
}

/// The error of a damaged store file, with how to recover.
fn corrupt(path: &Path, what: &str) -> Error {
    Error::Corrupt(format!(
        "the embedded store {} is damaged ({what}); move it aside and run `quiver materialize-incremental` to rebuild it from the sources",
        path.display()
    ))
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the storage engine failed".into())
}

fn watermark_field(project: &str, view: &str, generation: u64) -> String {
    format!("{}:{generation}", watermark_key(project, view))
}

#[async_trait]
impl OnlineStore for EmbeddedStore {
    fn prefers_key_order(&self) -> bool {
        true
    }

    async fn write(&self, entries: Vec<WriteEntry>) -> Result<u64> {
        self.blocking(move |db, path| {
            let txn = db.begin_write(path)?;
            let mut written = 0;
            {
                let mut table = txn.open_table(VALUES).map_err(backend)?;
                for e in &entries {
                    let take = match table.get(e.key.as_str()).map_err(backend)? {
                        Some(old) => should_store(&e.blob, old.value()),
                        None => true,
                    };
                    if take {
                        table
                            .insert(e.key.as_str(), e.blob.as_slice())
                            .map_err(backend)?;
                        written += 1;
                    }
                }
            }
            txn.commit().map_err(backend)?;
            Ok(written)
        })
        .await
    }

    async fn swap(&self, entries: Vec<SwapEntry>) -> Result<Vec<bool>> {
        self.replace_each(
            entries,
            |e| &e.key,
            |current, e| (swap_expected(current) == e.expected).then(|| e.blob.clone()),
        )
        .await
    }

    async fn read_live(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        Ok(self
            .read(keys)
            .await?
            .into_iter()
            .map(|v| v.map(|v| crate::store::live_part(&v)))
            .collect())
    }

    async fn swap_live(&self, entries: Vec<crate::store::LiveSwapEntry>) -> Result<Vec<bool>> {
        self.replace_each(
            entries,
            |e| &e.key,
            |current, e| current.and_then(|v| crate::store::splice_live(v, e)),
        )
        .await
    }

    async fn read(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        let keys = keys.to_vec();
        self.blocking(move |db, _| {
            let txn = db.begin_read()?;
            let table = txn.open_table(VALUES).map_err(backend)?;
            keys.iter()
                .map(|k| {
                    Ok(table
                        .get(k.as_str())
                        .map_err(backend)?
                        .map(|v| v.value().to_vec()))
                })
                .collect()
        })
        .await
    }

    async fn watermark(&self, project: &str, view: &str, generation: u64) -> Result<Option<i64>> {
        let field = watermark_field(project, view, generation);
        self.blocking(move |db, _| {
            let txn = db.begin_read()?;
            let table = txn.open_table(WATERMARKS).map_err(backend)?;
            Ok(table
                .get(field.as_str())
                .map_err(backend)?
                .map(|v| v.value()))
        })
        .await
    }

    async fn advance_watermark(
        &self,
        project: &str,
        view: &str,
        generation: u64,
        end_ns: i64,
    ) -> Result<()> {
        let field = watermark_field(project, view, generation);
        self.blocking(move |db, path| {
            let txn = db.begin_write(path)?;
            {
                let mut table = txn.open_table(WATERMARKS).map_err(backend)?;
                let current = table
                    .get(field.as_str())
                    .map_err(backend)?
                    .map(|v| v.value());
                if current.is_none_or(|c| c < end_ns) {
                    table.insert(field.as_str(), end_ns).map_err(backend)?;
                }
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    fn location(&self) -> String {
        format!("embedded store {}", self.path.display())
    }
}
