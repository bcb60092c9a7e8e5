//! Running HTTP/2 streams on their connection's own task.
//!
//! hyper hands every HTTP/2 request (each gRPC call) to an executor as a future of its own. With
//! tokio's executor that is a new task per request: the connection task wakes the request task,
//! which answers and wakes the connection task to write — two hand-offs, often across threads,
//! for work that takes microseconds. HTTP/1 has none: hyper runs the request inside the
//! connection's future. [`ConnExec`] gives HTTP/2 the same shape: the first
//! [`INLINE_STREAMS`] requests in flight on a connection are polled by [`drive`], inside the
//! connection's task; more concurrent ones are spawned as usual, so a client multiplexing many
//! calls over one connection still gets every core.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};

use futures::StreamExt;
use futures::stream::FuturesUnordered;

/// Requests in flight on one connection that run on the connection's task.
pub const INLINE_STREAMS: usize = 2;

type Local = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An executor for one connection's request futures; pair it with [`drive`].
#[derive(Clone, Default)]
pub struct ConnExec {
    shared: Arc<Mutex<Shared>>,
}

#[derive(Default)]
struct Shared {
    /// Handed over, not yet polled.
    queued: Vec<Local>,
    /// Queued plus being polled by `drive`.
    inline: usize,
    /// `drive`'s task, woken when a future is queued from outside its poll.
    waker: Option<Waker>,
}

impl std::fmt::Debug for ConnExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnExec")
            .field("inline", &self.lock().inline)
            .finish_non_exhaustive()
    }
}

impl ConnExec {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A panicking request future is caught by tokio's task, not here; the state stays
        // consistent between statements, so a poisoned lock is still usable.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<F> hyper::rt::Executor<F> for ConnExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        let mut shared = self.lock();
        if shared.inline >= INLINE_STREAMS {
            drop(shared);
            tokio::spawn(fut);
            return;
        }
        shared.inline += 1;
        shared.queued.push(Box::pin(fut));
        if let Some(waker) = shared.waker.take() {
            waker.wake();
        }
    }
}

/// Polls `conn` and the request futures handed to `exec` on the calling task, until the
/// connection has ended and every inline request has finished.
pub async fn drive<C: Future>(conn: C, exec: ConnExec) -> C::Output {
    let mut conn = pin!(conn);
    let mut tasks: FuturesUnordered<Local> = FuturesUnordered::new();
    let mut output = None;
    std::future::poll_fn(|cx| {
        loop {
            if output.is_none()
                && let Poll::Ready(out) = conn.as_mut().poll(cx)
            {
                output = Some(out);
            }
            let queued = {
                let mut shared = exec.lock();
                if !shared
                    .waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    shared.waker = Some(cx.waker().clone());
                }
                std::mem::take(&mut shared.queued)
            };
            let new = !queued.is_empty();
            tasks.extend(queued);
            let mut finished = 0;
            while let Poll::Ready(Some(())) = tasks.poll_next_unpin(cx) {
                finished += 1;
            }
            if finished > 0 {
                exec.lock().inline -= finished;
            }
            if output.is_some() && tasks.is_empty() {
                return Poll::Ready(output.take().expect("checked above"));
            }
            // A request that finished (or started) may have queued frames for the connection
            // to write; poll it again now rather than on a wake-up of our own.
            if !new && finished == 0 {
                return Poll::Pending;
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn inline_futures_finish_before_drive_returns_and_extra_ones_are_spawned() {
        let exec = ConnExec::default();
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let conn = {
            let exec = exec.clone();
            let done = done.clone();
            async move {
                for _ in 0..INLINE_STREAMS + 3 {
                    let done = done.clone();
                    exec.execute(async move {
                        tokio::task::yield_now().await;
                        done.fetch_add(1, Ordering::SeqCst);
                    });
                }
                assert_eq!(exec.lock().inline, INLINE_STREAMS, "the rest were spawned");
                let _ = rx.await;
                "closed"
            }
        };
        let driving = tokio::spawn(drive(conn, exec.clone()));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(done.load(Ordering::SeqCst), INLINE_STREAMS + 3);
        assert_eq!(exec.lock().inline, 0);
        tx.send(()).unwrap();
        assert_eq!(driving.await.unwrap(), "closed");
    }

    #[tokio::test]
    async fn drive_waits_for_inline_requests_after_the_connection_ends() {
        let exec = ConnExec::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let got = Arc::new(AtomicUsize::new(0));
        let conn = {
            let exec = exec.clone();
            let got = got.clone();
            async move {
                exec.execute(async move {
                    got.store(rx.await.unwrap() as usize, Ordering::SeqCst);
                });
            }
        };
        let driving = tokio::spawn(drive(conn, exec));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!driving.is_finished(), "a request is still in flight");
        tx.send(7).unwrap();
        driving.await.unwrap();
        assert_eq!(got.load(Ordering::SeqCst), 7);
    }
}
