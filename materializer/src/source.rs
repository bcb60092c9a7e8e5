//! A view's input as a DataFusion plan: its Parquet source (after `field_mapping`, available to
//! the view's SQL as the table `source`), then its `query`, if any.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext, col};
use quiver_registry::source_schema::{
    ParquetSchemaResolver, SchemaResolver, is_url, resolve_source_files,
};
use quiver_registry::{FeatureView, Source};

use crate::error::{Error, Result};

/// A fresh DataFusion session for one job.
pub fn session(partitions: usize) -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(partitions.max(1))
        .with_batch_size(8192)
        .with_information_schema(false);
    SessionContext::new_with_config(config)
}

/// The rows a view is computed from: the source with `field_mapping` applied, then `query`.
pub async fn view_input(
    ctx: &SessionContext,
    root: &std::path::Path,
    source: &Source,
    query: Option<&str>,
) -> Result<DataFrame> {
    let context = || format!("source `{}` ({})", source.name, source.path);
    if is_url(&source.path) {
        return Err(Error::Invalid(format!(
            "{}: object-store URLs are not supported yet; use a local path",
            context()
        )));
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
    let mut df = ctx
        .read_table(Arc::new(table))
        .map_err(Error::engine(context()))?;
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
    ctx.sql(query).await.map_err(Error::engine(format!(
        "query of a view over source `{}`",
        source.name
    )))
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
        let plain = footers.view_input_schema(source, None)?;
        if query.is_none() || plain.is_none() {
            return Ok(plain);
        }
        // Planning is async; run it on a private runtime on its own thread so this works from
        // both synchronous and asynchronous callers.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .map_err(|e| e.to_string())?;
                    runtime.block_on(async {
                        let ctx = session(1);
                        let df = view_input(&ctx, &self.root, source, query).await.map_err(
                            |e| match e {
                                Error::Engine { source, .. } => {
                                    format!("its query fails: {source}")
                                }
                                other => other.to_string(),
                            },
                        )?;
                        Ok(Some(Arc::new(df.schema().as_arrow().clone())))
                    })
                })
                .join()
                .map_err(|_| "schema planning panicked".to_string())?
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
