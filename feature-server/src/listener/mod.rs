//! The accept loop both ports share: accepts connections (TLS when configured), serves a router
//! on each with hyper (HTTP/1.1 and HTTP/2 on the HTTP port, HTTP/2 only for gRPC), and bounds
//! every wait on a client:
//!
//! - the TLS handshake, then the first bytes until the protocol is known (the HTTP/2 preface, or
//!   a byte that is not one), each within `header_timeout` — the clock restarts when the
//!   handshake completes; an HTTP/1.1 request head within it too (hyper), also between
//!   keep-alive requests;
//! - an HTTP/2 connection with no stream open for `idle_timeout` is sent GOAWAY, and closed when
//!   the client does not finish it within `keepalive_timeout`; a peer silent for
//!   `keepalive_interval` is PINGed and closed when it does not answer within `keepalive_timeout`;
//! - at most `max_connections` are open (both ports together): more are closed as soon as they
//!   are accepted, so a flood is refused instead of taking every file descriptor.
//!
//! HTTP/2 requests run on their connection's task ([`crate::conn_exec`]). On shutdown it stops
//! accepting, lets in-flight requests finish for at most a grace period, then closes every
//! connection still open (an HTTP/2 client that never acknowledges the shutdown, a request whose
//! body stalls).

use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

mod catch_panic;
mod io;
mod phase;
mod slots;
mod supervise;
mod tls;

pub use catch_panic::CatchPanic;
pub use slots::{Slots, fit_open_file_limit};
pub use tls::TlsFiles;

use crate::conn_exec::{ConnExec, drive};
use io::{Io, Prefix, Version, read_version};
use phase::{Phase, PhaseWatch, PortPhase};
use supervise::{Idle, supervise};

/// What hyper runs for each request: the port's router, panics caught.
type Service = TowerToHyperService<CatchPanic<Router>>;

/// Which protocols a port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// HTTP/1.1, or HTTP/2 when the client starts with its preface (or picks it by ALPN).
    Any,
    /// HTTP/2 only, as gRPC needs.
    Http2,
}

/// How long connections may stay quiet, and how many may be open.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// An HTTP/2 connection with no open stream for this long is sent GOAWAY and closed.
    pub idle_timeout: Duration,
    /// An HTTP/2 peer silent for this long is sent a PING…
    pub keepalive_interval: Duration,
    /// …and closed when it does not answer within this; also how long a client has to finish
    /// the connection after an idle GOAWAY.
    pub keepalive_timeout: Duration,
    /// Most connections open at once, both ports together.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            idle_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}

/// What one port's connections are bound by.
#[derive(Debug, Clone)]
pub struct PortOptions {
    /// The TLS handshake; then the first bytes; an HTTP/1.1 request head.
    pub header_timeout: Duration,
    /// After shutdown, how long in-flight requests may take before every connection is closed.
    pub shutdown_grace: Duration,
    pub limits: ConnectionLimits,
}

/// What is shared by a port's connections.
struct Port {
    app: Router,
    name: &'static str,
    protocols: Protocols,
    tls: Option<TlsAcceptor>,
    options: PortOptions,
    http1: http1::Builder,
    phase: Arc<PortPhase>,
}

impl Port {
    /// One accepted connection, from its first byte to its end.
    async fn connection(self: Arc<Self>, stream: tokio::net::TcpStream, mut phase: PhaseWatch) {
        // Until its protocol is known a connection has no request in flight: shutdown closes
        // it at once.
        let draining = poll_fn(|cx| {
            if phase.poll(cx) >= Phase::Draining {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        let started = tokio::select! {
            s = self.start(stream) => s,
            () = draining => None,
        };
        let Some((stream, version, prefix)) = started else {
            return;
        };
        if version == Version::Http1 && self.protocols == Protocols::Http2 {
            tracing::debug!("not HTTP/2 on an HTTP/2-only port");
            return;
        }
        let result = match stream {
            Conn::Plain(stream) => {
                let io = Io::new(stream, self.protocols, prefix);
                self.serve(io, version, phase).await
            }
            Conn::Tls(stream) => {
                let io = Io::new(*stream, self.protocols, prefix);
                self.serve(io, version, phase).await
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }

    /// The TLS handshake (when configured), then the first bytes until the protocol is known,
    /// each within `header_timeout`: the clock restarts when the handshake completes.
    async fn start(&self, stream: tokio::net::TcpStream) -> Option<(Conn, Version, Prefix)> {
        let header_timeout = self.options.header_timeout;
        let deadline = tokio::time::Instant::now() + header_timeout;
        let Some(acceptor) = &self.tls else {
            let mut stream = stream;
            let (version, prefix) = tokio::time::timeout_at(deadline, read_version(&mut stream))
                .await
                .ok()?
                .ok()?;
            return Some((Conn::Plain(stream), version, prefix));
        };
        let mut stream = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                return None;
            }
        };
        match tokio::time::timeout(header_timeout, read_version(&mut stream)).await {
            Ok(Ok((version, prefix))) => Some((Conn::Tls(Box::new(stream)), version, prefix)),
            Ok(Err(_)) => None,
            Err(_) => {
                tracing::debug!("nothing sent after the TLS handshake in time");
                None
            }
        }
    }

    /// Serves a started connection to its end (or until the port closes it).
    async fn serve<S>(&self, io: Io<S>, version: Version, phase: PhaseWatch) -> hyper::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = TowerToHyperService::new(CatchPanic::new(self.app.clone()));
        let exec = ConnExec::default();
        match version {
            Version::Http1 => {
                let conn = self.http1.serve_connection(TokioIo::new(io), service);
                drive(supervise(conn, phase, None), exec).await
            }
            Version::Http2 => {
                let limits = &self.options.limits;
                let mut builder = http2::Builder::new(exec.clone());
                builder
                    .timer(TokioTimer::new())
                    .keep_alive_interval(limits.keepalive_interval)
                    .keep_alive_timeout(limits.keepalive_timeout);
                let conn = builder.serve_connection(TokioIo::new(io), service);
                let idle = Idle::new(exec.clone(), limits);
                drive(supervise(conn, phase, Some(idle)), exec).await
            }
        }
    }
}

/// Serves `app` until `shutdown` resolves, then lets open connections' requests finish for at
/// most `options.shutdown_grace`, then closes the connections still open. `slots` bounds the
/// connections open at once (shared with the server's other port).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    protocols: Protocols,
    tls: Option<TlsAcceptor>,
    options: PortOptions,
    slots: Arc<Slots>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let name = match protocols {
        Protocols::Any => "http",
        Protocols::Http2 => "grpc",
    };
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout);
    let (phase_tx, _) = watch::channel(Phase::Serving);
    let phase = Arc::new(PortPhase {
        now: std::sync::atomic::AtomicU8::new(Phase::Serving as u8),
        tx: phase_tx,
    });
    let port = Arc::new(Port {
        app,
        name,
        protocols,
        tls,
        options,
        http1,
        phase: phase.clone(),
    });
    accept_until(&listener, &port, &slots, shutdown).await;
    drop(listener);
    drain(&port).await;
    Ok(())
}

/// Accepts connections until `shutdown`, each on a task of its own.
async fn accept_until(
    listener: &TcpListener,
    port: &Arc<Port>,
    slots: &Arc<Slots>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let Some(slot) = slots.take() else {
            // Closed at once: the descriptor is free again and the client knows.
            drop(stream);
            slots.refused(port.name);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let phase = PhaseWatch::new(&port.phase);
        let closing = PhaseWatch::new(&port.phase);
        let connection = port.clone().connection(stream, phase);
        // Dropping the connection closes its socket and drops the requests it runs.
        tokio::spawn(until_closing(
            async move {
                let _slot = slot;
                connection.await;
            },
            closing,
        ));
    }
}

/// After the port stopped accepting: lets its connections finish for the grace period, then
/// closes the ones still open.
async fn drain(port: &Port) {
    let phase = &port.phase;
    phase.set(Phase::Draining);
    // Every connection task holds receivers of the phase: all gone means all ended.
    let drained = async { phase.tx.closed().await };
    tokio::pin!(drained);
    let grace = port.options.shutdown_grace;
    if tokio::time::timeout(grace, &mut drained).await.is_err() {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "connections still open at the end of the shutdown grace period (serving.shutdown_grace_ms); closing them"
        );
        phase.set(Phase::Closing);
        // Each task drops its connection as soon as it is polled; bounded all the same.
        let _ = tokio::time::timeout(Duration::from_secs(1), drained).await;
    }
}

/// Runs a connection's task until it ends, or until the port closes every connection.
async fn until_closing(connection: impl Future<Output = ()>, mut phase: PhaseWatch) {
    let mut connection = pin!(connection);
    poll_fn(|cx| {
        if connection.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        if phase.poll(cx) == Phase::Closing {
            tracing::debug!("connection closed at the end of the shutdown grace period");
            return Poll::Ready(());
        }
        Poll::Pending
    })
    .await
}

/// A connection's stream once it has started: plain TCP or TLS.
enum Conn {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}
