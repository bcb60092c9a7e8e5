//! Quiver against real Feast: the answers Feast 0.67 gave to the same requests over the same
//! data (recorded once, `tests/feast/record_all.sh`; `tests/feast/README.md`) are the golden
//! table. Every value, column name and event timestamp must be Feast's, over HTTP JSON and over
//! gRPC, except the differences README.md ("Differences from Feast, on purpose") lists; each is
//! allowed below by a named rule, nothing else is.

use std::path::{Path, PathBuf};

use base64::Engine;
use prost::Message;
use quiver_proto::feast::serving::serving_service_client::ServingServiceClient;
use quiver_proto::feast::serving::{GetOnlineFeaturesRequest, GetOnlineFeaturesResponse};
use quiver_proto::feast::types::value::Val;
use quiver_tests::{describe, quiver};
use serde_json::Value as J;

use crate::serve::{http, start};

fn feast_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("feast")
}

fn fixture(name: &str) -> J {
    let path = feast_dir().join("fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// The reference data as a Quiver project (`tests/feast/quiver`), applied and materialized in
/// a temporary copy.
fn project() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("quiver_ref");
    copy_dir(&feast_dir().join("quiver"), &repo);
    for args in [
        &["apply"][..],
        &[
            "materialize",
            "1960-01-01T00:00:00Z",
            "2030-01-01T00:00:00Z",
        ],
    ] {
        let out = quiver(&repo, args);
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
    }
    (tmp, repo)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The driver whose stale row (event time 1971, ttl 7300 days) Feast serves and Quiver answers
/// `OUTSIDE_MAX_AGE`.
const STALE_DRIVER: i64 = 10;
/// 2^53 + 1 in an int64 column with a null: Feast's float64 detour loses the last bit.
const BEYOND_F64: i64 = 9_007_199_254_740_993;

/// Why Quiver's `ours` may differ from Feast's `feast` for `feature` of `driver`, or `None`
/// when it may not. `element`: inside a list.
fn allowed(
    feature: &str,
    driver: i64,
    feast: &str,
    ours: &str,
    element: bool,
) -> Option<&'static str> {
    let float = feature.contains("float");
    match (feast, ours) {
        _ if driver == STALE_DRIVER && ours == "null" && !element => {
            Some("stale rows are null with OUTSIDE_MAX_AGE; Feast serves them PRESENT")
        }
        ("null", "\"NaN\"") if float && !element => {
            Some("NaN in a scalar float column stays NaN; Feast's materialization makes it null")
        }
        ("-9223372036854775808", "null") if !element => {
            Some("a null timestamp is null; Feast sends INT64_MIN")
        }
        ("9007199254740992", o) if o == BEYOND_F64.to_string() => {
            Some("int64 keeps every bit; Feast's float64 detour drops the last")
        }
        ("\"NaN\"" | "\"\"" | "false" | "-9223372036854775808", "null") if element => {
            Some("a null list element is null over HTTP; Feast stores a replacement")
        }
        _ => None,
    }
}

/// Quiver's statuses mean what the enum says (Feast with Redis answers PRESENT for all).
fn expected_status(driver: Option<i64>, value: &str, known: &[i64]) -> &'static str {
    match driver {
        None => "PRESENT", // a join key column
        Some(d) if !known.contains(&d) => "NOT_FOUND",
        Some(STALE_DRIVER) => "OUTSIDE_MAX_AGE",
        Some(_) if value == "null" => "NULL_VALUE",
        Some(_) => "PRESENT",
    }
}

/// Drivers with rows in the reference data.
const KNOWN: [i64; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

/// One column of an answer: name, values, statuses, event timestamps.
type Col<'a> = (String, &'a Vec<J>, &'a Vec<J>, &'a Vec<J>);

/// The columns of an answer, in its order.
fn columns(body: &J) -> Vec<Col<'_>> {
    let names = body["metadata"]["feature_names"].as_array().unwrap();
    names
        .iter()
        .zip(body["results"].as_array().unwrap())
        .map(|(n, r)| {
            (
                n.as_str().unwrap().to_string(),
                r["values"].as_array().unwrap(),
                r["statuses"].as_array().unwrap(),
                r["event_timestamps"].as_array().unwrap(),
            )
        })
        .collect()
}

fn text(v: &J) -> String {
    serde_json::to_string(v).unwrap()
}

/// Compares Quiver's HTTP answer with Feast's, column by column (Feast's order within a view
/// is a Python set's; Quiver's is the request's). Returns the deliberate differences seen.
fn compare_http(case: &str, feast: &J, ours: &J) -> Vec<String> {
    let feast_cols = columns(feast);
    let our_cols = columns(ours);
    let mut feast_names: Vec<_> = feast_cols.iter().map(|c| c.0.clone()).collect();
    let mut our_names: Vec<_> = our_cols.iter().map(|c| c.0.clone()).collect();
    assert_eq!(feast_names[0], our_names[0], "{case}: join key first");
    feast_names.sort();
    our_names.sort();
    assert_eq!(feast_names, our_names, "{case}: column names");
    let drivers: Vec<i64> = feast_cols[0]
        .1
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let mut seen = Vec::new();
    for (name, values, _, times) in &feast_cols {
        let (_, our_values, our_statuses, our_times) =
            our_cols.iter().find(|c| &c.0 == name).unwrap();
        let is_key = name == "driver_id";
        for (row, (f, o)) in values.iter().zip(our_values.iter()).enumerate() {
            let d = drivers[row];
            let at = format!("{case}: {name} of driver {d}");
            let (ft, ot) = (text(f), text(o));
            if ft != ot {
                match (f, o) {
                    (J::Array(fe), J::Array(oe)) => {
                        assert_eq!(fe.len(), oe.len(), "{at}: {ft} vs {ot}");
                        for (x, y) in fe.iter().zip(oe) {
                            let (xt, yt) = (text(x), text(y));
                            if xt != yt {
                                let why = allowed(name, d, &xt, &yt, true)
                                    .unwrap_or_else(|| panic!("{at}: Feast {ft}, Quiver {ot}"));
                                seen.push(format!("{at}: {why}"));
                            }
                        }
                    }
                    _ => {
                        let why = allowed(name, d, &ft, &ot, false)
                            .unwrap_or_else(|| panic!("{at}: Feast {ft}, Quiver {ot}"));
                        seen.push(format!("{at}: {why}"));
                    }
                }
            }
            let status = our_statuses[row].as_str().unwrap();
            assert_eq!(
                status,
                expected_status((!is_key).then_some(d), &ot, &KNOWN),
                "{at}: value {ot}"
            );
            assert_eq!(times[row], our_times[row], "{at}: event timestamp");
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiver_answers_as_feast_did_over_http_and_grpc() {
    let (_tmp, repo) = project();
    let server = start(&repo).await;
    let mut deliberate = Vec::new();

    // Successful requests: every value, name and timestamp.
    for case in [
        "all_types",
        "all_types_full_names",
        "feature_service",
        "feature_service_full_names",
        "int_bounds",
        "duplicate_ids",
        "extra_entity_columns",
        "request_context",
        "key_float_integral",
        "key_numeric_string",
        "key_mixed",
        "key_bool",
    ] {
        let f = fixture(&format!("http_{case}.json"));
        assert_eq!(f["status"], 200, "{case}");
        let body = f["request"]["body"].as_str().unwrap();
        let (status, ours) = http(server.http, "POST", "/get-online-features", body).await;
        assert_eq!(status, 200, "{case}: {ours}");
        deliberate.extend(compare_http(case, &f["response_json"], &ours));
    }

    // Errors Feast has a class for: the same class in the same shape, so Feast's SDK raises the
    // same exception (a duplicate feature is a 400 here, a 500 there).
    for (case, want) in [
        ("missing_feature_view", 404),
        ("missing_feature_service", 404),
        ("feature_listed_twice", 400),
    ] {
        let f = fixture(&format!("http_{case}.json"));
        let body = f["request"]["body"].as_str().unwrap();
        let (status, ours) = http(server.http, "POST", "/get-online-features", body).await;
        assert_eq!(status, want, "{case}: {ours}");
        let inner = |v: &J| -> J { serde_json::from_str(v.as_str().unwrap()).unwrap() };
        let (theirs, ours) = (inner(&f["response_json"]), inner(&ours));
        assert_eq!(theirs["module"], ours["module"], "{case}");
        assert_eq!(theirs["class"], ours["class"], "{case}");
        assert!(!ours["message"].as_str().unwrap().is_empty(), "{case}");
    }
    // Feast truncates a fractional key; Quiver refuses it.
    let f = fixture("http_key_float_fractional.json");
    let (status, ours) = http(
        server.http,
        "POST",
        "/get-online-features",
        f["request"]["body"].as_str().unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{ours}");

    // gRPC: Feast's `GetOnlineFeatures` messages (as `feast listen` answered them; Feast 0.67
    // has no Python server for `ServingService`) against Quiver's `ServingService`.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServingServiceClient::new(channel);
    let b64 = base64::engine::general_purpose::STANDARD;
    for case in [
        "all_types",
        "int_bounds",
        "feature_service",
        "request_context",
    ] {
        let f = fixture(&format!("grpc_{case}.json"));
        let request = GetOnlineFeaturesRequest::decode(
            &*b64.decode(f["request_b64"].as_str().unwrap()).unwrap(),
        )
        .unwrap();
        let feast = GetOnlineFeaturesResponse::decode(
            &*b64.decode(f["response_b64"].as_str().unwrap()).unwrap(),
        )
        .unwrap();
        let ours = client
            .get_online_features(request)
            .await
            .unwrap()
            .into_inner();
        deliberate.extend(compare_grpc(case, &feast, &ours));
    }
    server.stop().await;
    eprintln!("{} deliberate differences:", deliberate.len());
    for d in &deliberate {
        eprintln!("  {d}");
    }
}

fn names(r: &GetOnlineFeaturesResponse) -> Vec<String> {
    r.metadata
        .as_ref()
        .and_then(|m| m.feature_names.as_ref())
        .map(|l| l.val.clone())
        .unwrap_or_default()
}

/// A gRPC value in the JSON words `allowed` speaks (lists element by element).
fn grpc_text(v: &Option<Val>) -> String {
    match v {
        None => "null".into(),
        Some(Val::DoubleVal(x)) if x.is_nan() => "\"NaN\"".into(),
        Some(Val::FloatVal(x)) if x.is_nan() => "\"NaN\"".into(),
        Some(Val::Int64Val(x)) | Some(Val::UnixTimestampVal(x)) => x.to_string(),
        Some(other) => format!("{other:?}"),
    }
}

/// Like `compare_http`: over gRPC a null list element is Feast's replacement too, so lists
/// must match exactly.
fn compare_grpc(
    case: &str,
    feast: &GetOnlineFeaturesResponse,
    ours: &GetOnlineFeaturesResponse,
) -> Vec<String> {
    let (feast_names, our_names) = (names(feast), names(ours));
    let mut sorted = (feast_names.clone(), our_names.clone());
    sorted.0.sort();
    sorted.1.sort();
    assert_eq!(sorted.0, sorted.1, "{case}: column names");
    let key = feast_names.iter().position(|n| n == "driver_id").unwrap();
    let drivers: Vec<i64> = feast.results[key]
        .values
        .iter()
        .map(|v| match v.val {
            Some(Val::Int64Val(d)) => d,
            ref other => panic!("{case}: key {other:?}"),
        })
        .collect();
    let mut seen = Vec::new();
    for (i, name) in feast_names.iter().enumerate() {
        let j = our_names.iter().position(|n| n == name).unwrap();
        let (f, o) = (&feast.results[i], &ours.results[j]);
        for (row, (fv, ov)) in f.values.iter().zip(&o.values).enumerate() {
            let d = drivers[row];
            let at = format!("{case} (gRPC): {name} of driver {d}");
            if format!("{:?}", fv.val) != format!("{:?}", ov.val) {
                let (ft, ot) = (grpc_text(&fv.val), grpc_text(&ov.val));
                let why = allowed(name, d, &ft, &ot, false)
                    .unwrap_or_else(|| panic!("{at}: Feast {:?}, Quiver {:?}", fv.val, ov.val));
                seen.push(format!("{at}: {why}"));
            }
            assert_eq!(
                f.event_timestamps[row], o.event_timestamps[row],
                "{at}: event timestamp"
            );
        }
    }
    seen
}

/// Feast's own Python SDK (`online_store: type: remote`) reading every type from Quiver, compared
/// with what the same SDK read from Feast's server (`tests/feast/sdk_against_quiver.py`). Runs
/// where `QUIVER_FEAST_PYTHON` names a Python with `feast==0.67.*` (`.ci/run` installs one);
/// elsewhere it says loudly that it did not run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feast_sdk_reads_quiver_as_it_reads_feast() {
    let Some(python) = std::env::var_os("QUIVER_FEAST_PYTHON") else {
        eprintln!(
            "!! SKIPPED: QUIVER_FEAST_PYTHON is not set, so the Feast SDK was not run against Quiver (.ci/run sets it)"
        );
        return;
    };
    let (_tmp, repo) = project();
    let server = start(&repo).await;
    let url = format!("http://{}", server.http);
    let feast = feast_dir();
    let out = tokio::process::Command::new(python)
        .arg(feast.join("sdk_against_quiver.py"))
        .args(["--url", &url, "--fixtures"])
        .arg(feast.join("fixtures"))
        .output()
        .await
        .unwrap();
    server.stop().await;
    assert!(out.status.success(), "{}", describe(&out));
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
}
