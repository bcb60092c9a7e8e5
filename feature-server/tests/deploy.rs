//! The operator files in `deploy/` use only metrics this server exports: the Grafana dashboard
//! and the Prometheus alert rules are checked against the metric names the server's code
//! records (`counter!`, `gauge!`, `histogram!`, and the freshness gauge written by hand), so a
//! renamed metric cannot leave a panel or an alert silently empty.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `name → kind` of every metric the server's sources record.
fn exported() -> BTreeMap<String, &'static str> {
    let mut out = BTreeMap::new();
    let mut stack = vec![repo().join("feature-server/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for kind in ["counter", "gauge", "histogram"] {
                for (at, _) in text.match_indices(&format!("{kind}!(")) {
                    let rest = text[at..].trim_start_matches(|c| c != '"');
                    if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next())
                        && name.starts_with("quiver_")
                    {
                        out.insert(name.to_string(), kind);
                    }
                }
            }
        }
    }
    // Written at scrape time rather than recorded (metrics.rs).
    out.insert("quiver_view_freshness_seconds".into(), "gauge");
    out
}

/// Every `quiver_…` name in `text`.
fn used(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices("quiver_") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        out.insert(name);
    }
    out
}

/// Whether `name` is a series the server exports (a histogram's `_bucket`, `_sum` and `_count`
/// included).
fn check(name: &str, exported: &BTreeMap<String, &str>) -> Result<(), String> {
    if let Some(kind) = exported.get(name) {
        return if *kind == "histogram" {
            Err(format!(
                "{name} is a histogram: use {name}_bucket, _sum or _count"
            ))
        } else {
            Ok(())
        };
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && exported.get(base) == Some(&"histogram")
        {
            return Ok(());
        }
    }
    Err(format!("{name} is not a metric the server exports"))
}

#[test]
fn the_code_scan_finds_the_known_metrics() {
    let exported = exported();
    assert_eq!(
        exported.get("quiver_request_duration_seconds"),
        Some(&"histogram")
    );
    assert_eq!(exported.get("quiver_cache_hits_total"), Some(&"counter"));
    assert_eq!(exported.get("quiver_registry_version"), Some(&"gauge"));
    assert!(check("quiver_request_duration_seconds_bucket", &exported).is_ok());
    assert!(check("quiver_request_duration_seconds", &exported).is_err());
    assert!(check("quiver_no_such_metric_total", &exported).is_err());
}

#[test]
fn the_grafana_dashboard_uses_only_exported_metrics() {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/quiver.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    let exported = exported();
    let names = used(&exprs.join("\n"));
    let errors: Vec<String> = names
        .iter()
        .filter_map(|n| check(n, &exported).err())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // What the issue asks the dashboard to show.
    for needed in [
        "quiver_request_duration_seconds_bucket",
        "quiver_request_errors_total",
        "quiver_store_read_seconds_bucket",
        "quiver_cache_hits_total",
        "quiver_view_freshness_seconds",
        "quiver_push_rows_total",
    ] {
        assert!(
            names.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        out.push(s.clone())
                    }
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_exprs(i, out)),
        _ => {}
    }
}

#[derive(Deserialize)]
struct Rules {
    groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    alert: String,
    expr: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

#[test]
fn the_alert_rules_use_only_exported_metrics() {
    let text = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    let rules: Rules = serde_saphyr::from_str(&text).unwrap();
    let rules: Vec<&Rule> = rules.groups.iter().flat_map(|g| &g.rules).collect();
    let exported = exported();
    let mut alerts = BTreeSet::new();
    for rule in &rules {
        assert!(rule.labels.contains_key("severity"), "{}", rule.alert);
        assert!(rule.annotations.contains_key("summary"), "{}", rule.alert);
        for name in used(&rule.expr) {
            check(&name, &exported).unwrap_or_else(|e| panic!("{}: {e}", rule.alert));
        }
        alerts.insert(rule.alert.as_str());
    }
    for needed in [
        "QuiverViewStale",
        "QuiverHighErrorRate",
        "QuiverHighP99Latency",
        "QuiverOnlineStoreDown",
        "QuiverRegistryReloadFailing",
    ] {
        assert!(alerts.contains(needed), "no {needed} alert: {alerts:?}");
    }
}
