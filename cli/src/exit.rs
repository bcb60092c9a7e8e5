//! How failures reach the user: one clear message on stderr, exit code 2 for mistakes the user
//! can fix (definitions, arguments, conflicts), 1 for everything else.

use std::process::ExitCode;

/// A mistake in what the user typed or wrote.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

pub fn report(err: &anyhow::Error) -> ExitCode {
    let user = err.chain().any(|cause| {
        cause.downcast_ref::<UserError>().is_some()
            || cause
                .downcast_ref::<quiver_registry::Error>()
                .is_some_and(quiver_registry::Error::is_user_error)
            || matches!(
                cause.downcast_ref::<quiver_examples::ScaffoldError>(),
                Some(quiver_examples::ScaffoldError::Exists(_))
            )
            || matches!(
                cause.downcast_ref::<quiver_materializer::Error>(),
                Some(quiver_materializer::Error::Invalid(_))
            )
    });
    // Validation errors carry their own layout; others get the usual `error:` prefix and causes.
    match err.downcast_ref::<quiver_registry::Error>() {
        Some(quiver_registry::Error::Invalid(_)) => eprintln!("{err}"),
        _ => eprintln!("error: {err:#}"),
    }
    ExitCode::from(if user { 2 } else { 1 })
}
