//! Errors of the materializer.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user asked for something that cannot work (unknown view, bad range, bad query).
    #[error("{0}")]
    Invalid(String),
    /// A source could not be read or a query failed while running.
    #[error("{context}: {source}")]
    Engine {
        context: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },
    #[error(transparent)]
    Store(#[from] quiver_online_store::Error),
    #[error(transparent)]
    Registry(#[from] quiver_registry::Error),
}

impl Error {
    pub(crate) fn engine(
        context: impl Into<String>,
    ) -> impl FnOnce(datafusion::error::DataFusionError) -> Error {
        let context = context.into();
        move |source| Error::Engine { context, source }
    }
}
