//! Where offline data lives: local paths and object-store URLs (`s3://`, `gs://`, `az://`,
//! `http(s)://`) behind one [`ObjectStore`] interface.
//!
//! - [`open`] builds the store of a URL from the standard environment (`AWS_*`, `GOOGLE_*`,
//!   `AZURE_*`) and a source's `storage:` map (its `${VAR}` references resolved here, in the
//!   process that reads), with bounded timeouts and retries.
//! - Every store a job reads through is wrapped in a [`Counted`] store, so a run can report the
//!   files and bytes it read (object stores and local files alike).
//! - [`fetch_to_temp`] and [`Upload`] move whole files: an entity table is read from the store
//!   into a local temporary file; an output is uploaded in parts and only completed at the end
//!   (aborted on failure), so no reader ever sees half a file under its name.
//!
//! URLs in messages are redacted ([`quiver_registry::validate::redact`]); option values never
//! appear in messages.

mod counted;
mod open;
mod transfer;

pub use counted::{Counted, Reads};
pub use open::{StoreUrl, explain, failure, open};
pub use transfer::{Upload, fetch_to_temp, head};

/// `text` (an object-store URL) and its store, configured from the environment alone (entity
/// tables and outputs have no `storage:` map).
pub fn open_url(
    text: &str,
) -> crate::error::Result<(std::sync::Arc<dyn object_store::ObjectStore>, StoreUrl)> {
    let url = StoreUrl::parse(text)?;
    let store = open(&url, &Default::default(), &|name| std::env::var(name).ok())?;
    Ok((store, url))
}

/// Runs the future `make` returns to completion from synchronous code, on a private runtime on
/// its own thread (so it works from inside another runtime too; the future is made there, so
/// it need not be `Send`).
pub fn block_on<F, Fut>(make: F) -> Fut::Output
where
    F: FnOnce() -> Fut + Send,
    Fut: std::future::Future,
    Fut::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime builds")
                    .block_on(make())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
