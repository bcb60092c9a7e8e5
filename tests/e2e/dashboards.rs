//! The operator files in `deploy/` against a real Prometheus scraping a real `quiver serve`:
//! `promtool` accepts the alert rules, and every query of the Grafana dashboard and every alert
//! expression evaluates (Prometheus parses it and answers), the main panels with data.
//! (`feature-server/tests/deploy.rs` checks the metric names against the code without any of
//! this installed.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quiver_tests::{QuiverServer, describe, free_port, http_get, quiver};
use serde_json::Value as J;

/// `prometheus` and `promtool` (Debian's `prometheus` package), when installed.
fn installed() -> Option<(PathBuf, PathBuf)> {
    let path = std::env::var_os("PATH")?;
    let find = |name: &str| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    };
    Some((find("prometheus")?, find("promtool")?))
}

/// A Prometheus on a free loopback port scraping `target` every second; killed (by PID) on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(bin: &Path, target: SocketAddr, rules: &Path) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [{}]\nscrape_configs:\n  - job_name: quiver\n    static_configs:\n      - targets: ['{target}']\n",
                rules.display()
            ),
        )
        .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .expect("prometheus starts");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// An instant query: Prometheus's answer (`status`, `data.result`), or why it refused.
    fn query(&self, promql: &str) -> Result<Vec<J>, String> {
        let (status, body) = http_get(
            self.addr,
            &format!("/api/v1/query?query={}", encode(promql)),
        )
        .ok_or("Prometheus did not answer")?;
        let body: J = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if status != 200 || body["status"] != "success" {
            return Err(format!("{status}: {body}"));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every PromQL query of the dashboard, with Grafana's variables as "all" and a rate window
/// that four 1-second scrapes fill.
fn dashboard_queries(dashboard: &J) -> Vec<(String, String)> {
    fn walk(v: &J, title: &str, out: &mut Vec<(String, String)>) {
        match v {
            J::Object(map) => {
                let title = map.get("title").and_then(J::as_str).unwrap_or(title);
                for (k, x) in map {
                    match (k.as_str(), x) {
                        ("expr", J::String(q)) => out.push((title.to_string(), q.clone())),
                        _ => walk(x, title, out),
                    }
                }
            }
            J::Array(items) => items.iter().for_each(|i| walk(i, title, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], "", &mut out);
    out.into_iter()
        .map(|(title, q)| {
            let q = q
                .replace("$__rate_interval", "15s")
                .replace("$__interval", "5s");
            let q = ["$job", "$instance", "$endpoint", "$view"]
                .iter()
                .fold(q, |q, v| q.replace(v, ".*"));
            (title, q)
        })
        .collect()
}

#[test]
fn the_dashboard_and_the_alerts_work_in_a_real_prometheus() {
    let Some((prometheus, promtool)) = installed() else {
        eprintln!(
            "!! SKIPPED: prometheus/promtool are not installed (.ci/run installs Debian's `prometheus`)"
        );
        return;
    };
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let rules = deploy.join("prometheus/alerts.yml");
    let check = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(check.status.success(), "promtool: {}", describe(&check));

    let tmp = tempfile::tempdir().unwrap();
    let out = quiver(tmp.path(), &["quickstart", "--no-serve"]);
    assert!(out.status.success(), "{}", describe(&out));
    let mut server = QuiverServer::start(&tmp.path().join("quiver_quickstart"), true).unwrap();
    server.wait_ready(Duration::from_secs(30));
    let prom = Prometheus::start(&prometheus, server.http, &rules);

    // Traffic while Prometheus scrapes: lookups, and one refused request (an error by code).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let body =
        r#"{"feature_service":"model_v1","entities":{"driver_id":[1001],"customer_id":[1]}}"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    let wanted = "sum by (endpoint) (rate(quiver_request_duration_seconds_count[15s])) > 0";
    loop {
        for _ in 0..20 {
            let (status, _) = rt.block_on(crate::serve::http(
                server.http,
                "POST",
                "/get-online-features",
                body,
            ));
            assert_eq!(status, 200);
        }
        let (status, _) = rt.block_on(crate::serve::http(
            server.http,
            "POST",
            "/get-online-features",
            "{}",
        ));
        assert_eq!(status, 400);
        if prom.query(wanted).is_ok_and(|r| !r.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus saw no request rate within 60 s: {:?}",
            prom.query("up")
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let dashboard: J =
        serde_json::from_str(&std::fs::read_to_string(deploy.join("grafana/quiver.json")).unwrap())
            .unwrap();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let mut empty = Vec::new();
    for (title, q) in &queries {
        match prom.query(q) {
            Ok(result) if result.is_empty() => empty.push(title.clone()),
            Ok(_) => {}
            Err(e) => panic!("panel `{title}`: Prometheus refused `{q}`: {e}"),
        }
    }
    eprintln!(
        "{} dashboard queries evaluated; without data on this server (no pushes, cache or failures): {empty:?}",
        queries.len()
    );
    // What this server must show at once (others need pushes, a cache or failures).
    for panel in &queries {
        let title = &panel.0;
        let must = [
            "Request rate per endpoint",
            "Latency p50 / p99 per endpoint",
            "Errors by code",
            "Online store read latency p50 / p99",
            "View freshness (materialization)",
            "Registry version",
        ];
        if must.contains(&title.as_str()) {
            assert!(
                !empty.contains(title),
                "panel `{title}` has no data: {}",
                panel.1
            );
        }
    }
    // The alert rules evaluate, and none fires on this healthy server.
    let rules: J = serde_json::to_value(
        serde_saphyr::from_str::<J>(&std::fs::read_to_string(&rules).unwrap()).unwrap(),
    )
    .unwrap();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            let result = prom
                .query(rule["expr"].as_str().unwrap())
                .unwrap_or_else(|e| panic!("alert {name}: {e}"));
            let quiet = [
                "QuiverServerDown",
                "QuiverViewDataLost",
                "QuiverRegistryReloadFailing",
                "QuiverOnlineStoreDown",
                "QuiverViewStale",
            ];
            if quiet.contains(&name) {
                assert!(
                    result.is_empty(),
                    "{name} fires on a healthy server: {result:?}"
                );
            }
        }
    }
    drop(prom);
    drop(server);
}
