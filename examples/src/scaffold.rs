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
        "features/activity.yaml",
        include_str!("../quickstart/features/activity.yaml"),
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

/// A project name for a repository in `dir`, as `feast init NAME` does: the directory's name
/// made a valid identifier (letters, digits, `_`; not starting with a digit). Two repositories
/// in differently named directories so get separate key spaces in a shared online store.
pub fn project_name(dir: &Path) -> String {
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let name_is_blank = name.chars().all(|c| c == '_');
    if name_is_blank {
        return "my_project".into();
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert_str(0, "p_");
    }
    // Names are at most 100 characters (ASCII here, so bytes).
    name.truncate(100);
    name
}

/// Writes the sample repository into `dir` with data generated per `spec`, its `quiver.yaml`
/// naming the project `project`. An existing repository is left untouched unless `refresh` is
/// set, in which case its files and data are rewritten (the quickstart does this so it can be
/// run again).
pub fn scaffold(
    dir: &Path,
    project: &str,
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
        let text = if *name == "quiver.yaml" {
            text.replacen(
                "\nproject: quickstart\n",
                &format!("\nproject: {project}\n"),
                1,
            )
        } else {
            text.to_string()
        };
        std::fs::write(&path, text).map_err(io)?;
    }
    Ok(write_sample_data(&dir.join("data"), spec)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_follow_the_directory() {
        for (dir, want) in [
            ("my_repo", "my_repo"),
            ("/tmp/x/fraud-models", "fraud_models"),
            ("2026 exp.v1", "p_2026_exp_v1"),
            ("---", "my_project"),
            ("/", "my_project"),
        ] {
            let got = project_name(Path::new(dir));
            assert_eq!(got, want, "{dir}");
        }
        assert_eq!(project_name(Path::new(&"d".repeat(300))), "d".repeat(100));
    }

    #[test]
    fn the_template_names_the_project_once() {
        let yaml = FILES[0].1;
        assert_eq!(yaml.matches("\nproject: quickstart\n").count(), 1, "{yaml}");
    }
}
