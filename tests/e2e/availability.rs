//! Staying available and stopping on time (issue 21, items 7, 8, 10, 11), against real `quiver
//! serve` processes and real Redis servers: shutdown with clients that never let go, request
//! bodies that stall, one readiness for HTTP and gRPC, and stores that are unreachable when the
//! server starts. Every wait is bounded; the configured timeouts are short.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use quiver_tests::{RedisServer, describe, quiver, quiver_bin};
use serde_json::Value as J;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::materialize::{json, redis_yaml, repo_ending};
use crate::serve::MODEL_V1;

/// A `quiver serve` process on free ports; killed when dropped (also when a test fails).
pub(crate) struct Server {
    child: Child,
    pub(crate) http: SocketAddr,
    pub(crate) grpc: SocketAddr,
    log: PathBuf,
}

impl Server {
    pub(crate) fn start(repo: &Path) -> Server {
        let log = quiver_tests::unique_log(repo, "serve");
        let mut cmd = Command::new(quiver_bin());
        cmd.args(["serve", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"])
            .current_dir(repo)
            .env("QUIVER_LOG", "warn");
        let (child, http, grpc) = quiver_tests::spawn_serve(cmd, &log, true).unwrap();
        Server {
            child,
            http,
            grpc: grpc.expect("gRPC listens"),
            log,
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/health` answers (the process listens), failing the test if the process
    /// exits first or `limit` passes; returns how long it took.
    pub(crate) async fn wait_listening(&mut self, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                panic!("quiver serve exited with {exit}:\n{}", self.log());
            }
            if request(self.http, "GET", "/health", "").await.0 == 200 {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "quiver serve did not listen within {limit:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The exit status, once the process has exited, within `limit`.
    async fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return Some(exit);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on its own connection, bounded at 5 s; status 0 when there was no
/// answer (nothing listening, or no response in time).
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(head.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        Some(String::from_utf8_lossy(&buf).to_string())
    };
    let text = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
    (status, body.to_string())
}

/// The next status a gRPC health `Watch` stream sends, within 5 s.
async fn next(watch: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>) -> i32 {
    tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("a Watch update in time")
        .unwrap()
        .expect("the Watch stream goes on")
        .status
}

/// `/ready`: its status and body.
async fn ready(server: &Server) -> (u16, J) {
    let (status, body) = request(server.http, "GET", "/ready", "").await;
    (
        status,
        serde_json::from_str(&body).unwrap_or(J::String(body)),
    )
}

/// gRPC health of the whole server (`""`), or `None` when the call failed.
async fn grpc_health(addr: SocketAddr) -> Option<ServingStatus> {
    let call = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .ok()?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .ok()?;
        ServingStatus::try_from(response.into_inner().status).ok()
    };
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .ok()
        .flatten()
}

/// `/ready` and gRPC health, asked together until both say `ready` (200 / SERVING) or both say
/// not ready (503 / NOT_SERVING), within `limit`; fails the test if they never agree on it.
async fn both_say(server: &Server, want_ready: bool, limit: Duration) -> J {
    let (status, health) = if want_ready {
        (200, ServingStatus::Serving)
    } else {
        (503, ServingStatus::NotServing)
    };
    let deadline = Instant::now() + limit;
    loop {
        let (got, body) = ready(server).await;
        let grpc = grpc_health(server.grpc).await;
        if got == status && grpc == Some(health) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "wanted /ready {status} and gRPC {health:?}; got {got} {body} and {grpc:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A repository whose online store is `redis` and whose `quiver.yaml` ends with `extra`, applied
/// and materialized; event times end now, so values are within their ttl.
pub(crate) fn repo(tmp: &Path, redis: &RedisServer, extra: &str) -> PathBuf {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let repo = repo_ending(
        tmp,
        20,
        2,
        &format!("{}{extra}", redis_yaml(&redis.url())),
        &now,
    );
    json(&quiver(
        &repo,
        &["--format", "json", "materialize-incremental"],
    ));
    repo
}

/// Reads what the server sends until it closes the connection or `limit` passes; returns what
/// came and whether it closed.
async fn read_until_closed(s: &mut tokio::net::TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into(), false),
        }
    }
}

/// SIGTERM with connections that would hold the server forever (issue 21, item 7): an HTTP/2
/// client that never answers the shutdown GOAWAY/PING (nor anything else), and a request whose
/// body stops halfway. The server gives them `serving.shutdown_grace_ms`, then closes them and
/// exits — it used to wait until the clients gave up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_what_is_still_open_after_the_grace_period() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path(), &redis, "serving:\n  shutdown_grace_ms: 500\n");
    let mut server = Server::start(&repo);
    server.wait_listening(Duration::from_secs(20)).await;

    // HTTP/2 on each port: the preface and an empty SETTINGS frame, then never a byte more
    // (no SETTINGS ack, no PING ack). Reading the server's SETTINGS shows it is being served.
    let mut h2_clients = Vec::new();
    for port in [server.grpc, server.http] {
        let mut s = tokio::net::TcpStream::connect(port).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        let mut frame = [0u8; 9];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut frame))
            .await
            .expect("the server's SETTINGS")
            .unwrap();
        assert_eq!(frame[3], 4, "a SETTINGS frame");
        h2_clients.push(s);
    }
    // Half a body: the handler waits for the rest (the body timeout is the default 10 s).
    let mut half = tokio::net::TcpStream::connect(server.http).await.unwrap();
    let body = MODEL_V1.as_bytes();
    half.write_all(
        format!(
            "POST /get-online-features HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    half.write_all(&body[..body.len() / 2]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let signalled = Instant::now();
    server.sigterm();
    let exit = server
        .exited_within(Duration::from_secs(8))
        .await
        .unwrap_or_else(|| {
            panic!(
                "still running {:?} after SIGTERM:\n{}",
                signalled.elapsed(),
                server.log()
            )
        });
    let took = signalled.elapsed();
    assert!(exit.success(), "{exit}:\n{}", server.log());
    // It waited for the grace period (the connections were open), and not much longer.
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(500 + 3000),
        "exited {took:?} after SIGTERM"
    );
    assert!(
        server.log().contains("shutdown grace period"),
        "{}",
        server.log()
    );
    let (_, closed) = read_until_closed(&mut half, Duration::from_secs(2)).await;
    assert!(closed, "the half-sent request's connection is closed");
}

/// Request bodies have a deadline like request heads (issue 21, item 8): a client that sends
/// its headers and one byte of body, then nothing, gets a 408 after `serving.body_timeout_ms`
/// and its connection is closed — on the online endpoint (whole body) and the training upload
/// (each wait for more), over HTTP/1.1; over HTTP/2 the stream gets its 408. A complete request
/// is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_bodies_get_408_and_are_closed() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path(), &redis, "serving:\n  body_timeout_ms: 400\n");
    let mut server = Server::start(&repo);
    server.wait_listening(Duration::from_secs(20)).await;

    for path in [
        "/get-online-features",
        "/get-historical-features?features=driver_hourly_stats:rating",
    ] {
        let mut s = tokio::net::TcpStream::connect(server.http).await.unwrap();
        s.write_all(
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{").as_bytes(),
        )
        .await
        .unwrap();
        let started = Instant::now();
        let (got, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
        let took = started.elapsed();
        assert!(got.starts_with("HTTP/1.1 408"), "{path}: {got}");
        assert!(got.contains("body_timeout_ms"), "{path}: {got}");
        assert!(closed, "{path}: the connection was kept");
        assert!(
            took >= Duration::from_millis(350) && took < Duration::from_millis(400 + 3000),
            "{path}: answered after {took:?}"
        );
    }

    // HTTP/2 (prior knowledge): the stream whose body stalls is answered 408.
    let tcp = tokio::net::TcpStream::connect(server.http).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let stalled =
        tonic::codegen::http::Request::post(format!("http://{}/get-online-features", server.http))
            .header("content-type", "application/json")
            .body(())
            .unwrap();
    std::future::poll_fn(|cx| client.poll_ready(cx))
        .await
        .unwrap();
    let started = Instant::now();
    let (response, mut send) = client.send_request(stalled, false).unwrap();
    send.send_data(bytes::Bytes::from_static(b"{"), false)
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("an answer to the stalled HTTP/2 stream")
        .unwrap();
    assert_eq!(response.status(), 408);
    assert!(started.elapsed() < Duration::from_millis(400 + 3000));

    let (status, body) = request(server.http, "POST", "/get-online-features", MODEL_V1).await;
    assert_eq!(status, 200, "{body}");
}

/// One readiness for both protocols (issue 21, item 10): gRPC health is SERVING exactly when
/// `/ready` is 200 — with Redis frozen (SIGSTOP) and killed, and after each recovery; a `Watch`
/// stream sees the changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_follows_ready_when_redis_hangs_or_dies() {
    let mut redis = RedisServer::start_persistent().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path(), &redis, "");
    let mut server = Server::start(&repo);
    server.wait_listening(Duration::from_secs(20)).await;
    both_say(&server, true, Duration::from_secs(5)).await;

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: "feast.serving.ServingService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut watch).await, ServingStatus::Serving as i32);

    redis.pause();
    let body = both_say(&server, false, Duration::from_secs(5)).await;
    assert_eq!(body["registry"], "ok", "{body}");
    assert_eq!(next(&mut watch).await, ServingStatus::NotServing as i32);
    redis.resume();
    both_say(&server, true, Duration::from_secs(5)).await;
    assert_eq!(next(&mut watch).await, ServingStatus::Serving as i32);

    redis.stop();
    let body = both_say(&server, false, Duration::from_secs(5)).await;
    assert_ne!(body["online_store"], "ok", "{body}");
    redis.restart().unwrap();
    both_say(&server, true, Duration::from_secs(10)).await;
    let (status, body) = request(server.http, "POST", "/get-online-features", MODEL_V1).await;
    assert_eq!(status, 200, "{body}");
}

/// `quiver serve` with its online Redis refusing connections, then frozen, at start (issue 21,
/// item 11): it starts anyway, not ready (503 on `/ready` and reads, NOT_SERVING on gRPC health),
/// and becomes ready by itself when Redis answers — the values materialized before are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_without_its_online_store_and_becomes_ready_when_it_answers() {
    let mut redis = RedisServer::start_persistent().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path(), &redis, "");
    for outage in ["refused", "frozen"] {
        match outage {
            "refused" => redis.stop(),
            _ => redis.pause(),
        }
        let mut server = Server::start(&repo);
        let took = server.wait_listening(Duration::from_secs(20)).await;
        assert!(
            took < Duration::from_secs(6),
            "{outage}: listening after {took:?}"
        );
        let body = both_say(&server, false, Duration::from_secs(5)).await;
        assert_eq!(body["registry"], "ok", "{outage}: {body}");
        let (status, body) = request(server.http, "POST", "/get-online-features", MODEL_V1).await;
        assert_eq!(status, 503, "{outage}: {body}");
        match outage {
            "refused" => redis.restart().unwrap(),
            _ => redis.resume(),
        }
        both_say(&server, true, Duration::from_secs(15)).await;
        let (status, body) = request(server.http, "POST", "/get-online-features", MODEL_V1).await;
        assert_eq!(status, 200, "{outage}: {body}");
        assert!(
            body.contains("\"PRESENT\""),
            "{outage}: materialized values are served: {body}"
        );
        assert!(
            server.log().contains("online store is unreachable"),
            "{outage}: {}",
            server.log()
        );
    }
}

/// `quiver serve` with its registry in a Redis that is down, then frozen, at start (issue 21,
/// item 11): there is no version to serve, so it starts not ready (503 everywhere, gRPC
/// NOT_SERVING), logs each failed attempt, and serves the first version as soon as it loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_without_its_registry_and_serves_the_first_version_it_loads() {
    let online = RedisServer::start().unwrap();
    let mut registry = RedisServer::start_persistent().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path(), &online, "");
    let config = repo.join("quiver.yaml");
    let yaml = std::fs::read_to_string(&config).unwrap().replace(
        "registry:\n  type: local\n  path: .quiver/registry",
        &format!("registry:\n  type: redis\n  url: {}", registry.url()),
    );
    assert!(
        yaml.contains("type: redis\n  url: redis://127.0.0.1"),
        "{yaml}"
    );
    std::fs::write(&config, yaml).unwrap();
    let out = quiver(&repo, &["apply"]);
    assert!(out.status.success(), "{}", describe(&out));
    for outage in ["refused", "frozen"] {
        match outage {
            "refused" => registry.stop(),
            _ => registry.pause(),
        }
        let mut server = Server::start(&repo);
        let took = server.wait_listening(Duration::from_secs(20)).await;
        assert!(
            took < Duration::from_secs(6),
            "{outage}: listening after {took:?}"
        );
        let body = both_say(&server, false, Duration::from_secs(5)).await;
        // Open authentication: every caller may see the reason after the status words.
        assert!(
            body["registry"]
                .as_str()
                .unwrap()
                .starts_with("not loaded yet"),
            "{outage}: {body}"
        );
        assert_eq!(body["registry_version"], J::Null, "{outage}: {body}");
        let (status, body) = request(server.http, "POST", "/get-online-features", MODEL_V1).await;
        assert_eq!(status, 503, "{outage}: {body}");
        assert!(body.contains("no registry version loaded yet"), "{body}");
        if outage == "refused" {
            // Each failed attempt to load the first version is logged.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !server
                .log()
                .contains("no registry version loaded yet; retrying")
            {
                assert!(Instant::now() < deadline, "{}", server.log());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        match outage {
            "refused" => registry.restart().unwrap(),
            _ => registry.resume(),
        }
        let body = both_say(&server, true, Duration::from_secs(20)).await;
        assert_eq!(body["registry_version"], 1, "{outage}: {body}");
        let (status, body) = request(server.http, "POST", "/get-online-features", MODEL_V1).await;
        assert_eq!(status, 200, "{outage}: {body}");
        let log = server.log();
        assert!(log.contains("registry store"), "{outage}: {log}");
        assert!(log.contains("serving its first version"), "{outage}: {log}");
    }
}
