//! How failures reach the user: one clear message on stderr, exit code 2 for mistakes the user
//! can fix (definitions, arguments, conflicts), 1 for everything else.

use std::process::ExitCode;

/// A mistake in what the user typed or wrote.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

/// A store or server that did not answer (exit code 1; `StoreUnavailable` in Python).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

pub fn report(err: &anyhow::Error) -> ExitCode {
    let user = is_user_error(err);
    // Validation errors carry their own layout; others get the usual `error:` prefix and causes.
    match err.downcast_ref::<quiver_registry::Error>() {
        Some(quiver_registry::Error::Invalid(_)) => eprintln!("{err}"),
        _ => eprintln!("error: {}", message(err)),
    }
    ExitCode::from(if user { 2 } else { 1 })
}

/// Whether `err` is a mistake the user can fix (exit code 2; `InvalidArgument` in Python).
pub fn is_user_error(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.downcast_ref::<UserError>().is_some()
            || cause
                .downcast_ref::<quiver_registry::Error>()
                .is_some_and(quiver_registry::Error::is_user_error)
            || matches!(
                cause.downcast_ref::<quiver_examples::ScaffoldError>(),
                Some(quiver_examples::ScaffoldError::Exists(_))
            )
            || cause
                .downcast_ref::<quiver_materializer::Error>()
                .is_some_and(quiver_materializer::Error::is_user_error)
    })
}

/// Whether `err` says a store (online, registry, object store) did not answer: not the user's
/// mistake, worth a retry (`StoreUnavailable` in Python).
pub fn is_unavailable(err: &anyhow::Error) -> bool {
    fn materializer(e: &quiver_materializer::Error) -> bool {
        use quiver_materializer::Error as M;
        match e {
            M::Unavailable(_)
            | M::Store(quiver_online_store::Error::Unavailable(_))
            | M::Registry(quiver_registry::Error::Unavailable(_)) => true,
            M::ViewFailed { source, .. } => materializer(source),
            _ => false,
        }
    }
    err.chain().any(|cause| {
        cause.downcast_ref::<Unavailable>().is_some()
            || matches!(
                cause.downcast_ref::<quiver_online_store::Error>(),
                Some(quiver_online_store::Error::Unavailable(_))
            )
            || matches!(
                cause.downcast_ref::<quiver_registry::Error>(),
                Some(quiver_registry::Error::Unavailable(_))
            )
            || cause
                .downcast_ref::<quiver_materializer::Error>()
                .is_some_and(materializer)
    })
}

/// The error and its causes, `: `-separated, each said once: many errors already include their
/// source in their own text, and printing the chain as it is repeated them ("… (os error 17):
/// File exists (os error 17)").
pub fn message(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_said_once() {
        let io = std::io::Error::from_raw_os_error(17);
        let err = anyhow::Error::from(io).context(format!(
            "cannot write x: {}",
            std::io::Error::from_raw_os_error(17)
        ));
        let text = message(&err);
        assert_eq!(text.matches("os error 17").count(), 1, "{text}");
        let err = anyhow::anyhow!("inner").context("outer");
        assert_eq!(message(&err), "outer: inner");
    }
}
