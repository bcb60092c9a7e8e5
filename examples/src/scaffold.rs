//! Writing the sample repository's definition files.

use std::path::{Path, PathBuf};

use crate::generator::{GeneratorError, SampleSpec, SampleSummary, write_sample_data};

/// The sample repository's text files, relative to its root.
pub const FILES: &[(&str, &str)] = &[
    ("quiver.yaml", include_str!("../quickstart/quiver.yaml")),
    (
        "features/drivers.yaml",
        include_str!("../quickstart/features/drivers.yaml"),
    ),
    (
        "features/customers.yaml",
        include_str!("../quickstart/features/customers.yaml"),
    ),
    (
        ".gitignore",
        "# Local registry and online store\n.quiver/\n",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "{0} already holds a Quiver repository (quiver.yaml exists); choose another directory or remove it first"
    )]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Data(#[from] GeneratorError),
}

/// Writes the sample repository into `dir` with data generated per `spec`. An existing
/// repository is left untouched unless `refresh` is set, in which case its files and data are
/// rewritten (the quickstart does this so it can be run again).
pub fn scaffold(
    dir: &Path,
    spec: &SampleSpec,
    refresh: bool,
) -> Result<SampleSummary, ScaffoldError> {
    if dir.join("quiver.yaml").exists() && !refresh {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    for (name, text) in FILES {
        let path = dir.join(name);
        let io = |source| ScaffoldError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(path.parent().expect("files are inside the root")).map_err(io)?;
        std::fs::write(&path, text).map_err(io)?;
    }
    Ok(write_sample_data(&dir.join("data"), spec)?)
}
