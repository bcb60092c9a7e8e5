//! Windowed aggregates in point-in-time retrieval against a brute-force oracle that reads the
//! window rule of DESIGN.md literally: at `t`, the events of tiles `K - w/hop + 1 ..= K` (with
//! `K = floor(t / hop)`) whose event time is at most `t`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field as ArrowField, Float64Type, Int64Type, Schema, TimeUnit};
use futures::TryStreamExt;
use parquet::arrow::ArrowWriter;
use proptest::prelude::*;
use quiver_materializer::retrieve::{Engine, EntityInput, Options, Request, retrieve};
use quiver_registry::duration::Ttl;
use quiver_registry::{
    Aggregate, Aggregations, Entity, FeatureRef, FeatureView, Field, Function, Registry,
    ScalarType, Source, ValueType,
};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn field(name: &str, t: ScalarType) -> Field {
    Field {
        name: name.into(),
        value_type: ValueType::Scalar(t),
        description: String::new(),
    }
}

/// An event: key, event second, created second (-1 = none), an int, a float, a string.
#[derive(Debug, Clone)]
struct Event {
    key: i64,
    event: i64,
    created: i64,
    x: Option<i64>,
    f: Option<f64>,
    s: Option<String>,
}

/// The aggregates under test: (name, function, column, window in hops).
const AGGS: [(&str, Function, Option<&str>, u64); 12] = [
    ("n", Function::Count, None, 3),
    ("n_x", Function::Count, Some("x"), 2),
    ("sum_x", Function::Sum, Some("x"), 4),
    ("mean_x", Function::Mean, Some("x"), 1),
    ("min_x", Function::Min, Some("x"), 3),
    ("max_x", Function::Max, Some("x"), 5),
    ("last_x", Function::Last, Some("x"), 2),
    ("sum_f", Function::Sum, Some("f"), 3),
    ("mean_f", Function::Mean, Some("f"), 4),
    ("std_f", Function::Stddev, Some("f"), 5),
    ("max_s", Function::Max, Some("s"), 2),
    ("last_s", Function::Last, Some("s"), 1),
];

fn input(column: Option<&str>) -> Option<ScalarType> {
    match column {
        Some("x") => Some(ScalarType::Int64),
        Some("f") => Some(ScalarType::Float64),
        Some("s") => Some(ScalarType::String),
        _ => None,
    }
}

fn registry(hop: u64) -> Registry {
    let mut r = Registry {
        project: "p".into(),
        ..Default::default()
    };
    r.entities.insert(
        "thing".into(),
        Entity {
            name: "thing".into(),
            join_keys: vec![field("id", ScalarType::Int64)],
            description: String::new(),
            tags: BTreeMap::new(),
        },
    );
    r.sources.insert(
        "events".into(),
        Source {
            name: "events".into(),
            path: "events*.parquet".into(),
            timestamp_field: "ts".into(),
            created_timestamp_field: Some("created".into()),
            ..Default::default()
        },
    );
    let items: Vec<Aggregate> = AGGS
        .iter()
        .map(|(name, function, column, hops)| Aggregate {
            name: name.to_string(),
            function: *function,
            column: column.map(str::to_string),
            input: input(*column),
            window: Ttl {
                seconds: hop * hops,
            },
        })
        .collect();
    let features = items
        .iter()
        .map(|a| Field {
            name: a.name.clone(),
            value_type: a.output_type(),
            description: String::new(),
        })
        .collect();
    r.feature_views.insert(
        "act".into(),
        FeatureView {
            name: "act".into(),
            entities: vec!["thing".into()],
            source: "events".into(),
            query: None,
            features,
            ttl: Ttl::default(),
            online: true,
            aggregations: Some(Aggregations {
                hop: Ttl { seconds: hop },
                items,
            }),
            generation: 1,
            description: String::new(),
            owner: String::new(),
            tags: BTreeMap::new(),
        },
    );
    r
}

fn micros(secs: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(
        TimestampMicrosecondArray::from_iter(secs.map(|s| s.map(|s| s * 1_000_000)))
            .with_timezone("UTC"),
    )
}

fn write_batch(path: &Path, batch: &RecordBatch, group: usize) {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(group.max(1)))
        .build();
    let mut w = ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        Some(props),
    )
    .unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

fn write_events(dir: &Path, events: &[Event], files: usize, group: usize) {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        ArrowField::new("id", DataType::Int64, false),
        ArrowField::new("ts", ts.clone(), false),
        ArrowField::new("created", ts, true),
        ArrowField::new("x", DataType::Int64, true),
        ArrowField::new("f", DataType::Float64, true),
        ArrowField::new("s", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.key))),
            micros(events.iter().map(|e| Some(e.event))),
            micros(events.iter().map(|e| (e.created >= 0).then_some(e.created))),
            Arc::new(Int64Array::from_iter(events.iter().map(|e| e.x))),
            Arc::new(Float64Array::from_iter(events.iter().map(|e| e.f))),
            Arc::new(StringArray::from_iter(events.iter().map(|e| e.s.clone()))),
        ],
    )
    .unwrap();
    let per_file = events.len().div_ceil(files).max(1);
    for i in 0..files {
        let start = (i * per_file).min(events.len());
        let len = per_file.min(events.len() - start);
        write_batch(
            &dir.join(format!("events-{i}.parquet")),
            &batch.slice(start, len),
            group,
        );
    }
}

/// (key, second or null, a row id to check the order by).
type EntityRow = (i64, Option<i64>, i64);

fn write_entities(path: &Path, rows: &[EntityRow]) {
    let schema = Arc::new(Schema::new(vec![
        ArrowField::new("id", DataType::Int64, true),
        ArrowField::new(
            "event_timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        ArrowField::new("row", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            micros(rows.iter().map(|r| r.1)),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap();
    write_batch(path, &batch, 1 << 20);
}

/// What the oracle and the engine answer for one aggregate.
#[derive(Debug, Clone, PartialEq)]
enum Got {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
}

/// The window rule, literally, and each function computed plainly.
fn oracle(events: &[Event], key: i64, t: i64, hop: i64, name: &str) -> (Got, f64) {
    let (_, function, column, hops) = AGGS.iter().find(|a| a.0 == name).unwrap();
    let k = t.div_euclid(hop);
    let first = k - *hops as i64 + 1;
    let window: Vec<&Event> = events
        .iter()
        .filter(|e| e.key == key && e.event <= t && e.event.div_euclid(hop) >= first)
        .collect();
    let xs: Vec<i64> = window.iter().filter_map(|e| e.x).collect();
    let fs: Vec<f64> = window.iter().filter_map(|e| e.f).collect();
    let ss: Vec<&String> = window.iter().filter_map(|e| e.s.as_ref()).collect();
    let scale = 1.0 + fs.iter().map(|f| f.abs()).sum::<f64>();
    let got = match (function, *column) {
        (Function::Count, None) => Got::Int(window.len() as i64),
        (Function::Count, Some("x")) => Got::Int(xs.len() as i64),
        (Function::Sum, Some("x")) if !xs.is_empty() => Got::Int(xs.iter().sum()),
        (Function::Mean, Some("x")) if !xs.is_empty() => {
            Got::Float(xs.iter().sum::<i64>() as f64 / xs.len() as f64)
        }
        (Function::Min, Some("x")) => xs.iter().min().map_or(Got::Null, |v| Got::Int(*v)),
        (Function::Max, Some("x")) => xs.iter().max().map_or(Got::Null, |v| Got::Int(*v)),
        (Function::Sum, Some("f")) if !fs.is_empty() => Got::Float(fs.iter().sum()),
        (Function::Mean, Some("f")) if !fs.is_empty() => {
            Got::Float(fs.iter().sum::<f64>() / fs.len() as f64)
        }
        (Function::Stddev, Some("f")) if fs.len() >= 2 => {
            let mean = fs.iter().sum::<f64>() / fs.len() as f64;
            let ss2 = fs.iter().map(|f| (f - mean).powi(2)).sum::<f64>();
            Got::Float((ss2 / (fs.len() - 1) as f64).sqrt())
        }
        (Function::Max, Some("s")) => ss
            .iter()
            .max()
            .map_or(Got::Null, |v| Got::Text(v.to_string())),
        (Function::Last, Some(c)) => {
            // The greatest (event, created) — no created first — then the greatest value.
            let best = window.iter().max_by(|a, b| {
                let ka = (a.event, (a.created >= 0).then_some(a.created));
                let kb = (b.event, (b.created >= 0).then_some(b.created));
                ka.cmp(&kb).then_with(|| match c {
                    "x" => a.x.cmp(&b.x),
                    _ => a.s.cmp(&b.s),
                })
            });
            match (best, c) {
                (Some(e), "x") => e.x.map_or(Got::Null, Got::Int),
                (Some(e), _) => e.s.clone().map_or(Got::Null, Got::Text),
                (None, _) => Got::Null,
            }
        }
        _ => Got::Null,
    };
    (got, scale)
}

fn column(batches: &[RecordBatch], name: &str) -> Vec<Got> {
    let mut out = Vec::new();
    for b in batches {
        let c = b.column_by_name(name).unwrap();
        for i in 0..c.len() {
            out.push(if c.is_null(i) {
                Got::Null
            } else {
                match c.data_type() {
                    DataType::Int64 => Got::Int(c.as_primitive::<Int64Type>().value(i)),
                    DataType::Float64 => Got::Float(c.as_primitive::<Float64Type>().value(i)),
                    DataType::Utf8 => Got::Text(c.as_string::<i32>().value(i).to_string()),
                    other => panic!("unexpected type {other}"),
                }
            });
        }
    }
    out
}

fn event_strategy(keys: i64) -> impl Strategy<Value = Event> {
    (
        0..keys,
        -12..30i64,
        -1..3i64,
        proptest::option::weighted(0.8, -5..6i64),
        proptest::option::weighted(0.8, -1000.0..1000.0f64),
        proptest::option::weighted(0.8, "[a-c]{0,2}"),
    )
        .prop_map(|(key, event, created, x, f, s)| Event {
            key,
            event,
            created,
            x,
            f,
            s,
        })
}

/// The aggregates of every entity row, retrieved from the events under `dir`.
fn retrieve_aggs(
    dir: &Path,
    hop: u64,
    batch_rows: usize,
    partitions: usize,
    sort_back: bool,
) -> Vec<RecordBatch> {
    let input = EntityInput::open(&dir.join("entities.parquet"), None).unwrap();
    let registry = registry(hop);
    let features: Vec<FeatureRef> = AGGS
        .iter()
        .map(|a| FeatureRef {
            view: "act".into(),
            feature: a.0.into(),
        })
        .collect();
    let request = Request {
        registry: &registry,
        root: dir,
        features: &features,
        entities: &input,
        options: Options::default(),
    };
    let engine = Engine {
        partitions,
        memory_limit: 1 << 30,
        with_times: false,
        batch_rows,
        gather_limit: sort_back.then_some(0),
        key_filter_rows: quiver_materializer::retrieve::DEFAULT_KEY_FILTER_ROWS,
        cluster: None,
    };
    runtime().block_on(async {
        let r = retrieve(&request, &engine).await.unwrap();
        r.stream.try_collect::<Vec<_>>().await.unwrap()
    })
}

#[allow(clippy::too_many_arguments)]
fn check(
    dir: &Path,
    events: &[Event],
    entities: &[EntityRow],
    hop: u64,
    batch_rows: usize,
    partitions: usize,
    sort_back: bool,
) -> Result<(), TestCaseError> {
    let out = retrieve_aggs(dir, hop, batch_rows, partitions, sort_back);
    let rows = column(&out, "row");
    prop_assert_eq!(rows.len(), entities.len());
    for (name, ..) in AGGS {
        let got = column(&out, name);
        for (i, &(key, t, row)) in entities.iter().enumerate() {
            prop_assert_eq!(&rows[i], &Got::Int(row), "row {} out of order", i);
            let Some(t) = t else {
                prop_assert_eq!(&got[i], &Got::Null, "{} of a row without time", name);
                continue;
            };
            let (want, scale) = oracle(events, key, t, hop as i64, name);
            match (&got[i], &want) {
                // Floats: the same events, merged in another order (docs/online-format.md).
                (Got::Float(g), Got::Float(w)) => prop_assert!(
                    (g - w).abs() <= 1e-9 * scale,
                    "{} at row {} (key {}, t {}): got {}, want {}",
                    name,
                    i,
                    key,
                    t,
                    g,
                    w
                ),
                (g, w) => prop_assert_eq!(g, w, "{} at row {} (key {}, t {})", name, i, key, t),
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random events (before and after the epoch, on and off tile edges, ties of time), random
    /// entity rows, every function, a random hop; the engine's batches, partitions and both
    /// ways back to input order.
    #[test]
    fn aggregates_match_the_oracle(
        events in proptest::collection::vec(event_strategy(4), 0..120),
        entities in proptest::collection::vec(
            (0..5i64, proptest::option::weighted(0.95, -15..36i64), 0..1000i64), 1..30),
        hop in 1..4u64,
        files in 1..3usize,
        group in 1..40usize,
        batch_rows in 1..9usize,
        partitions in 1..5usize,
        sort_back in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_events(dir.path(), &events, files, group);
        write_entities(&dir.path().join("entities.parquet"), &entities);
        check(dir.path(), &events, &entities, hop, batch_rows, partitions, sort_back)?;
    }
}

/// One entity row over many events of its key and of others: the shape that crashed plain
/// retrieval once (a tiny entity table over a large source).
#[test]
fn one_entity_row_over_many_events() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Event> = (0..20_000)
        .map(|i| Event {
            key: i % 7,
            event: (i / 7) % 30,
            created: -1,
            x: Some(i % 11),
            f: Some((i % 13) as f64 * 0.5),
            s: Some(format!("v{}", i % 5)),
        })
        .collect();
    write_events(dir.path(), &events, 3, 1000);
    let entities = vec![(3, Some(29), 0)];
    write_entities(&dir.path().join("entities.parquet"), &entities);
    check(dir.path(), &events, &entities, 2, 8192, 2, false).unwrap();
}

/// Float sums, means and standard deviations depend on the order their terms are added in.
/// Events of one key at the same times (ties) come in whatever order the files, row groups,
/// scan partitions and key partitions deliver them; the answer must still be the same bits
/// every time (`--rebuild` promises the same bytes).
#[test]
fn float_aggregates_over_tied_events_are_the_same_bits_whatever_the_layout() {
    // Terms whose sum depends on their order: large ones cancel, small ones get absorbed.
    let terms = [
        1e16, 1.0, -1e16, 3.3, 0.1, 2.5e-3, 7e15, -7e15, 123.456, -0.2, 9.99e14, 1e-9,
    ];
    let mut events: Vec<Event> = (0..240)
        .map(|i| Event {
            key: i % 3,
            // Four distinct times per key, many events at each: ties of (event, created).
            event: 10 + (i / 3) % 4,
            created: -1,
            x: Some(i),
            f: Some(terms[(i as usize * 7) % terms.len()] * (1.0 + (i % 5) as f64)),
            s: None,
        })
        .collect();
    let entities: Vec<EntityRow> = (0..3)
        .flat_map(|k| [(k, Some(13), k), (k, Some(12), 10 + k)])
        .collect();
    let layouts: [(usize, usize, usize, usize); 5] = [
        (1, 1 << 20, 8192, 1),
        (4, 7, 1, 2),
        (2, 3, 5, 3),
        (3, 11, 8192, 2),
        (1, 5, 2, 4),
    ];
    let mut answers: Vec<Vec<(String, Vec<Option<u64>>)>> = Vec::new();
    for (n, (files, group, batch_rows, partitions)) in layouts.into_iter().enumerate() {
        // Each layout also sees the events in another order.
        events.rotate_left(37 * n + 1);
        if n % 2 == 1 {
            events.reverse();
        }
        let dir = tempfile::tempdir().unwrap();
        write_events(dir.path(), &events, files, group);
        write_entities(&dir.path().join("entities.parquet"), &entities);
        let out = retrieve_aggs(dir.path(), 2, batch_rows, partitions, n % 2 == 0);
        let floats = ["sum_f", "mean_f", "std_f"]
            .into_iter()
            .map(|name| {
                let bits = column(&out, name)
                    .into_iter()
                    .map(|g| match g {
                        Got::Float(f) => Some(f.to_bits()),
                        Got::Null => None,
                        other => panic!("{name}: {other:?}"),
                    })
                    .collect();
                (name.to_string(), bits)
            })
            .collect();
        answers.push(floats);
    }
    for (n, answer) in answers.iter().enumerate().skip(1) {
        assert_eq!(answer, &answers[0], "layout {n} differs from layout 0");
    }
}
