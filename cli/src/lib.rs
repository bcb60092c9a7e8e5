//! The commands of `quiver`, as a library: the binary (`main.rs`) parses arguments into them, and
//! the Python package (`python/`) calls the same functions, so both do exactly the same work.

pub mod commands;
pub mod context;
pub mod exit;

/// How results are printed: text for people, json for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}
