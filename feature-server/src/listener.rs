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
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::conn_exec::{ConnExec, drive};

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl TlsFiles {
    /// A rustls acceptor offering (by ALPN) HTTP/2, and HTTP/1.1 unless the port is HTTP/2 only.
    pub fn acceptor(&self, protocols: Protocols) -> Result<TlsAcceptor, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| format!("{}: {e}", self.cert.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", self.cert.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate in it", self.cert.display()));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| format!("{}: {e}", self.key.display()))?;
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("TLS certificate and key: {e}"))?;
        config.alpn_protocols = match protocols {
            Protocols::Any => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Protocols::Http2 => vec![b"h2".to_vec()],
        };
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

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

/// The connections a server has open, both ports together, against `max_connections`.
#[derive(Debug)]
pub struct Slots {
    open: AtomicUsize,
    max: usize,
    created: std::time::Instant,
    /// When a refusal was last logged, in ms since `created` (+1; 0 = never).
    warned_at: AtomicU64,
}

/// How often a refused connection is logged at most.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

impl Slots {
    pub fn new(max_connections: usize) -> Arc<Slots> {
        Arc::new(Slots {
            open: AtomicUsize::new(0),
            max: max_connections,
            created: std::time::Instant::now(),
            warned_at: AtomicU64::new(0),
        })
    }

    fn take(self: &Arc<Self>) -> Option<Slot> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Slot(self.clone()))
    }

    fn refused(&self, port: &'static str) {
        metrics::counter!("quiver_connections_refused_total", "port" => port).increment(1);
        let now = self.created.elapsed().as_millis() as u64 + 1;
        let last = self.warned_at.load(Ordering::Relaxed);
        if (last == 0 || now - last >= REFUSAL_LOG_EVERY.as_millis() as u64)
            && self
                .warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                port,
                max_connections = self.max,
                "refusing connections: {} open, the limit (serving.max_connections); \
                 counted in quiver_connections_refused_total",
                self.max
            );
        }
    }
}

/// One open connection's place in [`Slots`], given back when dropped.
struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `max_connections`, lowered when the process's open-file limit (`ulimit -n`) could not hold
/// that many connections besides the rest of the process (stores, registry, training files):
/// past it, `accept` itself would fail and clients would stall instead of being refused. Read
/// from `/proc/self/limits`; unchanged where that cannot be read.
pub fn fit_open_file_limit(max_connections: usize) -> usize {
    let Some(files) = open_file_limit() else {
        return max_connections;
    };
    let fit = connections_within(files);
    if fit < max_connections {
        tracing::warn!(
            "serving.max_connections is {max_connections}, but the open-file limit (ulimit -n) \
             is {files}: at most {fit} connections will be open at once; raise the limit \
             (e.g. LimitNOFILE in systemd) to allow more"
        );
        return fit;
    }
    max_connections
}

/// Connections that fit in `files` descriptors: an eighth is kept for the rest of the process
/// (at least 32, at most 256).
fn connections_within(files: usize) -> usize {
    files.saturating_sub((files / 8).clamp(32, 256)).max(1)
}

fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Where a port is in its shutdown; connection tasks watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
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
struct PortPhase {
    now: AtomicU8,
    tx: watch::Sender<Phase>,
}

impl PortPhase {
    fn set(&self, phase: Phase) {
        self.now.store(phase as u8, Ordering::Release);
        self.tx.send_replace(phase);
    }
}

/// One connection's view of its port's [`Phase`].
struct PhaseWatch {
    port: Arc<PortPhase>,
    seen: Phase,
    changed: Pin<Box<dyn Future<Output = watch::Receiver<Phase>> + Send>>,
    /// The waker the pending `changed` future was last polled with.
    registered: Option<Waker>,
}

impl PhaseWatch {
    fn new(port: &Arc<PortPhase>) -> PhaseWatch {
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
    fn poll(&mut self, cx: &mut Context<'_>) -> Phase {
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
async fn next_change(mut rx: watch::Receiver<Phase>) -> watch::Receiver<Phase> {
    if rx.changed().await.is_err() {
        // The sender is gone: nothing will change again.
        let (tx, rx) = watch::channel(Phase::Closing);
        drop(tx);
        return rx;
    }
    rx
}

/// What is shared by a port's connections.
struct Port {
    app: Router,
    protocols: Protocols,
    options: PortOptions,
    http1: http1::Builder,
    phase: Arc<PortPhase>,
}

impl Port {
    /// Serves a started connection to its end (or until the port closes it).
    async fn serve<S>(&self, io: Io<S>, version: Version, phase: PhaseWatch) -> hyper::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = TowerToHyperService::new(self.app.clone());
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
        now: AtomicU8::new(Phase::Serving as u8),
        tx: phase_tx,
    });
    let port = Arc::new(Port {
        app,
        protocols,
        options,
        http1,
        phase: phase.clone(),
    });
    let header_timeout = port.options.header_timeout;
    tokio::pin!(shutdown);
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
            () = &mut shutdown => break,
        };
        let Some(slot) = slots.take() else {
            // Closed at once: the descriptor is free again and the client knows.
            drop(stream);
            slots.refused(name);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        let port = port.clone();
        let mut phase = PhaseWatch::new(&port.phase);
        let closing = PhaseWatch::new(&port.phase);
        let connection = async move {
            let _slot = slot;
            // Until its protocol is known a connection has no request in flight: shutdown
            // closes it at once.
            let started = async {
                let deadline = tokio::time::Instant::now() + header_timeout;
                match tls {
                    None => {
                        let mut stream = stream;
                        match tokio::time::timeout_at(deadline, read_version(&mut stream)).await {
                            Ok(Ok((version, prefix))) => {
                                Some((Conn::Plain(stream), version, prefix))
                            }
                            _ => None,
                        }
                    }
                    Some(acceptor) => {
                        let mut stream = match tokio::time::timeout_at(
                            deadline,
                            acceptor.accept(stream),
                        )
                        .await
                        {
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
                        // The first request's clock starts when the handshake completes.
                        match tokio::time::timeout(header_timeout, read_version(&mut stream)).await
                        {
                            Ok(Ok((version, prefix))) => {
                                Some((Conn::Tls(Box::new(stream)), version, prefix))
                            }
                            Ok(Err(_)) => None,
                            Err(_) => {
                                tracing::debug!("nothing sent after the TLS handshake in time");
                                None
                            }
                        }
                    }
                }
            };
            let draining = poll_fn(|cx| {
                if phase.poll(cx) >= Phase::Draining {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            });
            let started = tokio::select! {
                s = started => s,
                () = draining => None,
            };
            let Some((stream, version, prefix)) = started else {
                return;
            };
            if version == Version::Http1 && port.protocols == Protocols::Http2 {
                tracing::debug!("not HTTP/2 on an HTTP/2-only port");
                return;
            }
            let result = match stream {
                Conn::Plain(stream) => {
                    let io = Io::new(stream, port.protocols, prefix);
                    port.serve(io, version, phase).await
                }
                Conn::Tls(stream) => {
                    let io = Io::new(*stream, port.protocols, prefix);
                    port.serve(io, version, phase).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        };
        // Dropping the connection closes its socket and drops the requests it runs.
        tokio::spawn(until_closing(connection, closing));
    }
    drop(listener);
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
    Ok(())
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

/// A hyper server connection that can be asked to finish (HTTP/2: GOAWAY; HTTP/1: after the
/// response in progress, if any).
trait Graceful: Future<Output = hyper::Result<()>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

type Service = TowerToHyperService<Router>;

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
async fn supervise<C: Graceful>(
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
struct Idle {
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

enum IdleCheck {
    Busy,
    GoAway,
    Close,
}

impl Idle {
    fn new(exec: ConnExec, limits: &ConnectionLimits) -> Idle {
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

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    Http1,
    Http2,
}

/// The bytes read to tell a connection's protocol, handed to hyper before the rest.
#[derive(Default)]
struct Prefix {
    buf: [u8; PREFACE.len()],
    at: usize,
    len: usize,
}

/// Reads a connection's first bytes until its protocol is known: HTTP/2 once they are the whole
/// client preface, HTTP/1 as soon as one differs from it.
async fn read_version<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<(Version, Prefix)> {
    let mut prefix = Prefix::default();
    loop {
        let n = s.read(&mut prefix.buf[prefix.len..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        prefix.len += n;
        if prefix.buf[..prefix.len] != PREFACE[..prefix.len] {
            return Ok((Version::Http1, prefix));
        }
        if prefix.len == PREFACE.len() {
            return Ok((Version::Http2, prefix));
        }
    }
}

/// A connection's stream once it has started: plain TCP or TLS.
enum Conn {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

/// A connection's stream as hyper sees it. On HTTP/2-only ports it reports that it cannot write
/// vectored: h2 then copies DATA payloads under 1 KiB into its frame buffer instead of queueing
/// them as a separate buffer it must flush before the next frame, so a small gRPC response —
/// headers, message and trailers — leaves in one write instead of two. Its first reads give
/// back the bytes read to tell the protocol.
struct Io<T> {
    inner: T,
    vectored: bool,
    prefix: Prefix,
}

impl<T: AsyncWrite> Io<T> {
    fn new(inner: T, protocols: Protocols, prefix: Prefix) -> Self {
        let vectored = protocols == Protocols::Any && inner.is_write_vectored();
        Io {
            inner,
            vectored,
            prefix,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Io<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let Prefix {
            buf: bytes,
            at,
            len,
        } = &mut self.prefix;
        if *at < *len {
            let n = (*len - *at).min(buf.remaining());
            buf.put_slice(&bytes[*at..*at + n]);
            *at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Io<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn the_protocol_is_known_from_the_first_bytes_and_they_reach_hyper() {
        for (sent, version) in [
            (
                &b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"[..],
                Some(Version::Http1),
            ),
            (&b"PRX"[..], Some(Version::Http1)),
            (
                &[&PREFACE[..], b"\0\0\0\x04\0\0\0\0\0"].concat()[..],
                Some(Version::Http2),
            ),
            // Closed before the protocol is known.
            (&b"PRI"[..], None),
        ] {
            let (mut client, server) = tokio::io::duplex(1024);
            // Sent in pieces, as a slow client would.
            for piece in sent.chunks(5) {
                client.write_all(piece).await.unwrap();
            }
            drop(client);
            let mut server = server;
            match read_version(&mut server).await {
                Ok((got, prefix)) => {
                    assert_eq!(Some(got), version, "{sent:?}");
                    let mut io = Io::new(server, Protocols::Any, prefix);
                    let mut all = Vec::new();
                    io.read_to_end(&mut all).await.unwrap();
                    assert_eq!(all, sent, "every byte reaches hyper, in order");
                }
                Err(e) => {
                    assert_eq!(version, None, "{sent:?}: {e}");
                    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
                }
            }
        }
        // Half a preface, then silence: still unknown (the caller's deadline closes it).
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(&PREFACE[..16]).await.unwrap();
        let waiting =
            tokio::time::timeout(Duration::from_millis(50), read_version(&mut server)).await;
        assert!(waiting.is_err(), "decided on half a preface");
    }

    #[test]
    fn connections_leave_room_for_the_rest_of_the_process() {
        assert_eq!(connections_within(120), 88);
        assert_eq!(connections_within(1024), 896);
        assert_eq!(connections_within(1 << 20), (1 << 20) - 256);
        assert_eq!(connections_within(10), 1);
    }
}
