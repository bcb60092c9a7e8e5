//! Time-window aggregations end to end (issue 15): definitions applied by the real binary,
//! tiles materialized into the embedded store and Redis, the serving core answering at fixed
//! times (an injected clock) exactly what point-in-time retrieval computes at those times,
//! pushes of raw events interleaved with materialization, and `quiver verify`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, TimeUnit};
use futures::TryStreamExt;
use quiver_feature_server::push::{Destination, Target, WriteRequest};
use quiver_feature_server::service::{EntityValue, OnlineRequest, Selection, Status};
use quiver_feature_server::{FeatureService, Limits, Snapshot};
use quiver_materializer::retrieve::{Engine, EntityInput, Options, Request, retrieve};
use quiver_online_store::value_codec::Value;
use quiver_registry::{FeatureRef, Repository};
use quiver_tests::{RedisServer, describe, quiver};
use serde_json::json;

use crate::materialize::{json, redis_yaml};

const S: i64 = 1_000_000_000;
const HOUR: i64 = 3_600 * S;
const DRIVERS: i64 = 5;

const DEFINITIONS: &str = "
entities:
  - name: driver
    join_keys: [{name: driver_id, type: int64}]
sources:
  - name: trips
    path: data/trips
    timestamp_field: event_timestamp
    created_timestamp_field: created
push_sources:
  - name: trip_events
    batch_source: trips
    schema:
      driver_id: int64
      event_timestamp: timestamp
      created: timestamp
      fare: float64
      distance_km: float64
      passengers: int64
feature_views:
  - name: driver_activity
    entities: [driver]
    source: trip_events
    hop: 5m
    aggregations:
      - {name: trips_1h, function: count, window: 1h}
      - {name: fare_sum_1d, function: sum, column: fare, window: 1d}
      - {name: fare_mean_7d, function: mean, column: fare, window: 7d}
      - {name: dist_max_10m, function: max, column: distance_km, window: 10m}
      - {name: fare_std_1d, function: stddev, column: fare, window: 1d}
      - {name: last_fare, function: last, column: fare, window: 1d}
      - {name: passengers_sum_2h, function: sum, column: passengers, window: 2h}
  - name: driver_last_trip
    entities: [driver]
    source: trips
    ttl: 0
    features:
      - {name: fare, type: float64}
feature_services:
  - name: model_v1
    features: [driver_activity, driver_last_trip:fare]
";

const FEATURES: [&str; 7] = [
    "trips_1h",
    "fare_sum_1d",
    "fare_mean_7d",
    "dist_max_10m",
    "fare_std_1d",
    "last_fare",
    "passengers_sum_2h",
];

/// (driver, event ns, fare, distance, passengers) for the history: over eight days before
/// `end`, denser in the last hours, some events exactly on 5-minute edges, some sharing a time.
fn history(end: i64) -> Vec<(i64, i64, f64, f64, i64)> {
    let mut rows = Vec::new();
    let mut x: u64 = 7;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..3_000i64 {
        let driver = 1 + (next() % DRIVERS as u64) as i64;
        let back = if i % 3 == 0 {
            (next() % (8 * 24 * 3_600)) as i64 * S
        } else {
            (next() % (3 * 3_600)) as i64 * S
        };
        // Every 10th event on a tile edge.
        let t = if i % 10 == 0 {
            (end - back).div_euclid(300 * S) * 300 * S
        } else {
            end - back - 1
        };
        let fare = (next() % 10_000) as f64 / 100.0;
        let distance = (next() % 500) as f64 / 10.0;
        rows.push((driver, t, fare, distance, (next() % 4) as i64));
    }
    rows
}

fn micros(ns: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(
        TimestampMicrosecondArray::from_iter_values(ns.map(|n| n / 1_000)).with_timezone("UTC"),
    )
}

fn write_history(dir: &Path, rows: &[(i64, i64, f64, f64, i64)]) {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("driver_id", DataType::Int64, false),
        Field::new("event_timestamp", ts.clone(), false),
        Field::new("created", ts, true),
        Field::new("fare", DataType::Float64, true),
        Field::new("distance_km", DataType::Float64, true),
        Field::new("passengers", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            micros(rows.iter().map(|r| r.1)),
            micros(rows.iter().map(|r| r.1)),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.4))),
        ],
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("data/trips")).unwrap();
    let file = std::fs::File::create(dir.join("data/trips/part-0.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn repo(dir: &Path, online_store: &str, end: i64) -> PathBuf {
    let root = dir.join("repo");
    std::fs::create_dir_all(root.join("features")).unwrap();
    std::fs::write(
        root.join("quiver.yaml"),
        format!("project: agg\ndefinitions: [\"features/*.yaml\"]\n{online_store}"),
    )
    .unwrap();
    std::fs::write(root.join("features/defs.yaml"), DEFINITIONS).unwrap();
    write_history(&root, &history(end));
    json(&quiver(&root, &["--format", "json", "apply"]));
    root
}

fn service(root: &Path, now: i64) -> FeatureService {
    let rt = tokio::runtime::Handle::current();
    let repository = Repository::open(root, None, &|_| None).unwrap();
    let version = repository.store().unwrap().latest().unwrap().unwrap();
    let store = tokio::task::block_in_place(|| {
        rt.block_on(quiver_online_store::open(
            &repository.config.online_store,
            &repository.root,
        ))
    })
    .unwrap();
    FeatureService::new(
        Snapshot::new(version),
        store,
        None,
        Limits {
            max_entity_rows: 1000,
        },
    )
    .with_repository_root(repository.root.clone())
    .with_clock(now)
}

/// Online at `now` through the serving core: per feature, per driver.
async fn online(root: &Path, now: i64) -> Vec<Vec<(Option<Value>, Status)>> {
    let service = service(root, now);
    let answer = service
        .get_online_features(OnlineRequest {
            selection: Selection::Service("model_v1".into()),
            entities: vec![(
                "driver_id".into(),
                (1..=DRIVERS).map(EntityValue::Int).collect(),
            )],
            full_feature_names: false,
            include_view_metadata: false,
        })
        .await
        .unwrap();
    assert_eq!(answer.names[0], "driver_id");
    FEATURES
        .iter()
        .map(|f| {
            let i = answer.names.iter().position(|n| n == f).unwrap();
            let c = &answer.columns[i];
            c.values
                .iter()
                .cloned()
                .zip(c.statuses.iter().copied())
                .collect()
        })
        .collect()
}

/// Offline: point-in-time retrieval with every driver at `t`.
async fn offline(root: &Path, t: i64) -> Vec<Vec<Option<Value>>> {
    let repository = Repository::open(root, None, &|_| None).unwrap();
    let version = repository.store().unwrap().latest().unwrap().unwrap();
    let ts = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        Field::new("driver_id", DataType::Int64, false),
        Field::new("event_timestamp", ts, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(1..=DRIVERS)),
            Arc::new(
                arrow::array::TimestampNanosecondArray::from_iter_values((1..=DRIVERS).map(|_| t))
                    .with_timezone("UTC"),
            ),
        ],
    )
    .unwrap();
    let input = EntityInput::from_batches(schema, vec![batch], None, "entities").unwrap();
    let features: Vec<FeatureRef> = FEATURES
        .iter()
        .map(|f| FeatureRef {
            view: "driver_activity".into(),
            feature: f.to_string(),
        })
        .collect();
    let request = Request {
        registry: &version.registry,
        root,
        features: &features,
        entities: &input,
        options: Options::default(),
    };
    let r = retrieve(&request, &Engine::default()).await.unwrap();
    let out: Vec<RecordBatch> = r.stream.try_collect().await.unwrap();
    FEATURES
        .iter()
        .map(|f| {
            out.iter()
                .flat_map(|b| {
                    let c = b.column_by_name(f).unwrap().clone();
                    (0..c.len())
                        .map(|i| {
                            if arrow::array::Array::is_null(&c, i) {
                                return None;
                            }
                            Some(match c.data_type() {
                                DataType::Int64 => {
                                    Value::Int64(c.as_primitive::<Int64Type>().value(i))
                                }
                                _ => Value::Float64(c.as_primitive::<Float64Type>().value(i)),
                            })
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .collect()
}

/// Online = offline at `t`: integers equal, floats within the documented merge-order
/// tolerance; nulls and statuses agree.
async fn assert_agree(root: &Path, t: i64, what: &str) {
    let on = online(root, t).await;
    let off = offline(root, t).await;
    for (f, (on, off)) in FEATURES.iter().zip(on.iter().zip(&off)) {
        for (d, ((got, status), want)) in on.iter().zip(off).enumerate() {
            let ok = match (got, want) {
                (Some(Value::Float64(a)), Some(Value::Float64(b))) => {
                    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-12
                }
                _ => got == want,
            };
            assert!(
                ok,
                "{what}: {f} of driver {} at {t}: online {got:?}, offline {want:?}",
                d + 1
            );
            let expect = if want.is_some() {
                Status::Present
            } else {
                Status::NullValue
            };
            assert_eq!(*status, expect, "{what}: status of {f} of driver {}", d + 1);
        }
    }
}

fn count(on: &[Vec<(Option<Value>, Status)>], driver: i64) -> i64 {
    match &on[0][(driver - 1) as usize].0 {
        Some(Value::Int64(n)) => *n,
        other => panic!("trips_1h: {other:?}"),
    }
}

async fn push(root: &Path, now: i64, rows: &[(i64, i64, f64)]) {
    let service = service(root, now);
    let df = vec![
        (
            "driver_id".to_string(),
            rows.iter().map(|r| json!(r.0)).collect(),
        ),
        (
            "event_timestamp".to_string(),
            rows.iter().map(|r| json!(rfc3339(r.1))).collect(),
        ),
        (
            "fare".to_string(),
            rows.iter().map(|r| json!(r.2)).collect(),
        ),
        (
            "distance_km".to_string(),
            rows.iter().map(|_| json!(1.5)).collect(),
        ),
        (
            "passengers".to_string(),
            rows.iter().map(|_| json!(2)).collect(),
        ),
    ];
    service
        .write(WriteRequest {
            target: Target::PushSource("trip_events".into()),
            to: Destination::OnlineAndOffline,
            df,
        })
        .await
        .unwrap();
}

/// The watermark of the aggregation view: its last run's cutoff.
async fn cutoff_of(root: &Path) -> i64 {
    let repository = Repository::open(root, None, &|_| None).unwrap();
    let version = repository.store().unwrap().latest().unwrap().unwrap();
    let view = &version.registry.feature_views["driver_activity"];
    let store = quiver_online_store::open(&repository.config.online_store, &repository.root)
        .await
        .unwrap();
    store
        .watermark("agg", &view.name, view.generation)
        .await
        .unwrap()
        .unwrap()
}

/// `driver_activity`'s report in the JSON `quiver verify` printed (whatever its exit code).
fn activity_report(out: &std::process::Output) -> serde_json::Value {
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(out)));
    report
        .as_array()
        .and_then(|views| views.iter().find(|r| r["view"] == "driver_activity"))
        .cloned()
        .unwrap_or_else(|| panic!("no driver_activity report: {report}"))
}

fn rfc3339(ns: i64) -> String {
    quiver_materializer::materialize::rfc3339(ns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_equals_offline_at_fixed_times_with_pushes_between_runs() {
    let redis = RedisServer::start().unwrap();
    let wall = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    // The history ends an hour ago; times asked are fixed, at or after the run's cutoff.
    let end = wall.div_euclid(HOUR) * HOUR - HOUR;
    for backend in ["embedded", "redis"] {
        let tmp = tempfile::tempdir().unwrap();
        let store = match backend {
            "redis" => redis_yaml(&redis.url()),
            _ => "online_store: {type: embedded, path: .quiver/online.redb}\n".to_string(),
        };
        let root = repo(tmp.path(), &store, end);
        let run = json(&quiver(
            &root,
            &["--format", "json", "materialize-incremental"],
        ));
        assert!(run.to_string().contains("driver_activity"), "{run}");
        let cutoff = cutoff_of(&root).await;
        assert_eq!(cutoff % (300 * S), 0, "the cutoff is a tile edge");
        // Right at the cutoff, mid-tile after it, an hour and a day on (windows emptying),
        // and past the longest window (everything null, counts 0).
        for t in [
            cutoff,
            cutoff + 7 * S,
            cutoff + HOUR + 1,
            cutoff + 24 * HOUR,
            cutoff + 8 * 24 * HOUR,
        ] {
            assert_agree(&root, t, backend).await;
        }
        let now = cutoff + 30 * S;
        let before = online(&root, now).await;
        // Out of order, after the cutoff (one exactly on it): counted online at once, and
        // offline (appended to the batch source).
        push(
            &root,
            now,
            &[
                (1, cutoff + 20 * S, 10.0),
                (1, cutoff + S, 20.0),
                (2, cutoff + 25 * S, 30.0),
            ],
        )
        .await;
        push(&root, now, &[(1, cutoff, 40.0)]).await;
        let after = online(&root, now).await;
        assert_eq!(
            count(&after, 1),
            count(&before, 1) + 3,
            "{backend}: pushes count at once"
        );
        assert_eq!(count(&after, 2), count(&before, 2) + 1, "{backend}");
        assert_agree(&root, now, &format!("{backend} after pushes")).await;
        // A write in a later tile seals the pushed tile (its partials merged into suffixes); an
        // event pushed into that tile afterwards still counts; online = offline at both times.
        let later = cutoff + 400 * S;
        push(&root, later, &[(2, cutoff + 390 * S, 5.0)]).await;
        push(&root, later, &[(2, cutoff + 2 * S, 6.0)]).await;
        assert_agree(&root, later, &format!("{backend} after sealing")).await;
        assert_agree(&root, now, &format!("{backend} after sealing, earlier")).await;
        assert_eq!(
            count(&online(&root, later).await, 2),
            count(&after, 2) + 2,
            "{backend}"
        );
        // verify, by default just before the cutoff, agrees although the batch source now holds
        // events after it (the pushed ones).
        // (The plain view over the batch source is behind its pushed rows, as it should be.)
        let report = quiver(
            &root,
            &["--format", "json", "verify", "--views", "driver_activity"],
        );
        assert!(report.status.success(), "{backend}: {}", describe(&report));
        let text = String::from_utf8_lossy(&report.stdout);
        assert!(
            !text.contains("\"note\""),
            "{backend}: no note at the cutoff: {text}"
        );
        // A late event (before the cutoff) reaches the online value with the next run.
        push(&root, now, &[(3, cutoff - 60 * S, 50.0)]).await;
        assert_eq!(
            count(&online(&root, now).await, 3),
            count(&after, 3),
            "{backend}: late event not yet online"
        );
        let until = rfc3339(chrono::Utc::now().timestamp_nanos_opt().unwrap());
        json(&quiver(
            &root,
            &["--format", "json", "materialize", "2020-01-01", &until],
        ));
        assert_agree(&root, now, &format!("{backend} after the next run")).await;
        assert_eq!(
            count(&online(&root, now).await, 3),
            count(&after, 3) + 1,
            "{backend}: late event counted"
        );
        // verify compares the two at one time.
        let at = rfc3339(now);
        let report = quiver(&root, &["--format", "json", "verify", "--at", &at]);
        assert!(report.status.success(), "{}", describe(&report));
        let agg = activity_report(&report);
        assert!(agg["sampled"].as_u64().unwrap() >= 3, "{agg}");
        assert!(agg.get("note").is_none(), "{agg}");
        // Nine days before the cutoff, the 7-day window reaches before the events the last run
        // read (the cutoff minus the longest window): the report says why values may differ.
        let early = rfc3339(now - 9 * 24 * HOUR);
        let agg = activity_report(&quiver(
            &root,
            &["--format", "json", "verify", "--at", &early],
        ));
        assert!(
            agg["note"]
                .as_str()
                .is_some_and(|n| n.contains("before the last run's cutoff")),
            "{agg}"
        );
        // A pushed online-only event is skew, and verify says so.
        service(&root, now)
            .write(WriteRequest {
                target: Target::PushSource("trip_events".into()),
                to: Destination::Online,
                df: vec![
                    ("driver_id".into(), vec![json!(4)]),
                    (
                        "event_timestamp".into(),
                        vec![json!(rfc3339(cutoff + 5 * S))],
                    ),
                    ("fare".into(), vec![json!(1.0)]),
                    ("distance_km".into(), vec![json!(1.0)]),
                    ("passengers".into(), vec![json!(1)]),
                ],
            })
            .await
            .unwrap();
        let report = quiver(&root, &["--format", "json", "verify", "--at", &at]);
        assert!(
            !report.status.success(),
            "{backend}: skew must be reported: {}",
            describe(&report)
        );
        assert!(
            String::from_utf8_lossy(&report.stdout).contains("trips_1h"),
            "{}",
            describe(&report)
        );
    }
}

/// Concurrent pushes to the same entities never lose an event: every writer reads, merges and
/// compare-and-sets, and retries when another got there first — on the embedded store, Redis,
/// and a Redis Cluster (keys of one entity share a slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_lose_no_event_on_any_backend() {
    use quiver_materializer::aggregates::{Event, Update, apply};
    use quiver_online_store::tiles::Tiles;
    let redis = RedisServer::start().unwrap();
    let cluster = quiver_tests::RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    let wall = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    for backend in ["embedded", "redis", "cluster"] {
        let tmp = tempfile::tempdir().unwrap();
        let store = match backend {
            "redis" => redis_yaml(&redis.url()),
            "cluster" => format!(
                "online_store:\n  type: redis\n  url: {}\n  cluster: true\n  cluster_nodes: [\"{}\", \"{}\"]\n",
                urls[0], urls[1], urls[2]
            ),
            _ => "online_store: {type: embedded, path: .quiver/online.redb}\n".to_string(),
        };
        let root = repo(tmp.path(), &store, wall - HOUR);
        let repository = Repository::open(&root, None, &|_| None).unwrap();
        let version = repository.store().unwrap().latest().unwrap().unwrap();
        let view = version.registry.feature_views["driver_activity"].clone();
        let online = quiver_online_store::open(&repository.config.online_store, &repository.root)
            .await
            .unwrap();
        let keys: Vec<String> = (0..20)
            .map(|d| {
                quiver_online_store::key_codec::online_key(
                    &quiver_online_store::key_codec::view_prefix(
                        "agg",
                        &view.name,
                        view.generation,
                    ),
                    &format!("i{d}"),
                )
            })
            .collect();
        let (writers, rounds) = (8, 10);
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (online, view, keys) = (online.clone(), view.clone(), keys.clone());
            tasks.push(tokio::spawn(async move {
                for r in 0..rounds {
                    let updates = keys
                        .iter()
                        .map(|k| {
                            let event = Event {
                                event_ns: wall - (w * rounds + r) as i64 * S,
                                created_ns: None,
                                values: vec![
                                    None,
                                    Some(Value::Float64(1.0)),
                                    Some(Value::Float64(1.0)),
                                    Some(Value::Float64(0.5)),
                                    Some(Value::Float64(1.0)),
                                    Some(Value::Float64(1.0)),
                                    Some(Value::Int64(1)),
                                ],
                            };
                            (k.clone(), Update::Events(vec![event]))
                        })
                        .collect();
                    apply(online.as_ref(), "agg", &view, updates, false, wall)
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let aggregations = view.aggregations.as_ref().unwrap();
        for blob in online.read(&keys).await.unwrap() {
            let tiles = Tiles::decode(&blob.unwrap(), aggregations).unwrap();
            let w = tiles.window(aggregations, wall).unwrap();
            assert_eq!(
                w.values[0],
                Some(Value::Int64((writers * rounds) as i64)),
                "{backend}: trips_1h"
            );
            assert_eq!(
                w.values[6],
                Some(Value::Int64((writers * rounds) as i64)),
                "{backend}: passengers"
            );
            assert_eq!(
                tiles.seq,
                (writers * rounds) as u64,
                "{backend}: one write per push"
            );
        }
        if backend == "redis" {
            // Every value staged for a compare-and-set was moved into place or dropped.
            let client = redis::Client::open(redis.url()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let staged: Vec<String> = redis::cmd("KEYS")
                .arg("*:swap:*")
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(staged.is_empty(), "staged values left behind: {staged:?}");
            // A push onto a value whose live part (what a push rewrites) fails its checks is
            // refused, naming the key, and changes nothing (it would replace the stored events
            // by its own).
            let len: usize = redis::cmd("STRLEN")
                .arg(&keys[0])
                .query_async(&mut conn)
                .await
                .unwrap();
            let _: () = redis::cmd("SETRANGE")
                .arg(&keys[0])
                .arg(len - 6)
                .arg("Z")
                .query_async(&mut conn)
                .await
                .unwrap();
            let before: Vec<u8> = redis::cmd("GET")
                .arg(&keys[0])
                .query_async(&mut conn)
                .await
                .unwrap();
            let event = Event {
                event_ns: wall,
                created_ns: None,
                values: vec![None; 7],
            };
            let err = apply(
                online.as_ref(),
                "agg",
                &view,
                vec![(keys[0].clone(), Update::Events(vec![event]))],
                false,
                wall,
            )
            .await
            .unwrap_err()
            .to_string();
            assert!(
                err.contains(&keys[0]) && err.contains("quiver materialize"),
                "{err}"
            );
            let after: Vec<u8> = redis::cmd("GET")
                .arg(&keys[0])
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(before, after, "a refused push changes nothing");
        }
    }
}

/// A run leaves alone an entity pushed to after it began reading its source (its scan may have
/// missed those pushes' offline rows), and replaces one pushed to before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_leaves_entities_pushed_to_while_it_read_its_source() {
    use quiver_materializer::aggregates::{Event, Update, apply};
    use quiver_online_store::tiles::Tiles;
    let wall = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = "online_store: {type: embedded, path: .quiver/online.redb}\n";
    let root = repo(tmp.path(), store, wall - HOUR);
    let repository = Repository::open(&root, None, &|_| None).unwrap();
    let version = repository.store().unwrap().latest().unwrap().unwrap();
    let view = version.registry.feature_views["driver_activity"].clone();
    let aggregations = view.aggregations.clone().unwrap();
    let online = quiver_online_store::open(&repository.config.online_store, &repository.root)
        .await
        .unwrap();
    let key = quiver_online_store::key_codec::online_key(
        &quiver_online_store::key_codec::view_prefix("agg", &view.name, view.generation),
        "i1",
    );
    let event = |at: i64| Event {
        event_ns: at,
        created_ns: None,
        values: vec![
            None,
            Some(Value::Float64(1.0)),
            Some(Value::Float64(1.0)),
            Some(Value::Float64(0.5)),
            Some(Value::Float64(1.0)),
            Some(Value::Float64(1.0)),
            Some(Value::Int64(1)),
        ],
    };
    // A push at `wall` (its event a minute before), onto nothing stored.
    apply(
        online.as_ref(),
        "agg",
        &view,
        vec![(key.clone(), Update::Events(vec![event(wall - 60 * S)]))],
        false,
        wall,
    )
    .await
    .unwrap();
    let cutoff = (wall / (300 * S)) * 300 * S;
    let run = |read_from_ns: i64| Update::Batch {
        cutoff_ns: cutoff,
        tiles: std::collections::BTreeMap::new(),
        read_from_ns,
    };
    // Applies a run that began reading at `read_from_ns`; what it did and the value after.
    let run_from = async |read_from_ns: i64| {
        let applied = apply(
            online.as_ref(),
            "agg",
            &view,
            vec![(key.clone(), run(read_from_ns))],
            false,
            wall,
        )
        .await
        .unwrap();
        let blob = online.read(std::slice::from_ref(&key)).await.unwrap()[0].clone();
        (
            applied,
            Tiles::decode(&blob.unwrap(), &aggregations).unwrap(),
        )
    };
    // A run that began reading before the push: the value stays as the push left it.
    let (applied, stored) = run_from(wall - S).await;
    assert_eq!((applied.pushed_during, applied.written), (1, 0));
    assert!(
        stored
            .pushed_at_ns
            .is_some_and(|p| p >= wall && p < wall + S),
        "{:?}",
        stored.pushed_at_ns
    );
    assert_eq!(
        stored.window(&aggregations, wall).unwrap().values[0],
        Some(Value::Int64(1))
    );
    // One that began after it replaces the tiles before its cutoff with its own (none here).
    let (applied, stored) = run_from(wall + S).await;
    assert_eq!((applied.pushed_during, applied.written), (0, 1));
    assert_eq!(stored.cutoff_ns, cutoff);
}
