//! Errors of the online store.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not be reached or did not answer within its timeout.
    #[error("online store unavailable: {0}")]
    Unavailable(String),
    /// The store answered with an error.
    #[error("online store error: {0}")]
    Backend(String),
    /// A stored blob does not follow docs/online-format.md.
    #[error("corrupt online value: {0}")]
    Corrupt(String),
    /// A stored value cannot answer the question asked of it (e.g. an aggregation value asked
    /// for a time inside the tiles it keeps merged).
    #[error("{0}")]
    Unanswerable(String),
    /// The configuration cannot work (e.g. a bad URL, an unwritable path).
    #[error("{0}")]
    Config(String),
}
