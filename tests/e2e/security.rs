//! TLS on both protocols, and clients that are too slow to be served (slowloris).

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
