//! A source read as a dataset: a directory (or glob) of Parquet files on object storage or
//! laid out in Hive partitions locally, listed by DataFusion, its partition columns read from
//! the directory names, and — given a time range and a `time_partition` — only the partitions
//! that can hold rows of the range listed and read.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{DataFrame, Expr, SessionContext, col, lit};
use futures::TryStreamExt as _;
use object_store::ObjectStore;
use quiver_registry::source_schema::is_url;
use quiver_registry::{ScalarType, Source, TimePartition, ValueType};

use crate::error::{Error, Result};
use crate::storage::{Counted, Reads, StoreUrl, explain, failure, open};

const HOUR_NS: i64 = 3_600_000_000_000;
const DAY_NS: i64 = 24 * HOUR_NS;

/// Where a dataset's files are: the store, the URL listed, and the part of the path that is a
/// glob (if any).
#[derive(Debug)]
pub struct Dataset {
    pub store: Arc<dyn ObjectStore>,
    pub url: StoreUrl,
    pub glob: Option<String>,
}

impl Dataset {
    /// The dataset of `source` (a URL, or a local partitioned directory under `root`).
    pub fn of(root: &std::path::Path, source: &Source) -> Result<Dataset> {
        let text = if is_url(&source.path) {
            source.path.clone()
        } else {
            let full = quiver_registry::source_schema::resolved_path(&root.join(&source.path));
            url::Url::from_file_path(&full)
                .map_err(|_| Error::Invalid(format!("`{}` is not a valid path", full.display())))?
                .to_string()
        };
        let (base, glob) = match text.find(['*', '?', '[']) {
            Some(at) => {
                let cut = text[..at].rfind('/').map_or(0, |i| i + 1);
                (text[..cut].to_string(), Some(text[cut..].to_string()))
            }
            None => (text, None),
        };
        let url = StoreUrl::parse(&base)?;
        let store = open(&url, &source.storage, &|name| std::env::var(name).ok())?;
        Ok(Dataset { store, url, glob })
    }

    /// Whether the path names one object rather than a directory.
    fn is_file(&self) -> bool {
        self.glob.is_none() && self.url.path.as_ref().ends_with(".parquet")
    }

    /// The Parquet objects of the dataset (hidden and `_` entries skipped), sorted; an empty
    /// dataset is an error.
    pub async fn files(&self) -> Result<Vec<object_store::ObjectMeta>> {
        let files = self.listed().await?;
        if files.is_empty() {
            return Err(Error::Invalid(format!(
                "{} holds no Parquet files",
                self.url.shown
            )));
        }
        Ok(files)
    }

    /// The Parquet objects of the dataset (hidden and `_` entries skipped), sorted; maybe none.
    async fn listed(&self) -> Result<Vec<object_store::ObjectMeta>> {
        let shown = &self.url.shown;
        if self.is_file() {
            let meta = crate::storage::head(self.store.as_ref(), &self.url.path, shown).await?;
            return Ok(vec![meta]);
        }
        let pattern = match &self.glob {
            Some(g) => Some(
                glob::Pattern::new(g)
                    .map_err(|e| Error::Invalid(format!("invalid glob in `{shown}`: {e}")))?,
            ),
            None => None,
        };
        let prefix = self.url.path.clone();
        let mut files: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_filter(|m| {
                let rel = relative(&m.location, &prefix);
                let hidden = rel.iter().any(|s| s.starts_with(['.', '_']));
                let data: Vec<&str> = rel
                    .iter()
                    .map(String::as_str)
                    .filter(|s| !s.contains('='))
                    .collect();
                let matches = pattern.as_ref().is_none_or(|p| p.matches(&data.join("/")));
                let parquet = m.location.as_ref().ends_with(".parquet");
                futures::future::ready(!hidden && matches && parquet)
            })
            .try_collect()
            .await
            .map_err(|e| failure(&format!("listing {shown}"), &e))?;
        files.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(files)
    }

    /// The columns of the dataset's first file, in name order (`None`: it has no files yet).
    pub async fn first_file_schema(&self) -> Result<Option<arrow::datatypes::SchemaRef>> {
        // An empty directory: nothing pushed or written yet.
        let Some(first) = self.listed().await?.into_iter().next() else {
            return Ok(None);
        };
        let first = &first;
        footer_schema(self.store.as_ref(), first)
            .await
            .map(|(schema, _)| Some(schema))
            .map_err(|e| {
                Error::Invalid(format!(
                    "{} is not a readable Parquet file: {e}",
                    self.url.with_path(&first.location)
                ))
            })
    }

    /// Writes `bytes` as the new object `name` in the dataset's directory, with one `PUT`.
    pub async fn put_new(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        use object_store::ObjectStoreExt as _;
        let path = object_store::path::Path::from_iter(
            self.url.path.parts().chain(std::iter::once(name.into())),
        );
        self.store
            .put(&path, object_store::PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| failure(&self.url.with_path(&path), &e))
    }

    /// The dataset as a DataFusion table on `ctx` (reads counted into `reads`).
    pub async fn read(
        &self,
        ctx: &SessionContext,
        source: &Source,
        reads: Arc<Reads>,
    ) -> Result<DataFrame> {
        let context = || format!("source `{}` ({})", source.name, self.url.shown);
        reads.add_dataset(&self.url.root, &self.url.path);
        let counted = Arc::new(Counted::new(
            self.store.clone(),
            reads.clone(),
            &self.url.root,
        ));
        ctx.register_object_store(&self.url.root, counted);
        // A cluster's processes open the store themselves, with the source's `storage:` map.
        crate::cluster::forward_storage(ctx, &self.url.root, &source.storage)?;
        let mut table_url = self.url.with_path(&self.url.path);
        if !self.is_file() && !table_url.ends_with('/') {
            table_url.push('/');
        }
        let mut url = ListingTableUrl::parse(&table_url).map_err(Error::engine(context()))?;
        if let Some(g) = &self.glob {
            url = url.with_glob(g).map_err(Error::engine(context()))?;
        }
        let partitions = source
            .partition_columns
            .iter()
            .map(|c| (c.name.clone(), arrow_type(c.value_type)))
            .collect();
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(partitions);
        // The columns are the last file's (`apply` checked that the files agree): reading
        // every footer to infer them would cost a request per file on every run.
        let files = self.files().await?;
        let last = files.last().expect("files() is never empty");
        let schema = footer_schema(self.store.as_ref(), last)
            .await
            .map_err(|e| {
                Error::Invalid(format!(
                    "{}: {} is not a readable Parquet file: {e}",
                    context(),
                    self.url.with_path(&last.location)
                ))
            })?;
        // The footer's bytes count as read; the file counts only if the scan reads it.
        reads.add_bytes(schema.1);
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(schema.0);
        let table = ListingTable::try_new(config).map_err(Error::engine(context()))?;
        ctx.read_table(Arc::new(table))
            .map_err(Error::engine(context()))
    }
}

/// The path segments of `location` below `prefix` (none when it is not below it).
fn relative(location: &object_store::path::Path, prefix: &object_store::path::Path) -> Vec<String> {
    location
        .prefix_match(prefix)
        .map(|parts| parts.map(|p| p.as_ref().to_string()).collect())
        .unwrap_or_default()
}

fn arrow_type(t: ValueType) -> DataType {
    match t {
        ValueType::Scalar(ScalarType::Int32) => DataType::Int32,
        ValueType::Scalar(ScalarType::Int64) => DataType::Int64,
        _ => DataType::Utf8,
    }
}

/// A DataFusion error whose cause is the object store, said as [`explain`] says it.
pub fn engine_text(e: &datafusion::error::DataFusionError) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(os) = s.downcast_ref::<object_store::Error>() {
            return explain(os);
        }
        source = s.source();
    }
    e.strip_backtrace()
}

/// A partition's time key: its `column` value and, with an `hour_column`, its hour.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartitionKey {
    pub date: String,
    pub hour: Option<i64>,
}

impl PartitionKey {
    /// The key of the partition holding event time `ns` (UTC).
    pub fn of(tp: &TimePartition, ns: i64) -> PartitionKey {
        PartitionKey {
            date: chrono::DateTime::from_timestamp_nanos(ns)
                .format(&tp.format)
                .to_string(),
            hour: tp
                .hour_column
                .as_ref()
                .map(|_| ns.rem_euclid(DAY_NS) / HOUR_NS),
        }
    }
}

/// The first and last partition keys that can hold a row with an event time in
/// `[start, end)` (`i64::MIN`: no lower bound; `None`: unbounded on that side). A partition
/// `P` holds event times in `[P - lateness, P + grain)`, so the range's partitions run from
/// the one of `start` to the one of `end - 1 + lateness`. Formats are checked at `apply` to
/// order as time does, so every partition between the two keys — and no other — is read.
pub fn partition_bounds(
    tp: &TimePartition,
    start: i64,
    end: i64,
) -> (Option<PartitionKey>, Option<PartitionKey>) {
    let lateness = tp.lateness_ms.saturating_mul(1_000_000);
    let lo = (start != i64::MIN).then(|| PartitionKey::of(tp, start));
    let hi = end
        .checked_sub(1)
        .and_then(|e| e.checked_add(lateness))
        .map(|e| PartitionKey::of(tp, e));
    (lo, hi)
}

/// The filter on a source's time partition columns that keeps the partitions between
/// [`partition_bounds`], and no other.
pub fn partition_filter(tp: &TimePartition, source: &Source, start: i64, end: i64) -> Option<Expr> {
    let (lo, hi) = partition_bounds(tp, start, end);
    let int32 = |h: &str| {
        source
            .partition_columns
            .iter()
            .any(|c| c.name == h && c.value_type == ValueType::Scalar(ScalarType::Int32))
    };
    let d = || col(format!("\"{}\"", tp.column));
    let bound = |key: PartitionKey, upper: bool| -> Expr {
        let date = || lit(key.date.clone());
        match (&tp.hour_column, key.hour) {
            (Some(h), Some(hour)) => {
                let hv = if int32(h) {
                    lit(hour as i32)
                } else {
                    lit(hour)
                };
                let hc = col(format!("\"{h}\""));
                if upper {
                    d().lt(date()).or(d().eq(date()).and(hc.lt_eq(hv)))
                } else {
                    d().gt(date()).or(d().eq(date()).and(hc.gt_eq(hv)))
                }
            }
            _ if upper => d().lt_eq(date()),
            _ => d().gt_eq(date()),
        }
    };
    match (lo, hi) {
        (None, None) => None,
        (Some(l), None) => Some(bound(l, false)),
        (None, Some(h)) => Some(bound(h, true)),
        (Some(l), Some(h)) => Some(bound(l, false).and(bound(h, true))),
    }
}

/// Files whose footers `apply` reads: all of a small dataset, else this many spread over it.
const SAMPLED_FILES: usize = 64;

impl Dataset {
    /// Reads the footers of the dataset's files (all, or [`SAMPLED_FILES`] spread over them)
    /// and names the first file whose schema disagrees with the first one's, or that does not
    /// lie under the declared partition directories.
    pub async fn check_files(&self, source: &Source) -> std::result::Result<(), String> {
        use futures::StreamExt as _;
        let files = self.files().await.map_err(|e| e.to_string())?;
        let step = files.len().div_ceil(SAMPLED_FILES).max(1);
        let mut sample: Vec<_> = files.iter().step_by(step).collect();
        if let Some(last) = files.last()
            && sample.last().map(|m| &m.location) != Some(&last.location)
        {
            sample.push(last);
        }
        for meta in &sample {
            let rel = relative(&meta.location, &self.url.path);
            let dirs: Vec<&str> = rel
                .iter()
                .map(String::as_str)
                .filter(|s| s.contains('='))
                .collect();
            for (i, column) in source.partition_columns.iter().enumerate() {
                let value = dirs
                    .get(i)
                    .and_then(|d| d.strip_prefix(&format!("{}=", column.name)));
                let ok = match (value, column.value_type) {
                    (None, _) => false,
                    (Some(v), ValueType::Scalar(ScalarType::Int32)) => v.parse::<i32>().is_ok(),
                    (Some(v), ValueType::Scalar(ScalarType::Int64)) => v.parse::<i64>().is_ok(),
                    (Some(_), _) => true,
                };
                if !ok {
                    let layout: Vec<String> = source
                        .partition_columns
                        .iter()
                        .map(|c| format!("{}=…", c.name))
                        .collect();
                    return Err(format!(
                        "{} does not lie under `{}/` directories (partition column `{}` of type {})",
                        self.url.with_path(&meta.location),
                        layout.join("/"),
                        column.name,
                        column.value_type
                    ));
                }
            }
        }
        if let Some(tp) = &source.time_partition {
            for meta in &sample {
                let rel = relative(&meta.location, &self.url.path);
                let value_of = |column: &str| {
                    rel.iter()
                        .find_map(|d| d.strip_prefix(&format!("{column}=")).map(str::to_string))
                };
                let shown = self.url.with_path(&meta.location);
                let date = value_of(&tp.column).unwrap_or_default();
                if !time_value_matches(&tp.format, &date) {
                    return Err(format!(
                        "{shown}: partition `{}={date}` is not a time written as `{}` (the partitions of a range are found by writing times with the format, so every value must be written exactly so)",
                        tp.column, tp.format
                    ));
                }
                if let Some(h) = &tp.hour_column {
                    let hour = value_of(h).unwrap_or_default();
                    if !hour.parse::<u32>().is_ok_and(|v| v < 24) {
                        return Err(format!(
                            "{shown}: partition `{h}={hour}` is not an hour (0 to 23)"
                        ));
                    }
                }
            }
        }
        let schemas: Vec<_> = futures::stream::iter(sample.iter().map(|meta| async move {
            let shown = self.url.with_path(&meta.location);
            let schema = footer_schema(self.store.as_ref(), meta)
                .await
                .map_err(|e| format!("{shown} is not a readable Parquet file: {e}"))?
                .0;
            Ok::<_, String>((meta.location.clone(), schema))
        }))
        .buffered(16)
        .collect()
        .await;
        let mut first: Option<(object_store::path::Path, arrow::datatypes::SchemaRef)> = None;
        for got in schemas {
            let (path, schema) = got?;
            let Some((first_path, first_schema)) = &first else {
                first = Some((path, schema));
                continue;
            };
            for f in first_schema.fields() {
                match schema.field_with_name(f.name()) {
                    Ok(g) if g.data_type() == f.data_type() => {}
                    Ok(g) => {
                        return Err(format!(
                            "{} has column `{}` as {}, but {} has it as {}: every file of a source must agree",
                            self.url.with_path(&path),
                            f.name(),
                            g.data_type(),
                            self.url.with_path(first_path),
                            f.data_type()
                        ));
                    }
                    Err(_) => {
                        return Err(format!(
                            "{} has no column `{}`, which {} has: every file of a source must have the same columns",
                            self.url.with_path(&path),
                            f.name(),
                            self.url.with_path(first_path)
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether `value` is a time written exactly as `format` writes it.
fn time_value_matches(format: &str, value: &str) -> bool {
    let parsed = if format.contains("%H") {
        // chrono needs minutes to make a time: give it `:00`.
        chrono::NaiveDateTime::parse_from_str(&format!("{value}|00"), &format!("{format}|%M"))
            .ok()
            .map(|t| t.format(format).to_string())
    } else {
        chrono::NaiveDate::parse_from_str(value, format)
            .ok()
            .map(|d| d.format(format).to_string())
    };
    parsed.as_deref() == Some(value)
}

/// A Parquet object's footer (two ranged reads: its length, then the footer), and the bytes
/// fetched.
async fn footer(
    store: &dyn ObjectStore,
    meta: &object_store::ObjectMeta,
) -> std::result::Result<(parquet::file::metadata::ParquetMetaData, u64), String> {
    use object_store::ObjectStoreExt as _;
    let size = meta.size;
    if size < 12 {
        return Err(format!("{size} bytes is too short"));
    }
    let tail = store
        .get_range(&meta.location, size - 8..size)
        .await
        .map_err(|e| explain(&e))?;
    if &tail[4..] != b"PAR1" {
        return Err("no Parquet footer (`PAR1`) at its end".into());
    }
    let len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if len + 8 > size {
        return Err(format!("its footer length {len} exceeds the file"));
    }
    let bytes = store
        .get_range(&meta.location, size - 8 - len..size - 8)
        .await
        .map_err(|e| explain(&e))?;
    parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&bytes)
        .map(|md| (md, 8 + len))
        .map_err(|e| e.to_string())
}

/// The Arrow schema of a Parquet object, from its footer alone, and the bytes fetched.
async fn footer_schema(
    store: &dyn ObjectStore,
    meta: &object_store::ObjectMeta,
) -> std::result::Result<(arrow::datatypes::SchemaRef, u64), String> {
    let (md, fetched) = footer(store, meta).await?;
    let fm = md.file_metadata();
    parquet::arrow::parquet_to_arrow_schema(fm.schema_descr(), fm.key_value_metadata())
        .map(|s| (std::sync::Arc::new(s), fetched))
        .map_err(|e| e.to_string())
}

/// The rows of a Parquet object, from its footer.
pub async fn footer_rows(
    store: &dyn ObjectStore,
    meta: &object_store::ObjectMeta,
) -> std::result::Result<u64, String> {
    let (md, _) = footer(store, meta).await?;
    Ok(u64::try_from(md.file_metadata().num_rows()).unwrap_or(0))
}

#[cfg(test)]
mod tests;
