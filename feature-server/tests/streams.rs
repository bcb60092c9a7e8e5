//! Streams multiplexed on one HTTP/2 connection, served by the listener both ports use (and the
//! per-connection executor it runs requests on): a panicking handler answers only its own stream,
//! and a CPU-heavy stream does not hold back the others.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt;
use quiver_feature_server::listener::{self, PortOptions, Protocols, Slots};
use tokio::sync::Semaphore;

/// Serves `app` like `quiver serve` does (any protocol, no TLS) on a free port.
async fn start(app: Router) -> SocketAddr {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let options = PortOptions {
        header_timeout: Duration::from_secs(10),
        shutdown_grace: Duration::from_secs(1),
        limits: Default::default(),
    };
    tokio::spawn(listener::serve(
        tcp,
        app,
        Protocols::Any,
        None,
        options,
        Slots::new(100),
        std::future::pending(),
    ));
    addr
}

/// One HTTP/2 connection (prior knowledge), its driver spawned.
async fn connect(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Sends a bodiless request on the connection; the response's head and the body stream.
async fn send(
    client: &mut h2::client::SendRequest<Bytes>,
    path: &str,
    content_type: &str,
) -> h2::client::ResponseFuture {
    poll_fn(|cx| client.poll_ready(cx)).await.unwrap();
    let request = axum::http::Request::get(format!("http://localhost{path}"))
        .header("content-type", content_type)
        .body(())
        .unwrap();
    client.send_request(request, true).unwrap().0
}

/// The whole body, flow-control capacity released as it arrives.
async fn read_body(mut body: h2::RecvStream) -> Vec<u8> {
    let mut all = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        all.extend_from_slice(&chunk);
    }
    all
}

async fn answer(response: h2::client::ResponseFuture) -> (axum::http::response::Parts, String) {
    let response = tokio::time::timeout(Duration::from_secs(30), response)
        .await
        .expect("an answer")
        .expect("the stream was answered, not reset");
    let (parts, body) = response.into_parts();
    let body = read_body(body).await;
    (parts, String::from_utf8_lossy(&body).into_owned())
}

/// Issue 11: a handler that panics answers that one stream — HTTP 500, gRPC `INTERNAL` — and the
/// requests in flight beside it on the same connection (on the connection's own task, and
/// spawned) complete; the connection serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_only_its_own_stream() {
    let gate = Arc::new(Semaphore::new(0));
    let app = Router::new()
        .route(
            "/wait",
            get({
                let gate = gate.clone();
                move || async move {
                    gate.acquire().await.unwrap().forget();
                    "waited"
                }
            }),
        )
        .route(
            "/panic",
            get(|| async {
                tokio::task::yield_now().await;
                if true {
                    panic!("a handler bug");
                }
                "unreachable"
            }),
        )
        .route("/fast", get(|| async { "fast" }));
    let addr = start(app).await;
    let mut client = connect(addr).await;

    // One request in flight on the connection's task; the panicking ones run beside it (the
    // first inline, the second spawned); two more in flight after them.
    let first = send(&mut client, "/wait", "text/plain").await;
    let http = send(&mut client, "/panic", "application/json").await;
    let grpc = send(&mut client, "/panic", "application/grpc").await;
    let later: Vec<_> = [
        send(&mut client, "/wait", "text/plain").await,
        send(&mut client, "/wait", "text/plain").await,
    ]
    .into();

    let (parts, body) = answer(http).await;
    assert_eq!(parts.status, 500, "{body}");
    assert!(body.contains("internal error"), "{body}");
    assert!(
        !body.contains("a handler bug"),
        "panic details stay in the log: {body}"
    );
    let (parts, _) = answer(grpc).await;
    assert_eq!(parts.status, 200, "gRPC errors travel in grpc-status");
    assert_eq!(
        parts.headers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"13"[..]),
        "INTERNAL: {:?}",
        parts.headers
    );

    gate.add_permits(3);
    for waiting in std::iter::once(first).chain(later) {
        let (parts, body) = answer(waiting).await;
        assert_eq!((parts.status.as_u16(), body.as_str()), (200, "waited"));
    }
    let (parts, body) = answer(send(&mut client, "/fast", "text/plain").await).await;
    assert_eq!((parts.status.as_u16(), body.as_str()), (200, "fast"));
}

/// Chunks of the heavy body, each about a millisecond of CPU.
const HEAVY_CHUNKS: usize = 3_000;

fn busy(for_: Duration) {
    let until = Instant::now() + for_;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Issue 11: a stream that keeps its connection's task busy (a body whose every chunk is ready
/// and costs CPU, as a large training response does) gets no more than a bounded slice at a
/// time: requests sent on the same connection meanwhile are answered while it is still
/// streaming, not after it. One worker thread, so nothing can run beside the busy stream.
#[tokio::test(flavor = "current_thread")]
async fn a_cpu_heavy_stream_does_not_hold_back_the_others_on_its_connection() {
    let app = Router::new()
        .route(
            "/heavy",
            get(|| async {
                let chunks = futures::stream::iter(0..HEAVY_CHUNKS).map(|_| {
                    busy(Duration::from_millis(1));
                    Ok::<_, std::convert::Infallible>(Bytes::from(vec![b'x'; 4096]))
                });
                Body::from_stream(chunks)
            }),
        )
        .route("/fast", get(|| async { "fast" }));
    let addr = start(app).await;
    let mut client = connect(addr).await;

    let received = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let heavy = send(&mut client, "/heavy", "text/plain").await;
    let reader = tokio::spawn({
        let received = received.clone();
        let finished = finished.clone();
        async move {
            let response = heavy.await.unwrap();
            let mut body = response.into_body();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                let _ = body.flow_control().release_capacity(chunk.len());
                received.fetch_add(chunk.len(), Ordering::SeqCst);
            }
            finished.store(true, Ordering::SeqCst);
        }
    });
    // The heavy stream is under way.
    while received.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    for i in 0..20 {
        let (parts, body) = answer(send(&mut client, "/fast", "text/plain").await).await;
        assert_eq!((parts.status.as_u16(), body.as_str()), (200, "fast"));
        assert!(
            !finished.load(Ordering::SeqCst),
            "request {i} waited for the whole heavy stream"
        );
    }
    let sent_so_far = received.load(Ordering::SeqCst);
    assert!(
        sent_so_far < HEAVY_CHUNKS * 4096 / 2,
        "20 small requests took half the heavy stream: {sent_so_far} bytes"
    );
    reader.await.unwrap();
    assert_eq!(received.load(Ordering::SeqCst), HEAVY_CHUNKS * 4096);
}
