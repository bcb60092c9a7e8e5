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
//!
//! [`drive`] also serves wake-ups raised during its own poll (h2 and hyper wake their connection
//! when a response is queued) by polling again, instead of letting tokio reschedule the task and
//! wake an idle worker to steal it: measured at one connection, that removed 2 (HTTP/1.1) and 3.5
//! (gRPC) `futex` calls and 2–3 context switches per request. Both ports' connections run in it.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use std::panic::AssertUnwindSafe;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};

/// Requests in flight on one connection that run on the connection's task.
pub const INLINE_STREAMS: usize = 2;

/// Wake-ups served by polling again, per poll of [`drive`], before yielding to the scheduler.
const MAX_SELF_WAKES: usize = 8;

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
    /// Spawned (beyond [`INLINE_STREAMS`]) and not finished yet.
    spawned: usize,
    /// Every future handed over so far: the listener's idle check compares it between checks.
    started: u64,
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

    /// Request futures (HTTP/2 streams) not finished yet, and how many were ever handed over.
    pub fn activity(&self) -> (usize, u64) {
        let shared = self.lock();
        (shared.inline + shared.spawned, shared.started)
    }
}

/// Held by a spawned request future: counts it in [`ConnExec::activity`] until it ends.
struct Spawned(ConnExec);

impl Drop for Spawned {
    fn drop(&mut self) {
        self.0.lock().spawned -= 1;
    }
}

impl<F> hyper::rt::Executor<F> for ConnExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        let mut shared = self.lock();
        shared.started += 1;
        if shared.inline >= INLINE_STREAMS {
            shared.spawned += 1;
            drop(shared);
            let open = Spawned(self.clone());
            tokio::spawn(async move {
                let _open = open;
                fut.await;
            });
            return;
        }
        shared.inline += 1;
        // A panic in a request must not end the connection's other requests, polled on the
        // same task: it is caught here, and that one stream is reset (the HTTP and gRPC
        // handlers catch their own panics first and answer 500 / INTERNAL: `catch_panic`).
        shared
            .queued
            .push(Box::pin(AssertUnwindSafe(fut).catch_unwind().map(|r| {
                if r.is_err() {
                    tracing::error!("a request panicked; its stream was reset");
                }
            })));
        if let Some(waker) = shared.waker.take() {
            waker.wake();
        }
    }
}

/// Polls `conn` and the request futures handed to `exec` on the calling task, until the
/// connection has ended and every inline request has finished.
///
/// Everything is polled with a [`SelfWake`] waker: a wake-up raised while this task is being
/// polled (h2 waking its connection after a request queued a response, a request finishing) is
/// served by polling again here instead of rescheduling the task — which would also make tokio
/// wake an idle worker thread to steal it, a futex call and a context switch per request. The
/// hand-off between the two is [`WakeGate`], model-checked with loom (tests below).
pub async fn drive<C: Future>(conn: C, exec: ConnExec) -> C::Output {
    let mut conn = pin!(conn);
    let mut tasks: FuturesUnordered<Local> = FuturesUnordered::new();
    let mut output = None;
    let flag = Arc::new(SelfWake::default());
    let waker = Waker::from(flag.clone());
    std::future::poll_fn(|outer| {
        flag.set_task(outer.waker());
        let cx = &mut Context::from_waker(&waker);
        let gate = &flag.gate;
        gate.enter();
        // Wake-ups served by polling again are bounded: a future that wakes itself and returns
        // Pending (as tokio's cooperative budget does) must go back to the scheduler.
        let mut self_wakes = 0;
        loop {
            gate.round();
            if output.is_none()
                && let Poll::Ready(out) = conn.as_mut().poll(cx)
            {
                output = Some(out);
            }
            let queued = {
                let mut shared = exec.lock();
                if !shared.waker.as_ref().is_some_and(|w| w.will_wake(&waker)) {
                    shared.waker = Some(waker.clone());
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
                gate.leave();
                return Poll::Ready(output.take().expect("checked above"));
            }
            // A request that finished (or started) may have queued frames for the connection
            // to write: poll it again now.
            if new || finished > 0 {
                continue;
            }
            if gate.woken() {
                self_wakes += 1;
                if self_wakes <= MAX_SELF_WAKES {
                    continue;
                }
                gate.leave();
                outer.waker().wake_by_ref();
                return Poll::Pending;
            }
            if gate.park() {
                return Poll::Pending;
            }
            // Woken from another thread while parking: poll again.
        }
    })
    .await
}

/// One atomic flag of a [`WakeGate`]: `std`'s in the server, loom's in the model check.
pub(crate) trait Flag: Default {
    fn set(&self, value: bool);
    fn get(&self) -> bool;
    /// A `SeqCst` fence.
    fn fence();
}

impl Flag for AtomicBool {
    fn set(&self, value: bool) {
        self.store(value, Ordering::SeqCst);
    }
    fn get(&self) -> bool {
        self.load(Ordering::SeqCst)
    }
    fn fence() {
        std::sync::atomic::fence(Ordering::SeqCst);
    }
}

/// The hand-off between [`drive`] and wake-ups from anywhere (its own poll, other threads).
///
/// `drive` calls [`enter`](Self::enter) when its task is polled, [`round`](Self::round) before
/// each pass over its futures, [`woken`](Self::woken) after it, and ends with
/// [`park`](Self::park) (or [`leave`](Self::leave) when it wakes its task itself). A wake-up
/// calls [`wake`](Self::wake), and wakes the task when that says so. The guarantee: a wake-up
/// raised after a pass began is either seen by `drive` (which passes again) or wakes the task
/// — never neither. `wake` stores `pending`, then reads `polling`; `park` clears `polling`, then
/// reads `pending`; a `SeqCst` fence between each store and load makes at least one of the two
/// see the other's store (C11's store-buffering rule for fences; with `SeqCst` accesses alone the
/// same holds, but loom cannot check that form — it models those accesses as acquire/release).
#[derive(Default)]
pub(crate) struct WakeGate<F: Flag = AtomicBool> {
    polling: F,
    pending: F,
}

impl<F: Flag> WakeGate<F> {
    /// `drive`'s task is being polled: wake-ups from now on only mark `pending`.
    pub(crate) fn enter(&self) {
        self.polling.set(true);
    }

    /// A pass over the futures begins: it serves every wake-up raised before this.
    pub(crate) fn round(&self) {
        self.pending.set(false);
    }

    /// Whether a wake-up was raised since the pass began.
    pub(crate) fn woken(&self) -> bool {
        self.pending.get()
    }

    /// `drive` returns `Pending` having woken its task itself.
    pub(crate) fn leave(&self) {
        self.polling.set(false);
    }

    /// `drive` is about to return `Pending`: true when it may, false when a wake-up raced in
    /// (then `drive` is polling again and must pass again).
    pub(crate) fn park(&self) -> bool {
        self.polling.set(false);
        F::fence();
        if self.pending.get() {
            self.polling.set(true);
            return false;
        }
        true
    }

    /// A wake-up: true when `drive` is not polling and the caller must wake its task.
    pub(crate) fn wake(&self) -> bool {
        self.pending.set(true);
        F::fence();
        !self.polling.get()
    }
}

/// The waker [`drive`] polls with: a wake-up goes through the [`WakeGate`], and wakes the task
/// only when `drive` is not polling.
#[derive(Default)]
struct SelfWake {
    gate: WakeGate,
    task: Mutex<Option<Waker>>,
}

impl SelfWake {
    fn set_task(&self, waker: &Waker) {
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if !task.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *task = Some(waker.clone());
        }
    }
}

impl Wake for SelfWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.gate.wake()
            && let Some(task) = self
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
        {
            task.wake_by_ref();
        }
    }
}

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;
