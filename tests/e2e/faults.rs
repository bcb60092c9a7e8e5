//! Fault survival: a registry that goes bad while serving, and a Redis that stops answering in
//! time. The server must keep serving what it can, say what is wrong, and never pile up.

use std::time::{Duration, Instant};

use quiver_tests::RedisServer;

use crate::serve::{MODEL_V1, http, setup, start};

/// Polls `/ready` until `done` says so (or 3 s pass); returns the last body.
async fn ready_until(
    addr: std::net::SocketAddr,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_or_deleted_registry_keeps_the_last_good_version_serving() {
    let redis = RedisServer::start().unwrap();
    let (_tmp, repo) = setup(&redis);
    let server = start(&repo).await;
    let registry = repo.join(".quiver/registry");

    // A garbage "newer version" appears.
    std::fs::write(registry.join("v00000002.json"), b"{ not json").unwrap();
    let body = ready_until(server.http, |b| b["registry"] != "ok").await;
    assert_eq!(body["registry_version"], 1, "{body}");
    assert!(
        body["registry"]
            .as_str()
            .unwrap()
            .contains("reload failing, serving the last good version"),
        "{body}"
    );
    let (status, _) = http(server.http, "POST", "/get-online-features", MODEL_V1).await;
    assert_eq!(status, 200);
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
    let body = ready_until(server.http, |b| b["registry"] != "ok").await;
    assert_eq!(body["registry_version"], 1, "{body}");
    assert!(
        body["registry"]
            .as_str()
            .unwrap()
            .contains("no registry versions"),
        "{body}"
    );
    let (status, _) = http(server.http, "POST", "/get-online-features", MODEL_V1).await;
    assert_eq!(status, 200);
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
