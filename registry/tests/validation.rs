//! Table tests of definition parsing and validation: each problem is reported with its file,
//! line and a hint, and all problems of a repository are reported at once.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use quiver_registry::source_schema::{ParquetSchemaResolver, SchemaResolver};
use quiver_registry::{Diagnostic, Error, Repository};

const DEFS: &str = "\
entities:
  - name: driver
    join_keys:
      - name: driver_id
        type: int64
sources:
  - name: driver_source
    path: data/drivers.parquet
    timestamp_field: event_timestamp
feature_views:
  - name: driver_stats
    entities: [driver]
    source: driver_source
    ttl: 2h
    features:
      - name: conv_rate
        type: float64
      - name: trips
        type: int64
feature_services:
  - name: model_v1
    features:
      - driver_stats:conv_rate
  - name: everything
    features:
      - driver_stats
";

fn write_parquet(path: &Path) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("driver_id", DataType::Int64, false),
        Field::new(
            "event_timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("conv_rate", DataType::Float64, true),
        Field::new("trips", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(TimestampMicrosecondArray::from(vec![0, 1]).with_timezone("UTC")),
            Arc::new(Float64Array::from(vec![0.5, 0.25])),
            Arc::new(Int64Array::from(vec![3, 4])),
        ],
    )
    .unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Loads a repository whose only definition file is `defs`; returns its diagnostics.
fn check(defs: &str) -> Result<quiver_registry::Registry, Vec<Diagnostic>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("quiver.yaml"),
        "project: demo\ndefinitions: [\"features/*.yaml\"]\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("features")).unwrap();
    std::fs::write(dir.path().join("features/defs.yaml"), defs).unwrap();
    write_parquet(&dir.path().join("data/drivers.parquet"));
    let repo = Repository::open(dir.path(), None, &|_| None).unwrap();
    let resolver = ParquetSchemaResolver {
        root: dir.path().to_path_buf(),
    };
    match repo.load(&|_| None, &resolver) {
        Ok(v) => Ok(v.registry),
        Err(Error::Invalid(d)) => Err(d),
        Err(other) => panic!("unexpected error kind: {other}"),
    }
}

#[test]
fn the_base_definitions_are_valid_and_whole_views_expand() {
    let registry = check(DEFS).unwrap();
    let refs = |service: &str| -> Vec<String> {
        registry.feature_services[service]
            .features
            .iter()
            .map(|r| r.to_string())
            .collect()
    };
    assert_eq!(refs("model_v1"), ["driver_stats:conv_rate"]);
    assert_eq!(
        refs("everything"),
        ["driver_stats:conv_rate", "driver_stats:trips"]
    );
    assert_eq!(registry.feature_views["driver_stats"].ttl.seconds, 7200);
}

/// (what to replace in DEFS, with what, expected message fragment, expected line, expected hint fragment)
const CASES: &[(&str, &str, &str, u64, &str)] = &[
    (
        "  - name: driver_stats\n",
        "  - name: driver_source\n    entities: [driver]\n    source: driver_source\n    features: [{name: conv_rate, type: float64}]\n  - name: driver_source\n",
        "duplicate feature view `driver_source`",
        15,
        "rename or remove",
    ),
    (
        "entities: [driver]",
        "entities: [drivr]",
        "references unknown entity `drivr`",
        12,
        "did you mean `driver`?",
    ),
    (
        "source: driver_source",
        "source: driver_src",
        "references unknown source `driver_src`",
        13,
        "did you mean `driver_source`?",
    ),
    (
        "type: float64",
        "type: flaot64",
        "unknown value type `flaot64`",
        17,
        "did you mean `float64`?",
    ),
    (
        "ttl: 2h",
        "ttl: 2 hours",
        "invalid duration `2 hours`",
        14,
        "ttl: 7d",
    ),
    (
        "      - driver_stats:conv_rate",
        "      - driver_stats:conv_rat",
        "has no feature `conv_rat`",
        23,
        "did you mean `driver_stats:conv_rate`?",
    ),
    (
        "      - driver_stats\n",
        "      - driver_stat\n",
        "unknown feature view `driver_stat`",
        26,
        "did you mean `driver_stats`?",
    ),
    (
        "      - name: driver_id\n        type: int64",
        "      - name: driver_key\n        type: int64",
        "join key `driver_key` is not a column of source `driver_source`",
        11,
        "did you mean `driver_id`?",
    ),
    (
        "      - name: trips\n        type: int64",
        "      - name: trip_count\n        type: int64",
        "feature `trip_count` is not a column",
        18,
        "its columns are",
    ),
    (
        "      - name: conv_rate\n        type: float64",
        "      - name: conv_rate\n        type: int64",
        "feature `conv_rate` is declared `int64` but the column has type Float64",
        16,
        "declare it as `float64`",
    ),
    (
        "timestamp_field: event_timestamp",
        "timestamp_field: event_ts",
        "timestamp field `event_ts` is not a column",
        11,
        "did you mean `event_timestamp`?",
    ),
    (
        "path: data/drivers.parquet",
        "path: data/nowhere.parquet",
        "`data/nowhere.parquet` does not exist",
        8,
        "check the path",
    ),
    (
        "    ttl: 2h\n",
        "    ttl: 2h\n    tll: 3h\n",
        "unknown field `tll`",
        15,
        "remove the key",
    ),
    (
        "    features:\n      - name: conv_rate",
        "    features:\n    - name: conv_rate\n   bad",
        "invalid YAML",
        0,
        "",
    ),
    (
        "        type: int64\nsources",
        "        type: list<int64>\nsources",
        "join key `driver_id` cannot have type `list<int64>`",
        5,
        "join keys are",
    ),
    (
        "      - driver_stats\n",
        "      - driver_stats\n      - driver_stats:trips\n",
        "lists `driver_stats:trips` twice",
        27,
        "remove the repeated",
    ),
    (
        "  - name: model_v1",
        "  - name: model v1",
        "invalid feature service name `model v1`",
        21,
        "letters, digits",
    ),
    (
        "  - name: model_v1",
        "  - name: driver_stats",
        "feature service `driver_stats` has the name of feature view `driver_stats` (defined at features/defs.yaml:11:",
        21,
        "share one namespace",
    ),
    (
        "  - name: driver_source",
        "  - name: driver",
        "source `driver` has the name of entity `driver`",
        7,
        "rename one of the two",
    ),
    (
        "  - name: driver\n",
        "  - name: driver\n    join_keys: [{name: driver_id, type: int64}]\n  - name: driver\n",
        "duplicate entity `driver`",
        4,
        "rename or remove one of the two entities",
    ),
    (
        "      - name: trips\n",
        "      - name: driver_id\n",
        "feature `driver_id` has the name of a join key of entity `driver`",
        18,
        "rename the feature",
    ),
    (
        "      - name: trips\n        type: int64",
        "      - name: event_timestamp\n        type: timestamp",
        "feature `event_timestamp` has the name of the `timestamp_field` of source `driver_source`",
        18,
        "in the view's `query`",
    ),
    (
        "type: float64",
        "type: list<list<int32>>",
        "nested lists are not supported: `list<list<int32>>` is a list of lists",
        17,
        "a feature is a scalar or a list of scalars",
    ),
    (
        "    ttl: 2h\n",
        "    ttl: 2h\n    ttl: 3h\n",
        "duplicate key `ttl` at line 15; each key may appear once",
        15,
        "remove one of the two",
    ),
];

#[test]
fn each_problem_is_reported_with_its_line_and_a_hint() {
    for (from, to, message, line, hint) in CASES {
        assert!(
            DEFS.contains(from),
            "case {message:?} does not apply: {from:?} is not in DEFS"
        );
        let defs = DEFS.replacen(from, to, 1);
        let diagnostics = check(&defs).expect_err(message);
        let found = diagnostics
            .iter()
            .find(|d| d.message.contains(message))
            .unwrap_or_else(|| panic!("no diagnostic containing {message:?} in {diagnostics:#?}"));
        assert_eq!(found.file, "features/defs.yaml", "{found:?}");
        if *line > 0 {
            assert_eq!(found.line, *line, "{found:?}");
        } else {
            assert!(found.line > 0, "{found:?}");
        }
        let got_hint = found.hint.clone().unwrap_or_default();
        assert!(
            got_hint.contains(hint),
            "hint {got_hint:?} lacks {hint:?} for {message:?}"
        );
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let defs = DEFS
        .replacen("entities: [driver]", "entities: [drivr]", 1)
        .replacen("ttl: 2h", "ttl: forever", 1)
        .replacen("      - driver_stats:conv_rate", "      - other_view:x", 1);
    let diagnostics = check(&defs).unwrap_err();
    let lines: Vec<u64> = diagnostics.iter().map(|d| d.line).collect();
    assert!(
        lines.contains(&12) && lines.contains(&14) && lines.contains(&23),
        "{diagnostics:#?}"
    );
    let rendered = Error::Invalid(diagnostics).to_string();
    assert!(
        rendered.contains("--> features/defs.yaml:12:"),
        "{rendered}"
    );
    assert!(rendered.contains("nothing was changed"), "{rendered}");
}

#[test]
fn unreadable_parquet_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("quiver.yaml"), "project: demo\n").unwrap();
    std::fs::create_dir_all(dir.path().join("features")).unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("features/defs.yaml"), DEFS).unwrap();
    std::fs::write(
        dir.path().join("data/drivers.parquet"),
        b"not parquet at all",
    )
    .unwrap();
    let repo = Repository::open(dir.path(), None, &|_| None).unwrap();
    let resolver = ParquetSchemaResolver {
        root: dir.path().to_path_buf(),
    };
    let err = repo.load(&|_| None, &resolver).unwrap_err().to_string();
    assert!(err.contains("is not a readable Parquet file"), "{err}");
    assert!(err.contains("features/defs.yaml:8:"), "{err}");
}

#[test]
fn directories_and_globs_are_sources_too() {
    for path in ["data", "data/*.parquet", "data/**/*.parquet"] {
        let registry = check(&DEFS.replacen("data/drivers.parquet", path, 1));
        assert!(registry.is_ok(), "{path}: {registry:?}");
    }
    let err = check(&DEFS.replacen("data/drivers.parquet", "data/*.csv", 1)).unwrap_err();
    assert!(
        err[0].message.contains("matches no Parquet files"),
        "{err:?}"
    );
}

#[test]
fn env_variables_are_substituted_in_definitions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("quiver.yaml"), "project: demo\n").unwrap();
    std::fs::create_dir_all(dir.path().join("features")).unwrap();
    std::fs::write(
        dir.path().join("features/defs.yaml"),
        DEFS.replacen(
            "data/drivers.parquet",
            "${DATA_DIR:-data}/drivers.parquet",
            1,
        )
        .replacen("ttl: 2h", "ttl: ${DRIVER_TTL}", 1),
    )
    .unwrap();
    write_parquet(&dir.path().join("data/drivers.parquet"));
    let repo = Repository::open(dir.path(), None, &|_| None).unwrap();
    let resolver = ParquetSchemaResolver {
        root: dir.path().to_path_buf(),
    };
    let env = |name: &str| (name == "DRIVER_TTL").then(|| "1d".to_string());
    let registry = repo.load(&env, &resolver).unwrap().registry;
    assert_eq!(registry.feature_views["driver_stats"].ttl.seconds, 86_400);
    assert_eq!(
        registry.sources["driver_source"].path,
        "data/drivers.parquet"
    );
    let err = repo.load(&|_| None, &resolver).unwrap_err().to_string();
    assert!(err.contains("`DRIVER_TTL` is not set"), "{err}");
    assert!(err.contains("features/defs.yaml:14:"), "{err}");
}

#[test]
fn nested_lists_are_refused_plainly() {
    let defs = DEFS.replacen("type: float64", "type: list<list<int32>>", 1);
    let diagnostics = check(&defs).unwrap_err();
    let d = diagnostics
        .iter()
        .find(|d| d.message.contains("nested lists"))
        .unwrap_or_else(|| panic!("{diagnostics:#?}"));
    let hint = d.hint.clone().unwrap_or_default();
    assert!(!hint.contains("did you mean"), "{hint}");
}

#[test]
fn a_feature_named_like_a_source_timestamp_is_refused() {
    // After field_mapping, `ts` is the event time: a feature `ts` would be read twice.
    let defs = DEFS
        .replacen(
            "    timestamp_field: event_timestamp\n",
            "    timestamp_field: ts\n    created_timestamp_field: created\n    field_mapping: {event_timestamp: ts}\n",
            1,
        )
        .replacen(
            "      - name: trips\n        type: int64",
            "      - name: ts\n        type: timestamp\n      - name: created\n        type: timestamp",
            1,
        );
    let diagnostics = check(&defs).unwrap_err();
    for (message, line) in [
        (
            "feature view `driver_stats`: feature `ts` has the name of the `timestamp_field` of source `driver_source`",
            20,
        ),
        (
            "feature `created` has the name of the `created_timestamp_field` of source `driver_source`",
            22,
        ),
    ] {
        let d = diagnostics
            .iter()
            .find(|d| d.message.contains(message))
            .unwrap_or_else(|| panic!("no {message:?} in {diagnostics:#?}"));
        assert_eq!((d.file.as_str(), d.line), ("features/defs.yaml", line));
        assert!(d.hint.as_deref().unwrap_or("").contains("query"), "{d:?}");
    }
    let same = DEFS.replacen(
        "    timestamp_field: event_timestamp\n",
        "    timestamp_field: event_timestamp\n    created_timestamp_field: event_timestamp\n",
        1,
    );
    let diagnostics = check(&same).unwrap_err();
    assert!(
        diagnostics
            .iter()
            .any(|d| d.message.contains("same column as `timestamp_field`") && d.line == 10),
        "{diagnostics:#?}"
    );
}

#[test]
fn names_are_one_namespace_and_every_clash_is_reported_at_once() {
    let defs = DEFS.replace("driver_source", "driver").replacen(
        "  - name: model_v1",
        "  - name: driver_stats",
        1,
    );
    let diagnostics = check(&defs).unwrap_err();
    let rendered = Error::Invalid(diagnostics.clone()).to_string();
    assert!(
        rendered.contains(
            "source `driver` has the name of entity `driver` (defined at features/defs.yaml:2:"
        ),
        "{rendered}"
    );
    assert!(rendered.contains("--> features/defs.yaml:7:"), "{rendered}");
    assert!(
        rendered.contains("feature service `driver_stats` has the name of feature view"),
        "{rendered}"
    );
    assert!(
        rendered.contains("--> features/defs.yaml:21:"),
        "{rendered}"
    );
    // The clashing source is not also reported as unknown where it is used.
    assert!(!rendered.contains("unknown source"), "{rendered}");
    assert_eq!(diagnostics.len(), 2, "{rendered}");
}

#[test]
fn names_longer_than_100_characters_are_refused() {
    let long = "v".repeat(240);
    let diagnostics = check(&DEFS.replace("driver_stats", &long)).unwrap_err();
    let d = diagnostics
        .iter()
        .find(|d| d.message.contains("invalid feature view name"))
        .unwrap_or_else(|| panic!("{diagnostics:#?}"));
    assert!(d.message.contains("at most 100 characters"), "{d:?}");
    assert!(d.message.len() < 200, "the name is shortened: {d:?}");
    assert_eq!(d.line, 11);
    let feature = "f".repeat(101);
    let diagnostics = check(&DEFS.replace("conv_rate", &feature)).unwrap_err();
    assert!(
        diagnostics
            .iter()
            .any(|d| d.message.contains("invalid feature name") && d.line == 16),
        "{diagnostics:#?}"
    );
    let mapped = DEFS.replacen(
        "    timestamp_field: event_timestamp\n",
        &format!("    timestamp_field: event_timestamp\n    field_mapping: {{trips: {feature}}}\n"),
        1,
    );
    let diagnostics = check(&mapped).unwrap_err();
    assert!(
        diagnostics
            .iter()
            .any(|d| d.message.contains("at most 100 characters")),
        "{diagnostics:#?}"
    );
    let hundred = "v".repeat(100);
    assert!(check(&DEFS.replace("driver_stats", &hundred)).is_ok());
}

#[test]
fn unknown_references_are_hinted_in_plain_english() {
    let defs = DEFS
        .replacen("entities:\n  - name: driver\n    join_keys:\n      - name: driver_id\n        type: int64\n", "", 1);
    let diagnostics = check(&defs).unwrap_err();
    let d = diagnostics
        .iter()
        .find(|d| d.message.contains("references unknown entity `driver`"))
        .unwrap_or_else(|| panic!("{diagnostics:#?}"));
    assert_eq!(d.hint.as_deref(), Some("define it under `entities:`"));
    let defs = DEFS.replacen("      - driver_stats\n", "      - nope\n", 1);
    let diagnostics = check(&defs).unwrap_err();
    let d = diagnostics
        .iter()
        .find(|d| d.message.contains("unknown feature view `nope`"))
        .unwrap_or_else(|| panic!("{diagnostics:#?}"));
    assert!(d.message.ends_with("`nope`"), "{d:?}");
    assert_eq!(
        d.hint.as_deref(),
        Some("defined feature views: driver_stats")
    );
}

/// Values that would change a YAML file's structure if pasted into its text.
const TRICKY_VALUES: &[&str] = &[
    "ab #cd",
    "p@ss: word",
    "two\nlines",
    "x\n    owner: injected",
    "say \"hi\" and 'bye' \\",
    "*alias",
    "&anchor",
    "!tag",
    "- item",
    "[a, b]",
    "{a: b}",
    "| block",
    "> folded",
    "",
    "null",
    "~",
    "12",
];

#[test]
fn env_values_never_change_the_structure_of_definitions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("quiver.yaml"), "project: demo\n").unwrap();
    std::fs::create_dir_all(dir.path().join("features")).unwrap();
    let defs = DEFS.replacen(
        "    ttl: 2h\n",
        "    ttl: 2h\n    # ${DESC} is documented here, and ${UNSET_IN_COMMENT}\n    description: ${DESC}\n    owner: ${OWNER:-}\n    tags: {team: '${TEAM:-core}', note: \"${DESC}\"}\n",
        1,
    );
    std::fs::write(dir.path().join("features/defs.yaml"), defs).unwrap();
    write_parquet(&dir.path().join("data/drivers.parquet"));
    let repo = Repository::open(dir.path(), None, &|_| None).unwrap();
    let resolver = ParquetSchemaResolver {
        root: dir.path().to_path_buf(),
    };
    for value in TRICKY_VALUES {
        let env = |name: &str| (name == "DESC").then(|| value.to_string());
        let registry = repo
            .load(&env, &resolver)
            .unwrap_or_else(|e| panic!("{value:?}: {e}"))
            .registry;
        let view = &registry.feature_views["driver_stats"];
        assert_eq!(view.description, *value);
        assert_eq!(view.owner, "", "an empty default is the empty string");
        assert_eq!(view.tags["team"], "core");
        assert_eq!(view.tags["note"], *value);
        assert_eq!(view.tags.len(), 2, "{value:?}");
        assert_eq!(view.features.len(), 2, "{value:?}");
    }
    let err = repo.load(&|_| None, &resolver).unwrap_err().to_string();
    assert!(err.contains("`DESC` is not set"), "{err}");
    assert!(err.contains("features/defs.yaml:16:"), "{err}");
    assert!(!err.contains("UNSET_IN_COMMENT"), "{err}");
}

/// Answers a view's query with the source's own columns, or with `error` when it is set: what a
/// query engine would say, without one.
struct QueryResolver {
    parquet: ParquetSchemaResolver,
    error: Option<&'static str>,
}

impl SchemaResolver for QueryResolver {
    fn view_input_schema(
        &self,
        source: &quiver_registry::Source,
        query: Option<&str>,
    ) -> Result<Option<SchemaRef>, String> {
        match (query, self.error) {
            (None, _) => self.parquet.view_input_schema(source, None),
            (Some(_), Some(error)) => Err(error.to_string()),
            (Some(_), None) => self.parquet.view_input_schema(source, None),
        }
    }
}

/// A feature may be named `query` (or `path`): its problems are reported at its own line, and
/// the query's at the query's line. Both used to share one map of places, so the query's line
/// replaced the feature's.
#[test]
fn a_feature_named_query_keeps_its_own_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("quiver.yaml"), "project: demo\n").unwrap();
    std::fs::create_dir_all(dir.path().join("features")).unwrap();
    let defs = DEFS
        .replacen(
            "    ttl: 2h\n",
            "    ttl: 2h\n    query: SELECT * FROM source\n",
            1,
        )
        .replacen("      - name: trips", "      - name: query", 1);
    std::fs::write(dir.path().join("features/defs.yaml"), defs).unwrap();
    write_parquet(&dir.path().join("data/drivers.parquet"));
    let repo = Repository::open(dir.path(), None, &|_| None).unwrap();
    let parquet = ParquetSchemaResolver {
        root: dir.path().to_path_buf(),
    };
    for (error, message, line) in [
        (
            None,
            "feature view `driver_stats`: feature `query` is not a column of the view's query",
            19,
        ),
        (
            Some("syntax error near FROM"),
            "feature view `driver_stats`: syntax error near FROM",
            15,
        ),
    ] {
        let resolver = QueryResolver {
            parquet: parquet.clone(),
            error,
        };
        let diagnostics = match repo.load(&|_| None, &resolver) {
            Err(Error::Invalid(d)) => d,
            other => panic!("expected diagnostics, got {other:?}"),
        };
        let d = diagnostics
            .iter()
            .find(|d| d.message.contains(message))
            .unwrap_or_else(|| panic!("no {message:?} in {diagnostics:#?}"));
        assert_eq!(
            (d.file.as_str(), d.line),
            ("features/defs.yaml", line),
            "{d:?}"
        );
    }
}

/// Push sources (issue 12): a valid one and a view over it; its timestamps default to its batch
/// source's; each mistake reported at its line.
const PUSH: &str = "
push_sources:
  - name: driver_events
    batch_source: driver_source
    schema:
      driver_id: int64
      event_timestamp: timestamp
      conv_rate: float64
      trips: int64
";

const PUSH_VIEW: &str = "
  - name: driver_live
    entities: [driver]
    source: driver_events
    features:
      - name: conv_rate
        type: float64
";

fn with_push(push: &str, view: &str) -> String {
    let defs = DEFS.replace(
        "feature_services:",
        &format!("{}feature_services:", view.trim_start_matches('\n')),
    );
    format!("{defs}{push}")
}

#[test]
fn push_sources_feed_views_and_default_to_their_batch_source() {
    let registry = check(&with_push(PUSH, PUSH_VIEW)).unwrap();
    let push = &registry.push_sources["driver_events"];
    assert_eq!(push.timestamp_field, "event_timestamp");
    assert_eq!(push.batch_source.as_deref(), Some("driver_source"));
    let view = &registry.feature_views["driver_live"];
    assert_eq!(registry.batch_source(view).unwrap().name, "driver_source");
    assert_eq!(registry.views_fed_by("driver_events").count(), 1);
    // Moving a view onto a push source over the same batch source keeps its generation.
    let moved = check(&with_push(PUSH, "").replace(
        "    source: driver_source\n    ttl: 2h",
        "    source: driver_events\n    ttl: 2h",
    ))
    .unwrap();
    let before = check(DEFS).unwrap();
    assert_eq!(
        quiver_registry::plan::generation_id(&moved, &moved.feature_views["driver_stats"]),
        quiver_registry::plan::generation_id(&before, &before.feature_views["driver_stats"]),
    );
    // Without push sources the registry's JSON (and content hash) has no trace of them.
    assert!(
        !String::from_utf8(before.canonical_json())
            .unwrap()
            .contains("push_sources")
    );
    // A push-only source: no batch source, `event_timestamp` by default.
    let alone = check(&with_push(
        &PUSH.replace("    batch_source: driver_source\n", ""),
        PUSH_VIEW,
    ))
    .unwrap();
    assert!(
        alone
            .batch_source(&alone.feature_views["driver_live"])
            .is_none()
    );
    assert!(
        alone
            .history_source(&alone.feature_views["driver_live"])
            .unwrap_err()
            .contains("fed only by pushes")
    );
}

#[test]
fn push_source_mistakes_are_reported_where_they_are() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "    batch_source: driver_source\n",
            "    batch_source: driver_sorce\n",
            "push source `driver_events` references unknown source `driver_sorce`",
            "did you mean `driver_source`?",
        ),
        (
            "      event_timestamp: timestamp\n",
            "      event_timestamp: int64\n",
            "its timestamp_field `event_timestamp` has type `int64`",
            "declare `event_timestamp: timestamp`",
        ),
        (
            "      event_timestamp: timestamp\n",
            "",
            "its timestamp_field `event_timestamp` is not in its schema",
            "add `event_timestamp: timestamp`",
        ),
        (
            "    batch_source: driver_source\n",
            "    batch_source: driver_source\n    timestamp_field: ts\n",
            "timestamp_field `ts` differs from the timestamp_field of its batch source `driver_source`",
            "remove `timestamp_field`",
        ),
        (
            "      trips: int64\n",
            "      trips: int46\n",
            "column `trips`",
            "did you mean `int64`?",
        ),
        (
            "      trips: int64\n",
            "      trips: string\n",
            "column `trips` is declared `string` but its batch source `driver_source` has type Int64",
            "declare it as `int64`",
        ),
        (
            "      trips: int64\n",
            "      trips: int64\n      ghost: string\n",
            "column `ghost` is not a column of its batch source `driver_source`",
            "declare only its columns",
        ),
    ];
    for (from, to, message, hint) in cases {
        let defs = with_push(&PUSH.replace(from, to), PUSH_VIEW);
        let problems = check(&defs).unwrap_err();
        let found = problems
            .iter()
            .find(|d| d.message.contains(message))
            .unwrap_or_else(|| panic!("{message}: {problems:?}"));
        assert!(
            found.hint.as_deref().unwrap_or("").contains(hint),
            "{message}: {found:?}"
        );
    }
    // A view over a push source: its features are the source's, typed alike, and no query.
    let view_cases: &[(&str, &str, &str)] = &[
        (
            "        type: float64\n",
            "        type: float32\n",
            "feature `conv_rate` is `float32` here but `float64` in push source `driver_events`",
        ),
        (
            "      - name: conv_rate\n",
            "      - name: conv_rat\n",
            "feature `conv_rat` is not a column of push source `driver_events`",
        ),
        (
            "    source: driver_events\n",
            "    source: driver_events\n    query: SELECT * FROM source\n",
            "reads push source `driver_events` and has a `query`",
        ),
        (
            "    source: driver_events\n",
            "    source: driver_event\n",
            "references unknown source `driver_event`",
        ),
    ];
    for (from, to, message) in view_cases {
        let defs = with_push(PUSH, &PUSH_VIEW.replace(from, to));
        let problems = check(&defs).unwrap_err();
        assert!(
            problems.iter().any(|d| d.message.contains(message)),
            "{message}: {problems:?}"
        );
    }
}

/// A view of aggregates over the drivers' source, inserted before the services.
const AGG_VIEW: &str = "
  - name: driver_activity
    entities: [driver]
    source: driver_source
    hop: 5m
    aggregations:
      - {name: rows_1h, function: count, window: 1h}
      - {name: trips_sum_1d, function: sum, column: trips, window: 1d}
      - {name: conv_mean_7d, function: mean, column: conv_rate, window: 7d}
      - {name: conv_max_10m, function: max, column: conv_rate, window: 10m}
      - {name: conv_std_1d, function: stddev, column: conv_rate, window: 1d}
      - {name: last_trips, function: last, column: trips, window: 1d}
";

fn with_aggregations(view: &str) -> String {
    DEFS.replace(
        "feature_services:",
        &format!("{}feature_services:", view.trim_start_matches('\n')),
    )
}

#[test]
fn aggregation_views_get_typed_outputs_and_their_own_generation() {
    use quiver_registry::{Function, ValueType};
    let registry = check(&with_aggregations(AGG_VIEW)).unwrap();
    let view = &registry.feature_views["driver_activity"];
    let aggs = view.aggregations.as_ref().unwrap();
    assert_eq!(aggs.hop.seconds, 300);
    assert_eq!(aggs.max_tiles(), 7 * 288);
    let types: Vec<(String, String)> = view
        .features
        .iter()
        .map(|f| (f.name.clone(), f.value_type.to_string()))
        .collect();
    let expect = [
        ("rows_1h", "int64"),
        ("trips_sum_1d", "int64"),
        ("conv_mean_7d", "float64"),
        ("conv_max_10m", "float64"),
        ("conv_std_1d", "float64"),
        ("last_trips", "int64"),
    ];
    assert_eq!(
        types,
        expect
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(aggs.items[2].function, Function::Mean);
    assert_eq!(
        aggs.items[1].input.map(ValueType::Scalar),
        Some("int64".parse().unwrap()),
        "the input type is read from the source's Parquet schema"
    );
    // A window change is a new generation; the plain view keeps its own.
    let wider = check(&with_aggregations(
        &AGG_VIEW.replace("window: 1h}", "window: 2h}"),
    ))
    .unwrap();
    let plain = check(DEFS).unwrap();
    let id = |r: &quiver_registry::Registry, v: &str| {
        quiver_registry::plan::generation_id(r, &r.feature_views[v])
    };
    assert_ne!(
        id(&registry, "driver_activity"),
        id(&wider, "driver_activity")
    );
    assert_eq!(id(&registry, "driver_stats"), id(&plain, "driver_stats"));
    // Aggregates mix with plain features in services.
    let mixed = check(&with_aggregations(AGG_VIEW).replace(
        "      - driver_stats:conv_rate\n",
        "      - driver_stats:conv_rate\n      - driver_activity:rows_1h\n",
    ))
    .unwrap();
    assert_eq!(mixed.feature_services["model_v1"].features.len(), 2);
}

#[test]
fn aggregation_mistakes_are_reported_with_their_line() {
    // (replace, with, message, line of the aggregate in the file, hint)
    let base = with_aggregations(AGG_VIEW);
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        (
            "function: count,",
            "function: cont,",
            "unknown aggregation function `cont`",
            "rows_1h",
            "did you mean `count`?",
        ),
        (
            "window: 10m}",
            "window: 12m}",
            "the window 12m of aggregate `conv_max_10m` is not a multiple of the view's hop 5m",
            "conv_max_10m",
            "use a multiple of 5m (e.g. 15m)",
        ),
        (
            "{name: trips_sum_1d, function: sum, column: trips,",
            "{name: trips_sum_1d, function: sum, column: tripz,",
            "`tripz` is not a column of source `driver_source`",
            "trips_sum_1d",
            "did you mean `trips`?",
        ),
        (
            "function: mean, column: conv_rate,",
            "function: mean, column: conv_rate, type: string,",
            "`mean` needs a numeric column",
            "conv_mean_7d",
            "suits the column",
        ),
        (
            "{name: last_trips, function: last, column: trips,",
            "{name: last_trips, function: last,",
            "aggregate `last_trips` (last) has no `column`",
            "last_trips",
            "name the column it reads",
        ),
        (
            "    hop: 5m\n",
            "    hop: 5m\n    ttl: 3h\n",
            "declares aggregations and a `ttl`",
            "ttl: 3h",
            "remove `ttl`",
        ),
        (
            "{name: rows_1h, function: count, window: 1h}",
            "{name: rows_1h, function: count, window: 1h}\n      - {name: rows_1h, function: count, window: 2h}",
            "duplicate aggregate `rows_1h`",
            "window: 2h",
            "unique",
        ),
        (
            "    hop: 5m\n",
            "    hop: 0\n",
            "`hop` must be longer than 0",
            "hop: 0",
            "e.g. `hop: 5m`",
        ),
        (
            "{name: rows_1h, function: count, window: 1h}",
            "{name: driver_id, function: count, window: 1h}",
            "aggregate `driver_id` has the name of a join key of entity `driver`",
            "name: driver_id, function",
            "name the aggregate",
        ),
        (
            "{name: rows_1h, function: count, window: 1h}",
            "{name: event_timestamp, function: count, window: 1h}",
            "aggregate `event_timestamp` has the name of a timestamp column",
            "name: event_timestamp, function",
            "name the aggregate",
        ),
        (
            "{name: rows_1h, function: count, window: 1h}",
            "{name: rows_1h, function: count, column: driver_id, window: 1h}",
            "an aggregate reads `driver_id`, the join key of entity `driver`",
            "column: driver_id",
            "`count` needs none",
        ),
        (
            "{name: rows_1h, function: count, window: 1h}",
            "{name: rows_1h, function: count, window: 20000w}",
            "is longer than 5200w",
            "window: 20000w",
            "about a century",
        ),
        (
            "{name: rows_1h, function: count, window: 1h}",
            "{name: rows_1h, function: count, window: 100w}",
            "spans 201600 tiles of 5m; at most 20000",
            "window: 100w",
            "use a longer `hop`",
        ),
    ];
    for (from, to, message, at, hint) in cases {
        assert!(base.contains(from), "{from:?} not in the definitions");
        let defs = base.replacen(from, to, 1);
        let line = defs.lines().position(|l| l.contains(at)).unwrap() + 1;
        let diagnostics = check(&defs).expect_err(message);
        let found = diagnostics
            .iter()
            .find(|d| d.message.contains(message))
            .unwrap_or_else(|| panic!("no diagnostic containing {message:?} in {diagnostics:#?}"));
        assert_eq!(
            (found.file.as_str(), found.line),
            ("features/defs.yaml", line as u64),
            "{found:?}"
        );
        let got = found.hint.clone().unwrap_or_default();
        assert!(
            got.contains(hint),
            "hint {got:?} lacks {hint:?} for {message:?}"
        );
    }
    // A column of a non-numeric type in the source: found when its schema is read, and said
    // once (nothing about a type the user never declared).
    let defs = base.replace(
        "function: sum, column: trips,",
        "function: sum, column: event_timestamp,",
    );
    let diagnostics = check(&defs).unwrap_err();
    assert!(
        diagnostics
            .iter()
            .any(|d| d.message.contains("`sum` needs a numeric column")
                || d.message.contains("event_timestamp")),
        "{diagnostics:#?}"
    );
    assert!(
        !diagnostics
            .iter()
            .any(|d| d.message.contains("is declared")),
        "{diagnostics:#?}"
    );
}

#[test]
fn aggregations_over_a_push_source_take_its_types() {
    let view = AGG_VIEW
        .replace("source: driver_source", "source: driver_events")
        .replace("driver_activity", "driver_live_activity");
    let registry = check(&with_push(PUSH, &view)).unwrap();
    let v = &registry.feature_views["driver_live_activity"];
    assert_eq!(v.features[3].value_type.to_string(), "float64");
    let bad = view.replace(
        "column: trips, window: 1d}\n",
        "column: tripz, window: 1d}\n",
    );
    let diagnostics = check(&with_push(PUSH, &bad)).unwrap_err();
    assert!(
        diagnostics.iter().any(|d| d
            .message
            .contains("`tripz` is not a column of push source `driver_events`")),
        "{diagnostics:#?}"
    );
}
