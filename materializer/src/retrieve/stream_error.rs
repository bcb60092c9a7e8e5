//! What a retrieval's stream error means to the user: our own errors as they were raised, the
//! engine's wrapped with what was being done, the memory limit's with what to raise.

use datafusion::error::DataFusionError;

use crate::error::Error;

/// An error from a retrieval's stream: our own errors (a bad entity table) come back as they
/// were raised; the engine's are wrapped with what was being done. An error an operator shares
/// between its output partitions (a repartition's input failing reaches every partition as
/// `Shared`) means what the error it shares means.
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
        DataFusionError::Shared(shared) => match std::sync::Arc::try_unwrap(shared) {
            Ok(inner) => stream_error(inner),
            Err(shared) => shared_error(&shared).unwrap_or_else(|| Error::Engine {
                context: "computing the training table".into(),
                source: DataFusionError::Shared(shared),
            }),
        },
        DataFusionError::ResourcesExhausted(m) => memory_error(&m),
        other if is_timestamp_overflow(&other) => timestamp_overflow(&other),
        other => Error::Engine {
            context: "computing the training table".into(),
            source: other,
        },
    }
}

/// What [`stream_error`] makes of an error still shared with another partition, when that is
/// more than the engine's error (which the caller keeps as it is): our own errors rebuilt from
/// their kind and text, the memory limit's and the timestamp range's messages.
fn shared_error(e: &DataFusionError) -> Option<Error> {
    if let Some(why) = crate::cluster::cluster_failure(e) {
        return Some(Error::Unavailable(format!(
            "computing the training table: {why}"
        )));
    }
    match e {
        DataFusionError::External(b) => match b.downcast_ref::<Error>()? {
            Error::Invalid(m) => Some(Error::Invalid(m.clone())),
            Error::TooLarge(m) => Some(Error::TooLarge(m.clone())),
            Error::Unavailable(m) => Some(Error::Unavailable(m.clone())),
            Error::EvictingStore(m) => Some(Error::EvictingStore(m.clone())),
            Error::Evicted(m) => Some(Error::Evicted(m.clone())),
            _ => None,
        },
        DataFusionError::Context(_, inner) => shared_error(inner),
        DataFusionError::Shared(inner) => shared_error(inner),
        DataFusionError::ResourcesExhausted(m) => Some(memory_error(m)),
        other if is_timestamp_overflow(other) => Some(timestamp_overflow(other)),
        _ => None,
    }
}

fn is_timestamp_overflow(e: &DataFusionError) -> bool {
    e.to_string().contains("Cannot cast Timestamp")
}

fn timestamp_overflow(e: &DataFusionError) -> Error {
    Error::Invalid(format!(
        "a timestamp in a requested view's source is outside what a timestamp holds here (nanoseconds, 1677-09-21 to 2262-04-11), e.g. a 9999-12-31 sentinel: make such values null in the view's `query` (materialize refuses them too) — {}",
        e.to_string().lines().next().unwrap_or_default()
    ))
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::error::DataFusionError;

    use super::stream_error;
    use crate::error::Error;

    /// What a repartitioned plan's partitions see when its input fails: the same error, shared.
    fn shared_twice(e: DataFusionError) -> (DataFusionError, Arc<DataFusionError>) {
        let shared = Arc::new(e);
        (DataFusionError::Shared(shared.clone()), shared)
    }

    #[test]
    fn shared_errors_mean_what_they_share() {
        let ours = DataFusionError::External(Box::new(Error::Invalid(
            "entity table row 3: no time".into(),
        )));
        let (e, _other_partition) = shared_twice(ours);
        assert!(matches!(stream_error(e), Error::Invalid(m) if m == "entity table row 3: no time"));

        let cast = DataFusionError::Execution(
            "Cannot cast Timestamp(µs, \"UTC\") value 253402214400000000 to Timestamp(ns)".into(),
        );
        let (e, _other_partition) =
            shared_twice(DataFusionError::Context("sorting".into(), Box::new(cast)));
        assert!(matches!(stream_error(e), Error::Invalid(m) if m.contains("9999-12-31 sentinel")));

        let (e, _other_partition) =
            shared_twice(DataFusionError::ResourcesExhausted("sort: 10 MB".into()));
        assert!(matches!(stream_error(e), Error::Invalid(m) if m.contains("--memory-limit")));

        // The last holder gets the error itself back.
        let (e, other_partition) = shared_twice(DataFusionError::External(Box::new(
            Error::TooLarge("too many rows".into()),
        )));
        drop(other_partition);
        assert!(matches!(stream_error(e), Error::TooLarge(_)));

        // The engine's own errors keep their text (no added prefix).
        let (e, _other_partition) = shared_twice(DataFusionError::Execution("boom".into()));
        let engine = stream_error(e);
        assert!(matches!(engine, Error::Engine { .. }));
        assert_eq!(
            engine.to_string(),
            "computing the training table: Execution error: boom"
        );
    }
}
