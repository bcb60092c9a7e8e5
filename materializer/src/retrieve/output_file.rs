//! Writing a training table: Parquet, or Arrow IPC by the output's extension, to a temporary
//! file renamed into place only when complete (a retrieval writes nothing until then).

use std::path::{Path, PathBuf};

use arrow::datatypes::DataType;
use futures::StreamExt;

use super::{Retrieval, stream_error};
use crate::error::{Error, Result};

/// The file formats a table can be written in, by the output's extension: `.arrow`, `.feather`
/// and `.ipc` are Arrow IPC files, anything else Parquet.
pub fn output_is_arrow(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "arrow" | "feather" | "ipc"))
}

/// Writes the whole retrieval to `path` (Parquet, or Arrow IPC by extension), through a
/// temporary file renamed into place only when complete; returns the rows written.
pub async fn write_output(retrieval: Retrieval, path: &Path) -> Result<u64> {
    remove_stale_temps(path);
    let tmp = temp_path(path);
    // Removes the temporary file however this future ends: error, or dropped (interrupted).
    struct Cleanup<'a>(&'a Path, bool);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            if !self.1 {
                let _ = std::fs::remove_file(self.0);
            }
        }
    }
    let mut cleanup = Cleanup(&tmp, false);
    let rows = write_to(retrieval, path, &tmp).await?;
    std::fs::rename(&tmp, path).map_err(Error::io(path))?;
    cleanup.1 = true;
    Ok(rows)
}

/// Temporary outputs of earlier runs for `output` whose process is gone (killed, crashed):
/// removed, so an interrupted retrieval leaves nothing behind for long.
pub(crate) fn remove_stale_temps(output: &Path) {
    let (Some(dir), Some(name)) = (output.parent(), output.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.tmp-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive && std::fs::remove_file(entry.path()).is_ok() {
            tracing::info!(file = %entry.path().display(), "removed the temporary output of an interrupted retrieval");
        }
    }
}

async fn write_to(mut retrieval: Retrieval, path: &Path, tmp: &Path) -> Result<u64> {
    let io = |e: &dyn std::fmt::Display| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    };
    let file = std::fs::File::create(tmp).map_err(Error::io(tmp))?;
    let file = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut rows = 0u64;
    let failed = stream_error;
    if output_is_arrow(path) {
        let mut w =
            arrow::ipc::writer::FileWriter::try_new(file, &retrieval.schema).map_err(|e| io(&e))?;
        while let Some(batch) = retrieval.stream.next().await {
            let batch = batch.map_err(failed)?;
            rows += batch.num_rows() as u64;
            w.write(&batch).map_err(|e| io(&e))?;
        }
        w.finish().map_err(|e| io(&e))?;
    } else {
        // Dictionary encoding pays off for text; for numbers its hashing was ~half the writer's
        // time (perf) for little size gained.
        let mut props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .set_dictionary_enabled(false);
        for field in retrieval.schema.fields() {
            if matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8) {
                let path = parquet::schema::types::ColumnPath::from(field.name().as_str());
                props = props.set_column_dictionary_enabled(path, true);
            }
        }
        let props = props.build();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(file, retrieval.schema.clone(), Some(props))
                .map_err(|e| io(&e))?;
        while let Some(batch) = retrieval.stream.next().await {
            let batch = batch.map_err(failed)?;
            rows += batch.num_rows() as u64;
            w.write(&batch).map_err(|e| io(&e))?;
        }
        w.close().map_err(|e| io(&e))?;
    }
    Ok(rows)
}

/// Output files are written next to their final path and renamed into place when complete.
pub fn temp_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    output.with_file_name(name)
}
