//! TLS on both protocols, clients that are too slow to be served (slowloris), and the findings of
//! issue 22: amplifying requests, what open endpoints say, read-only view queries, redacted URLs,
//! token length.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_feature_server::Authenticator;
use quiver_feature_server::listener::TlsFiles;
use quiver_proto::feast::serving::GetFeastServingInfoRequest;
use quiver_proto::feast::serving::serving_service_client::ServingServiceClient;
use quiver_tests::RedisServer;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::serve::{setup, start_full};

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files; returns them
/// and the certificate's PEM.
fn self_signed(dir: &std::path::Path) -> (TlsFiles, String) {
    let key =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert_pem = key.cert.pem();
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, &cert_pem).unwrap();
    std::fs::write(&files.key, key.signing_key.serialize_pem()).unwrap();
    (files, cert_pem)
}

/// Reads until the peer closes or `limit` passes; returns what came and whether it closed.
async fn read_until_closed(s: &mut tokio::net::TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_http_and_grpc_and_refuses_plain_text() {
    let redis = RedisServer::start().unwrap();
    let (tmp, repo) = setup(&redis);
    let (files, cert_pem) = self_signed(tmp.path());
    let server = start_full(
        &repo,
        Authenticator::open(),
        Some(files),
        Duration::from_secs(2),
    )
    .await;

    // HTTPS with the certificate as the only root.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.http).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(server.http).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (got, closed) = read_until_closed(&mut plain, Duration::from_secs(3)).await;
    assert!(closed, "the server kept a plain-text connection open");
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"));

    // gRPC over TLS.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&cert_pem))
        .domain_name("localhost");
    let channel = tonic::transport::Channel::from_shared(format!("https://{}", server.grpc))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let info = ServingServiceClient::new(channel)
        .get_feast_serving_info(GetFeastServingInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(info.version.starts_with("quiver"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_disconnected() {
    let redis = RedisServer::start().unwrap();
    let (_tmp, repo) = setup(&redis);
    let server = start_full(
        &repo,
        Authenticator::open(),
        None,
        Duration::from_millis(400),
    )
    .await;

    // Half a request head, then nothing (slowloris).
    let started = Instant::now();
    let mut slow = tokio::net::TcpStream::connect(server.http).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(
        closed,
        "a client that never finished its request head was kept"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // A connection that never sends anything, on either port.
    for port in [server.http, server.grpc] {
        let started = Instant::now();
        let mut idle = tokio::net::TcpStream::connect(port).await.unwrap();
        let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
        assert!(closed, "an idle connection to {port} was kept");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    // A keep-alive connection that goes quiet after a request.
    let mut kept = tokio::net::TcpStream::connect(server.http).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (got, closed) = read_until_closed(&mut kept, Duration::from_secs(5)).await;
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    assert!(closed, "a quiet keep-alive connection was kept");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Meanwhile normal requests are served.
    let (status, _) = crate::serve::http(server.http, "GET", "/health", "").await;
    assert_eq!(status, 200);
    server.stop().await;
}

/// `rediss://` to Redis for both the registry and the online store, trusting a private CA; and
/// without that CA, a clear certificate error instead of a plain-text fallback or a hang.
#[test]
fn redis_over_tls_with_a_private_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let (files, _) = self_signed(tmp.path());
    let (_redis, tls_port) = RedisServer::start_tls(&files.cert, &files.key).unwrap();
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let ca = files.cert.display().to_string();
    let stores = format!(
        "registry:\n  type: redis\n  url: {url}\n  tls_ca_file: {ca}\nonline_store:\n  type: redis\n  url: {url}\n  tls_ca_file: {ca}\n"
    );
    let repo = crate::materialize::repo_with(tmp.path(), 20, 3, "");
    let config = repo.join("quiver.yaml");
    let yaml = std::fs::read_to_string(&config).unwrap();
    let yaml = yaml
        .replace("registry:\n  type: local\n  path: .quiver/registry\n", "")
        .replace(
            "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
            "",
        );
    std::fs::write(&config, format!("{yaml}{stores}")).unwrap();
    let out = quiver_tests::quiver(&repo, &["apply"]);
    assert!(out.status.success(), "{}", quiver_tests::describe(&out));
    let out = quiver_tests::quiver(&repo, &["materialize-incremental", "2026-01-02T00:00:01Z"]);
    assert!(out.status.success(), "{}", quiver_tests::describe(&out));
    let out = quiver_tests::quiver(
        &repo,
        &[
            "online",
            "get",
            "driver_hourly_stats",
            "--key",
            "driver_id=1001",
        ],
    );
    assert!(out.status.success(), "{}", quiver_tests::describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("conv_rate"));

    // The same stores without the CA: the system roots do not know it.
    let yaml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, yaml.replace(&format!("  tls_ca_file: {ca}\n"), "")).unwrap();
    let started = std::time::Instant::now();
    let out = quiver_tests::quiver(
        &repo,
        &[
            "online",
            "get",
            "driver_hourly_stats",
            "--key",
            "driver_id=1001",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("certificate") || err.contains("issuer"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// `quiver serve` with unusable TLS or token files stops at once with exit 2 and the reason.
#[test]
fn serve_refuses_bad_tls_and_token_files() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = crate::materialize::repo_with(
        tmp.path(),
        5,
        2,
        "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
    );
    std::fs::write(repo.join("not-a-cert.pem"), "hello").unwrap();
    let cases = [
        (
            "serving:\n  tls:\n    cert_file: missing.pem\n    key_file: missing.key\n",
            "serving.tls: ",
        ),
        (
            "serving:\n  tls:\n    cert_file: not-a-cert.pem\n    key_file: not-a-cert.pem\n",
            "no certificate",
        ),
        (
            "serving:\n  auth:\n    tokens:\n      - {name: t, token_file: absent-token, scopes: [online:read]}\n",
            "cannot read",
        ),
        (
            "serving:\n  auth:\n    tokens:\n      - {name: t, sha256: abc, scopes: [online:read]}\n",
            "64 hex digits",
        ),
    ];
    let config = repo.join("quiver.yaml");
    let original = std::fs::read_to_string(&config).unwrap();
    for (serving, expected) in cases {
        std::fs::write(&config, format!("{original}{serving}")).unwrap();
        let out = quiver_tests::quiver(&repo, &["serve", "--http", "127.0.0.1:0", "--grpc", ""]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{serving}: {}",
            quiver_tests::describe(&out)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(expected),
            "{serving}: expected `{expected}` in {err}"
        );
    }
    std::fs::write(&config, original).unwrap();
    let mut child = std::process::Command::new(quiver_tests::quiver_bin())
        .args(["auth", "hash-token"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"short").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shorter than 16"));
}

/// `token_file` follows `quiver auth hash-token`'s rule: a token under 16 characters is refused
/// at start (exit 2), without being quoted; 16 are enough.
#[test]
fn token_files_need_as_long_a_token_as_hash_token() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = crate::materialize::repo_with(
        tmp.path(),
        5,
        2,
        "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
    );
    let config = repo.join("quiver.yaml");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{original}serving:\n  auth:\n    tokens:\n      - {{name: t, token_file: token, scopes: [online:read]}}\n"
        ),
    )
    .unwrap();
    for short in ["x", "fifteen-chars-x"] {
        std::fs::write(repo.join("token"), format!("{short}\n")).unwrap();
        let out = quiver_tests::quiver(&repo, &["serve", "--http", "127.0.0.1:0", "--grpc", ""]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            quiver_tests::describe(&out)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("shorter than 16 characters"), "{err}");
        assert!(!err.contains("fifteen-chars-x"), "{err}");
    }
    // Sixteen characters: the server starts (and is stopped at once).
    std::fs::write(repo.join("token"), "sixteen-chars-xx\n").unwrap();
    let port = quiver_tests::free_port().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let server = Child(
        std::process::Command::new(quiver_tests::quiver_bin())
            .args(["serve", "--http", &addr, "--grpc", ""])
            .current_dir(&repo)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_health(&addr, &server);
}

/// A spawned `quiver serve`, killed when dropped (also when an assertion fails).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Child {
    /// The peak resident memory of the process so far (`VmHWM`), in bytes.
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .expect("Linux reports VmHWM");
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap();
        kb * 1024
    }
}

/// Waits until the server at `addr` answers `/health` (or fails the test after 20 s).
fn wait_for_health(addr: &str, server: &Child) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = std::net::TcpStream::connect(addr).is_ok_and(|mut s| {
            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            buf.starts_with("HTTP/1.1 200")
        });
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server {} did not start",
            server.0.id()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One HTTP/1.1 request with an optional bearer token; the status and the body.
pub(crate) async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
    (status, body.to_string())
}

/// One small request must not take the server down (issue 22): a feature listed 40,000 times
/// over 1,000 rows (a 958 KB body) used to build 40M values — 1.7 GB and 10 s in a debug build —
/// before its duplicate names were noticed. Now it is refused at once over HTTP and gRPC, an
/// answer over `serving.max_response_values` is a 413 / RESOURCE_EXHAUSTED naming the key, and
/// the server's peak memory (from `/proc`) stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amplifying_requests_are_refused_before_the_answer_is_built() {
    use quiver_proto::feast::serving::GetOnlineFeaturesRequest;
    use quiver_proto::feast::serving::get_online_features_request::Kind;
    use quiver_proto::feast::types::{RepeatedValue, Value as PbValue, value::Val};

    let tmp = tempfile::tempdir().unwrap();
    let repo = crate::materialize::repo_with(
        tmp.path(),
        20,
        2,
        "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
    );
    let config = repo.join("quiver.yaml");
    let yaml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{yaml}serving:\n  max_response_values: 5000\n"),
    )
    .unwrap();
    let (http_port, grpc_port) = (
        quiver_tests::free_port().unwrap(),
        quiver_tests::free_port().unwrap(),
    );
    let (http_addr, grpc_addr) = (
        format!("127.0.0.1:{http_port}"),
        format!("127.0.0.1:{grpc_port}"),
    );
    let server = Child(
        std::process::Command::new(quiver_tests::quiver_bin())
            .args(["serve", "--http", &http_addr, "--grpc", &grpc_addr])
            .current_dir(&repo)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_health(&http_addr, &server);
    let http: std::net::SocketAddr = http_addr.parse().unwrap();
    let rows: Vec<i64> = (0..1000).collect();
    let profile = [
        "current_balance",
        "avg_passenger_count",
        "lifetime_trips",
        "loyalty_tier",
        "is_premium",
        "age",
        "signup_at",
        "recent_ratings",
        "referral_code",
        "churn_risk",
    ]
    .map(|f| format!("customer_profile:{f}"));
    let body = |features: &[String], rows: &[i64]| {
        serde_json::json!({"features": features, "entities": {"customer_id": rows}}).to_string()
    };
    let duplicated = vec!["customer_profile:age".to_string(); 40_000];
    let cases = [
        (
            body(&duplicated, &rows),
            400,
            "`customer_profile:age` is requested more than once",
        ),
        (
            body(&duplicated, &rows),
            400,
            "`customer_profile:age` is requested more than once",
        ),
        (
            body(&profile, &rows),
            413,
            "1000 entity rows × 10 features = 10000 values, more than the limit of 5000",
        ),
    ];
    for (i, (json, status, expected)) in cases.iter().enumerate() {
        let started = Instant::now();
        let (got, text) = request(http, "POST", "/get-online-features", json, None).await;
        let took = started.elapsed();
        assert_eq!(got, *status, "case {i}: {text}");
        assert!(text.contains(expected), "case {i}: {text}");
        assert!(
            text.contains("serving.max_response_values") || *status == 400,
            "case {i}: {text}"
        );
        assert!(took < Duration::from_secs(3), "case {i} took {took:?}");
    }
    // Within the limit: answered.
    let (got, text) = request(
        http,
        "POST",
        "/get-online-features",
        &body(&profile, &rows[..500]),
        None,
    )
    .await;
    assert_eq!(got, 200, "{text}");

    // gRPC: the same checks, the same messages.
    let mut client =
        quiver_proto::feast::serving::serving_service_client::ServingServiceClient::connect(
            format!("http://{grpc_addr}"),
        )
        .await
        .unwrap();
    let grpc = |features: &[String], rows: &[i64]| GetOnlineFeaturesRequest {
        kind: Some(Kind::Features(quiver_proto::feast::serving::FeatureList {
            val: features.to_vec(),
        })),
        entities: [(
            "customer_id".to_string(),
            RepeatedValue {
                val: rows
                    .iter()
                    .map(|i| PbValue {
                        val: Some(Val::Int64Val(*i)),
                    })
                    .collect(),
            },
        )]
        .into(),
        ..Default::default()
    };
    for (request, code, expected) in [
        (
            grpc(&duplicated, &rows),
            tonic::Code::InvalidArgument,
            "`customer_profile:age` is requested more than once",
        ),
        (
            grpc(&profile, &rows),
            tonic::Code::ResourceExhausted,
            "raise `serving.max_response_values`",
        ),
    ] {
        let started = Instant::now();
        let status = client.get_online_features(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(expected), "{status:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
    assert!(
        client
            .get_online_features(grpc(&profile, &rows[..500]))
            .await
            .is_ok()
    );

    let peak = server.peak_rss();
    assert!(
        peak < 300 << 20,
        "the server's peak memory was {} MB",
        peak >> 20
    );
}

/// `/ready` is open to every prober, so it answers status words: no Redis address, registry
/// path or parser error, which go to the log — and to `admin` callers. A 503 of an online
/// request names no address either, on HTTP and gRPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_and_503_bodies_keep_internals_for_admins() {
    use quiver_feature_server::auth::hash_token;
    use quiver_proto::feast::serving::GetOnlineFeaturesRequest;
    use quiver_proto::feast::serving::get_online_features_request::Kind;
    use quiver_proto::feast::types::{RepeatedValue, Value as PbValue, value::Val};

    let mut redis = RedisServer::start_persistent().unwrap();
    let (_tmp, repo) = setup(&redis);
    let token = |name: &str, secret: &str, scope: &str| quiver_registry::TokenConfig {
        name: name.into(),
        sha256: Some(hash_token(secret)),
        token_file: None,
        scopes: vec![scope.into()],
    };
    let config = quiver_registry::AuthConfig {
        tokens: vec![
            token("app", "app-secret-0123456789", "online:read"),
            token("ops", "ops-secret-0123456789", "admin"),
        ],
        metrics_public: true,
    };
    let auth = Authenticator::from_config(Some(&config), &repo).unwrap();
    let server = start_full(&repo, auth, None, Duration::from_secs(2)).await;
    let ready = |token: Option<&'static str>| async move {
        let (status, body) = request(server.http, "GET", "/ready", "", token).await;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        (status, json, body)
    };
    crate::serve::wait_ready(server.http).await;
    let (status, json, _) = ready(None).await;
    assert_eq!(status, 200);
    assert_eq!(json["registry"], "ok");
    assert_eq!(json["online_store"], "ok");

    // A registry that cannot be read: the words, and the reason only for an admin.
    let registry = repo.join(".quiver/registry");
    std::fs::write(registry.join("v00000002.json"), b"{ not json").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (status, json, body) = loop {
        let r = ready(None).await;
        if r.1["registry"] != "ok" || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 200, "the last good version still serves: {body}");
    assert_eq!(
        json["registry"], "reload failing, serving the last good version",
        "{body}"
    );
    let repo_text = repo.display().to_string();
    for secret in [repo_text.as_str(), "v00000002", ".quiver"] {
        assert!(!body.contains(secret), "{body}");
    }
    let (_, json, body) = ready(Some("ops-secret-0123456789")).await;
    let detail = json["registry"].as_str().unwrap();
    assert!(
        detail.starts_with("reload failing, serving the last good version: ") && detail.len() > 60,
        "admins see why: {body}"
    );
    let (_, json, _) = ready(Some("app-secret-0123456789")).await;
    assert_eq!(
        json["registry"], "reload failing, serving the last good version",
        "online:read is not admin"
    );
    std::fs::remove_file(registry.join("v00000002.json")).unwrap();

    // Redis down: 503 everywhere, and only an admin learns where Redis is.
    let port = redis.port().to_string();
    redis.stop();
    let (status, json, body) = ready(None).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        json["online_store"] == "unavailable" || json["online_store"] == "no answer in time",
        "{body}"
    );
    assert!(
        !body.contains(&port) && !body.contains("redis://"),
        "{body}"
    );
    let (status, json, body) = ready(Some("ops-secret-0123456789")).await;
    assert_eq!(status, 503, "{body}");
    let store = json["online_store"].as_str().unwrap();
    assert!(
        store.contains(&port) || store == "no answer in time",
        "admins see the store's error: {body}"
    );
    let (status, body) = request(
        server.http,
        "POST",
        "/get-online-features",
        crate::serve::MODEL_V1,
        Some("app-secret-0123456789"),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("unavailable"), "{body}");
    assert!(!body.contains(&port) && !body.contains("redis"), "{body}");
    let mut client =
        quiver_proto::feast::serving::serving_service_client::ServingServiceClient::connect(
            format!("http://{}", server.grpc),
        )
        .await
        .unwrap();
    let mut call = tonic::Request::new(GetOnlineFeaturesRequest {
        kind: Some(Kind::FeatureService("model_v1".into())),
        entities: ["driver_id", "customer_id"]
            .map(|k| {
                (
                    k.to_string(),
                    RepeatedValue {
                        val: vec![PbValue {
                            val: Some(Val::Int64Val(1001)),
                        }],
                    },
                )
            })
            .into(),
        ..Default::default()
    });
    call.metadata_mut().insert(
        "authorization",
        "Bearer app-secret-0123456789".parse().unwrap(),
    );
    let status = client.get_online_features(call).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        !status.message().contains(&port) && !status.message().contains("redis"),
        "{status:?}"
    );
    server.stop().await;
}

/// A view's `query` may only read (issue 22): DDL that would read any file while planning is
/// refused by `quiver plan` and `apply` as the user's mistake (exit 2), saying nothing about the
/// file it names.
#[test]
fn view_queries_that_are_not_reads_are_refused_by_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = crate::materialize::repo_with(
        tmp.path(),
        5,
        2,
        "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
    );
    let drivers = repo.join("features/drivers.yaml");
    let original = std::fs::read_to_string(&drivers).unwrap();
    let start = original.find("    query: >").unwrap();
    let end = original[start..].find("    ttl:").unwrap() + start;
    for query in [
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
        "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/nonexistent/quiver-probe/'",
        "COPY (SELECT * FROM source) TO 'copied.csv' STORED AS CSV",
    ] {
        let edited = format!(
            "{}    query: \"{query}\"\n{}",
            &original[..start],
            &original[end..]
        );
        std::fs::write(&drivers, edited).unwrap();
        for command in ["plan", "apply"] {
            quiver_tests::assert_refused(&repo, &[command], "may only read (SELECT …)");
            let out = quiver_tests::quiver(&repo, &[command]);
            let err = String::from_utf8_lossy(&out.stderr);
            for leak in ["No files found", "root:", "Csv error", "passwd"] {
                assert!(!err.contains(leak), "{query}: {err}");
            }
        }
        assert!(!repo.join("copied.csv").exists());
    }
}

/// A Redis URL too malformed to have `://` is reported without its password (issue 22).
#[test]
fn malformed_redis_urls_never_print_their_password() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = crate::materialize::repo_with(
        tmp.path(),
        5,
        2,
        "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
    );
    let config = repo.join("quiver.yaml");
    let original = std::fs::read_to_string(&config).unwrap();
    for url in ["redis:/default:S3cret@host", "default:S3cret@host:6379"] {
        let yaml = original.replace(
            "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
            &format!("online_store:\n  type: redis\n  url: \"{url}\"\n"),
        );
        assert_ne!(yaml, original);
        std::fs::write(&config, yaml).unwrap();
        for args in [
            &["plan"][..],
            &["serve", "--http", "127.0.0.1:0", "--grpc", ""],
        ] {
            let out = quiver_tests::quiver(&repo, args);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{}",
                quiver_tests::describe(&out)
            );
            let text = quiver_tests::describe(&out);
            assert!(text.contains("invalid Redis URL"), "{text}");
            assert!(!text.contains("S3cret"), "{text}");
        }
    }
}
