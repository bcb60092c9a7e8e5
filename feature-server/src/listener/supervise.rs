//! A connection's life under its port: graceful shutdown when the port drains, GOAWAY when an
//! HTTP/2 connection stays idle, closed when a GOAWAY is not acted on.

use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::io::Io;
use super::phase::{Phase, PhaseWatch};
use super::{ConnectionLimits, Service};
use crate::conn_exec::ConnExec;

/// A hyper server connection that can be asked to finish (HTTP/2: GOAWAY; HTTP/1: after the
/// response in progress, if any).
pub(super) trait Graceful: Future<Output = hyper::Result<()>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Graceful
    for http1::Connection<TokioIo<Io<S>>, Service>
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::Connection::graceful_shutdown(self);
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Graceful
    for http2::Connection<TokioIo<Io<S>>, Service, ConnExec>
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

/// Polls `conn`, asking it to finish when the port starts draining or (HTTP/2, `idle`) when it
/// has been idle too long, and dropping it when an idle GOAWAY is not acted on in time.
pub(super) async fn supervise<C: Graceful>(
    conn: C,
    mut phase: PhaseWatch,
    mut idle: Option<Idle>,
) -> hyper::Result<()> {
    let mut conn = pin!(conn);
    let mut draining = false;
    poll_fn(|cx| {
        if !draining && phase.poll(cx) >= Phase::Draining {
            draining = true;
            conn.as_mut().graceful_shutdown();
        }
        if let Some(idle) = &mut idle {
            match idle.poll(cx) {
                IdleCheck::Busy => {}
                IdleCheck::GoAway => {
                    tracing::debug!("HTTP/2 connection idle (serving.idle_timeout_ms): GOAWAY");
                    conn.as_mut().graceful_shutdown();
                }
                IdleCheck::Close => {
                    tracing::debug!("idle HTTP/2 connection did not close after GOAWAY: closed");
                    return Poll::Ready(Ok(()));
                }
            }
        }
        conn.as_mut().poll(cx)
    })
    .await
}

/// Checks of the idle timeout: a connection is sent GOAWAY when this many checks in a row, a
/// quarter of the timeout apart, found no stream open since the check before and none started —
/// between the timeout and 1.25 × it after its last stream ended.
const IDLE_CHECKS: u32 = 4;

/// The idle check of an HTTP/2 connection, from its executor's count of streams. Its timer is
/// polled only when it has fired (or the task's waker changed): a connection's poll costs one
/// atomic load more.
pub(super) struct Idle {
    exec: ConnExec,
    every: Duration,
    /// How long a client has to end the connection after an idle GOAWAY.
    after_goaway: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    registered: Option<Waker>,
    quiet: u32,
    /// Streams started, and whether none was open, at the last check.
    started: u64,
    was_idle: bool,
    going_away: bool,
}

pub(super) enum IdleCheck {
    Busy,
    GoAway,
    Close,
}

impl Idle {
    pub(super) fn new(exec: ConnExec, limits: &ConnectionLimits) -> Idle {
        let every = (limits.idle_timeout / IDLE_CHECKS).max(Duration::from_millis(1));
        Idle {
            exec,
            every,
            after_goaway: limits.keepalive_timeout,
            timer: Box::pin(tokio::time::sleep(every)),
            registered: None,
            quiet: 0,
            started: 0,
            was_idle: true,
            going_away: false,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> IdleCheck {
        if !self.timer.is_elapsed()
            && self
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return IdleCheck::Busy;
        }
        let mut check = IdleCheck::Busy;
        while self.timer.as_mut().poll(cx).is_ready() {
            let (open, started) = self.exec.activity();
            let quiet = open == 0 && self.was_idle && started == self.started;
            self.started = started;
            self.was_idle = open == 0;
            let next = if self.going_away {
                if quiet {
                    return IdleCheck::Close;
                }
                // Streams started in the meantime: they finish under the GOAWAY; check again.
                self.after_goaway
            } else {
                self.quiet = if quiet { self.quiet + 1 } else { 0 };
                if self.quiet >= IDLE_CHECKS {
                    self.going_away = true;
                    check = IdleCheck::GoAway;
                    self.after_goaway
                } else {
                    self.every
                }
            };
            self.timer
                .as_mut()
                .reset(tokio::time::Instant::now() + next);
        }
        self.registered = Some(cx.waker().clone());
        check
    }
}
