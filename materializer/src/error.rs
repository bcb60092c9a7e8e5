//! Errors of the materializer.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user asked for something that cannot work (unknown view, bad range, bad query).
    #[error("{0}")]
    Invalid(String),
    /// An input is larger than a configured limit allows; the message names the limit.
    #[error("{0}")]
    TooLarge(String),
    /// A source could not be read or a query failed while running.
    #[error("{context}: {source}")]
    Engine {
        context: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },
    /// The machine failed us (disk full, permissions, a vanished file): not the user's mistake.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A view of a multi-view run failed: the views before it committed (their watermarks
    /// moved), it and the views after it did not.
    #[error(
        "materializing `{view}` failed: {source}; {}",
        committed_text(committed)
    )]
    ViewFailed {
        view: String,
        /// The runs of the views that committed before it, as a successful run reports them.
        committed: Vec<quiver_registry::store::MaterializationRun>,
        #[source]
        source: Box<Error>,
    },
    /// The online store may evict the values a run would write (Redis `maxmemory-policy`), and
    /// `allow_eviction` is not set: nothing was written.
    #[error("{0}")]
    EvictingStore(String),
    /// The online store evicted keys while a view was written: its values may be missing, so
    /// its watermark did not move.
    #[error("{0}")]
    Evicted(String),
    /// An object store did not answer (unreachable, timed out, failing): not the user's
    /// mistake, retry later.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] quiver_online_store::Error),
    #[error(transparent)]
    Registry(#[from] quiver_registry::Error),
}

impl Error {
    /// A mistake the user can fix (exit code 2 in the CLI), looking through a failed view.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Invalid(_) | Error::TooLarge(_) | Error::EvictingStore(_) => true,
            Error::ViewFailed { source, .. } => source.is_user_error(),
            Error::Registry(e) => e.is_user_error(),
            _ => false,
        }
    }

    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn engine(
        context: impl Into<String>,
    ) -> impl FnOnce(datafusion::error::DataFusionError) -> Error {
        let context = context.into();
        move |source| match crate::cluster::cluster_failure(&source) {
            Some(why) => Error::Unavailable(format!("{context}: {why}")),
            None => Error::Engine { context, source },
        }
    }

    /// An Arrow failure (building, concatenating or writing batches): the engine's, not the
    /// user's, so exit 1.
    pub(crate) fn arrow(
        context: impl Into<String>,
    ) -> impl FnOnce(arrow::error::ArrowError) -> Error {
        let context = context.into();
        move |e| Error::Engine {
            context,
            source: datafusion::error::DataFusionError::ArrowError(Box::new(e), None),
        }
    }
}

fn committed_text(committed: &[quiver_registry::store::MaterializationRun]) -> String {
    if committed.is_empty() {
        "no view committed: every watermark is where it was; run it again".into()
    } else {
        format!(
            "committed before it: {} (their watermarks moved); the failed view and any after it kept theirs; run it again",
            committed
                .iter()
                .map(|r| format!("`{}`", r.view))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}
