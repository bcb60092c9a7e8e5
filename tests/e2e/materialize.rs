//! Materialization end to end: Parquet → DataFusion → online store, checked against a
//! brute-force oracle; incremental runs, reruns, a Redis failure mid-run, Redis Cluster.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float32Type, Int64Type, TimestampMicrosecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use quiver_materializer::{Job, Progress, Range, materialize, select_views};
use quiver_online_store::key_codec::{KeyValue, entity_key, online_key, view_prefix};
use quiver_online_store::value_codec::{Value, decode};
use quiver_online_store::{OnlineStore, RedisStore};
use quiver_registry::store::RegistryVersion;
use quiver_registry::{OnlineStoreConfig, Repository};
use quiver_tests::{RedisCluster, RedisServer, describe, quiver};

use crate::online_store::redis_config;

const END: &str = "2026-01-02T00:00:00Z";
const END_NS: i64 = 1_767_312_000_000_000_000;
const HOUR_NS: i64 = 3_600_000_000_000;

/// A sample repository with the given sizes and online store, applied.
pub fn repo_with(dir: &Path, drivers: u64, hours: u32, online_store: &str) -> PathBuf {
    repo_ending(dir, drivers, hours, online_store, END)
}

/// Like `repo_with`, with the newest event time `end` (RFC 3339).
pub fn repo_ending(dir: &Path, drivers: u64, hours: u32, online_store: &str, end: &str) -> PathBuf {
    let (d, h) = (drivers.to_string(), hours.to_string());
    let out = quiver(
        dir,
        &[
            "init",
            "repo",
            "--drivers",
            &d,
            "--hours",
            &h,
            "--customers",
            "50",
            "--end",
            end,
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let repo = dir.join("repo");
    let config = repo.join("quiver.yaml");
    let yaml = std::fs::read_to_string(&config).unwrap();
    let yaml = yaml.replace(
        "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
        online_store,
    );
    std::fs::write(&config, yaml).unwrap();
    let out = quiver(&repo, &["apply"]);
    assert!(out.status.success(), "{}", describe(&out));
    repo
}

pub fn redis_yaml(url: &str) -> String {
    format!("online_store:\n  type: redis\n  url: {url}\n")
}

fn applied(repo: &Path) -> (Repository, RegistryVersion) {
    let repository = Repository::open(repo, None, &|_| None).unwrap();
    let version = repository.store().unwrap().latest().unwrap().unwrap();
    (repository, version)
}

#[derive(Debug, Clone, PartialEq)]
struct Expected {
    event_ns: i64,
    created_ns: i64,
    conv_rate: Option<f32>,
    city: Option<String>,
}

/// The latest row per driver in `[start, end)`, computed plainly from the Parquet file.
fn oracle(repo: &Path, start: i64, end: i64) -> HashMap<i64, Expected> {
    let file = std::fs::File::open(repo.join("data/driver_stats.parquet")).unwrap();
    let mut best: HashMap<i64, Expected> = HashMap::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
    {
        let batch = batch.unwrap();
        let col = |n: &str| batch.column_by_name(n).unwrap().clone();
        let (ids, events, created) = (col("driver_id"), col("event_timestamp"), col("created"));
        let (conv, city) = (col("conv_rate"), col("city"));
        let ids = ids.as_primitive::<Int64Type>();
        let events = events.as_primitive::<TimestampMicrosecondType>();
        let created = created.as_primitive::<TimestampMicrosecondType>();
        let conv = conv.as_primitive::<Float32Type>();
        let city = city.as_string::<i32>();
        for i in 0..batch.num_rows() {
            let row = Expected {
                event_ns: events.value(i) * 1000,
                created_ns: created.value(i) * 1000,
                conv_rate: (!conv.is_null(i)).then(|| conv.value(i)),
                city: (!city.is_null(i)).then(|| city.value(i).to_string()),
            };
            if row.event_ns < start || row.event_ns >= end {
                continue;
            }
            let slot = best.entry(ids.value(i)).or_insert_with(|| row.clone());
            if (row.event_ns, row.created_ns) > (slot.event_ns, slot.created_ns) {
                *slot = row;
            }
        }
    }
    best
}

/// Every driver's stored value equals the oracle's latest row.
async fn assert_matches_oracle(
    store: &dyn OnlineStore,
    version: &RegistryVersion,
    expected: &HashMap<i64, Expected>,
) {
    let view = &version.registry.feature_views["driver_hourly_stats"];
    let prefix = view_prefix(&version.registry.project, &view.name, view.generation);
    let mut ids: Vec<i64> = expected.keys().copied().collect();
    ids.sort_unstable();
    let keys: Vec<String> = ids
        .iter()
        .map(|id| online_key(&prefix, &entity_key(&[KeyValue::Int(*id)])))
        .collect();
    let blobs = store.read(&keys).await.unwrap();
    let types: Vec<_> = view.features.iter().map(|f| f.value_type).collect();
    for (id, blob) in ids.iter().zip(blobs) {
        let blob = blob.unwrap_or_else(|| panic!("driver {id} has no stored value"));
        let d = decode(&blob, &types).unwrap();
        let e = &expected[id];
        assert_eq!(
            (d.event_ns, d.created_ns),
            (e.event_ns, Some(e.created_ns)),
            "driver {id}"
        );
        assert_eq!(
            d.values[0].clone(),
            e.conv_rate.map(Value::Float32),
            "driver {id} conv_rate"
        );
        assert_eq!(
            d.values[7].clone(),
            e.city.clone().map(Value::String),
            "driver {id} city"
        );
    }
}

pub fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", describe(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(out)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materialize_matches_a_brute_force_oracle_on_both_backends() {
    let redis = RedisServer::start().unwrap();
    for backend in ["embedded", "redis"] {
        let tmp = tempfile::tempdir().unwrap();
        let yaml = match backend {
            "redis" => redis_yaml(&redis.url()),
            _ => "online_store:\n  type: embedded\n  path: .quiver/online.redb\n".to_string(),
        };
        let repo = repo_with(tmp.path(), 300, 6, &yaml);
        let start = "2026-01-01T20:00:00Z";
        let runs = json(&quiver(
            &repo,
            &[
                "--format",
                "json",
                "materialize",
                start,
                END,
                "--views",
                "driver_hourly_stats",
            ],
        ));
        assert_eq!(runs.as_array().unwrap().len(), 1);
        let expected = oracle(&repo, END_NS - 4 * HOUR_NS, END_NS);
        assert_eq!(runs[0]["entities"], expected.len(), "{backend}");
        assert_eq!(runs[0]["keys_written"], expected.len(), "{backend}");
        let stats = &runs[0]["features"]["conv_rate"];
        assert!(
            stats["min"].as_f64().unwrap() >= 0.0 && stats["max"].as_f64().unwrap() <= 1.0,
            "{stats}"
        );

        let (repository, version) = applied(&repo);
        let store = quiver_online_store::open(&repository.config.online_store, &repository.root)
            .await
            .unwrap();
        assert_matches_oracle(store.as_ref(), &version, &expected).await;
        let view = &version.registry.feature_views["driver_hourly_stats"];
        // The range leaves out rows before its start: the watermark is not set, so
        // `materialize-incremental` would still read them (a gap is never skipped).
        assert_eq!(
            store
                .watermark("repo", &view.name, view.generation)
                .await
                .unwrap(),
            None,
            "{backend}"
        );
        assert!(
            runs[0]["watermark_note"]
                .as_str()
                .unwrap()
                .contains("not moved"),
            "{runs}"
        );
        drop(store);
        // The run is recorded in the registry store.
        let recorded = repository.store().unwrap().runs(10).unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].view, "driver_hourly_stats");
    }
}

/// Every `quiver:*` key and its value, for comparing two stores. Aggregation tiles carry a
/// write sequence (how many writes made them) and a checksum over it: those bytes are blanked.
fn dump(redis: &RedisServer) -> HashMap<String, Vec<u8>> {
    let mut con = redis.client().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("quiver:*").query(&mut con).unwrap();
    keys.into_iter()
        .filter(|k| !k.contains("__watermark__"))
        .map(|k| {
            let mut v: Vec<u8> = redis::cmd("GET").arg(&k).query(&mut con).unwrap();
            if v.first() == Some(&quiver_online_store::tiles::TILES_VERSION) {
                let n = v.len();
                v[9..17].fill(0);
                v[n - 4..].fill(0);
            }
            (k, v)
        })
        .collect()
}

#[test]
fn two_half_ranges_give_the_store_one_full_range_gives_and_reruns_write_nothing() {
    let (halves, whole) = (RedisServer::start().unwrap(), RedisServer::start().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(tmp.path(), 200, 8, &redis_yaml(&halves.url()));
    let other = repo.join("whole.yaml");
    let yaml = std::fs::read_to_string(repo.join("quiver.yaml"))
        .unwrap()
        .replace(&halves.url(), &whole.url());
    std::fs::write(&other, yaml).unwrap();
    // From before every row (customers have five days of history), so the watermark is set.
    let (start, mid) = ("2025-12-01", "2026-01-01T20:30:00Z");

    json(&quiver(
        &repo,
        &["--format", "json", "materialize", start, mid],
    ));
    let second = json(&quiver(
        &repo,
        &["--format", "json", "materialize-incremental", END],
    ));
    assert_eq!(
        second[0]["start"], "2026-01-01T20:30:00Z",
        "continues from the watermark"
    );
    json(&quiver(
        &repo,
        &[
            "--format",
            "json",
            "--config",
            other.to_str().unwrap(),
            "materialize",
            start,
            END,
        ],
    ));
    let (a, b) = (dump(&halves), dump(&whole));
    assert!(
        a.len() > 400,
        "200 drivers in two views and 50 customers: {}",
        a.len()
    );
    assert_eq!(a, b);

    let rerun = json(&quiver(
        &repo,
        &["--format", "json", "materialize", mid, END],
    ));
    let drivers = rerun
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["view"] == "driver_hourly_stats")
        .unwrap();
    assert_eq!(drivers["entities"], 200, "{drivers}");
    for run in rerun.as_array().unwrap() {
        assert_eq!(run["keys_written"], 0, "a rerun rewrites nothing: {run}");
    }
    let up_to_date = json(&quiver(
        &repo,
        &["--format", "json", "materialize-incremental", END],
    ));
    assert_eq!(up_to_date[0]["rows_read"], 0);
    assert_eq!(dump(&halves), b);
}

/// Stops the Redis server as soon as the first chunk of writes is stored.
struct StopRedisMidWrite(Mutex<Option<RedisServer>>, Mutex<bool>);

impl Progress for StopRedisMidWrite {
    fn keys_written(&self, _keys: u64, _of: u64) {
        let mut stopped = self.1.lock().unwrap();
        if !*stopped {
            self.0.lock().unwrap().as_mut().unwrap().stop();
            *stopped = true;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_keeps_the_watermark_and_a_rerun_completes() {
    let redis = RedisServer::start_persistent().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // 40,000 drivers: three write chunks, so the failure lands between them.
    let repo = repo_with(tmp.path(), 40_000, 2, &redis_yaml(&redis.url()));
    let (repository, version) = applied(&repo);
    let registry_store = repository.store().unwrap();
    let views = select_views(&version, &["driver_hourly_stats".to_string()]).unwrap();
    let view = views[0];
    let config = redis_config(&redis.url());
    let connect = || async {
        Arc::new(
            RedisStore::connect(&config, std::path::Path::new("."))
                .await
                .unwrap(),
        ) as Arc<dyn OnlineStore>
    };
    let job = |online| Job {
        registry: &version,
        root: &repository.root,
        online,
        registry_store: registry_store.as_ref(),
        key_ttl: false,
        allow_eviction: false,
        partitions: 2,
        cluster: None,
    };

    let first_end = END_NS - HOUR_NS / 2;
    materialize(
        &job(connect().await),
        &views,
        Range::Fixed {
            start_ns: 0,
            end_ns: first_end,
        },
        &quiver_materializer::Quiet,
    )
    .await
    .unwrap();

    let killer = StopRedisMidWrite(Mutex::new(Some(redis)), Mutex::new(false));
    let err = materialize(
        &job(connect().await),
        &views,
        Range::Incremental { end_ns: END_NS + 1 },
        &killer,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("online store unavailable"),
        "{err}"
    );
    let mut redis = killer.0.lock().unwrap().take().unwrap();
    redis.restart().unwrap();

    let online = connect().await;
    assert_eq!(
        online
            .watermark("repo", &view.name, view.generation)
            .await
            .unwrap(),
        Some(first_end),
        "the failed run left the watermark"
    );
    let runs = materialize(
        &job(online.clone()),
        &views,
        Range::Incremental { end_ns: END_NS + 1 },
        &quiver_materializer::Quiet,
    )
    .await
    .unwrap();
    assert_eq!(runs[0].start.as_deref(), Some("2026-01-01T23:30:00Z"));
    assert_eq!(
        online
            .watermark("repo", &view.name, view.generation)
            .await
            .unwrap(),
        Some(END_NS + 1)
    );
    assert_matches_oracle(online.as_ref(), &version, &oracle(&repo, 0, END_NS + 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_holds_every_key() {
    let cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    let tmp = tempfile::tempdir().unwrap();
    let yaml = format!(
        "online_store:\n  type: redis\n  url: {}\n  cluster: true\n  cluster_nodes: [\"{}\", \"{}\"]\n",
        urls[0], urls[1], urls[2]
    );
    let repo = repo_with(tmp.path(), 500, 3, &yaml);
    let runs = json(&quiver(
        &repo,
        &["--format", "json", "materialize", "2025-12-01", END],
    ));
    assert_eq!(runs.as_array().unwrap().len(), 4, "{runs}");
    let keys: u64 = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["keys_written"].as_u64().unwrap())
        .sum();
    let (repository, version) = applied(&repo);
    let OnlineStoreConfig::Redis { .. } = &repository.config.online_store else {
        panic!("redis config")
    };
    let store = quiver_online_store::open(&repository.config.online_store, &repository.root)
        .await
        .unwrap();
    assert_matches_oracle(store.as_ref(), &version, &oracle(&repo, 0, END_NS)).await;
    let mut nodes_with_data = 0;
    let mut total = 0;
    for node in &cluster.nodes {
        let size: u64 = redis::cmd("DBSIZE")
            .query(&mut node.client().unwrap())
            .unwrap();
        nodes_with_data += usize::from(size > 0);
        total += size;
    }
    assert_eq!(nodes_with_data, 3, "keys spread over every master");
    assert_eq!(
        total,
        keys + 4,
        "every key once, plus a watermark hash per view (the aggregation view's data is older than any window: no keys)"
    );
}

#[test]
fn materialize_input_errors_are_clear() {
    let mut redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(tmp.path(), 10, 2, &redis_yaml(&redis.url()));
    let cases: &[(&[&str], i32, &str)] = &[
        (&["materialize", END, "2025-12-31"], 2, "must be before END"),
        (
            &["materialize", "yesterday", END],
            2,
            "invalid time `yesterday`",
        ),
        (
            &[
                "materialize",
                "2025-12-31",
                END,
                "--views",
                "driver_hourly_stat",
            ],
            2,
            "did you mean `driver_hourly_stats`?",
        ),
        (
            &["online", "get", "driver_hourly_stats", "--key", "driver=1"],
            2,
            "needs --key driver_id=",
        ),
        (
            &[
                "online",
                "get",
                "driver_hourly_stats",
                "--key",
                "driver_id=x",
            ],
            2,
            "not an integer",
        ),
        (
            &["verify", "--sample", "0"],
            2,
            "--sample must be at least 1",
        ),
        (
            &["verify", "--views", "driver_hourly_stat"],
            2,
            "did you mean `driver_hourly_stats`?",
        ),
        (&["verify", "--sample", "x"], 2, "invalid value 'x'"),
    ];
    for (args, code, message) in cases {
        let out = quiver(&repo, args);
        assert_eq!(
            out.status.code(),
            Some(*code),
            "{args:?}: {}",
            describe(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(message),
            "{args:?}: {}",
            describe(&out)
        );
    }
    redis.stop();
    let started = std::time::Instant::now();
    let out = quiver(&repo, &["materialize", "2025-12-31", END]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("online store unavailable"),
        "{}",
        describe(&out)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn sql_query_views_serve_their_computed_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(
        tmp.path(),
        50,
        4,
        "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
    );
    json(&quiver(
        &repo,
        &[
            "--format",
            "json",
            "materialize",
            "2025-12-31",
            "2026-01-03",
        ],
    ));
    let mut compared = 0;
    for id in 1001..1051 {
        let key = format!("driver_id={id}");
        let base = json(&quiver(
            &repo,
            &[
                "--format",
                "json",
                "online",
                "get",
                "driver_hourly_stats",
                "--key",
                &key,
            ],
        ));
        let derived = json(&quiver(
            &repo,
            &[
                "--format",
                "json",
                "online",
                "get",
                "driver_derived",
                "--key",
                &key,
            ],
        ));
        if derived["found"] != true || base["event_timestamp"] != derived["event_timestamp"] {
            continue; // the latest row was inactive: the query filtered it out
        }
        let feature = |doc: &serde_json::Value, name: &str| {
            doc["features"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == name)
                .unwrap()["value"]
                .clone()
        };
        if let (Some(rate), Some(pct)) = (
            feature(&base, "conv_rate").as_f64(),
            feature(&derived, "conv_pct").as_f64(),
        ) {
            assert!(
                (rate * 100.0 - pct).abs() < 1e-3,
                "driver {id}: {rate} vs {pct}"
            );
        }
        if let Some(city) = feature(&base, "city").as_str() {
            assert_eq!(
                feature(&derived, "city_slug"),
                city.to_lowercase(),
                "driver {id}"
            );
        }
        compared += 1;
    }
    assert!(
        compared > 20,
        "only {compared} drivers had an active latest row"
    );

    // A query that names a missing column is rejected at apply, at the query's line.
    let defs = repo.join("features/drivers.yaml");
    let yaml = std::fs::read_to_string(&defs).unwrap();
    std::fs::write(
        &defs,
        yaml.replace("lower(city) AS city_slug", "lower(cty) AS city_slug"),
    )
    .unwrap();
    let out = quiver(&repo, &["apply"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("its query fails") && stderr.contains("features/drivers.yaml:53:"),
        "{stderr}"
    );
}

/// The watermark moves only over a range contiguous with what is materialized, and never past
/// now: an explicit range after a gap (a scheduler's failed run) or into the future used to move
/// it anyway, and the skipped interval was never materialized.
#[test]
fn the_watermark_never_skips_a_gap_or_runs_ahead_of_now() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(
        tmp.path(),
        20,
        24,
        "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
    );
    let run = |args: &[&str]| {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--views", "driver_hourly_stats"]);
        json(&quiver(&repo, &all))[0].clone()
    };
    // No watermark yet and rows before START: the range is written, the watermark not set.
    let r = run(&[
        "materialize",
        "2026-01-01T18:00:00Z",
        "2026-01-01T20:00:00Z",
    ]);
    assert!(r["rows_read"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["watermark"], serde_json::Value::Null, "{r}");
    assert!(
        r["watermark_note"].as_str().unwrap().contains("not moved"),
        "{r}"
    );

    let r = run(&["materialize-incremental", "2026-01-01T12:00:00Z"]);
    assert_eq!(r["watermark"], "2026-01-01T12:00:00Z", "{r}");
    // A range starting after the watermark leaves it where it is, and says why.
    let r = run(&[
        "materialize",
        "2026-01-01T18:00:00Z",
        "2026-01-02T00:00:01Z",
    ]);
    assert_eq!(r["watermark"], "2026-01-01T12:00:00Z", "{r}");
    let note = r["watermark_note"].as_str().unwrap();
    assert!(
        note.contains("2026-01-01T12:00:00Z") && note.contains("skip"),
        "{note}"
    );
    // Values past the watermark are newer than what verify compares with: not a disagreement.
    let report = json(&quiver(
        &repo,
        &[
            "--format",
            "json",
            "verify",
            "--views",
            "driver_hourly_stats",
        ],
    ));
    assert!(report[0]["ahead"].as_u64().unwrap() > 0, "{report}");
    // So incremental still reads the gap, and the store ends up exact.
    let r = run(&["materialize-incremental", "2026-01-02T00:00:01Z"]);
    assert!(r["rows_read"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["start"], "2026-01-01T12:00:00Z", "{r}");
    let report = json(&quiver(
        &repo,
        &[
            "--format",
            "json",
            "verify",
            "--views",
            "driver_hourly_stats",
        ],
    ));
    for f in report[0]["features"].as_array().unwrap() {
        assert_eq!(f["mismatched"], 0, "{report}");
        assert_eq!(f["missing"], 0, "{report}");
    }

    // END in the future: the watermark stops at now.
    let r = run(&[
        "materialize",
        "2026-01-01T00:00:00Z",
        "2099-01-01T00:00:00Z",
    ]);
    let watermark = chrono::DateTime::parse_from_rfc3339(r["watermark"].as_str().unwrap()).unwrap();
    assert!(watermark <= chrono::Utc::now(), "{r}");
    assert!(r["watermark_note"].as_str().unwrap().contains("now"), "{r}");
    let r = run(&["materialize-incremental"]);
    let watermark = chrono::DateTime::parse_from_rfc3339(r["watermark"].as_str().unwrap()).unwrap();
    assert!(watermark <= chrono::Utc::now(), "{r}");
}

/// A run over several views that fails part-way says which view failed and which committed.
#[test]
fn a_failed_run_names_the_failing_view_and_the_committed_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with(
        tmp.path(),
        10,
        3,
        "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
    );
    // Views run in name order: customer_profile, driver_activity, then driver_derived (reads
    // this file).
    std::fs::write(repo.join("data/driver_stats.parquet"), b"PAR1 not parquet").unwrap();
    let out = quiver(&repo, &["--format", "json", "materialize-incremental", END]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    // stdout: the committed runs, in the shape of a successful run's output.
    let committed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let committed = committed.as_array().unwrap();
    assert_eq!(committed.len(), 2, "{committed:?}");
    assert_eq!(committed[0]["view"], "customer_profile");
    assert_eq!(committed[1]["view"], "driver_activity");
    assert!(committed[0]["rows_read"].as_u64().unwrap() > 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("materializing `driver_derived` failed"),
        "{err}"
    );
    assert!(
        err.contains("committed before it: `customer_profile`, `driver_activity`"),
        "{err}"
    );
    let repository = quiver_registry::Repository::open(&repo, None, &|_| None).unwrap();
    let runs = repository.store().unwrap().runs(10).unwrap();
    let viewed: Vec<&str> = runs.iter().map(|r| r.view.as_str()).collect();
    assert_eq!(viewed, ["customer_profile", "driver_activity"]);
}

/// Rows dated after now are not materialized yet: online answers are as of now, the same as
/// retrieval at `t = now` (an END in the future used to write them, served as PRESENT).
#[test]
fn rows_dated_in_the_future_wait_for_their_time() {
    let tmp = tempfile::tempdir().unwrap();
    let end = (chrono::Utc::now() + chrono::Duration::hours(3))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let repo = repo_ending(
        tmp.path(),
        20,
        8,
        "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
        &end,
    );
    let runs = json(&quiver(
        &repo,
        &[
            "--format",
            "json",
            "materialize",
            "2000-01-01T00:00:00Z",
            "2099-01-01T00:00:00Z",
            "--views",
            "driver_hourly_stats",
        ],
    ));
    assert!(
        runs[0]["watermark_note"]
            .as_str()
            .unwrap()
            .contains("END is in the future"),
        "{runs}"
    );
    let report = json(&quiver(
        &repo,
        &[
            "--format",
            "json",
            "verify",
            "--views",
            "driver_hourly_stats",
        ],
    ));
    assert_eq!(report[0]["ahead"], 0, "{report}");
    for f in report[0]["features"].as_array().unwrap() {
        assert_eq!(f["mismatched"], 0, "{report}");
        assert_eq!(f["missing"], 0, "{report}");
    }
    // A range that starts after now has nothing to materialize yet, and says why.
    let out = quiver(
        &repo,
        &[
            "materialize",
            "2098-01-01T00:00:00Z",
            "2099-01-01T00:00:00Z",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("starts after now"));
}
