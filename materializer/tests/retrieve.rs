//! Point-in-time retrieval against a brute-force oracle written plainly here.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field as ArrowField, Int64Type, Schema, TimeUnit};
use futures::TryStreamExt;
use parquet::arrow::ArrowWriter;
use proptest::prelude::*;
use quiver_materializer::retrieve::{Engine, EntityInput, Options, Request, retrieve};
use quiver_online_store::value_codec::{ValueEncoder, should_replace};
use quiver_registry::duration::Ttl;
use quiver_registry::{
    Entity, FeatureRef, FeatureView, Field, Registry, ScalarType, Source, ValueType,
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

/// Two views: `a` keyed by int `id` (features `v` int64, `w` int32), `b` keyed by string
/// `name` (feature `v` int64). Source times in microseconds; created optional.
fn registry(ttl_a: u64, ttl_b: u64) -> Registry {
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
    r.entities.insert(
        "person".into(),
        Entity {
            name: "person".into(),
            join_keys: vec![field("name", ScalarType::String)],
            description: String::new(),
            tags: BTreeMap::new(),
        },
    );
    // Globs: a view's rows may be one file (`a.parquet`) or several (`a-0.parquet`, …).
    for (s, path) in [("sa", "a*.parquet"), ("sb", "b*.parquet")] {
        r.sources.insert(
            s.into(),
            Source {
                name: s.into(),
                path: path.into(),
                timestamp_field: "ts".into(),
                created_timestamp_field: Some("created".into()),
                field_mapping: BTreeMap::new(),
                description: String::new(),
                tags: BTreeMap::new(),
                ..Default::default()
            },
        );
    }
    let view =
        |name: &str, entity: &str, source: &str, ttl: u64, features: Vec<Field>| FeatureView {
            name: name.into(),
            entities: vec![entity.into()],
            source: source.into(),
            query: None,
            features,
            ttl: Ttl { seconds: ttl },
            online: true,
            aggregations: None,
            generation: 1,
            description: String::new(),
            owner: String::new(),
            tags: BTreeMap::new(),
        };
    r.feature_views.insert(
        "a".into(),
        view(
            "a",
            "thing",
            "sa",
            ttl_a,
            vec![field("v", ScalarType::Int64), field("w", ScalarType::Int32)],
        ),
    );
    r.feature_views.insert(
        "b".into(),
        view(
            "b",
            "person",
            "sb",
            ttl_b,
            vec![field("u", ScalarType::Int64)],
        ),
    );
    r
}

const S: i64 = 1_000_000_000;

/// A view row: key, event second, created second (-1 = null), values.
#[derive(Debug, Clone)]
struct Row {
    key: i64,
    event: i64,
    created: i64,
    v: Option<i64>,
    w: i32,
}

fn write(path: &Path, batch: &RecordBatch) {
    write_groups(path, batch, None);
}

/// Writes `batch` as one Parquet file of row groups of at most `group` rows.
fn write_groups(path: &Path, batch: &RecordBatch, group: Option<usize>) {
    let file = std::fs::File::create(path).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(group)
        .build();
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

fn micros(secs: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(
        TimestampMicrosecondArray::from_iter(secs.map(|s| s.map(|s| s * 1_000_000)))
            .with_timezone("UTC"),
    )
}

fn write_view(path: &Path, rows: &[Row], string_keys: bool) {
    write(path, &view_batch(rows, string_keys));
}

/// Writes a view's rows as `files` files `{stem}-{i}.parquet` (consecutive slices, so a key's
/// history may straddle files), each of row groups of at most `group` rows.
fn write_view_parts(
    dir: &Path,
    stem: &str,
    rows: &[Row],
    string_keys: bool,
    files: usize,
    group: usize,
) {
    let batch = view_batch(rows, string_keys);
    let per_file = rows.len().div_ceil(files).max(1);
    for i in 0..files {
        let start = (i * per_file).min(rows.len());
        let len = per_file.min(rows.len() - start);
        write_groups(
            &dir.join(format!("{stem}-{i}.parquet")),
            &batch.slice(start, len),
            Some(group),
        );
    }
}

fn view_batch(rows: &[Row], string_keys: bool) -> RecordBatch {
    let key: ArrayRef = if string_keys {
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| format!("n{}", r.key)),
        ))
    } else {
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.key)))
    };
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let key_name = if string_keys { "name" } else { "id" };
    let schema = Arc::new(Schema::new(vec![
        ArrowField::new(key_name, key.data_type().clone(), false),
        ArrowField::new("ts", ts.clone(), false),
        ArrowField::new("created", ts, true),
        ArrowField::new(if string_keys { "u" } else { "v" }, DataType::Int64, true),
        ArrowField::new("w", DataType::Int32, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            key,
            micros(rows.iter().map(|r| Some(r.event))),
            micros(rows.iter().map(|r| (r.created >= 0).then_some(r.created))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.v))),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.w))),
        ],
    )
    .unwrap()
}

/// The blob the online store would hold for a row: the tie-break of last resort.
fn blob(r: &Row, with_w: bool) -> Vec<u8> {
    let created = (r.created >= 0).then_some(r.created * S);
    let mut e = ValueEncoder::new(r.event * S, created, if with_w { 2 } else { 1 });
    match r.v {
        Some(v) => e.i64(v),
        None => e.null(),
    }
    if with_w {
        e.i32(r.w);
    }
    e.finish()
}

/// Plainly: the candidates of DESIGN.md, the greatest (event, created), then the greatest blob.
fn oracle(rows: &[Row], key: i64, t: i64, ttl: i64, cutoff: bool, with_w: bool) -> Option<&Row> {
    let mut best: Option<&Row> = None;
    for r in rows {
        let created = (r.created >= 0).then_some(r.created);
        let ok = r.key == key
            && r.event <= t
            && (ttl == 0 || r.event >= t - ttl)
            && (!cutoff || created.is_none_or(|c| c <= t));
        if !ok {
            continue;
        }
        best = match best {
            None => Some(r),
            Some(b) => {
                let (ko, kb) = (
                    (r.event, created.unwrap_or(i64::MIN)),
                    (b.event, if b.created >= 0 { b.created } else { i64::MIN }),
                );
                if ko > kb || (ko == kb && should_replace(&blob(r, with_w), &blob(b, with_w))) {
                    Some(r)
                } else {
                    Some(b)
                }
            }
        };
    }
    best
}

/// (id, name key, second, extra) entity rows; `None` time = a null timestamp.
type EntityRow = (i64, i64, Option<i64>, i64);

fn write_entities(path: &Path, rows: &[EntityRow]) {
    let schema = Arc::new(Schema::new(vec![
        ArrowField::new("id", DataType::Int32, true),
        ArrowField::new("name", DataType::Utf8, true),
        ArrowField::new(
            "event_timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
        ArrowField::new("extra", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.0 as i32),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| format!("n{}", r.1)),
            )),
            Arc::new(TimestampMillisecondArray::from_iter(
                rows.iter().map(|r| r.2.map(|s| s * 1000)),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
        ],
    )
    .unwrap();
    write(path, &batch);
}

fn run(
    dir: &Path,
    registry: &Registry,
    features: &[FeatureRef],
    options: Options,
    memory_limit: usize,
) -> Vec<RecordBatch> {
    let engine = Engine {
        partitions: 2,
        memory_limit,
        with_times: false,
        batch_rows: 8192,
        gather_limit: None,
        key_filter_rows: quiver_materializer::retrieve::DEFAULT_KEY_FILTER_ROWS,
        cluster: None,
    };
    run_on(dir, registry, features, options, engine)
}

fn run_on(
    dir: &Path,
    registry: &Registry,
    features: &[FeatureRef],
    options: Options,
    engine: Engine,
) -> Vec<RecordBatch> {
    let input = EntityInput::open(&dir.join("entities.parquet"), None).unwrap();
    let request = Request {
        registry,
        root: dir,
        features,
        entities: &input,
        options,
    };
    runtime().block_on(async {
        let r = retrieve(&request, &engine).await.unwrap();
        r.stream.try_collect::<Vec<_>>().await.unwrap()
    })
}

fn refs(list: &[(&str, &str)]) -> Vec<FeatureRef> {
    list.iter()
        .map(|(v, f)| FeatureRef {
            view: v.to_string(),
            feature: f.to_string(),
        })
        .collect()
}

fn column_i64(batches: &[RecordBatch], name: &str) -> Vec<Option<i64>> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name(name).unwrap();
            let c = arrow::compute::cast(c, &DataType::Int64).unwrap();
            let c = c.as_primitive::<Int64Type>();
            (0..c.len())
                .map(|i| (!c.is_null(i)).then(|| c.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn row_strategy(keys: i64) -> impl Strategy<Value = Row> {
    (
        0..keys,
        0..8i64,
        -1..3i64,
        proptest::option::of(0..3i64),
        0..3i32,
    )
        .prop_map(|(key, event, created, v, w)| Row {
            key,
            event,
            created,
            v,
            w,
        })
}

/// Every entity row against the oracle: `extra` in input order, `a:v`, `a:w`, `b:u`.
#[allow(clippy::too_many_arguments)]
fn check(
    out: &[RecordBatch],
    a_rows: &[Row],
    b_rows: &[Row],
    entities: &[EntityRow],
    ttl_a: u64,
    ttl_b: u64,
    options: Options,
) -> Result<(), TestCaseError> {
    let full = options.full_feature_names;
    let cutoff = options.created_cutoff;
    let name = |v: &str, f: &str| {
        if full {
            format!("{v}__{f}")
        } else {
            f.to_string()
        }
    };
    let got_v = column_i64(out, &name("a", "v"));
    let got_w = column_i64(out, &name("a", "w"));
    let got_u = column_i64(out, &name("b", "u"));
    let extra = column_i64(out, "extra");
    prop_assert_eq!(got_v.len(), entities.len());
    for (i, &(id, nk, t, x)) in entities.iter().enumerate() {
        prop_assert_eq!(extra[i], Some(x), "row {} out of order", i);
        let a = t.and_then(|t| oracle(a_rows, id, t, ttl_a as i64, cutoff, true));
        let b = t.and_then(|t| oracle(b_rows, nk, t, ttl_b as i64, cutoff, false));
        prop_assert_eq!(got_v[i], a.and_then(|r| r.v), "a:v of row {}", i);
        prop_assert_eq!(got_w[i], a.map(|r| i64::from(r.w)), "a:w of row {}", i);
        prop_assert_eq!(got_u[i], b.and_then(|r| r.v), "b:u of row {}", i);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn retrieval_matches_the_oracle(
        a_rows in proptest::collection::vec(row_strategy(5), 0..40),
        b_rows in proptest::collection::vec(row_strategy(4), 0..20),
        entities in proptest::collection::vec(
            (0..7i64, 0..6i64, proptest::option::weighted(0.95, 0..10i64), 0..1000i64), 1..40),
        ttl_a in prop_oneof![Just(0u64), 1..4u64],
        ttl_b in prop_oneof![Just(0u64), 2..3u64],
        cutoff in any::<bool>(),
        full in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_view(&dir.path().join("a.parquet"), &a_rows, false);
        write_view(&dir.path().join("b.parquet"), &b_rows, true);
        write_entities(&dir.path().join("entities.parquet"), &entities);
        let registry = registry(ttl_a, ttl_b);
        let features = refs(&[("a", "v"), ("b", "u"), ("a", "w")]);
        let options = Options { full_feature_names: full, created_cutoff: cutoff };
        let out = run(dir.path(), &registry, &features, options, 1 << 30);
        check(&out, &a_rows, &b_rows, &entities, ttl_a, ttl_b, options)?;
    }

    /// The shapes users have: an entity side far smaller than the feature side, sources split
    /// over files, row groups and scan partitions, batches so small that every run of a key
    /// ends mid-batch and the merge must release batches while skipping keys nobody asked
    /// for, and both ways back to input order (in-memory gather, spilling sort).
    #[test]
    fn retrieval_matches_the_oracle_at_every_shape(
        a_rows in proptest::collection::vec(row_strategy(60), 0..900),
        b_rows in proptest::collection::vec(row_strategy(40), 0..300),
        entities in proptest::collection::vec(
            (0..64i64, 0..44i64, proptest::option::weighted(0.95, 0..10i64), 0..1000i64), 1..12),
        files in 1..4usize,
        group in 1..50usize,
        batch_rows in 1..9usize,
        partitions in 1..8usize,
        sort_back in any::<bool>(),
        key_filter in any::<bool>(),
        ttl_a in prop_oneof![Just(0u64), 1..4u64],
        cutoff in any::<bool>(),
        full in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_view_parts(dir.path(), "a", &a_rows, false, files, group);
        write_view_parts(dir.path(), "b", &b_rows, true, files, group);
        write_entities(&dir.path().join("entities.parquet"), &entities);
        let registry = registry(ttl_a, 0);
        let features = refs(&[("a", "v"), ("b", "u"), ("a", "w")]);
        let options = Options { full_feature_names: full, created_cutoff: cutoff };
        let engine = Engine {
            partitions,
            memory_limit: 1 << 30,
            with_times: false,
            batch_rows,
            gather_limit: sort_back.then_some(0),
            key_filter_rows: if key_filter { u64::MAX } else { 0 },
            cluster: None,
        };
        let out = run_on(dir.path(), &registry, &features, options, engine);
        check(&out, &a_rows, &b_rows, &entities, ttl_a, 0, options)?;
    }
}

/// A memory limit far below the data forces every sort to spill; the answer must not change.
#[test]
fn spilling_sorts_give_the_same_table() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Row> = (0..400_000)
        .map(|i| Row {
            key: (i * 7919) % 5000,
            event: i % 97,
            created: i % 3,
            v: Some(i),
            w: (i % 11) as i32,
        })
        .collect();
    write_view(&dir.path().join("a.parquet"), &rows, false);
    write_view(&dir.path().join("b.parquet"), &rows[..10], true);
    // Enough entity rows that, at the small limit, view `a` is put back in input order by the
    // spilling sort (its ~18 MB exceed its quarter of 64 MB) and view `b` by the in-memory gather.
    let entities: Vec<EntityRow> = (0..400_000)
        .map(|i| ((i * 31) % 5003, 0, Some(i % 101), i))
        .collect();
    write_entities(&dir.path().join("entities.parquet"), &entities);
    let registry = registry(0, 0);
    let features = refs(&[("a", "v"), ("a", "w"), ("b", "u")]);
    let big = run(
        dir.path(),
        &registry,
        &features,
        Options::default(),
        1 << 30,
    );
    let small = run(
        dir.path(),
        &registry,
        &features,
        Options::default(),
        64 << 20,
    );
    // (Compared with `assert!` so a failure does not print 400,000 values.)
    assert!(
        column_i64(&big, "v") == column_i64(&small, "v"),
        "spilling changed values"
    );
    assert!(
        column_i64(&big, "u") == column_i64(&small, "u"),
        "spilling changed values"
    );
    let in_order = (0..400_000).map(Some).collect::<Vec<_>>();
    assert!(
        column_i64(&big, "extra") == in_order,
        "rows out of input order"
    );
    assert!(
        column_i64(&small, "extra") == in_order,
        "rows out of input order when spilling"
    );
    // Spot-check against the oracle.
    let v = column_i64(&big, "v");
    for i in (0..400_000).step_by(997) {
        let (id, _, t, _) = entities[i];
        let want = oracle(&rows, id, t.unwrap(), 0, false, true).and_then(|r| r.v);
        assert_eq!(v[i], want, "row {i}");
    }
}

/// An entity table given as record batches in memory (as `verify` gives its sample) is read like
/// the same table in a file: every pass over it (time span, key filter, the entity keys of each
/// view, the output) sees the same rows, so the table is identical.
#[test]
fn entities_in_memory_give_the_same_table_as_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Row> = (0..5_000)
        .map(|i| Row {
            key: i % 300,
            event: i % 50,
            created: i % 4 - 1,
            v: (i % 7 != 0).then_some(i),
            w: (i % 13) as i32,
        })
        .collect();
    write_view(&dir.path().join("a.parquet"), &rows, false);
    write_view(&dir.path().join("b.parquet"), &rows[..900], true);
    let entities: Vec<EntityRow> = (0..3_000)
        .map(|i| ((i * 17) % 320, i % 310, (i % 9 != 0).then_some(i % 60), i))
        .collect();
    let path = dir.path().join("entities.parquet");
    write_entities(&path, &entities);
    let registry = registry(20, 0);
    let features = refs(&[("a", "v"), ("b", "u"), ("a", "w")]);
    let engine = Engine {
        partitions: 2,
        memory_limit: 1 << 30,
        with_times: true,
        batch_rows: 97,
        gather_limit: None,
        key_filter_rows: quiver_materializer::retrieve::DEFAULT_KEY_FILTER_ROWS,
        cluster: None,
    };
    let from_file = run_on(
        dir.path(),
        &registry,
        &features,
        Options::default(),
        engine.clone(),
    );

    let file = std::fs::File::open(&path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .with_batch_size(700)
        .build()
        .unwrap();
    let schema = arrow::array::RecordBatchReader::schema(&reader);
    let mut batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    // Empty batches (an empty polars frame is one) first, between and last: read past, as no
    // rows.
    let empty = batches[0].slice(0, 0);
    batches.insert(0, empty.clone());
    batches.insert(2, empty.clone());
    batches.push(empty);
    let input = EntityInput::from_batches(schema, batches, None, "the sample").unwrap();
    let request = Request {
        registry: &registry,
        root: dir.path(),
        features: &features,
        entities: &input,
        options: Options::default(),
    };
    let in_memory = runtime().block_on(async {
        let r = retrieve(&request, &engine).await.unwrap();
        r.stream.try_collect::<Vec<_>>().await.unwrap()
    });
    let whole = |batches: &[RecordBatch]| {
        arrow::compute::concat_batches(&batches[0].schema(), batches).unwrap()
    };
    assert_eq!(whole(&from_file).num_rows(), 3_000);
    assert!(whole(&from_file) == whole(&in_memory), "tables differ");

    let e = EntityInput::from_batches(
        Arc::new(Schema::new(vec![ArrowField::new(
            "id",
            DataType::Int64,
            false,
        )])),
        Vec::new(),
        None,
        "the sample",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("the sample: no timestamp column `event_timestamp`"),
        "{e}"
    );
}

fn write_ns_view(dir: &Path) {
    // Two rows of entity 1, one nanosecond apart: 10 s → v 1, 10 s + 1 ns → v 2.
    let ts = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        ArrowField::new("id", DataType::Int64, false),
        ArrowField::new("ts", ts.clone(), false),
        ArrowField::new("created", ts, true),
        ArrowField::new("v", DataType::Int64, true),
        ArrowField::new("w", DataType::Int32, false),
    ]));
    let times =
        arrow::array::TimestampNanosecondArray::from(vec![10 * S, 10 * S + 1]).with_timezone("UTC");
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1, 1])),
            Arc::new(times),
            Arc::new(
                arrow::array::TimestampNanosecondArray::from(vec![None::<i64>, None])
                    .with_timezone("UTC"),
            ),
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(Int32Array::from(vec![0, 0])),
        ],
    )
    .unwrap();
    write(&dir.join("a.parquet"), &batch);
    write_view(&dir.join("b.parquet"), &[], true);
}

fn v_for(dir: &Path, entities: &Path, timestamp_column: Option<&str>) -> Vec<Option<i64>> {
    let registry = registry(0, 0);
    let input = EntityInput::open(entities, timestamp_column).unwrap();
    let features = refs(&[("a", "v")]);
    let request = Request {
        registry: &registry,
        root: dir,
        features: &features,
        entities: &input,
        options: Options::default(),
    };
    let batches = runtime().block_on(async {
        let r = retrieve(&request, &Engine::default()).await.unwrap();
        r.stream.try_collect::<Vec<_>>().await.unwrap()
    });
    column_i64(&batches, "v")
}

/// Golden cases for time handling: naive = UTC, zones, units from seconds to nanoseconds, both
/// TTL-free bounds inclusive to the nanosecond, CSV text with offsets, Arrow IPC input.
#[test]
fn entity_times_are_instants_whatever_their_unit_zone_or_format() {
    let dir = tempfile::tempdir().unwrap();
    write_ns_view(dir.path());
    let d = dir.path();

    // Naive nanoseconds: before, exactly at, and after the first row.
    let schema = Arc::new(Schema::new(vec![
        ArrowField::new("id", DataType::Int64, false),
        ArrowField::new(
            "event_timestamp",
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            false,
        ),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1, 1, 1, 2])),
            Arc::new(arrow::array::TimestampNanosecondArray::from(vec![
                10 * S - 1,
                10 * S,
                10 * S + 1,
                10 * S,
            ])),
        ],
    )
    .unwrap();
    write(&d.join("ns.parquet"), &batch);
    assert_eq!(
        v_for(d, &d.join("ns.parquet"), None),
        [None, Some(1), Some(2), None]
    );

    // Microseconds in a +02:00 zone and seconds in UTC, as Arrow IPC file and stream.
    let schema = Arc::new(Schema::new(vec![
        ArrowField::new("id", DataType::Int64, false),
        ArrowField::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+02:00".into())),
            false,
        ),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 1])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![10_000_000 - 1, 10_000_000])
                    .with_timezone("+02:00"),
            ),
        ],
    )
    .unwrap();
    let mut w = arrow::ipc::writer::FileWriter::try_new(
        std::fs::File::create(d.join("zoned.arrow")).unwrap(),
        &schema,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    assert_eq!(
        v_for(d, &d.join("zoned.arrow"), Some("at")),
        [None, Some(1)]
    );
    let mut w = arrow::ipc::writer::StreamWriter::try_new(
        std::fs::File::create(d.join("zoned.stream")).unwrap(),
        &schema,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    assert_eq!(
        v_for(d, &d.join("zoned.stream"), Some("at")),
        [None, Some(1)]
    );

    // CSV text: Z, an offset, naive with nanoseconds, and seconds before.
    std::fs::write(
        d.join("times.csv"),
        "id,event_timestamp\n1,1970-01-01T00:00:10Z\n1,1970-01-01T02:00:10+02:00\n1,1970-01-01T00:00:10.000000001\n1,1970-01-01T00:00:09Z\n",
    )
    .unwrap();
    assert_eq!(
        v_for(d, &d.join("times.csv"), None),
        [Some(1), Some(1), Some(2), None]
    );
}

/// Column naming: plain names, `view__feature` with full names, and collisions refused.
#[test]
fn output_columns_are_named_and_collisions_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_ns_view(dir.path());
    let d = dir.path();
    std::fs::write(
        d.join("e.csv"),
        "id,name,event_timestamp,v\n1,n1,1970-01-01T00:00:11Z,9\n",
    )
    .unwrap();
    let registry = registry(0, 0);
    let input = EntityInput::open(&d.join("e.csv"), None).unwrap();
    let names = |features: &[FeatureRef], full: bool| {
        let request = Request {
            registry: &registry,
            root: d,
            features,
            entities: &input,
            options: Options {
                full_feature_names: full,
                created_cutoff: false,
            },
        };
        runtime().block_on(async {
            retrieve(&request, &Engine::default()).await.map(|r| {
                r.schema
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect::<Vec<_>>()
            })
        })
    };
    assert_eq!(
        names(&refs(&[("a", "w"), ("b", "u")]), false).unwrap(),
        ["id", "name", "event_timestamp", "v", "w", "u"]
    );
    assert_eq!(
        names(&refs(&[("a", "v"), ("b", "u")]), true).unwrap(),
        ["id", "name", "event_timestamp", "v", "a__v", "b__u"]
    );
    let err = names(&refs(&[("a", "v")]), false).unwrap_err().to_string();
    assert!(
        err.contains("output column `v`") && err.contains("full feature names"),
        "{err}"
    );
    let err = names(&refs(&[("a", "w"), ("a", "w")]), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("collides"), "{err}");
}
