//! Generations: old bytes are never read with a new meaning. A definition change that alters
//! stored values gives the view a new generation (and the plan says to materialize), the same
//! definition keeps its generation in a moved registry, and a value that does not decode is
//! served as NOT_FOUND, never as garbage and never as a 500.

use quiver_tests::{RedisServer, describe, quiver};
use serde_json::Value as J;

use crate::materialize::{json, repo_with};
use crate::serve::{http, setup};

const EMBEDDED: &str = "online_store:\n  type: embedded\n  path: .quiver/online.redb\n";

fn verify_all_match(repo: &std::path::Path, view: &str) {
    let report = json(&quiver(
        repo,
        &[
            "--format", "json", "verify", "--views", view, "--sample", "1000",
        ],
    ));
    let v = &report[0];
    assert_eq!(v["time_mismatches"], 0, "{v}");
    for f in v["features"].as_array().unwrap() {
        assert_eq!(f["mismatched"], 0, "{v}");
        assert_eq!(f["missing"], 0, "{v}");
        assert_eq!(f["matched"], v["sampled"], "{v}");
    }
}

fn generation(repo: &std::path::Path, view: &str) -> u64 {
    describe_view(repo, view, None)["generation"]
        .as_u64()
        .unwrap()
}

/// `registry describe VIEW [--version N]` as JSON.
pub(crate) fn describe_view(repo: &std::path::Path, view: &str, version: Option<&str>) -> J {
    let mut args = vec!["--format", "json", "registry", "describe", view];
    if let Some(v) = version {
        args.extend(["--version", v]);
    }
    json(&quiver(repo, &args))
}

/// Issue 20's reproduction: a changed `query` used to keep its generation, so re-materializing
/// could not replace old blobs and `verify` found 44 of 100 entities with the old values.
#[test]
fn a_changed_query_gets_a_new_generation_and_rematerializes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(tmp.path(), 100, 24, EMBEDDED);
    json(&quiver(
        &repo,
        &[
            "--format",
            "json",
            "materialize-incremental",
            "2026-01-03T00:00:00Z",
        ],
    ));
    verify_all_match(&repo, "driver_derived");
    let before = generation(&repo, "driver_derived");

    let defs = repo.join("features/drivers.yaml");
    let yaml = std::fs::read_to_string(&defs).unwrap();
    assert!(yaml.contains("conv_rate * 100 AS conv_pct"));
    std::fs::write(
        &defs,
        yaml.replace("conv_rate * 100 AS conv_pct", "conv_rate * 10 AS conv_pct"),
    )
    .unwrap();
    let plan = quiver(&repo, &["plan"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains("~ feature_view driver_derived") && text.contains("run `quiver materialize`"),
        "{}",
        describe(&plan)
    );
    assert!(quiver(&repo, &["apply"]).status.success());
    let after = generation(&repo, "driver_derived");
    assert_ne!(before, after);
    // The other views are untouched: same generation as in version 1.
    assert_eq!(
        J::from(generation(&repo, "driver_hourly_stats")),
        describe_view(&repo, "driver_hourly_stats", Some("1"))["generation"]
    );
    let runs = json(&quiver(
        &repo,
        &[
            "--format",
            "json",
            "materialize",
            "2025-01-01T00:00:00Z",
            "2026-01-03T00:00:00Z",
            "--views",
            "driver_derived",
        ],
    ));
    assert_eq!(runs[0]["keys_written"], runs[0]["entities"], "{runs}");
    verify_all_match(&repo, "driver_derived");
}

/// A registry moved elsewhere (or reset, or migrated) while the online store keeps its data:
/// the same definitions get the same generations, so the stored values and watermarks stay
/// valid; a reordered view gets a new one and is materialized from scratch.
#[test]
fn a_moved_registry_keeps_generations_and_never_decodes_old_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(tmp.path(), 40, 6, EMBEDDED);
    let incremental = || {
        json(&quiver(
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
    // Swap two features' order: a new generation, materialized from the beginning.
    let defs = repo.join("features/customers.yaml");
    let yaml = std::fs::read_to_string(&defs).unwrap();
    let swapped = yaml.replace(
        "      - name: lifetime_trips\n        type: int64\n      - name: loyalty_tier\n        type: string\n",
        "      - name: loyalty_tier\n        type: string\n      - name: lifetime_trips\n        type: int64\n",
    );
    assert_ne!(swapped, yaml, "the sample's customer features changed");
    std::fs::write(&defs, swapped).unwrap();
    assert!(quiver(&repo, &["apply"]).status.success());
    let runs = incremental();
    let customer = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["view"] == "customer_profile")
        .unwrap();
    assert!(customer["rows_read"].as_u64().unwrap() > 0, "{runs}");
    assert_eq!(customer["start"], J::Null, "{runs}");
    verify_all_match(&repo, "customer_profile");
    let generations: Vec<u64> = ["driver_hourly_stats", "customer_profile", "driver_derived"]
        .iter()
        .map(|v| generation(&repo, v))
        .collect();

    // Point the registry at a new, empty location and apply: version 1 again, same generations.
    let config = repo.join("quiver.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("path: .quiver/registry", "path: .quiver/registry-moved"),
    )
    .unwrap();
    assert!(quiver(&repo, &["apply"]).status.success());
    let moved: Vec<u64> = ["driver_hourly_stats", "customer_profile", "driver_derived"]
        .iter()
        .map(|v| generation(&repo, v))
        .collect();
    assert_eq!(moved, generations);
    // Nothing new to read: the watermarks of these generations are still there.
    for r in incremental().as_array().unwrap() {
        assert_eq!(r["rows_read"], 0, "{r}");
    }
    for view in ["driver_hourly_stats", "customer_profile"] {
        verify_all_match(&repo, view);
    }
}

/// Bytes under a view's key that are damaged (one bit of a value flipped: without the checksum
/// this decoded into a wrong value served as PRESENT) or foreign: that view's features answer
/// NOT_FOUND, the others are served, the request is a 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_value_is_not_found_never_garbage_or_500() {
    let redis = RedisServer::start().unwrap();
    let (_tmp, repo) = setup(&redis);
    let mut conn = redis.client().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("quiver:*:driver_hourly_stats:*{i1001}")
        .query(&mut conn)
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    // One bit of the last value (before the 4-byte checksum).
    let mut blob: Vec<u8> = redis::cmd("GET").arg(&keys[0]).query(&mut conn).unwrap();
    let at = blob.len() - 5;
    blob[at] ^= 0x10;
    let () = redis::cmd("SET")
        .arg(&keys[0])
        .arg(&blob)
        .query(&mut conn)
        .unwrap();
    let server = crate::serve::start(&repo).await;
    let body = r#"{"features": ["driver_hourly_stats:conv_rate", "customer_profile:age"], "entities": {"driver_id": [1001, 1002], "customer_id": [1, 2]}}"#;
    let (status, answer) = http(server.http, "POST", "/get-online-features", body).await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    // Join keys first, then conv_rate, then age.
    assert_eq!(results[2]["statuses"][0], "NOT_FOUND", "{answer}");
    assert_eq!(results[2]["values"][0], J::Null, "{answer}");
    assert_eq!(results[2]["statuses"][1], "PRESENT", "{answer}");
    assert_eq!(results[3]["statuses"][0], "PRESENT", "{answer}");
    let (_, metrics) = http(server.http, "GET", "/metrics", "").await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains("quiver_undecodable_values_total{view=\"driver_hourly_stats\"} 1"),
        "{metrics}"
    );
    server.stop().await;
}
