//! A view's input as a DataFusion plan: its Parquet source (after `field_mapping`, available to
//! the view's SQL as the table `source`), then its `query`, if any.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext, col};
use quiver_registry::source_schema::{
    ParquetSchemaResolver, SchemaResolver, is_url, resolve_source_files,
};
use quiver_registry::{FeatureView, Source};

use crate::error::{Error, Result};
use crate::storage::{Counted, Reads};
use quiver_registry::validate::redact;

mod dataset;

pub use dataset::{Dataset, engine_text, footer_rows, partition_filter};

/// A fresh DataFusion session for one job. What it reads (local files and object stores) is
/// counted: [`reads`].
pub fn session(partitions: usize) -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(partitions.max(1))
        .with_batch_size(8192)
        .with_information_schema(false);
    counting(SessionContext::new_with_config, config)
}

/// The session a job's scans run in: [`session`], or with `cluster` a session whose plans its
/// Ballista scheduler runs (what this process reads to plan is still counted).
pub async fn engine_session(
    partitions: usize,
    cluster: Option<&crate::cluster::Cluster>,
) -> Result<SessionContext> {
    let local = session(partitions);
    match cluster {
        Some(cluster) => cluster.session(&local).await,
        None => Ok(local),
    }
}

/// The session `make` builds from `config`, counting what it reads ([`reads`]): object stores
/// are counted as [`Dataset::read`] registers them, local files from here on.
pub fn counting(
    make: impl FnOnce(SessionConfig) -> SessionContext,
    config: SessionConfig,
) -> SessionContext {
    let reads = Arc::new(Reads::default());
    let mut config = config.with_extension(reads.clone());
    // Every `*.parquet` below a dataset's directory is read, in subdirectories too (names
    // starting with `.` or `_` are hidden by [`Counted`]).
    config
        .options_mut()
        .execution
        .listing_table_ignore_subdirectory = false;
    let ctx = make(config);
    let local: Arc<dyn object_store::ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new());
    let root = url::Url::parse("file://").expect("a valid URL");
    ctx.register_object_store(&root, Arc::new(Counted::new(local, reads, &root)));
    ctx
}

/// What the session's scans have read so far.
pub fn reads(ctx: &SessionContext) -> Arc<Reads> {
    ctx.state()
        .config()
        .get_extension::<Reads>()
        .unwrap_or_default()
}

/// The rows a view is computed from: the source with `field_mapping` applied, then `query`.
/// `range` (`[start, end)` in ns, `i64::MIN` for no start) lets a source with a
/// `time_partition` list and read only the partitions that can hold rows of the range — for
/// views without a query (a query may move rows in time); the caller filters rows itself.
pub async fn view_input(
    ctx: &SessionContext,
    root: &std::path::Path,
    source: &Source,
    query: Option<&str>,
    range: Option<(i64, i64)>,
) -> Result<DataFrame> {
    let context = || format!("source `{}` ({})", source.name, redact(&source.path));
    if is_url(&source.path) || !source.partition_columns.is_empty() {
        let dataset = Dataset::of(root, source)?;
        let mut df = dataset.read(ctx, source, reads(ctx)).await?;
        if let (Some((start, end)), Some(tp), None) = (range, &source.time_partition, query)
            && let Some(filter) = partition_filter(tp, source, start, end)
        {
            df = df.filter(filter).map_err(Error::engine(context()))?;
        }
        return finish(ctx, df, source, query).await;
    }
    let files = resolve_source_files(root, &source.path)
        .map_err(|e| Error::Invalid(format!("{}: {e}", context())))?;
    let urls = files
        .iter()
        .map(|f| ListingTableUrl::parse(f.to_string_lossy()))
        .collect::<datafusion::error::Result<Vec<_>>>()
        .map_err(Error::engine(context()))?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .infer_schema(&ctx.state())
        .await
        .map_err(Error::engine(context()))?;
    let table = ListingTable::try_new(config).map_err(Error::engine(context()))?;
    let df = ctx
        .read_table(Arc::new(table))
        .map_err(Error::engine(context()))?;
    finish(ctx, df, source, query).await
}

/// The source's rows with `field_mapping` applied, then `query`.
async fn finish(
    ctx: &SessionContext,
    mut df: DataFrame,
    source: &Source,
    query: Option<&str>,
) -> Result<DataFrame> {
    let context = || format!("source `{}` ({})", source.name, redact(&source.path));
    if !source.field_mapping.is_empty() {
        let columns: Vec<_> = df
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let c = col(format!("\"{}\"", f.name()));
                match source.field_mapping.get(f.name()) {
                    Some(to) => c.alias(to),
                    None => c,
                }
            })
            .collect();
        df = df.select(columns).map_err(Error::engine(context()))?;
    }
    let Some(query) = query else { return Ok(df) };
    let _ = ctx.deregister_table("source");
    ctx.register_table("source", df.into_view())
        .map_err(Error::engine(context()))?;
    let context = format!("query of a view over source `{}`", source.name);
    // Planned first and checked before anything runs: a view's query may only read. DDL
    // (`CREATE EXTERNAL TABLE … LOCATION '/etc/passwd'` would read any file while planning),
    // DML (`INSERT`, `COPY … TO` would write) and statements (`SET`) are refused.
    let plan = ctx
        .state()
        .create_logical_plan(query)
        .await
        .map_err(Error::engine(context.clone()))?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| {
            Error::Invalid(format!(
                "{context}: a view's query may only read (SELECT …); {} is refused",
                refused_kind(&e)
            ))
        })?;
    ctx.execute_logical_plan(plan)
        .await
        .map_err(Error::engine(context))
}

/// What [`SQLOptions::verify_plan`] refused, in a few words (`DDL not supported: CreateExternalTable`
/// → `CreateExternalTable`).
fn refused_kind(e: &datafusion::error::DataFusionError) -> String {
    let text = e.strip_backtrace();
    let text = text.trim_start_matches("Error during planning: ");
    match text.split_once(": ") {
        Some((kind, what)) => format!("{} ({what})", kind.trim_end_matches(" not supported")),
        None => text.to_string(),
    }
}

/// The columns a view reads, from the query engine: used by `apply` so that views with a SQL
/// `query` are checked as exactly as plain ones. Plain views are read from the Parquet footers.
#[derive(Debug, Clone)]
pub struct DataFusionSchemaResolver {
    pub root: std::path::PathBuf,
}

impl SchemaResolver for DataFusionSchemaResolver {
    fn view_input_schema(
        &self,
        source: &Source,
        query: Option<&str>,
    ) -> Result<Option<SchemaRef>, String> {
        let footers = ParquetSchemaResolver {
            root: self.root.clone(),
        };
        // Object stores and partitioned directories are read as datasets: their files'
        // footers are checked here, and the columns are what DataFusion reads.
        let dataset = is_url(&source.path) || !source.partition_columns.is_empty();
        let plain = match dataset {
            true => None,
            false => footers.view_input_schema(source, None)?,
        };
        if !dataset && (query.is_none() || plain.is_none()) {
            return Ok(plain);
        }
        // Planning is async; run it on a private runtime on its own thread so this works from
        // both synchronous and asynchronous callers.
        crate::storage::block_on(|| async {
            if dataset {
                let d = Dataset::of(&self.root, source).map_err(|e| e.to_string())?;
                d.check_files(source).await?;
            }
            let ctx = session(1);
            let df = view_input(&ctx, &self.root, source, query, None)
                .await
                .map_err(|e| match e {
                    Error::Engine { source, .. } => format!("its query fails: {source}"),
                    other => other.to_string(),
                })?;
            Ok(Some(Arc::new(df.schema().as_arrow().clone())))
        })
    }
}

/// Names of the columns a view needs from its input: join keys, timestamps, features.
pub fn needed_columns(view: &FeatureView, join_keys: &[String], source: &Source) -> Vec<String> {
    let mut cols: Vec<String> = join_keys.to_vec();
    cols.push(source.timestamp_field.clone());
    if let Some(c) = &source.created_timestamp_field {
        cols.push(c.clone());
    }
    cols.extend(view.features.iter().map(|f| f.name.clone()));
    cols
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    /// A repository root with `data/s.parquet` (one `id` column) and its source.
    fn repo() -> (tempfile::TempDir, Source) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))])
                .unwrap();
        let file = std::fs::File::create(dir.path().join("data/s.parquet")).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let source = Source {
            name: "s".into(),
            path: "data/s.parquet".into(),
            timestamp_field: "ts".into(),
            created_timestamp_field: None,
            field_mapping: Default::default(),
            description: String::new(),
            tags: Default::default(),
            ..Default::default()
        };
        (dir, source)
    }

    /// A view's query may only read: DDL (which would read any file while planning), DML and
    /// statements are refused as the user's mistake, before anything runs, and the message says
    /// nothing about the files they name.
    #[tokio::test]
    async fn queries_that_are_not_reads_are_refused_before_they_run() {
        let (dir, source) = repo();
        let out = dir.path().join("written.csv");
        let cases = [
            (
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'".to_string(),
                "DDL",
            ),
            (
                "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/nonexistent/quiver-probe/'"
                    .to_string(),
                "DDL",
            ),
            ("CREATE TABLE t AS SELECT * FROM source".to_string(), "DDL"),
            ("CREATE VIEW v AS SELECT * FROM source".to_string(), "DDL"),
            ("DROP TABLE source".to_string(), "DDL"),
            (
                format!(
                    "COPY (SELECT * FROM source) TO '{}' STORED AS CSV",
                    out.display()
                ),
                "DML",
            ),
            ("INSERT INTO source VALUES (3)".to_string(), "DML"),
            (
                "SET datafusion.execution.batch_size = 1".to_string(),
                "Statement",
            ),
        ];
        for (query, kind) in &cases {
            let ctx = session(1);
            let err = view_input(&ctx, dir.path(), &source, Some(query), None)
                .await
                .err()
                .unwrap_or_else(|| panic!("`{query}` was accepted"));
            let Error::Invalid(message) = &err else {
                panic!("`{query}`: not a user error: {err}");
            };
            assert!(message.contains("may only read (SELECT …)"), "{message}");
            assert!(message.contains(kind), "{query}: {message}");
            for leak in ["No files found", "passwd", "nonexistent", "root:"] {
                assert!(!message.contains(leak), "{query}: {message}");
            }
            // Nothing ran: the source is still there, nothing was written.
            assert!(ctx.table_exist("source").unwrap(), "{query}");
            assert!(!ctx.table_exist("t").unwrap(), "{query}");
        }
        assert!(!out.exists(), "COPY wrote {}", out.display());

        // Reading still works, and `apply`'s resolver says the same as the materializer.
        let ctx = session(1);
        let df = view_input(
            &ctx,
            dir.path(),
            &source,
            Some("SELECT id * 2 AS d FROM source"),
            None,
        )
        .await
        .unwrap();
        assert_eq!(df.count().await.unwrap(), 2);
        let resolver = DataFusionSchemaResolver {
            root: dir.path().to_path_buf(),
        };
        let err = resolver
            .view_input_schema(&source, Some(&cases[0].0))
            .unwrap_err();
        assert!(err.contains("may only read (SELECT …)"), "{err}");
        assert!(!err.contains("root:"), "{err}");
    }
}
