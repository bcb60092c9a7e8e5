//! The web console in a real browser: headless Chromium (driven through chromedriver) against a
//! real `quiver serve` of the quickstart repository. Every page renders what the JSON API says,
//! the lookup returns the vector `POST /get-online-features` returns, the diff between two
//! applied versions shows the change, plots have points, the browser logs no error, and behind
//! authentication the page asks for a token and works with any read-scope token.
//!
//! Screenshots of every page go to `QUIVER_CONSOLE_SCREENSHOTS` when set (how `docs/console/`
//! is made), else to a scratch directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quiver_tests::webdriver::{self, Browser};
use quiver_tests::{QuiverServer, describe, http_get, quiver};
use serde_json::{Value as J, json};

const WAIT: Duration = Duration::from_secs(20);

/// The quickstart repository with five runs of every online view a second or more apart (the
/// quickstart's, then ranges of 24, 12, 6 and 3 hours back from now: they read different
/// numbers of rows, so every plot has a line), and a second registry version that changes one
/// view's ttl.
fn repository(tmp: &Path) -> PathBuf {
    let out = quiver(tmp, &["quickstart", "--no-serve"]);
    assert!(out.status.success(), "{}", describe(&out));
    for hours in [24, 12, 6, 3] {
        // Run records have whole-second times.
        std::thread::sleep(Duration::from_millis(1100));
        let now = chrono::Utc::now();
        let at =
            |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let start = at(now - chrono::Duration::hours(hours));
        let out = quiver(
            tmp,
            &["-C", "quiver_quickstart", "materialize", &start, &at(now)],
        );
        assert!(out.status.success(), "{}", describe(&out));
    }
    let repo = tmp.join("quiver_quickstart");
    let file = repo.join("features/drivers.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("ttl: 2h", "ttl: 3h", 1)).unwrap();
    let out = quiver(&repo, &["apply"]);
    assert!(out.status.success(), "{}", describe(&out));
    repo
}

fn screenshots() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("QUIVER_CONSOLE_SCREENSHOTS") {
        Some(dir) => {
            std::fs::create_dir_all(&dir).unwrap();
            (PathBuf::from(dir), None)
        }
        None => {
            let tmp = tempfile::tempdir().unwrap();
            (tmp.path().to_path_buf(), Some(tmp))
        }
    }
}

fn api(addr: SocketAddr, path: &str) -> J {
    let (status, body) = http_get(addr, path).unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Opens `#/route` and waits until the page `name` has rendered.
fn open(b: &Browser, addr: SocketAddr, route: &str, name: &str) -> String {
    b.goto(&format!("http://{addr}/ui#/{route}")).unwrap();
    b.wait_for(
        &format!("page {name}"),
        &format!(
            "const m = document.getElementById('main'); return m.dataset.ready === '1' && m.dataset.page === '{name}';"
        ),
        WAIT,
    )
    .unwrap();
    b.text("#main").unwrap()
}

fn save(b: &Browser, dir: &Path, name: &str) {
    let png = b.screenshot().unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// No error (nor warning) in the browser's console so far.
fn no_console_errors(b: &Browser, during: &str) {
    let bad: Vec<_> = b
        .console()
        .unwrap()
        .into_iter()
        .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
        .collect();
    assert!(bad.is_empty(), "browser console during {during}: {bad:?}");
}

/// `GET path` with a bearer token: the JSON answer (200 expected).
fn rt_get(addr: SocketAddr, path: &str, token: &str) -> J {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
    serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap()
}

fn chart_points(b: &Browser) -> Vec<u64> {
    b.eval(
        "return [...document.querySelectorAll('#main figure[data-points]')].map(f => Number(f.dataset.points));",
        json!([]),
    )
    .unwrap()
    .as_array()
    .unwrap()
    .iter()
    .map(|v| v.as_u64().unwrap())
    .collect()
}

/// Whether the browser tests can run; says loudly when they cannot.
fn browser_installed() -> bool {
    let found = webdriver::installed().is_some();
    if !found {
        eprintln!(
            "!! SKIPPED: chromium and chromedriver are not installed (.ci/run installs Debian's `chromium` and `chromium-driver`)"
        );
    }
    found
}

#[test]
fn every_console_page_in_a_real_browser() {
    if !browser_installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = repository(tmp.path());
    let mut server = QuiverServer::start(&repo, false).unwrap();
    server.wait_ready(Duration::from_secs(30));
    let addr = server.http;
    assert!(
        server.log().contains(&format!("console: http://{addr}/ui")),
        "quiver serve prints where the console is:\n{}",
        server.log()
    );
    let (shots, _keep) = screenshots();
    let b = Browser::start(1280, 800).unwrap();

    // Overview: the served version, counts, and each view's freshness as the API reports it.
    let overview = api(addr, "/registry/overview");
    assert_eq!(overview["version"], 2);
    let text = open(&b, addr, "", "overview");
    assert!(text.contains("Project quickstart"), "{text}");
    for view in overview["views"].as_array().unwrap() {
        let name = view["name"].as_str().unwrap();
        let row = b
            .eval(
                "return [...document.querySelectorAll('table.freshness tbody tr')].map(r => r.innerText).find(t => t.startsWith(arguments[0])) || '';",
                json!([name]),
            )
            .unwrap();
        let row = row.as_str().unwrap();
        assert!(
            row.contains(view["freshness"].as_str().unwrap()),
            "{name}: {row} vs {view}"
        );
    }
    save(&b, &shots, "overview");

    // Registry: every view, a filter, and the lineage graph's edges.
    let text = open(&b, addr, "registry", "registry");
    for view in ["driver_hourly_stats", "driver_derived", "customer_profile"] {
        assert!(text.contains(view), "{view} missing: {text}");
    }
    assert!(
        text.contains("Share of offers the driver accepted"),
        "{text}"
    );
    save(&b, &shots, "registry");
    b.type_into("#registry-search", "tag:team=driver-performance\u{E007}")
        .unwrap();
    b.wait_for(
        "the filtered list",
        "return location.hash.includes('q=tag');",
        WAIT,
    )
    .unwrap();
    let text = b
        .wait_for(
            "filtered views",
            "const m = document.getElementById('main'); return m.dataset.ready === '1' && m.innerText;",
            WAIT,
        )
        .unwrap();
    let text = text.as_str().unwrap();
    assert!(text.contains("driver_hourly_stats"), "{text}");
    assert!(!text.contains("customer_profile"), "filter kept: {text}");
    // The tabs from the keyboard: an arrow moves to the next one, which keeps the focus.
    open(&b, addr, "registry", "registry");
    b.eval("document.getElementById('tab-views').focus();", json!([]))
        .unwrap();
    b.keys("\u{E014}").unwrap();
    let focused = b
        .wait_for(
            "the sources tab",
            "const m = document.getElementById('main'); return location.hash.includes('tab=sources') && m.dataset.ready === '1' && document.activeElement.id;",
            WAIT,
        )
        .unwrap();
    assert_eq!(focused, "tab-sources");
    assert!(b.text("#main").unwrap().contains("driver_stats_source"));
    open(&b, addr, "registry?tab=lineage", "registry");
    let edges = b
        .eval(
            "return [...document.querySelectorAll('svg.lineage [data-edge]')].map(e => e.dataset.edge);",
            json!([]),
        )
        .unwrap();
    let edges: Vec<&str> = edges
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        edges.contains(&"driver_stats_source→driver_hourly_stats"),
        "{edges:?}"
    );
    assert!(edges.contains(&"driver_hourly_stats→model_v1"), "{edges:?}");
    save(&b, &shots, "lineage");

    // Version history: the diff between the two applied versions shows the ttl change.
    let diff = api(addr, "/registry/diff?from=1&to=2");
    let changes = diff["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{diff}");
    let text = open(&b, addr, "versions?from=1&to=2", "versions");
    assert!(
        text.contains("Changes from version 1 to version 2"),
        "{text}"
    );
    assert!(text.contains("driver_hourly_stats"), "{text}");
    for detail in changes[0]["details"].as_array().unwrap() {
        assert!(text.contains(detail.as_str().unwrap()), "{detail}: {text}");
    }
    assert!(text.contains("2h → 3h"), "{text}");
    save(&b, &shots, "versions");

    // Materialization: plots with a point per recorded run.
    let runs = api(addr, "/registry/runs?view=driver_hourly_stats");
    let n = runs["runs"].as_array().unwrap().len() as u64;
    assert!(n >= 2, "{runs}");
    let text = open(&b, addr, "runs?view=driver_hourly_stats", "runs");
    assert!(text.contains(&format!("{n} recorded runs")), "{text}");
    let points = chart_points(&b);
    assert!(points.len() >= 5, "{points:?}");
    assert!(
        points.iter().all(|p| *p >= n),
        "every plot has the runs: {points:?}"
    );
    save(&b, &shots, "runs");

    // Online lookup: typed keys, the vector the HTTP API returns, and the snippets.
    open(&b, addr, "lookup?service=model_v1", "lookup");
    b.type_into("#key-driver_id", "1001,1002").unwrap();
    b.type_into("#key-customer_id", "1,2").unwrap();
    b.click("#lookup-submit").unwrap();
    let shown = b
        .wait_for(
            "the feature vector",
            "const j = document.getElementById('lookup-json'); return j && j.textContent;",
            WAIT,
        )
        .unwrap();
    let shown: J = serde_json::from_str(shown.as_str().unwrap()).unwrap();
    let body = r#"{"feature_service":"model_v1","entities":{"driver_id":[1001,1002],"customer_id":[1,2]}}"#;
    let (status, expected) = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(crate::serve::http(
            addr,
            "POST",
            "/get-online-features",
            body,
        ));
    assert_eq!(status, 200, "{expected}");
    assert_eq!(shown, expected, "the console shows what the API answers");
    let text = b.text("#main").unwrap();
    for snippet in [
        "curl -s http://",
        "quiver.Client(",
        "store.get_online_features(",
        "grpcurl",
    ] {
        assert!(text.contains(snippet), "{snippet}: {text}");
    }
    assert!(
        text.contains(body),
        "the curl snippet sends the same body: {text}"
    );
    save(&b, &shots, "lookup");

    // Live serving: rates and percentiles from the server's own metrics, updating while
    // clients call (a thread sends lookups until the page has been checked).
    let calling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let client = {
        let calling = calling.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let mut sent = 0u64;
            while calling.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, _) = rt.block_on(crate::serve::http(
                    addr,
                    "POST",
                    "/get-online-features",
                    body,
                ));
                assert_eq!(status, 200);
                sent += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            sent
        })
    };
    let text = open(&b, addr, "serving", "serving");
    assert!(text.contains("Live serving"), "{text}");
    b.wait_for(
        "a second metrics reading",
        "return document.querySelector('table.live') && document.querySelector('table.live').innerText.includes('http_get_online_features');",
        WAIT,
    )
    .unwrap();
    b.wait_for(
        "plotted rates",
        "return [...document.querySelectorAll('#main figure[data-points]')].some(f => Number(f.dataset.points) >= 2);",
        WAIT,
    )
    .unwrap();
    b.wait_for(
        "a request rate above zero and a p99",
        "const r = document.getElementById('live-rate'); const t = document.querySelector('table.live'); return r && Number(r.textContent.replace(/,/g, '')) > 0 && t && /\\d ms|µs/.test(t.innerText);",
        WAIT,
    )
    .unwrap();
    save(&b, &shots, "serving");
    calling.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(client.join().unwrap() > 0);
    no_console_errors(&b, "the pages");

    // Keyboard: on a freshly loaded page the skip link is the first stop.
    b.goto("about:blank").unwrap();
    open(&b, addr, "", "overview");
    b.keys("\u{E004}").unwrap();
    let focused = b
        .eval("return document.activeElement.textContent;", json!([]))
        .unwrap();
    assert_eq!(focused, "Skip to content");
    b.keys("\u{E007}").unwrap();
    let (page, focused) = (
        b.eval(
            "return document.getElementById('main').dataset.page;",
            json!([]),
        )
        .unwrap(),
        b.eval("return document.activeElement.id;", json!([]))
            .unwrap(),
    );
    assert_eq!((page, focused), (json!("overview"), json!("main")));

    // int64 keys keep every digit, on the way out and back.
    open(
        &b,
        addr,
        "lookup?service=model_v1&driver_id=9223372036854775807&customer_id=-9223372036854775808&run=1",
        "lookup",
    );
    let table = b
        .wait_for(
            "the vector of an absent entity",
            "const t = document.querySelector('table.vector'); return t && t.innerText;",
            WAIT,
        )
        .unwrap();
    let table = table.as_str().unwrap();
    assert!(
        table.contains("9223372036854775807") && table.contains("-9223372036854775808"),
        "{table}"
    );
    assert!(table.contains("NOT_FOUND"), "{table}");

    // A phone: nothing wider than the screen.
    b.goto("about:blank").unwrap();
    b.set_window(390, 844).unwrap();
    for (route, name) in [("", "overview"), ("runs", "runs"), ("lookup", "lookup")] {
        open(&b, addr, route, name);
        let overflow = b
            .eval(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                json!([]),
            )
            .unwrap();
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "{name} scrolls sideways by {overflow} px on a phone"
        );
    }
    save(&b, &shots, "phone");
    no_console_errors(&b, "the phone pages");
    drop(b);
    drop(server);
}

#[test]
fn the_console_behind_authentication_asks_for_a_token() {
    if !browser_installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let end = "2026-01-02T00:00:00Z";
    let out = quiver(tmp.path(), &["quickstart", "--no-serve", "--end", end]);
    assert!(out.status.success(), "{}", describe(&out));
    let repo = tmp.path().join("quiver_quickstart");
    let token = "a-training-token-of-some-length";
    std::fs::write(repo.join("token"), token).unwrap();
    let config = repo.join("quiver.yaml");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{original}serving:\n  auth:\n    tokens:\n      - {{name: training, token_file: token, scopes: [offline:read]}}\n"
        ),
    )
    .unwrap();
    // Started as users type it: `-C` relative to the working directory.
    let mut server = QuiverServer::start_from(tmp.path(), "quiver_quickstart", false).unwrap();
    server.wait_ready(Duration::from_secs(30));
    let addr = server.http;
    // The page is open; its data is not.
    assert_eq!(http_get(addr, "/ui").unwrap().0, 200);
    for path in [
        "/registry/overview",
        "/registry/versions",
        "/registry/runs",
        "/serving-stats",
    ] {
        assert_eq!(http_get(addr, path).unwrap().0, 401, "{path}");
    }

    // A source's file schema, read under a relative repository root.
    let schema = rt_get(addr, "/registry/sources/driver_stats_source/schema", token);
    let columns = schema["columns"]
        .as_array()
        .unwrap_or_else(|| panic!("{schema}"));
    assert!(columns.iter().any(|c| c["name"] == "conv_rate"), "{schema}");

    let b = Browser::start(1280, 800).unwrap();
    b.goto(&format!("http://{addr}/ui#/")).unwrap();
    b.wait_for(
        "the token dialog",
        "return document.getElementById('token-dialog').open;",
        WAIT,
    )
    .unwrap();
    b.type_into("#token-input", &format!("{token}\u{E007}"))
        .unwrap();
    b.wait_for(
        "the overview with the token",
        "const m = document.getElementById('main'); return m.dataset.page === 'overview' && m.innerText.includes('Project quickstart');",
        WAIT,
    )
    .unwrap();
    // A token without `online:read` may look at everything but an online lookup, which says so.
    let text = open(
        &b,
        addr,
        "lookup?service=model_v1&driver_id=1001&customer_id=1&run=1",
        "lookup",
    );
    let text = if text.contains("403") {
        text
    } else {
        b.wait_for(
            "the refusal",
            "return document.getElementById('main').innerText.includes('403') && document.getElementById('main').innerText;",
            WAIT,
        )
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
    };
    assert!(text.contains("403"), "{text}");
    // The token stays in the tab's session storage; no page shows it.
    for (route, name) in [
        ("", "overview"),
        ("registry", "registry"),
        ("serving", "serving"),
    ] {
        let text = open(&b, addr, route, name);
        assert!(!text.contains(token), "{name} shows the token");
    }
    let html = b
        .eval("return document.documentElement.outerHTML;", json!([]))
        .unwrap();
    assert!(!html.as_str().unwrap().contains(token));
    // 401s are expected above; nothing else went wrong.
    let bad: Vec<_> = b
        .console()
        .unwrap()
        .into_iter()
        .filter(|(level, m)| level == "SEVERE" && !m.contains("401") && !m.contains("403"))
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
}
