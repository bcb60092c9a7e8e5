//! Connections that never speak (issue 22, item 3), against real `quiver serve` processes: a TLS
//! client that completes its handshake and sends nothing, an HTTP/2 client that sends its
//! preface and then nothing (or half a preface), an HTTP/2 peer that stops answering PINGs, and a
//! flood of idle connections beyond `serving.max_connections`. Every wait is bounded; the
//! configured limits are small.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_tests::RedisServer;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::availability::{Server, repo, request};
use crate::serve::MODEL_V1;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const SETTINGS: &[u8] = b"\0\0\0\x04\0\0\0\0\0";
const GOAWAY: u8 = 7;
const PING: u8 = 6;

/// Reads until the peer closes or `limit` passes; returns what came, and when it closed.
async fn until_closed<S: AsyncRead + Unpin>(
    s: &mut S,
    limit: Duration,
) -> (Vec<u8>, Option<Instant>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, Some(Instant::now())),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, None),
        }
    }
}

/// The types of the HTTP/2 frames in `bytes` (a server's side of a connection, no preface).
fn frame_types(bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        types.push(bytes[at + 3]);
        at += 9 + len;
    }
    types
}

/// A HEADERS frame opening stream 1 (END_HEADERS, not END_STREAM: a body is to follow) for a
/// POST to `path` with `content_type`, HPACK-encoded by hand (static-table names, literals).
fn open_stream(path: &str, content_type: &str) -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
    for (index, value) in [(4u8, path), (1, "x"), (31, content_type)] {
        // Literal with incremental indexing, indexed name (:path, :authority, content-type).
        block.push(0x40 | index);
        block.push(u8::try_from(value.len()).unwrap());
        block.extend_from_slice(value.as_bytes());
    }
    let mut frame = (block.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[1, 0x4, 0, 0, 0, 1]);
    frame.extend_from_slice(&block);
    frame
}

/// A self-signed certificate for `localhost`, written into `repo`; returns its PEM.
fn certificate(repo: &std::path::Path) -> String {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(repo.join("cert.pem"), key.cert.pem()).unwrap();
    std::fs::write(repo.join("key.pem"), key.signing_key.serialize_pem()).unwrap();
    key.cert.pem()
}

fn connector(cert_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn handshake(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp);
    tokio::time::timeout(Duration::from_secs(5), tls)
        .await
        .ok()?
        .ok()
}

/// After a completed TLS handshake the first request (or HTTP/2 preface) must come within
/// `header_timeout_ms`, on both ports and whatever protocol ALPN picked: a client that sends
/// nothing used to be kept for 40 s (HTTP) or 20 s (gRPC). A real HTTPS request still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_that_send_nothing_after_the_handshake_are_closed() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(
        tmp.path(),
        &redis,
        "serving:\n  header_timeout_ms: 500\n  tls:\n    cert_file: cert.pem\n    key_file: key.pem\n",
    );
    let cert = certificate(&repo);
    let server = Server::start(&repo);
    let any = connector(&cert, &[]);
    let started = Instant::now();
    while handshake(&any, server.http).await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let cases: [(&str, SocketAddr, &[&[u8]]); 4] = [
        ("HTTP, no ALPN", server.http, &[]),
        ("HTTP, ALPN http/1.1", server.http, &[b"http/1.1"]),
        ("HTTP, ALPN h2", server.http, &[b"h2"]),
        ("gRPC, ALPN h2", server.grpc, &[b"h2"]),
    ];
    for (case, addr, alpn) in cases {
        let mut tls = handshake(&connector(&cert, alpn), addr)
            .await
            .unwrap_or_else(|| panic!("{case}: no TLS handshake\n{}", server.log()));
        let handshaken = Instant::now();
        let (_, closed) = until_closed(&mut tls, Duration::from_secs(6)).await;
        let closed = closed.unwrap_or_else(|| panic!("{case}: kept open after the handshake"));
        let took = closed - handshaken;
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_millis(500 + 2000),
            "{case}: closed {took:?} after the handshake"
        );
    }

    // The handshake itself is bounded: a client that connects and sends nothing.
    let mut silent = tokio::net::TcpStream::connect(server.http).await.unwrap();
    let connected = Instant::now();
    let (_, closed) = until_closed(&mut silent, Duration::from_secs(6)).await;
    let took = closed.expect("a connection without a handshake was kept") - connected;
    assert!(took < Duration::from_millis(500 + 2000), "{took:?}");

    let mut tls = handshake(&any, server.http).await.unwrap();
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (got, _) = until_closed(&mut tls, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

/// An HTTP/2 connection with no open stream for `serving.idle_timeout_ms` gets a GOAWAY and is
/// closed (also when the client answers nothing: its PING has `keepalive_timeout_ms`), on both
/// ports; one that stops halfway through its preface is closed after `header_timeout_ms`. Both
/// used to stay open forever on the plain port. A real client's connection is closed the same
/// way when it goes idle, but never while a stream is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_without_streams_are_closed_after_the_idle_timeout() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(
        tmp.path(),
        &redis,
        "serving:\n  header_timeout_ms: 400\n  idle_timeout_ms: 1000\n  keepalive_timeout_ms: 500\n  body_timeout_ms: 2500\n",
    );
    let mut server = Server::start(&repo);
    server.wait_listening(Duration::from_secs(20)).await;

    for (port, addr) in [("HTTP", server.http), ("gRPC", server.grpc)] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&[PREFACE, SETTINGS].concat()).await.unwrap();
        let opened = Instant::now();
        let (got, closed) = until_closed(&mut s, Duration::from_secs(8)).await;
        let closed = closed.unwrap_or_else(|| panic!("{port}: an idle HTTP/2 connection was kept"));
        let took = closed - opened;
        // Closed after the idle timeout (checked in quarters of it), then the unanswered PING.
        assert!(
            took >= Duration::from_millis(950) && took < Duration::from_millis(1250 + 500 + 2000),
            "{port}: closed after {took:?}"
        );
        assert!(
            frame_types(&got).contains(&GOAWAY),
            "{port}: no GOAWAY: {:?}",
            frame_types(&got)
        );

        // Half a preface, then nothing.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&PREFACE[..16]).await.unwrap();
        let opened = Instant::now();
        let (_, closed) = until_closed(&mut s, Duration::from_secs(6)).await;
        let took = closed.unwrap_or_else(|| panic!("{port}: half a preface was kept")) - opened;
        assert!(took < Duration::from_millis(400 + 2000), "{port}: {took:?}");
    }

    // A real client: a stream whose body stalls stays served past the idle timeout (its 408
    // comes after body_timeout_ms on the same connection); idle afterwards, it is closed.
    let tcp = tokio::net::TcpStream::connect(server.http).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let stalled =
        tonic::codegen::http::Request::post(format!("http://{}/get-online-features", server.http))
            .header("content-type", "application/json")
            .body(())
            .unwrap();
    std::future::poll_fn(|cx| client.poll_ready(cx))
        .await
        .unwrap();
    let (response, mut send) = client.send_request(stalled, false).unwrap();
    send.send_data(bytes::Bytes::from_static(b"{"), false)
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(6), response)
        .await
        .expect("an answer to the stalled stream")
        .expect("the connection was closed while a stream was open");
    assert_eq!(response.status(), 408);
    let idle = Instant::now();
    // The client keeps its handle (with none left, it would close the connection itself).
    drop(send);
    tokio::time::timeout(Duration::from_secs(6), connection)
        .await
        .expect("an idle HTTP/2 client connection was kept")
        .unwrap()
        .ok();
    assert!(
        idle.elapsed() >= Duration::from_millis(950),
        "{:?}",
        idle.elapsed()
    );
    drop(client);

    let (status, body) = request(server.http, "POST", "/get-online-features", MODEL_V1).await;
    assert_eq!(status, 200, "{body}");
}

/// HTTP/2 keep-alive: with a stream open (so not idle) and silence from the peer, the server
/// PINGs it after `keepalive_interval_ms` and closes the connection when no answer comes within
/// `keepalive_timeout_ms` — a dead peer does not hold its connection until the stream's own
/// deadline (here a 30 s body timeout; gRPC has none but the client's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_peers_that_do_not_answer_pings_are_closed() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(
        tmp.path(),
        &redis,
        "serving:\n  keepalive_interval_ms: 300\n  keepalive_timeout_ms: 300\n  body_timeout_ms: 30000\n",
    );
    let mut server = Server::start(&repo);
    server.wait_listening(Duration::from_secs(20)).await;

    for (port, addr, path, content_type) in [
        (
            "HTTP",
            server.http,
            "/get-online-features",
            "application/json",
        ),
        (
            "gRPC",
            server.grpc,
            "/feast.serving.ServingService/GetOnlineFeatures",
            "application/grpc",
        ),
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&[PREFACE, SETTINGS, &open_stream(path, content_type)].concat())
            .await
            .unwrap();
        let opened = Instant::now();
        let (got, closed) = until_closed(&mut s, Duration::from_secs(8)).await;
        let closed = closed.unwrap_or_else(|| panic!("{port}: a peer that never answers was kept"));
        let took = closed - opened;
        assert!(
            took >= Duration::from_millis(550) && took < Duration::from_millis(600 + 2500),
            "{port}: closed after {took:?}"
        );
        assert!(
            frame_types(&got).contains(&PING),
            "{port}: no PING: {:?}",
            frame_types(&got)
        );
    }
}

/// `serving.max_connections` (both ports together): with 5 connections open and idle, a 6th is
/// closed at once on either port, while the 5 keep working; once one closes, a new connection is
/// served again. Refusals are counted in `/metrics` and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_are_refused() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path(), &redis, "serving:\n  max_connections: 5\n");
    let mut server = Server::start(&repo);
    server.wait_listening(Duration::from_secs(20)).await;
    // The probes' connections are closed by then.
    tokio::time::sleep(Duration::from_millis(300)).await;

    async fn get(s: &mut tokio::net::TcpStream, path: &str) -> String {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        // Until the head and `Content-Length` bytes of body have come.
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    return text;
                }
            }
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            assert!(n > 0, "closed after {text}");
            got.extend_from_slice(&buf[..n]);
        }
    }

    let mut open = Vec::new();
    for _ in 0..5 {
        let mut s = tokio::net::TcpStream::connect(server.http).await.unwrap();
        let got = get(&mut s, "/health").await;
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        open.push(s);
    }

    for (port, addr, hello) in [
        (
            "HTTP",
            server.http,
            &b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        ),
        ("gRPC", server.grpc, &[PREFACE, SETTINGS].concat()[..]),
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(hello).await;
        let sent = Instant::now();
        let (got, closed) = until_closed(&mut s, Duration::from_secs(5)).await;
        let took = closed.unwrap_or_else(|| panic!("{port}: a 6th connection was kept")) - sent;
        assert!(
            took < Duration::from_secs(1),
            "{port}: closed after {took:?}"
        );
        assert!(
            got.is_empty() || String::from_utf8_lossy(&got).starts_with("HTTP/1.1 503"),
            "{port}: the 6th connection was served: {}",
            String::from_utf8_lossy(&got)
        );
    }

    // The 5 keep working.
    let got = get(&mut open[0], "/metrics").await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.contains("quiver_connections_refused_total"), "{got}");

    // One closes: a new connection is served.
    drop(open.pop());
    let started = Instant::now();
    loop {
        let (status, body) = request(server.http, "POST", "/get-online-features", MODEL_V1).await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "no connection served after one closed: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.log().contains("max_connections"), "{}", server.log());
}
