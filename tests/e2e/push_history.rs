//! Pushes that reach the history (issue 12): offline pushes as new files of the batch source,
//! `quiver push` from files, pushes racing a materialization, and a push failing between its
//! offline and online writes.

use std::path::Path;

use quiver_tests::{RedisServer, quiver};
use serde_json::{Value as J, json};

use crate::materialize::json;
use crate::push::{push_demo, push_demo_on};
use crate::serve::{http, start, wait_ready};

/// Offline pushes (`to: offline`, `online_and_offline`) become new Parquet files of the batch
/// source — whole, fsynced, renamed — that retrieval and materialization then read; a batch source that is
/// one file, or a push source without one, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_pushes_become_files_that_materialization_reads() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    push_demo(repo, &redis, "data/driver_stats/");
    let server = start(repo).await;
    wait_ready(server.http).await;
    let push = |to: &str, driver: i64, rate: f64| {
        json!({"push_source_name": "driver_events", "to": to, "df": {
            "driver_id": [driver], "event_timestamp": ["2026-11-30T07:00:00Z"],
            "conv_rate": [rate], "trips": [driver], "label": [format!("d{driver}")]}})
        .to_string()
    };
    let (status, answer) = http(server.http, "POST", "/push", &push("offline", 2001, 0.5)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["views"], json!([]), "nothing online: {answer}");
    let (status, answer) = http(
        server.http,
        "POST",
        "/push",
        &push("online_and_offline", 2002, 0.25),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["stored"], 1, "{answer}");
    let mut files: Vec<String> = std::fs::read_dir(repo.join("data/driver_stats"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        3,
        "seed + two pushes, no temporary file left: {files:?}"
    );
    assert!(
        files.iter().filter(|f| f.starts_with("push-")).count() == 2,
        "{files:?}"
    );
    let body = |drivers: &[i64]| {
        json!({"features": ["driver_live:conv_rate"], "entities": {"driver_id": drivers}})
            .to_string()
    };
    let (_, got) = http(
        server.http,
        "POST",
        "/get-online-features",
        &body(&[2001, 2002]),
    )
    .await;
    assert_eq!(
        got["results"][1]["statuses"],
        json!(["NOT_FOUND", "PRESENT"]),
        "{got}"
    );

    // Retrieval reads the pushed files with the rest of the source: each entity row gets the
    // pushed value as of its time (an hour after the push), and nothing before it.
    std::fs::write(
        repo.join("labels.csv"),
        "driver_id,event_timestamp\n2001,2026-11-30T08:00:00Z\n2002,2026-11-30T08:00:00Z\n2001,2026-11-30T06:30:00Z\n",
    )
    .unwrap();
    json(&quiver(
        repo,
        &[
            "--format",
            "json",
            "retrieve",
            "--entities",
            "labels.csv",
            "--features",
            "driver_live:trips",
            "--output",
            "train.parquet",
            "--no-manifest",
        ],
    ));
    let file = std::fs::File::open(repo.join("train.parquet")).unwrap();
    let trips: Vec<Option<i64>> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                let column = b.column_by_name("trips").unwrap().clone();
                let column =
                    arrow::compute::cast(&column, &arrow::datatypes::DataType::Int64).unwrap();
                let column = column
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .unwrap()
                    .clone();
                column.iter().collect::<Vec<_>>()
            })
            .collect();
    assert_eq!(
        trips,
        [Some(2001), Some(2002), None],
        "pushed rows as of each row's time"
    );

    // Materialization reads the pushed files with the rest of the source.
    json(&quiver(
        repo,
        &[
            "--format",
            "json",
            "materialize",
            "2026-11-29T00:00:00Z",
            "2026-11-30T08:00:00Z",
        ],
    ));
    let (_, got) = http(
        server.http,
        "POST",
        "/get-online-features",
        &body(&[1, 2001, 2002]),
    )
    .await;
    assert_eq!(
        got["results"][1]["statuses"],
        json!(["PRESENT", "PRESENT", "PRESENT"]),
        "{got}"
    );
    assert_eq!(
        got["results"][1]["values"],
        json!([0.1f32 as f64, 0.5, 0.25]),
        "{got}"
    );
    // The online values of the `online_and_offline` push (receive time as created, in the
    // files' microseconds) are the ones the history gives: verify agrees.
    let verified = quiver(repo, &["--format", "json", "verify"]);
    assert!(
        verified.status.success(),
        "{}",
        quiver_tests::describe(&verified)
    );
    server.stop().await;

    // A batch source that is one file cannot take new files.
    let other = tempfile::tempdir().unwrap();
    push_demo(other.path(), &redis, "data/driver_stats.parquet");
    let server = start(other.path()).await;
    wait_ready(server.http).await;
    let (status, answer) = http(server.http, "POST", "/push", &push("offline", 2001, 0.5)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("reads one file"), "{answer}");
    let (status, answer) = http(
        server.http,
        "POST",
        "/push",
        &push("online_and_offline", 2003, 0.5),
    )
    .await;
    assert_eq!(status, 400, "nothing written online either: {answer}");
    let (_, got) = http(server.http, "POST", "/get-online-features", &body(&[2003])).await;
    assert_eq!(got["results"][1]["statuses"], json!(["NOT_FOUND"]), "{got}");
    server.stop().await;
}

/// `quiver push SOURCE FILE`: JSON lines and CSV pushed straight to the stores, through the
/// same checks; a bad row fails the command (exit 2) naming it, with what was pushed before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pushes_files_online_and_offline() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    push_demo(repo, &redis, "data/driver_stats/");
    let lines = [
        r#"{"driver_id": 3001, "event_timestamp": "2026-11-30T07:00:00Z", "conv_rate": 0.5, "trips": 1, "label": "a"}"#,
        r#"{"driver_id": 3002, "event_timestamp": "2026-11-30T07:00:00Z", "conv_rate": 0.25, "trips": 2, "label": "b"}"#,
        r#"{"driver_id": 3003, "event_timestamp": "2026-11-30T07:00:00Z", "conv_rate": 0.75, "trips": 3, "label": null}"#,
    ];
    std::fs::write(repo.join("rows.jsonl"), lines.join("\n")).unwrap();
    let out = json(&quiver(
        repo,
        &[
            "--format",
            "json",
            "push",
            "driver_events",
            "rows.jsonl",
            "--to",
            "online_and_offline",
            "--batch-rows",
            "2",
        ],
    ));
    assert_eq!(
        (
            out["rows"].clone(),
            out["writes"].clone(),
            out["stored"].clone()
        ),
        (json!(3), json!(2), json!(3)),
        "{out}"
    );
    let pushed_files = std::fs::read_dir(repo.join("data/driver_stats"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("push-")
        })
        .count();
    assert_eq!(pushed_files, 2, "one file per write");
    let got = json(&quiver(
        repo,
        &[
            "--format",
            "json",
            "online",
            "get",
            "driver_live",
            "--key",
            "driver_id=3002",
        ],
    ));
    assert!(got.to_string().contains("0.25"), "{got}");

    std::fs::write(
        repo.join("rows.csv"),
        "driver_id,event_timestamp,conv_rate,trips,label\n3004,2026-11-30T08:00:00Z,0.5,4,x\n3005,2026-11-30T08:00:00Z,abc,5,y\n",
    )
    .unwrap();
    let out = quiver(repo, &["push", "driver_events", "rows.csv"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        quiver_tests::describe(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("conv_rate") && err.contains("0 rows pushed before this"),
        "{err}"
    );
    let got = json(&quiver(
        repo,
        &[
            "--format",
            "json",
            "online",
            "get",
            "driver_live",
            "--key",
            "driver_id=3004",
        ],
    ));
    assert!(
        !got.to_string().contains("\"x\""),
        "nothing of the failed write: {got}"
    );
}

/// A small deterministic generator (SplitMix64), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One row of the oracle: entity, event and created time (ns), and a unique id (stored as
/// `trips`, so the served value names the row that won).
#[derive(Clone, Copy, Debug)]
struct Row {
    driver: i64,
    event: i64,
    created: i64,
    id: i64,
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// The batch source's history as one Parquet file of `rows`.
fn write_history(path: &Path, rows: &[Row]) {
    use arrow::array::{Float32Array, Int64Array, StringArray, TimestampNanosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;
    let ts = || DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("driver_id", DataType::Int64, false),
        Field::new("event_timestamp", ts(), false),
        Field::new("created", ts(), true),
        Field::new("conv_rate", DataType::Float32, true),
        Field::new("trips", DataType::Int64, true),
        Field::new("label", DataType::Utf8, true),
    ]));
    let times = |f: fn(&Row) -> i64| {
        Arc::new(
            TimestampNanosecondArray::from(rows.iter().map(f).collect::<Vec<_>>())
                .with_timezone("UTC"),
        )
    };
    let batch = arrow::record_batch::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.driver).collect::<Vec<_>>(),
            )),
            times(|r| r.event),
            times(|r| r.created),
            Arc::new(Float32Array::from(vec![0.5; rows.len()])),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.id).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(vec!["batch"; rows.len()])),
        ],
    )
    .unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// The monotonic rule under concurrency (issue 12): pushes from four clients and a
/// materialization of the same entities, interleaved however the machine runs them; every
/// entity ends with the row of greatest `(event_ts, created_ts)` among all pushed and batch rows.
/// Event times are drawn from a few values, so ties on event time are common and the created
/// time decides. Three seeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_and_materialization_keep_the_greatest_row() {
    let redis = RedisServer::start().unwrap();
    for seed in [1u64, 2, 3] {
        let mut rng = Rng(seed);
        let t0 = 1_796_018_400_000_000_000i64; // 2026-11-30T06:00:00Z
        let drivers = 12i64;
        let mut next_id = 0i64;
        let mut row = |rng: &mut Rng| {
            next_id += 1;
            Row {
                driver: 1 + rng.below(drivers as u64) as i64,
                event: t0 + rng.below(4) as i64 * 60_000_000_000,
                created: t0 + next_id * 1_000 + rng.below(500) as i64 * 1_000_000,
                id: next_id,
            }
        };
        let history: Vec<Row> = (0..200).map(|_| row(&mut rng)).collect();
        let clients: Vec<Vec<Vec<Row>>> = (0..4)
            .map(|_| {
                (0..25)
                    .map(|_| (0..1 + rng.below(4)).map(|_| row(&mut rng)).collect())
                    .collect()
            })
            .collect();

        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path();
        let () = redis::cmd("FLUSHALL")
            .query(&mut redis.client().unwrap())
            .unwrap();
        push_demo(repo, &redis, "data/driver_stats/");
        std::fs::remove_file(repo.join("data/driver_stats/seed.parquet")).unwrap();
        write_history(&repo.join("data/driver_stats/history.parquet"), &history);
        let server = start(repo).await;
        wait_ready(server.http).await;

        let materialize = tokio::process::Command::new(quiver_tests::quiver_bin())
            .current_dir(repo)
            .args([
                "materialize",
                "2026-11-30T00:00:00Z",
                "2026-11-30T12:00:00Z",
            ])
            .output();
        let pushes = clients.iter().map(|requests| {
            let addr = server.http;
            async move {
                for rows in requests {
                    let body = json!({"push_source_name": "driver_events", "df": {
                        "driver_id": rows.iter().map(|r| r.driver).collect::<Vec<_>>(),
                        "event_timestamp": rows.iter().map(|r| rfc3339(r.event)).collect::<Vec<_>>(),
                        "created": rows.iter().map(|r| rfc3339(r.created)).collect::<Vec<_>>(),
                        "conv_rate": vec![0.25; rows.len()],
                        "trips": rows.iter().map(|r| r.id).collect::<Vec<_>>(),
                        "label": vec!["pushed"; rows.len()],
                    }});
                    let (status, answer) = http(addr, "POST", "/push", &body.to_string()).await;
                    assert_eq!(status, 200, "{answer}");
                }
            }
        });
        let (done, ()) = tokio::join!(materialize, async {
            futures::future::join_all(pushes).await;
        });
        let done = done.unwrap();
        assert!(done.status.success(), "{}", quiver_tests::describe(&done));

        let everything = history.iter().chain(clients.iter().flatten().flatten());
        let mut want = std::collections::BTreeMap::new();
        for r in everything {
            let best = want.entry(r.driver).or_insert(*r);
            if (r.event, r.created) > (best.event, best.created) {
                *best = *r;
            }
        }
        let ids: Vec<i64> = (1..=drivers).collect();
        let body = json!({"features": ["driver_live:trips"], "entities": {"driver_id": ids}});
        let (_, got) = http(
            server.http,
            "POST",
            "/get-online-features",
            &body.to_string(),
        )
        .await;
        let served: Vec<J> = got["results"][1]["values"].as_array().unwrap().clone();
        for (i, driver) in (1..=drivers).enumerate() {
            let expected = want.get(&driver).map_or(J::Null, |r| json!(r.id));
            assert_eq!(
                served[i],
                expected,
                "seed {seed}, driver {driver}: {:?}",
                want.get(&driver)
            );
        }
        server.stop().await;
    }
}

/// A push whose offline file was written but whose online write failed (Redis killed between
/// the two) answers 503; retried once Redis is back, it leaves everything consistent: the
/// online value, a history whose duplicate row is identical, and `verify` agreeing after a
/// materialization.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_failing_between_offline_and_online_is_made_whole_by_its_retry() {
    let mut redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    push_demo(repo, &redis, "data/driver_stats/");
    let server = start(repo).await;
    wait_ready(server.http).await;
    let body = json!({"push_source_name": "driver_events", "to": "online_and_offline", "df": {
        "driver_id": [4001], "event_timestamp": ["2026-11-30T07:00:00Z"],
        "created": ["2026-11-30T07:00:01Z"], "conv_rate": [0.5], "trips": [41], "label": ["x"]}})
    .to_string();
    redis.stop();
    let (status, answer) = http(server.http, "POST", "/push", &body).await;
    assert_eq!(status, 503, "{answer}");
    let files = || {
        std::fs::read_dir(repo.join("data/driver_stats"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("push-")
            })
            .count()
    };
    assert_eq!(files(), 1, "the history was written first");
    redis.restart().unwrap();
    wait_ready(server.http).await;
    let (status, answer) = http(server.http, "POST", "/push", &body).await;
    assert_eq!(status, 200, "the retry: {answer}");
    assert_eq!(files(), 2, "the retry appends the same row again");
    let read =
        json!({"features": ["driver_live:trips"], "entities": {"driver_id": [4001]}}).to_string();
    let (_, got) = http(server.http, "POST", "/get-online-features", &read).await;
    assert_eq!(got["results"][1]["values"], json!([41]), "{got}");
    json(&quiver(
        repo,
        &[
            "--format",
            "json",
            "materialize",
            "2026-11-30T00:00:00Z",
            "2026-11-30T12:00:00Z",
        ],
    ));
    let (_, got) = http(server.http, "POST", "/get-online-features", &read).await;
    assert_eq!(got["results"][1]["values"], json!([41]), "{got}");
    let verified = quiver(repo, &["--format", "json", "verify"]);
    assert!(
        verified.status.success(),
        "{}",
        quiver_tests::describe(&verified)
    );
    server.stop().await;
}

/// `quiver push --server URL`: the same file through a running server's `POST /push` (its
/// token, its checks); a refused chunk fails the command with the server's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pushes_through_a_server() {
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    push_demo(repo, &redis, "data/driver_stats/");
    let server = start(repo).await;
    wait_ready(server.http).await;
    let lines = [
        r#"{"driver_id": 6001, "event_timestamp": "2026-11-30T07:00:00Z", "conv_rate": 0.5, "trips": 61, "label": "a"}"#,
        r#"{"driver_id": 6002, "event_timestamp": "2026-11-30T07:00:00Z", "conv_rate": 0.25, "trips": 62, "label": "b"}"#,
    ];
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("rows.jsonl"), lines.join("\n")).unwrap();
    let url = format!("http://{}", server.http);
    // No repository needed where the file is.
    let cli = |source: &'static str| {
        let url = url.clone();
        let dir = elsewhere.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            quiver(
                &dir,
                &[
                    "--format",
                    "json",
                    "push",
                    source,
                    "rows.jsonl",
                    "--server",
                    &url,
                ],
            )
        })
    };
    let out = json(&cli("driver_events").await.unwrap());
    assert_eq!(
        (out["rows"].clone(), out["stored"].clone()),
        (json!(2), json!(2)),
        "{out}"
    );
    let read = json!({"features": ["driver_live:trips"], "entities": {"driver_id": [6001, 6002]}})
        .to_string();
    let (_, got) = http(server.http, "POST", "/get-online-features", &read).await;
    assert_eq!(got["results"][1]["values"], json!([61, 62]), "{got}");
    let out = cli("driver_event").await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        quiver_tests::describe(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown push source `driver_event`"), "{err}");
    server.stop().await;
}

/// The embedded store takes pushes the same way (its own write-if-newer): `quiver push` into a
/// repository whose online store is embedded, a later and an older row, read back.
#[test]
fn pushes_write_the_embedded_store_too() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    push_demo_on(
        repo,
        "online_store:\n  type: embedded\n  path: .quiver/online.redb\n",
        "data/driver_stats/",
    );
    let rows = |time: &str, trips: i64| {
        format!(
            r#"{{"driver_id": 7001, "event_timestamp": "{time}", "conv_rate": 0.5, "trips": {trips}, "label": "e"}}"#
        )
    };
    std::fs::write(repo.join("new.jsonl"), rows("2026-11-30T08:00:00Z", 71)).unwrap();
    std::fs::write(repo.join("old.jsonl"), rows("2026-11-30T07:00:00Z", 70)).unwrap();
    let out = json(&quiver(
        repo,
        &["--format", "json", "push", "driver_events", "new.jsonl"],
    ));
    assert_eq!(out["stored"], 1, "{out}");
    let out = json(&quiver(
        repo,
        &["--format", "json", "push", "driver_events", "old.jsonl"],
    ));
    assert_eq!(
        out["stored"], 0,
        "an older row does not replace a newer one: {out}"
    );
    let got = json(&quiver(
        repo,
        &[
            "--format",
            "json",
            "online",
            "get",
            "driver_live",
            "--key",
            "driver_id=7001",
        ],
    ));
    let trips = got["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "trips")
        .unwrap()["value"]
        .clone();
    assert_eq!(trips, json!(71), "{got}");
}

/// An offline push carries every column of the batch source's files: a column the push source
/// does not declare is refused (filling it with nulls would change what other views over the
/// source read), and nothing is written; a null created time is the receive time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_pushes_never_fill_undeclared_columns() {
    use arrow::array::{Float32Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;
    let redis = RedisServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    push_demo(repo, &redis, "data/driver_stats/");
    let server = start(repo).await;
    wait_ready(server.http).await;
    let push = |created: J| {
        json!({"push_source_name": "driver_events", "to": "online_and_offline", "df": {
            "driver_id": [8001], "event_timestamp": ["2026-11-30T07:00:00Z"], "created": [created],
            "conv_rate": [0.5], "trips": [81], "label": ["z"]}})
        .to_string()
    };
    let (status, answer) = http(server.http, "POST", "/push", &push(J::Null)).await;
    assert_eq!(status, 200, "a null created is the receive time: {answer}");

    // Another file of the source, first in name order, with a column the push does not carry.
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("driver_id", DataType::Int64, false),
        Field::new("event_timestamp", ts(), false),
        Field::new("created", ts(), true),
        Field::new("conv_rate", DataType::Float32, true),
        Field::new("trips", DataType::Int64, true),
        Field::new("label", DataType::Utf8, true),
        Field::new("bonus", DataType::Int64, true),
    ]));
    let t0 = 1_796_018_400_000_000i64;
    let batch = arrow::record_batch::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![2])),
            Arc::new(TimestampMicrosecondArray::from(vec![t0]).with_timezone("UTC")),
            Arc::new(TimestampMicrosecondArray::from(vec![t0]).with_timezone("UTC")),
            Arc::new(Float32Array::from(vec![0.2])),
            Arc::new(Int64Array::from(vec![2])),
            Arc::new(StringArray::from(vec!["b"])),
            Arc::new(Int64Array::from(vec![7])),
        ],
    )
    .unwrap();
    let file = std::fs::File::create(repo.join("data/driver_stats/a-extra.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let files = || {
        std::fs::read_dir(repo.join("data/driver_stats"))
            .unwrap()
            .count()
    };
    let before = files();
    let late = push(json!("2026-11-30T07:00:05Z")).replace("8001", "8002");
    let (status, answer) = http(server.http, "POST", "/push", &late).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("column `bonus`"), "{answer}");
    assert_eq!(files(), before, "no file written");
    let read =
        json!({"features": ["driver_live:trips"], "entities": {"driver_id": [8002]}}).to_string();
    let (_, got) = http(server.http, "POST", "/get-online-features", &read).await;
    assert_eq!(
        got["results"][1]["statuses"],
        json!(["NOT_FOUND"]),
        "nothing online: {got}"
    );
    server.stop().await;
}
