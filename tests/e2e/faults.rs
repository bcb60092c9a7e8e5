//! Fault survival: a registry that goes bad while serving, and a Redis that stops answering in
//! time. The server must keep serving what it can, say what is wrong, and never pile up.

use std::time::{Duration, Instant};

use quiver_tests::{RedisServer, describe, quiver};

use crate::serve::{MODEL_V1, http, setup, start};

/// The embedded store, in the sample repository's `.quiver/`.
const EMBEDDED: &str = "online_store:\n  type: embedded\n  path: .quiver/online.redb\n";

/// `online get` of driver 1001's `driver_hourly_stats`.
const GET_1001: [&str; 5] = [
    "online",
    "get",
    "driver_hourly_stats",
    "--key",
    "driver_id=1001",
];

/// A sample repository of `drivers` × `hours` rows with `store` as its online store,
/// materialized up to the data's end.
fn materialized(
    dir: &std::path::Path,
    drivers: u64,
    hours: u32,
    store: &str,
) -> std::path::PathBuf {
    let repo = crate::materialize::repo_with(dir, drivers, hours, store);
    let out = quiver(&repo, &["materialize-incremental", "2026-01-02T00:00:01Z"]);
    assert!(out.status.success(), "{}", describe(&out));
    repo
}

/// Polls `/ready` until `done` says so (or 3 s pass); returns the last body.
async fn ready_until(
    addr: std::net::SocketAddr,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    crate::serve::wait_ready(addr).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (status, body) = http(addr, "GET", "/ready", "").await;
        assert_eq!(status, 200, "{body}");
        if done(&body) || Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for `/ready` to report a registry problem, then checks it names `reason`, that version 1
/// is still the one served, and that requests still succeed.
async fn still_serving_version_1(addr: std::net::SocketAddr, reason: &str) {
    let body = ready_until(addr, |b| b["registry"] != "ok").await;
    assert_eq!(body["registry_version"], 1, "{body}");
    assert!(
        body["registry"].as_str().unwrap().contains(reason),
        "{body}"
    );
    let (status, _) = http(addr, "POST", "/get-online-features", MODEL_V1).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_or_deleted_registry_keeps_the_last_good_version_serving() {
    let redis = RedisServer::start().unwrap();
    let (_tmp, repo) = setup(&redis);
    let server = start(&repo).await;
    let registry = repo.join(".quiver/registry");

    // A garbage "newer version" appears.
    std::fs::write(registry.join("v00000002.json"), b"{ not json").unwrap();
    still_serving_version_1(server.http, "reload failing, serving the last good version").await;
    let (_, metrics) = http(server.http, "GET", "/metrics", "").await;
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains("quiver_registry_reload_errors_total"),
        "{metrics}"
    );
    // (`quiver_registry_healthy` is process-wide, and other tests' servers share this process.)
    assert!(metrics.contains("quiver_registry_healthy"), "{metrics}");

    // Removed again: healthy.
    std::fs::remove_file(registry.join("v00000002.json")).unwrap();
    let body = ready_until(server.http, |b| b["registry"] == "ok").await;
    assert_eq!(body["registry"], "ok", "{body}");

    // The whole registry directory deleted: still serving version 1, and saying why.
    let moved = repo.join(".quiver/registry.moved");
    std::fs::rename(&registry, &moved).unwrap();
    still_serving_version_1(server.http, "no registry versions").await;
    std::fs::rename(&moved, &registry).unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_times_requests_out_at_the_bound_instead_of_piling_up() {
    let redis = RedisServer::start().unwrap();
    let (_tmp, repo) = setup(&redis);
    let server = start(&repo).await;
    let (status, _) = http(server.http, "POST", "/get-online-features", MODEL_V1).await;
    assert_eq!(status, 200);

    // Redis stops answering for 1.5 s.
    let mut conn = redis.client().unwrap();
    let sleeper = std::thread::spawn(move || {
        let _: redis::RedisResult<()> =
            redis::cmd("DEBUG").arg("SLEEP").arg("1.5").query(&mut conn);
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let addr = server.http;
            tokio::spawn(async move {
                let t = Instant::now();
                let (status, body) = http(addr, "POST", "/get-online-features", MODEL_V1).await;
                (status, body, t.elapsed())
            })
        })
        .collect();
    for r in requests {
        let (status, body, took) = r.await.unwrap();
        assert_eq!(status, 503, "{body}");
        // The store timeout is 100 ms; well under the 1.5 s Redis is asleep.
        assert!(took < Duration::from_millis(900), "a request took {took:?}");
    }
    assert!(started.elapsed() < Duration::from_millis(1200));
    sleeper.join().unwrap();
    // And it recovers by itself.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (status, _) = http(server.http, "POST", "/get-online-features", MODEL_V1).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery after Redis woke up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

/// A gRPC call's `grpc-timeout` is a deadline the server keeps: with Redis asleep, a call with a
/// 30 ms deadline is answered DEADLINE_EXCEEDED at about that time — not UNAVAILABLE at the
/// store's 100 ms bound. Sent over a bare HTTP/2 connection, so no client-side timer can answer
/// in the server's place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_deadlines_are_kept_by_the_server() {
    use prost::Message;
    let redis = RedisServer::start().unwrap();
    let (_tmp, repo) = setup(&redis);
    let server = start(&repo).await;
    let tcp = tokio::net::TcpStream::connect(server.grpc).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let call = |timeout: Option<&'static str>| {
        let mut client = client.clone();
        let addr = server.grpc;
        async move {
            let request = quiver_proto::feast::serving::GetOnlineFeaturesRequest {
                kind: Some(
                    quiver_proto::feast::serving::get_online_features_request::Kind::FeatureService(
                        "model_v1".into(),
                    ),
                ),
                entities: [("driver_id", 1001), ("customer_id", 1)]
                    .map(|(name, id)| {
                        (
                            name.to_string(),
                            quiver_proto::feast::types::RepeatedValue {
                                val: vec![quiver_proto::feast::types::Value {
                                    val: Some(quiver_proto::feast::types::value::Val::Int64Val(id)),
                                }],
                            },
                        )
                    })
                    .into(),
                ..Default::default()
            };
            let body = request.encode_to_vec();
            let mut frame = vec![0u8];
            frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
            frame.extend_from_slice(&body);
            let mut builder = tonic::codegen::http::Request::post(format!(
                "http://{addr}/feast.serving.ServingService/GetOnlineFeatures"
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
            if let Some(t) = timeout {
                builder = builder.header("grpc-timeout", t);
            }
            let started = Instant::now();
            std::future::poll_fn(|cx| client.poll_ready(cx))
                .await
                .unwrap();
            let (response, mut send) = client
                .send_request(builder.body(()).unwrap(), false)
                .unwrap();
            send.send_data(bytes::Bytes::from(frame), true).unwrap();
            let response = response.await.unwrap();
            let in_headers = response.headers().get("grpc-status").cloned();
            let mut body = response.into_body();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                body.flow_control().release_capacity(chunk.len()).unwrap();
            }
            let trailers = body.trailers().await.unwrap();
            let status = in_headers
                .or_else(|| trailers.and_then(|t| t.get("grpc-status").cloned()))
                .map(|v| v.to_str().unwrap().to_string());
            (status, started.elapsed())
        }
    };
    assert_eq!(
        call(Some("5S")).await.0.as_deref(),
        Some("0"),
        "a generous deadline"
    );

    let mut conn = redis.client().unwrap();
    let sleeper = std::thread::spawn(move || {
        let _: redis::RedisResult<()> = redis::cmd("DEBUG").arg("SLEEP").arg("1").query(&mut conn);
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, took) = call(Some("30m")).await;
    assert_eq!(
        status.as_deref(),
        Some("4"),
        "DEADLINE_EXCEEDED, after {took:?}"
    );
    assert!(took < Duration::from_millis(90), "answered after {took:?}");
    // Without a deadline the store's own bound answers.
    let (status, _) = call(None).await;
    assert_eq!(status.as_deref(), Some("14"), "UNAVAILABLE");
    sleeper.join().unwrap();
    server.stop().await;
}

/// `materialize-incremental` killed with SIGKILL at several points: a rerun completes, and the
/// online store then agrees with the offline join (`verify`).
#[test]
fn materialization_killed_at_any_point_is_completed_by_a_rerun() {
    use quiver_tests::quiver_bin;
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = crate::materialize::repo_with(
        tmp.path(),
        3000,
        24,
        &crate::materialize::redis_yaml(&redis.url()),
    );
    // Kill points spread over the run, from the scan to the writes; seeded by the clock so
    // repeated CI runs probe different moments.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_millis() as u64;
    for round in 0..3u64 {
        let delay = 50 + (seed * 7 + round * 211) % 600;
        let mut child = std::process::Command::new(quiver_bin())
            .args(["materialize-incremental", "2026-01-02T00:00:01Z"])
            .current_dir(&repo)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        // Child::kill sends SIGKILL to this child's PID.
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = quiver(&repo, &["materialize-incremental", "2026-01-02T00:00:01Z"]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = quiver(&repo, &["--format", "json", "verify", "--sample", "500"]);
    assert!(out.status.success(), "kill seed {seed}: {}", describe(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for view in report.as_array().unwrap() {
        assert!(view["sampled"].as_u64().unwrap() > 0, "{view}");
    }
}

/// Redis restarted while four clients keep sending: answers are 200 before, 503 (never 500, never
/// a dropped connection) while it is down, and 200 again shortly after it is back — the same
/// server process throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_under_load_costs_only_the_downtime() {
    let mut redis = RedisServer::start_persistent().unwrap();
    let (_tmp, repo) = setup(&redis);
    let server = start(&repo).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let origin = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (addr, stop) = (server.http, stop.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (status, _) = http(addr, "POST", "/get-online-features", MODEL_V1).await;
                    seen.push((origin.elapsed(), status));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let down_at = origin.elapsed();
    redis.stop();
    tokio::time::sleep(Duration::from_millis(800)).await;
    redis.restart().unwrap();
    let up_at = origin.elapsed();
    tokio::time::sleep(Duration::from_millis(4000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    assert!(all.iter().all(|(_, s)| *s == 200 || *s == 503), "{all:?}");
    assert!(
        all.iter()
            .filter(|(t, _)| *t < down_at)
            .all(|(_, s)| *s == 200)
    );
    assert!(
        all.iter()
            .any(|(t, s)| *t > down_at && *t < up_at && *s == 503),
        "no request saw Redis down"
    );
    let settled = up_at + Duration::from_millis(3000);
    let late: Vec<_> = all.iter().filter(|(t, _)| *t > settled).collect();
    assert!(!late.is_empty());
    assert!(
        late.iter().all(|(_, s)| *s == 200),
        "not recovered: {late:?}"
    );
    server.stop().await;
}

/// A store wiped under a live registry (FLUSHALL, a Redis restarted without persistence): the
/// registry's run records say what was materialized, so `verify` fails naming the loss instead
/// of "nothing to verify", and `materialize-incremental` says it refills from the beginning.
#[test]
fn a_wiped_store_is_reported_and_refilled() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = crate::materialize::repo_with(
        tmp.path(),
        30,
        6,
        &crate::materialize::redis_yaml(&redis.url()),
    );
    let incremental = || {
        crate::materialize::json(&quiver(
            &repo,
            &[
                "--format",
                "json",
                "materialize-incremental",
                "2026-01-02T00:00:01Z",
            ],
        ))
    };
    incremental();
    let () = redis::cmd("FLUSHALL")
        .query(&mut redis.client().unwrap())
        .unwrap();
    let out = quiver(&repo, &["--format", "json", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for view in report.as_array().unwrap() {
        assert!(view["lost"].as_str().unwrap().contains("wiped"), "{view}");
    }
    for run in incremental().as_array().unwrap() {
        assert!(run["rows_read"].as_u64().unwrap() > 0, "{run}");
        assert!(
            run["watermark_note"].as_str().unwrap().contains("refilled"),
            "{run}"
        );
    }
    let out = quiver(&repo, &["--format", "json", "verify"]);
    assert!(out.status.success(), "{}", describe(&out));
}

/// A damaged embedded store file (bytes flipped, or truncated to nothing) is an error that says
/// how to recover — never a crash (redb panics on some damage), never an empty store served as
/// if nothing had been materialized.
#[test]
fn a_damaged_embedded_store_is_an_error_not_a_crash_or_an_empty_store() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = materialized(tmp.path(), 20, 8, EMBEDDED);
    let file = repo.join(".quiver/online.redb");
    let mut bytes = std::fs::read(&file).unwrap();
    for i in (4096..bytes.len()).step_by(997) {
        bytes[i] ^= 0xff;
    }
    std::fs::write(&file, &bytes).unwrap();
    let get = GET_1001;
    for args in [&get[..], &["verify"]] {
        let out = quiver(&repo, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is damaged") && err.contains("rebuild"),
            "{err}"
        );
        // The storage engine's own panic (caught) is not printed before the error.
        assert!(!err.contains("panicked"), "{err}");
    }
    std::fs::write(&file, b"").unwrap();
    let out = quiver(&repo, &get);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty (0 bytes)"));
}

/// A damaged value (a bit flipped in Redis, here in its event time, so it claims to be from the
/// far future) is never reported as fine: `online get` refuses it naming the damage, `verify`
/// counts it as corrupt and fails, and the next materialization of its range replaces it —
/// its future timestamp does not block the write.
#[test]
fn a_damaged_value_is_reported_and_replaced_by_the_next_run() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = materialized(
        tmp.path(),
        30,
        6,
        &crate::materialize::redis_yaml(&redis.url()),
    );
    let mut conn = redis.client().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("quiver:*:driver_hourly_stats:*{i1001}")
        .query(&mut conn)
        .unwrap();
    let mut blob: Vec<u8> = redis::cmd("GET").arg(&keys[0]).query(&mut conn).unwrap();
    blob[2] ^= 0x40; // event time: ~2^54 ns later
    let () = redis::cmd("SET")
        .arg(&keys[0])
        .arg(&blob)
        .query(&mut conn)
        .unwrap();
    let get = GET_1001;
    let out = quiver(&repo, &get);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("checksum mismatch"),
        "{}",
        describe(&out)
    );
    let out = quiver(&repo, &["--format", "json", "verify", "--sample", "1000"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let view = report
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["view"] == "driver_hourly_stats")
        .unwrap();
    assert_eq!(view["corrupt"], 1, "{view}");
    let out = quiver(
        &repo,
        &[
            "materialize",
            "2000-01-01T00:00:00Z",
            "2026-01-02T00:00:01Z",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let out = quiver(&repo, &get);
    assert!(out.status.success(), "{}", describe(&out));
    let out = quiver(&repo, &["verify", "--sample", "1000"]);
    assert!(out.status.success(), "{}", describe(&out));
}

/// Redis emptied under a running server (FLUSHALL; a restart without persistence is the same):
/// `/ready` turns 503 naming the lost view, `quiver_view_data_lost` says which, gRPC health
/// follows; a materialization that refills the store makes it ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_wiped_under_the_server_makes_it_not_ready_until_refilled() {
    let redis = RedisServer::start().unwrap();
    let (_tmp, repo) = setup(&redis);
    let server = start(&repo).await;
    crate::serve::wait_ready(server.http).await;
    let (_, metrics) = http(server.http, "GET", "/metrics", "").await;
    assert!(
        metrics
            .as_str()
            .unwrap_or_default()
            .contains("quiver_view_data_lost{view=\"driver_hourly_stats\"} 0"),
        "every served view has the gauge: {metrics}"
    );
    let () = redis::cmd("FLUSHALL")
        .query(&mut redis.client().unwrap())
        .unwrap();
    let wait = |want: u16| async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = http(server.http, "GET", "/ready", "").await;
            if status == want || Instant::now() > deadline {
                return (status, body);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let (status, body) = wait(503).await;
    assert_eq!(status, 503, "{body}");
    let data = body["online_data"].as_str().unwrap();
    assert!(
        data.contains("driver_hourly_stats") && data.contains("wiped"),
        "{body}"
    );
    assert_eq!(body["online_store"], "ok", "{body}");
    let (_, metrics) = http(server.http, "GET", "/metrics", "").await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains("quiver_view_data_lost{view=\"driver_hourly_stats\"} 1"),
        "{metrics}"
    );
    let out = quiver(&repo, &["--format", "json", "materialize-incremental"]);
    assert!(out.status.success(), "{}", describe(&out));
    let (status, body) = wait(200).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["online_data"], "ok", "{body}");
    let (_, metrics) = http(server.http, "GET", "/metrics", "").await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains("quiver_view_data_lost{view=\"driver_hourly_stats\"} 0"),
        "{metrics}"
    );
    server.stop().await;

    // A server started on a store already wiped is never ready first.
    let () = redis::cmd("FLUSHALL")
        .query(&mut redis.client().unwrap())
        .unwrap();
    let server = start(&repo).await;
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < Duration::from_secs(4) {
        let (status, body) = http(server.http, "GET", "/ready", "").await;
        assert_eq!(status, 503, "{body}");
        seen.push(body["online_data"].as_str().unwrap_or_default().to_string());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.last().unwrap().contains("wiped"), "{seen:?}");
    server.stop().await;
}

/// Undoes `chattr +i` however the test ends.
struct Immutable<'a>(&'a std::path::Path);

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(self.0)
            .status();
    }
}

/// An embedded store this process may not write (here an immutable file, which even root
/// cannot open for writing) is served read-only; materializing into it says why it cannot.
#[test]
fn a_read_only_embedded_store_is_served() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = materialized(tmp.path(), 20, 4, EMBEDDED);
    let file = repo.join(".quiver/online.redb");
    let made = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&file)
        .status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("!! SKIPPED: `chattr +i` is not available here, so no file is read-only to root");
        return;
    }
    let _undo = Immutable(&file);
    let get: Vec<&str> = ["--format", "json"].into_iter().chain(GET_1001).collect();
    let out = quiver(&repo, &get);
    assert!(out.status.success(), "{}", describe(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["found"], true, "{json}");
    let out = quiver(
        &repo,
        &[
            "materialize",
            "2000-01-01T00:00:00Z",
            "2026-01-02T00:00:01Z",
        ],
    );
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("read-only to this process"),
        "{}",
        describe(&out)
    );
}
