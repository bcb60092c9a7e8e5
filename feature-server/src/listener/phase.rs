//! Where a port is in its shutdown, as each connection sees it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Waker};

use tokio::sync::watch;

/// Where a port is in its shutdown; connection tasks watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Phase {
    Serving,
    /// Shutdown began: connections that have not sent a request yet are closed, the others
    /// finish what is in flight (hyper's graceful shutdown).
    Draining,
    /// The grace period is over: every connection is closed.
    Closing,
}

/// A port's phase: a watch channel for the changes, and the same value in an atomic, so that a
/// connection's poll checks it with one load instead of polling a watch future (which takes
/// the channel's lock, shared by every connection of the port) each time.
pub(super) struct PortPhase {
    pub(super) now: AtomicU8,
    pub(super) tx: watch::Sender<Phase>,
}

impl PortPhase {
    pub(super) fn set(&self, phase: Phase) {
        self.now.store(phase as u8, Ordering::Release);
        self.tx.send_replace(phase);
    }
}

/// One connection's view of its port's [`Phase`].
pub(super) struct PhaseWatch {
    port: Arc<PortPhase>,
    seen: Phase,
    changed: Pin<Box<dyn Future<Output = watch::Receiver<Phase>> + Send>>,
    /// The waker the pending `changed` future was last polled with.
    registered: Option<Waker>,
}

impl PhaseWatch {
    pub(super) fn new(port: &Arc<PortPhase>) -> PhaseWatch {
        let rx = port.tx.subscribe();
        let seen = *rx.borrow();
        PhaseWatch {
            port: port.clone(),
            seen,
            changed: Box::pin(next_change(rx)),
            registered: None,
        }
    }

    /// The phase now; `cx` is woken when it changes.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Phase {
        if self.seen == Phase::Closing {
            return Phase::Closing;
        }
        // The phase is stored before the channel notifies: unchanged here, and the future
        // registered with this waker, means nothing to do.
        if self.port.now.load(Ordering::Acquire) == self.seen as u8
            && self
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return self.seen;
        }
        while let Poll::Ready(mut rx) = self.changed.as_mut().poll(cx) {
            self.seen = *rx.borrow_and_update();
            if self.seen == Phase::Closing {
                return Phase::Closing;
            }
            self.changed = Box::pin(next_change(rx));
        }
        self.registered = Some(cx.waker().clone());
        self.seen
    }
}

/// Resolves when the phase changes (or the port is gone, which reads as `Closing`).
pub(super) async fn next_change(mut rx: watch::Receiver<Phase>) -> watch::Receiver<Phase> {
    if rx.changed().await.is_err() {
        // The sender is gone: nothing will change again.
        let (tx, rx) = watch::channel(Phase::Closing);
        drop(tx);
        return rx;
    }
    rx
}
