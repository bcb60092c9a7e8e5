//! The accept loop both ports share: accepts connections (TLS when configured), serves a router
//! on each with hyper (HTTP/1.1 and HTTP/2 on the HTTP port, HTTP/2 only for gRPC), bounds how
//! long a client may take to send its first bytes, request head or TLS handshake (slowloris), runs
//! HTTP/2 requests on their connection's task ([`crate::conn_exec`]), and on shutdown stops
//! accepting, lets in-flight requests finish for at most a grace period, then closes every
//! connection still open (an HTTP/2 client that never acknowledges the shutdown, a request whose
//! body stalls).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
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

fn connection_builder(
    exec: ConnExec,
    protocols: Protocols,
    header_timeout: Duration,
) -> auto::Builder<ConnExec> {
    let mut builder = auto::Builder::new(exec);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder.http2().timer(TokioTimer::new());
    if protocols == Protocols::Http2 {
        builder = builder.http2_only();
    }
    builder
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

/// Serves `app` until `shutdown` resolves, then lets open connections' requests finish for at
/// most `grace`, then closes the connections still open.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    protocols: Protocols,
    tls: Option<TlsAcceptor>,
    header_timeout: Duration,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let (phase_tx, phase) = tokio::sync::watch::channel(Phase::Serving);
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
        let _ = stream.set_nodelay(true);
        let exec = ConnExec::default();
        let builder = connection_builder(exec.clone(), protocols, header_timeout);
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let (mut draining, mut closing) = (phase.clone(), phase.clone());
        let connection = async move {
            // Until its first bytes (and TLS handshake) a connection has no request in flight:
            // shutdown closes it at once.
            let started = async {
                match tls {
                    None => {
                        // hyper's head timeout starts with the first byte: a client that sends
                        // nothing at all is bounded here.
                        let mut first = [0u8; 1];
                        match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                            Ok(Ok(n)) if n > 0 => Some(Conn::Plain(stream)),
                            _ => None,
                        }
                    }
                    Some(acceptor) => {
                        match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => Some(Conn::Tls(Box::new(s))),
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                None
                            }
                            Err(_) => {
                                tracing::debug!("TLS handshake timed out");
                                None
                            }
                        }
                    }
                }
            };
            let stream = tokio::select! {
                s = started => s,
                _ = draining.wait_for(|p| *p >= Phase::Draining) => None,
            };
            let result = match stream {
                None => return,
                Some(Conn::Plain(stream)) => {
                    let io = Io::new(stream, protocols);
                    let conn = builder.serve_connection(TokioIo::new(io), service);
                    drive(watcher.watch(conn), exec).await
                }
                Some(Conn::Tls(stream)) => {
                    let io = Io::new(*stream, protocols);
                    let conn = builder.serve_connection(TokioIo::new(io), service);
                    drive(watcher.watch(conn), exec).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        };
        tokio::spawn(async move {
            // Dropping the connection closes its socket and drops the requests it runs.
            tokio::select! {
                biased;
                () = connection => {}
                _ = closing.wait_for(|p| *p == Phase::Closing) => {
                    tracing::debug!("connection closed at the end of the shutdown grace period");
                }
            }
        });
    }
    drop(listener);
    let _ = phase_tx.send(Phase::Draining);
    let drained = graceful.shutdown();
    tokio::pin!(drained);
    if tokio::time::timeout(grace, &mut drained).await.is_err() {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "connections still open at the end of the shutdown grace period (serving.shutdown_grace_ms); closing them"
        );
        let _ = phase_tx.send(Phase::Closing);
        // Each task drops its connection as soon as it is polled; bounded all the same.
        let _ = tokio::time::timeout(Duration::from_secs(1), drained).await;
    }
    Ok(())
}

/// A connection's stream once it has started: plain TCP or TLS.
enum Conn {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

/// A connection's stream as hyper sees it. On HTTP/2-only ports it reports that it cannot write
/// vectored: h2 then copies DATA payloads under 1 KiB into its frame buffer instead of queueing
/// them as a separate buffer it must flush before the next frame, so a small gRPC response —
/// headers, message and trailers — leaves in one write instead of two.
struct Io<T> {
    inner: T,
    vectored: bool,
}

impl<T: AsyncWrite> Io<T> {
    fn new(inner: T, protocols: Protocols) -> Self {
        let vectored = protocols == Protocols::Any && inner.is_write_vectored();
        Io { inner, vectored }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Io<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
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
