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

/// Polls `/ready` until `done` says so (or 10 s pass); returns the last body.
async fn ready_until(
    addr: std::net::SocketAddr,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    crate::serve::wait_ready(addr).await;
    let deadline = Instant::now() + Duration::from_secs(10);
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

    // Redis stops answering (frozen: `pause` returns once the process is stopped) until every
    // request below has been answered.
    redis.pause();
    let started = Instant::now();
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let addr = server.http;
            tokio::spawn(async move {
                let t = Instant::now();
                // Bounded so that a request stuck on the frozen Redis fails the test instead of
                // hanging it.
                let answer = tokio::time::timeout(
                    Duration::from_secs(10),
                    http(addr, "POST", "/get-online-features", MODEL_V1),
                )
                .await;
                (answer, t.elapsed())
            })
        })
        .collect();
    for r in requests {
        let (answer, took) = r.await.unwrap();
        let (status, body) = answer.unwrap_or_else(|_| panic!("no answer after {took:?}"));
        assert_eq!(status, 503, "{body}");
        // The store timeout is 100 ms; a request that waited for Redis would not be answered
        // before it is thawed. (Latency is what is tested: the bounds leave ample margin.)
        assert!(took < Duration::from_millis(900), "a request took {took:?}");
    }
    // Not one after the other (20 × 100 ms): at once.
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    redis.resume();
    // And it recovers by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
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

    // Redis frozen (`pause` returns once the process is stopped) until both calls are answered.
    redis.pause();
    let (status, took) = call(Some("30m")).await;
    // At about 30 ms: before the store's 100 ms bound (latency is what is tested here).
    assert_eq!(
        status.as_deref(),
        Some("4"),
        "DEADLINE_EXCEEDED, after {took:?}"
    );
    assert!(took < Duration::from_millis(90), "answered after {took:?}");
    // Without a deadline the store's own bound answers.
    let (status, _) = call(None).await;
    assert_eq!(status.as_deref(), Some("14"), "UNAVAILABLE");
    redis.resume();
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

/// One answer a client got: when its request was sent and answered (since the test's origin).
#[derive(Clone, Copy, Debug)]
struct Answer {
    sent: Duration,
    answered: Duration,
    status: u16,
}

/// The answers, short: how many of each status, and the last few.
fn summary(answers: &[Answer]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for a in answers {
        *counts.entry(a.status).or_insert(0) += 1;
    }
    let last = &answers[answers.len().saturating_sub(12)..];
    format!("by status {counts:?}; the last {}: {last:?}", last.len())
}

/// Waits until `done` holds for the answers so far, failing the test after `limit` or when a
/// client has stopped (its request panicked: a dropped connection or no HTTP answer).
async fn answers_until(
    answers: &std::sync::Mutex<Vec<Answer>>,
    clients: &[tokio::task::JoinHandle<()>],
    what: &str,
    limit: Duration,
    done: impl Fn(&[Answer]) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        if done(&answers.lock().unwrap()) {
            return;
        }
        assert!(
            !clients.iter().any(|c| c.is_finished()),
            "a client stopped while waiting for {what}"
        );
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}: {}",
            summary(&answers.lock().unwrap())
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Redis restarted while four clients keep sending: answers are 200 before, 503 (never 500, never
/// a dropped connection) while it is down, and 200 again shortly after it is back — the same
/// server process throughout. Each step waits for what the clients see, not for a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_under_load_costs_only_the_downtime() {
    let mut redis = RedisServer::start_persistent().unwrap();
    let (_tmp, repo) = setup(&redis);
    let server = start(&repo).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answers = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Answer>::new()));
    let origin = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (addr, stop, answers) = (server.http, stop.clone(), answers.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let sent = origin.elapsed();
                    let (status, _) = http(addr, "POST", "/get-online-features", MODEL_V1).await;
                    answers.lock().unwrap().push(Answer {
                        sent,
                        answered: origin.elapsed(),
                        status,
                    });
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    answers_until(
        &answers,
        &clients,
        "20 answers before Redis stops",
        Duration::from_secs(10),
        |a| a.len() >= 20,
    )
    .await;
    let down_at = origin.elapsed();
    redis.stop();
    answers_until(
        &answers,
        &clients,
        "a request sent while Redis is down answered",
        Duration::from_secs(10),
        |a| a.iter().any(|x| x.sent > down_at),
    )
    .await;
    redis.restart().unwrap();
    let up_at = origin.elapsed();
    // Recovered: the first 200 to a request sent after Redis was back ("shortly": generous).
    answers_until(
        &answers,
        &clients,
        "a 200 after Redis is back",
        Duration::from_secs(10),
        |a| a.iter().any(|x| x.sent > up_at && x.status == 200),
    )
    .await;
    let recovered = answers
        .lock()
        .unwrap()
        .iter()
        .filter(|x| x.sent > up_at && x.status == 200)
        .map(|x| x.answered)
        .min()
        .unwrap();
    // And it stays recovered: every request sent after that is answered 200.
    answers_until(
        &answers,
        &clients,
        "40 answers after the recovery",
        Duration::from_secs(10),
        |a| a.iter().filter(|x| x.sent > recovered).count() >= 40,
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let all = answers.lock().unwrap().clone();
    let odd: Vec<_> = all
        .iter()
        .filter(|x| x.status != 200 && x.status != 503)
        .collect();
    assert!(odd.is_empty(), "neither 200 nor 503: {odd:?}");
    let before: Vec<_> = all
        .iter()
        .filter(|x| x.answered < down_at && x.status != 200)
        .collect();
    assert!(
        before.is_empty(),
        "not 200 before Redis stopped: {before:?}"
    );
    assert!(
        all.iter()
            .any(|x| x.sent > down_at && x.answered < up_at && x.status == 503),
        "no request saw Redis down: {}",
        summary(&all)
    );
    let late: Vec<_> = all
        .iter()
        .filter(|x| x.sent > recovered && x.status != 200)
        .collect();
    assert!(
        late.is_empty(),
        "not 200 after the recovery at {recovered:?}: {late:?}"
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
        // The aggregation view reads the week before now: this data is older than that.
        if run["view"] != "driver_activity" {
            assert!(run["rows_read"].as_u64().unwrap() > 0, "{run}");
        }
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

/// Polls `GET path` of `server` until `done` holds for its (status, body), failing the test
/// after `limit`; returns that answer.
pub(crate) fn poll_server(
    server: &quiver_tests::QuiverServer,
    path: &str,
    what: &str,
    limit: Duration,
    done: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + limit;
    loop {
        let answer = quiver_tests::http_get(server.http, path);
        if let Some((status, body)) = &answer
            && done(*status, body)
        {
            return (*status, body.clone());
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}; last {path}: {answer:?}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Redis emptied under a running server (FLUSHALL; a restart without persistence is the same):
/// `/ready` turns 503 naming the lost view, `quiver_view_data_lost` says which; a
/// materialization that refills the store makes it ready again.
///
/// A `quiver serve` process, not a server inside the test process: `/metrics` come from one
/// recorder per process, and every in-process server of the other tests that serves
/// `driver_hourly_stats` sets its `quiver_view_data_lost` back to 0 at each of its polls.
#[test]
fn a_store_wiped_under_the_server_makes_it_not_ready_until_refilled() {
    const LOST: &str = "quiver_view_data_lost{view=\"driver_hourly_stats\"} 1";
    const KEPT: &str = "quiver_view_data_lost{view=\"driver_hourly_stats\"} 0";
    let redis = RedisServer::start().unwrap();
    let (_tmp, repo) = setup(&redis);
    let mut server = quiver_tests::QuiverServer::start(&repo, false).unwrap();
    server.wait_ready(Duration::from_secs(20));
    let metrics = |server: &quiver_tests::QuiverServer| {
        quiver_tests::http_get(server.http, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    };
    let m = metrics(&server);
    assert!(m.contains(KEPT), "every served view has the gauge: {m}");
    let () = redis::cmd("FLUSHALL")
        .query(&mut redis.client().unwrap())
        .unwrap();
    // The loss is confirmed at two checks of the run records 1 s apart, after a watermark poll
    // (every 500 ms) finds it missing: waited for as the state `/ready` reports.
    let (_, body) = poll_server(
        &server,
        "/ready",
        "/ready naming the wiped view",
        Duration::from_secs(30),
        |status, body| status == 503 && body.contains("wiped"),
    );
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let data = body["online_data"].as_str().unwrap();
    assert!(
        data.contains("driver_hourly_stats") && data.contains("wiped"),
        "{body}"
    );
    assert_eq!(body["online_store"], "ok", "{body}");
    // Set before `/ready` can say so, and this process's alone.
    let m = metrics(&server);
    assert!(m.contains(LOST), "{m}\n{}", server.log());
    let out = quiver(&repo, &["--format", "json", "materialize-incremental"]);
    assert!(out.status.success(), "{}", describe(&out));
    let (_, body) = poll_server(
        &server,
        "/ready",
        "ready again after the refill",
        Duration::from_secs(30),
        |status, _| status == 200,
    );
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["online_data"], "ok", "{body}");
    let m = metrics(&server);
    assert!(m.contains(KEPT), "{m}\n{}", server.log());
    server.sigterm();
    let exit = server.exited_within(Duration::from_secs(15));
    assert!(
        exit.is_some_and(|e| e.success()),
        "{exit:?}\n{}",
        server.log()
    );

    // A server started on a store already wiped is never ready first: every answer of `/ready`
    // is 503 until it names the loss.
    let () = redis::cmd("FLUSHALL")
        .query(&mut redis.client().unwrap())
        .unwrap();
    let server = quiver_tests::QuiverServer::start(&repo, false).unwrap();
    let (_, body) = poll_server(
        &server,
        "/ready",
        "/ready naming the wiped view, never 200 first",
        Duration::from_secs(30),
        |status, body| {
            assert_ne!(status, 200, "ready on a wiped store: {body}");
            status == 503 && body.contains("wiped")
        },
    );
    assert!(body.contains("driver_hourly_stats"), "{body}");
    let m = metrics(&server);
    assert!(m.contains(LOST), "{m}\n{}", server.log());
    // Run records that cannot be read (here their directory replaced by a file) decide
    // nothing: the verdict stands over more than one record check.
    let runs = repo.join(".quiver/registry/runs");
    std::fs::rename(&runs, repo.join(".quiver/registry/runs.away")).unwrap();
    std::fs::write(&runs, b"").unwrap();
    std::thread::sleep(Duration::from_secs(7));
    let answer = quiver_tests::http_get(server.http, "/ready");
    assert!(
        answer
            .as_ref()
            .is_some_and(|(status, body)| *status == 503 && body.contains("wiped")),
        "{answer:?}\n{}",
        server.log()
    );
    assert!(metrics(&server).contains(LOST), "{}", server.log());
    // Probes every 50 ms and more than 7 s of them: the reason is logged once, not per probe.
    let log = server.log();
    assert_eq!(
        log.matches("not ready: the online store lost materialized data")
            .count(),
        1,
        "{log}"
    );
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
