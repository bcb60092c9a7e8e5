//! What Quiver needs from Redis, against real servers: a `maxmemory-policy` that may evict
//! values is refused before anything is written (or, allowed, warned about and its evictions
//! reported by the run), `serve` warns and exports gauges, and a URL whose password holds
//! reserved characters says how to encode it.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use quiver_tests::{RedisServer, describe, quiver};

use crate::materialize::{json, redis_yaml, repo_ending};

/// A sample repository whose data ends now (so `key_ttl` expiries are in the future), on
/// `redis` with the extra online store options `options`.
fn repo(dir: &Path, redis: &RedisServer, drivers: u64, options: &str) -> std::path::PathBuf {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let yaml = format!("{}{options}", redis_yaml(&redis.url()));
    repo_ending(dir, drivers, 2, &yaml, &now)
}

fn info(redis: &RedisServer, field: &str) -> u64 {
    let text: String = redis::cmd("INFO")
        .query(&mut redis.client().unwrap())
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO"))
        .trim()
        .parse()
        .unwrap()
}

/// `--maxmemory 40mb --maxmemory-policy volatile-lru` with `key_ttl: true` (every value has a
/// ttl, so every value may be evicted) used to report every key written, exit 0, and lose most
/// of them. It is refused before anything is written; so is any `allkeys-*` policy. A
/// `volatile-*` policy without `key_ttl` cannot evict values and is accepted.
#[test]
fn a_redis_that_may_evict_values_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let redis =
        RedisServer::start_args(&["--maxmemory", "40mb", "--maxmemory-policy", "volatile-lru"])
            .unwrap();
    let repo = repo(tmp.path(), &redis, 20, "  key_ttl: true\n");
    let out = quiver(&repo, &["materialize-incremental"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "refusing to materialize",
        "maxmemory-policy volatile-lru",
        "noeviction",
        "allow_eviction: true",
    ] {
        assert!(err.contains(expected), "expected `{expected}` in {err}");
    }
    let keys: u64 = redis::cmd("DBSIZE")
        .query(&mut redis.client().unwrap())
        .unwrap();
    assert_eq!(keys, 0, "nothing was written, not even a watermark");

    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query(&mut redis.client().unwrap())
        .unwrap();
    let config = repo.join("quiver.yaml");
    let yaml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, yaml.replace("  key_ttl: true\n", "")).unwrap();
    let out = quiver(&repo, &["materialize-incremental"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "allkeys-lru: {}",
        describe(&out)
    );

    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("volatile-lru")
        .query(&mut redis.client().unwrap())
        .unwrap();
    json(&quiver(
        &repo,
        &["--format", "json", "materialize-incremental"],
    ));
}

/// With `allow_eviction: true` the same Redis is written to with a loud warning, and a run
/// during which Redis really evicts values (a tiny maxmemory) says how many keys it evicted, in
/// its record and its output, instead of reporting every key written as if all were kept.
#[test]
fn with_allow_eviction_a_run_reports_the_keys_redis_evicted() {
    let tmp = tempfile::tempdir().unwrap();
    let redis =
        RedisServer::start_args(&["--maxmemory", "2mb", "--maxmemory-policy", "volatile-lru"])
            .unwrap();
    let repo = repo(
        tmp.path(),
        &redis,
        5000,
        "  key_ttl: true\n  allow_eviction: true\n",
    );
    let out = quiver(&repo, &["--format", "json", "materialize-incremental"]);
    let runs = json(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("may evict Quiver's values") && err.contains("materializing anyway"),
        "{err}"
    );
    assert!(
        err.contains("a restart empties it"),
        "no persistence: {err}"
    );
    let evicted = info(&redis, "evicted_keys");
    assert!(evicted > 0, "the test needs Redis to evict");
    let reported: u64 = runs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["evicted_keys"].as_u64())
        .sum();
    assert!(
        reported > 0 && reported <= evicted,
        "reported {reported}, Redis evicted {evicted}: {runs}"
    );
    let warned = runs.as_array().unwrap().iter().any(|r| {
        r["warnings"]
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w.as_str().unwrap().contains("evicted")))
    });
    assert!(warned, "{runs}");
}

/// A blocking one-shot HTTP GET.
fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, buf))
}

/// `serve` cannot stop Redis evicting what it serves, but says so: a warning at start and
/// gauges to alert on (`quiver_online_store_may_evict`, `quiver_online_store_persistent`).
#[test]
fn serve_warns_about_an_evicting_redis_and_exports_gauges() {
    let tmp = tempfile::tempdir().unwrap();
    let redis = RedisServer::start().unwrap();
    let repo = repo(tmp.path(), &redis, 20, "");
    json(&quiver(
        &repo,
        &["--format", "json", "materialize-incremental"],
    ));
    for (name, value) in [("maxmemory", "40mb"), ("maxmemory-policy", "allkeys-lru")] {
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query(&mut redis.client().unwrap())
            .unwrap();
    }
    let addr = format!("127.0.0.1:{}", quiver_tests::free_port().unwrap());
    let log = tmp.path().join("serve.log");
    let mut server = std::process::Command::new(quiver_tests::quiver_bin())
        .args(["serve", "--http", &addr, "--grpc", ""])
        .current_dir(&repo)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let metrics = loop {
        if let Ok((200, body)) = get(&addr, "/metrics")
            && body.contains("quiver_online_store_may_evict")
        {
            break body;
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            panic!(
                "no gauge: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        metrics.contains("quiver_online_store_may_evict 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("quiver_online_store_persistent 0"),
        "{metrics}"
    );
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(
        err.contains("maxmemory-policy allkeys-lru") && err.contains("serving cannot prevent it"),
        "{err}"
    );
}

/// A password holding `#`, `/` or `?` written as is in the URL used to fail with
/// "InvalidClientConfig" or "Invalid database number" (or reach another host). The error now
/// says to percent-encode, without showing the password, and the encoded URL works.
#[test]
fn a_redis_password_with_reserved_characters_gets_an_encoding_hint() {
    let secret = "S3c#r/t?x";
    let redis = RedisServer::start().unwrap();
    // Set after start: the harness checks readiness without a password.
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(secret)
        .query(&mut redis.client().unwrap())
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let port = redis.port();
    let yaml = format!(
        "online_store:\n  type: redis\n  url: \"redis://default:{secret}@127.0.0.1:{port}/0\"\n"
    );
    let repo = repo_ending(tmp.path(), 10, 2, &yaml, "2026-01-02T00:00:00Z");
    let out = quiver(&repo, &["materialize-incremental", "2026-01-02T00:00:01Z"]);
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("percent-encode") && err.contains("`#` → `%23`"),
        "{err}"
    );
    assert!(!err.contains("S3c"), "{err}");
    let config = repo.join("quiver.yaml");
    let yaml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, yaml.replace(secret, "S3c%23r%2Ft%3Fx")).unwrap();
    json(&quiver(
        &repo,
        &[
            "--format",
            "json",
            "materialize-incremental",
            "2026-01-02T00:00:01Z",
        ],
    ));
}

/// On a Cluster every master is asked: one with an evicting policy is enough to refuse, and the
/// message names it.
#[test]
fn one_evicting_cluster_master_is_enough_to_refuse() {
    let cluster = quiver_tests::RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    let tmp = tempfile::tempdir().unwrap();
    let yaml = format!(
        "online_store:\n  type: redis\n  url: {}\n  cluster: true\n  cluster_nodes: [\"{}\"]\n",
        urls[0], urls[1]
    );
    let repo = crate::materialize::repo_with(tmp.path(), 20, 2, &yaml);
    let out = quiver(&repo, &["materialize-incremental", "2026-01-02T00:00:01Z"]);
    assert!(out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("a restart empties it").count(),
        3,
        "one warning per master: {err}"
    );
    let last = &cluster.nodes[2];
    for (name, value) in [
        ("maxmemory", "40mb"),
        ("maxmemory-policy", "allkeys-random"),
    ] {
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query(&mut last.client().unwrap())
            .unwrap();
    }
    let out = quiver(&repo, &["materialize-incremental", "2026-01-02T00:00:01Z"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "Redis 127.0.0.1:{} may evict Quiver's values",
            last.port()
        )) && err.contains("allkeys-random"),
        "{err}"
    );
}
