//! What a retrieval's stream error means to the user: our own errors as they were raised, the
//! engine's wrapped with what was being done, the memory limit's with what to raise.

use datafusion::error::DataFusionError;

use crate::error::Error;

/// An error from a retrieval's stream: our own errors (a bad entity table) come back as they
/// were raised; the engine's are wrapped with what was being done.
pub fn stream_error(e: DataFusionError) -> Error {
    if let Some(why) = crate::cluster::cluster_failure(&e) {
        return Error::Unavailable(format!("computing the training table: {why}"));
    }
    match e {
        DataFusionError::External(b) => match b.downcast::<Error>() {
            Ok(e) => *e,
            Err(b) => Error::Engine {
                context: "computing the training table".into(),
                source: DataFusionError::External(b),
            },
        },
        DataFusionError::Context(_, inner) => stream_error(*inner),
        DataFusionError::Shared(shared) => match shared.as_ref() {
            DataFusionError::ResourcesExhausted(m) => memory_error(m),
            other => Error::Engine {
                context: "computing the training table".into(),
                source: DataFusionError::Execution(other.to_string()),
            },
        },
        DataFusionError::ResourcesExhausted(m) => memory_error(&m),
        other if other.to_string().contains("Cannot cast Timestamp") => Error::Invalid(format!(
            "a timestamp in a requested view's source is outside what a timestamp holds here (nanoseconds, 1677-09-21 to 2262-04-11), e.g. a 9999-12-31 sentinel: make such values null in the view's `query` (materialize refuses them too) — {}",
            other.to_string().lines().next().unwrap_or_default()
        )),
        other => Error::Engine {
            context: "computing the training table".into(),
            source: other,
        },
    }
}

/// What [`stream_error`] tells a user whose sorts need more memory (the server says its own).
pub const MEMORY_HINT: &str = "raise --memory-limit (e.g. 1GiB)";

/// The sorts could not work within the memory limit even by spilling: the user's to raise.
fn memory_error(detail: &str) -> Error {
    let first = detail.lines().next().unwrap_or(detail);
    Error::Invalid(format!(
        "the sorts need more memory than the memory limit allows, even spilling to disk ({first}); {MEMORY_HINT}"
    ))
}
