//! The columns a feature view reads, and whether they match what the view declares.
//!
//! Only Parquet footers are read here. A view with a SQL `query` has columns only a query
//! engine can know; resolvers that cannot tell return `None` and the check is skipped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field as ArrowField, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::hint::did_you_mean;
use crate::model::{Field, Source};
use crate::value_type::ValueType;

/// Tells validation which columns a view's input has.
pub trait SchemaResolver {
    /// The columns a view reads: its source's after `field_mapping`, or its query's result.
    /// `Ok(None)` when they cannot be known here; `Err` says why the source cannot be read.
    fn view_input_schema(
        &self,
        source: &Source,
        query: Option<&str>,
    ) -> Result<Option<SchemaRef>, String>;
}

/// Reads local Parquet footers; skips views with a query and sources given as URLs.
#[derive(Debug, Clone)]
pub struct ParquetSchemaResolver {
    pub root: PathBuf,
}

impl SchemaResolver for ParquetSchemaResolver {
    fn view_input_schema(
        &self,
        source: &Source,
        query: Option<&str>,
    ) -> Result<Option<SchemaRef>, String> {
        if query.is_some() || is_url(&source.path) {
            return Ok(None);
        }
        let schema = read_parquet_schema(&self.root, &source.path)?;
        Ok(Some(apply_field_mapping(&schema, source)))
    }
}

/// `s3://…`, `gs://…`, `file://…` and the like: read by the query engine, not here.
pub fn is_url(path: &str) -> bool {
    path.contains("://")
}

/// The object store a URL is read through (`s3`, `gcs`, `azure`, `http`), or `None` for a
/// scheme Quiver cannot read.
pub fn url_scheme(path: &str) -> Option<&'static str> {
    let (scheme, _) = path.split_once("://")?;
    Some(match scheme.to_ascii_lowercase().as_str() {
        "s3" | "s3a" => "s3",
        "gs" => "gcs",
        "az" | "adl" | "azure" | "abfs" | "abfss" => "azure",
        "http" | "https" => "http",
        "file" => "file",
        _ => return None,
    })
}

/// The Parquet files a source path names: the file itself, every `*.parquet` below a directory
/// (hidden and `_`-prefixed entries skipped), or every match of a glob; sorted.
pub fn resolve_source_files(root: &Path, path: &str) -> Result<Vec<PathBuf>, String> {
    let full = root.join(path);
    let files = if path.contains(['*', '?', '[']) {
        let pattern = full.to_string_lossy().to_string();
        let matches = glob::glob(&pattern).map_err(|e| format!("invalid glob `{path}`: {e}"))?;
        let mut files = Vec::new();
        for m in matches {
            let p = m.map_err(|e| format!("cannot read {}: {}", e.path().display(), e.error()))?;
            // Hidden and `_` files (temporary files of writers in progress, `_SUCCESS` markers)
            // are not data, as in a directory.
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(['.', '_']));
            if p.is_file() && !hidden {
                files.push(p);
            }
        }
        files
    } else if full.is_dir() {
        let mut files = Vec::new();
        collect_parquet(&full, &mut files)?;
        files
    } else if full.is_file() {
        vec![full]
    } else {
        return Err(format!("`{path}` does not exist"));
    };
    if files.is_empty() {
        return Err(format!("`{path}` matches no Parquet files"));
    }
    let mut files = files;
    files.sort();
    Ok(files)
}

fn collect_parquet(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let p = entry.path();
        if p.is_dir() {
            collect_parquet(&p, out)?;
        } else if name.ends_with(".parquet") {
            out.push(p);
        }
    }
    Ok(())
}

/// A path as it would be opened: absolute, with symbolic links and `..` resolved as far as the
/// path exists (a file not yet written is resolved through its directory).
pub fn resolved_path(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (absolute.parent(), absolute.file_name()) {
        (Some(dir), Some(name)) => resolved_path(dir).join(name),
        _ => absolute,
    }
}

/// The path a `file://` URL names (`file://localhost/x` and `FILE:///x` → `/x`), or `None` for
/// anything that is not a `file://` URL.
pub fn file_url_local(path: &str) -> Option<&str> {
    let rest = path
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("file://"))
        .map(|_| &path[7..])?;
    let host = rest
        .get(..9)
        .filter(|h| h.eq_ignore_ascii_case("localhost"));
    Some(host.map_or(rest, |_| &rest[9..]))
}

/// Whether writing `file` would change what the source path `path` reads: it is one of the
/// source's files, lies inside its directory, or matches its glob. URLs are never local files,
/// but for `file://` ones, which name local paths.
pub fn source_reads(root: &Path, path: &str, file: &Path) -> bool {
    let path = file_url_local(path).unwrap_or(path);
    if is_url(path) {
        return false;
    }
    let file = resolved_path(file);
    let full = root.join(path);
    if path.contains(['*', '?', '[']) {
        let pattern = resolved_path(&root.join(".")).join(path);
        return glob::Pattern::new(&pattern.to_string_lossy()).is_ok_and(|p| p.matches_path(&file))
            || glob::Pattern::new(&full.to_string_lossy()).is_ok_and(|p| p.matches_path(&file));
    }
    let source = resolved_path(&full);
    file == source || (source.is_dir() && file.starts_with(&source))
}

/// The schema shared by every file of a source; files that disagree on a column are an error.
pub fn read_parquet_schema(root: &Path, path: &str) -> Result<SchemaRef, String> {
    let files = resolve_source_files(root, path)?;
    let mut first: Option<(PathBuf, SchemaRef)> = None;
    for file in files {
        let schema = read_file_schema(&file)?;
        match &first {
            None => first = Some((file, schema)),
            Some((first_file, first_schema)) => {
                for f in first_schema.fields() {
                    match schema.field_with_name(f.name()) {
                        Ok(g) if g.data_type() == f.data_type() => {}
                        Ok(g) => {
                            return Err(format!(
                                "column `{}` is {} in {} but {} in {}",
                                f.name(),
                                f.data_type(),
                                first_file.display(),
                                g.data_type(),
                                file.display()
                            ));
                        }
                        Err(_) => {
                            return Err(format!(
                                "column `{}` of {} is missing from {}",
                                f.name(),
                                first_file.display(),
                                file.display()
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(first
        .expect("resolve_source_files never returns an empty list")
        .1)
}

fn read_file_schema(file: &Path) -> Result<SchemaRef, String> {
    let handle =
        std::fs::File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(handle)
        .map_err(|e| format!("{} is not a readable Parquet file: {e}", file.display()))?;
    Ok(builder.schema().clone())
}

/// Renames columns as the source's `field_mapping` says.
pub fn apply_field_mapping(schema: &Schema, source: &Source) -> SchemaRef {
    if source.field_mapping.is_empty() {
        return Arc::new(schema.clone());
    }
    let fields: Vec<ArrowField> = schema
        .fields()
        .iter()
        .map(|f| match source.field_mapping.get(f.name()) {
            Some(to) => f.as_ref().clone().with_name(to),
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// One mismatch between a view's declaration and its input columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnProblem {
    /// The feature it concerns, for pointing at its declaration.
    pub feature: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

/// Every column the view needs (timestamps, join keys, features) checked against `schema`.
pub fn check_view_columns(
    schema: &Schema,
    source: &Source,
    input: &str,
    join_keys: &[Field],
    features: &[Field],
    what: &'static str,
) -> Vec<ColumnProblem> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let missing = |name: &str, what: &str, feature: Option<String>| ColumnProblem {
        feature,
        message: format!("{what} `{name}` is not a column of {input}"),
        hint: did_you_mean(name, names.iter().copied())
            .or_else(|| Some(format!("its columns are: {}", names.join(", ")))),
    };
    let mut problems = Vec::new();
    let timestamps =
        std::iter::once(&source.timestamp_field).chain(&source.created_timestamp_field);
    for ts in timestamps {
        match schema.field_with_name(ts) {
            Err(_) => problems.push(missing(ts, "timestamp field", None)),
            Ok(f)
                if !matches!(
                    f.data_type(),
                    DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64
                ) =>
            {
                problems.push(ColumnProblem {
                    feature: None,
                    message: format!(
                        "timestamp field `{ts}` of {input} has type {}, not a timestamp",
                        f.data_type()
                    ),
                    hint: Some("store event times as a Parquet timestamp column".into()),
                })
            }
            Ok(_) => {}
        }
    }
    let declared = join_keys
        .iter()
        .map(|k| (k, "join key", None))
        .chain(features.iter().map(|f| (f, what, Some(f.name.clone()))));
    for (field, what, feature) in declared {
        match schema.field_with_name(&field.name) {
            Err(_) => problems.push(missing(&field.name, what, feature)),
            Ok(column) if !field.value_type.accepts(column.data_type()) => {
                let hint = ValueType::from_arrow(column.data_type())
                    .map(|t| format!("declare it as `{t}`"))
                    .or_else(|| {
                        Some(format!(
                            "Arrow type {} cannot be served; convert it in a `query`",
                            column.data_type()
                        ))
                    });
                problems.push(ColumnProblem {
                    feature,
                    message: format!(
                        "{what} `{}` is declared `{}` but the column has type {}",
                        field.name,
                        field.value_type,
                        column.data_type()
                    ),
                    hint,
                });
            }
            Ok(_) => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::source_reads;

    /// A `file://` source is a local path: writing into it changes what it reads.
    #[test]
    fn file_urls_are_local_sources() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let data = dir.path().join("data");
        let inside = data.join("out.parquet");
        let elsewhere = dir.path().join("out.parquet");
        for source in [
            format!("file://{}/", data.display()),
            format!("FILE://localhost{}", data.display()),
            "data/".to_string(),
        ] {
            assert!(source_reads(dir.path(), &source, &inside), "{source}");
            assert!(!source_reads(dir.path(), &source, &elsewhere), "{source}");
        }
        assert!(!source_reads(dir.path(), "s3://lake/data/", &inside));
    }
}
