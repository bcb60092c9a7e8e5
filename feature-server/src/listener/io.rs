//! A connection's first bytes (which protocol) and its stream as hyper sees it.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::Protocols;

pub(super) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Version {
    Http1,
    Http2,
}

/// The bytes read to tell a connection's protocol, handed to hyper before the rest.
#[derive(Default)]
pub(super) struct Prefix {
    buf: [u8; PREFACE.len()],
    at: usize,
    len: usize,
}

/// Reads a connection's first bytes until its protocol is known: HTTP/2 once they are the whole
/// client preface, HTTP/1 as soon as one differs from it.
pub(super) async fn read_version<S: AsyncRead + Unpin>(
    s: &mut S,
) -> std::io::Result<(Version, Prefix)> {
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

/// A connection's stream as hyper sees it. On HTTP/2-only ports it reports that it cannot write
/// vectored: h2 then copies DATA payloads under 1 KiB into its frame buffer instead of queueing
/// them as a separate buffer it must flush before the next frame, so a small gRPC response —
/// headers, message and trailers — leaves in one write instead of two. Its first reads give
/// back the bytes read to tell the protocol.
pub(super) struct Io<T> {
    inner: T,
    vectored: bool,
    prefix: Prefix,
}

impl<T: AsyncWrite> Io<T> {
    pub(super) fn new(inner: T, protocols: Protocols, prefix: Prefix) -> Self {
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
    use std::time::Duration;
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
}
