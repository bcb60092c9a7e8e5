//! How `retrieve` reads the paths it is given: `file://` URLs as local paths, and whether two
//! spellings name the same file or object.

use std::path::{Path, PathBuf};

use anyhow::Result;
use quiver_materializer::storage::StoreUrl;
use quiver_registry::source_schema::{file_url_local, is_url, resolved_path};

use crate::exit::UserError;

/// The local path a `file://` URL names (`None`: not a `file://` URL).
pub fn file_url_path(path: &Path) -> Result<Option<PathBuf>> {
    let text = path.to_string_lossy();
    match file_url_local(&text) {
        None => Ok(None),
        Some(local) if local.starts_with('/') && !local.contains(['%', '?', '#']) => {
            Ok(Some(PathBuf::from(local)))
        }
        Some(_) => Err(UserError(format!(
            "`{text}`: give a local path, or a `file:///absolute/path` URL without escapes"
        ))
        .into()),
    }
}

/// Whether `a` and `b` name the same file or object (paths resolved, URLs as the store reads
/// them).
pub fn same_place(a: &Path, b: &Path) -> bool {
    let (ta, tb) = (a.to_string_lossy(), b.to_string_lossy());
    match (is_url(&ta), is_url(&tb)) {
        (false, false) => resolved_path(a) == resolved_path(b),
        (true, true) => match (StoreUrl::parse(&ta), StoreUrl::parse(&tb)) {
            (Ok(x), Ok(y)) => x.root == y.root && x.path == y.path,
            _ => false,
        },
        _ => false,
    }
}
