//! The CLI as a user drives it: init → plan → apply → list, and every kind of bad input.

use std::path::Path;

use quiver_tests::{describe, quiver, snapshot};

const END: &str = "2026-01-02T00:00:00Z";

fn init(dir: &Path) {
    let out = quiver(
        dir,
        &[
            "init",
            "repo",
            "--drivers",
            "20",
            "--customers",
            "30",
            "--end",
            END,
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
fn init_plan_apply_list_describe_history() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    let repo = tmp.path().join("repo");
    assert!(repo.join("data/driver_stats.parquet").is_file());
    // The project is named after the directory, so two `init`s never share a key space.
    let yaml = std::fs::read_to_string(repo.join("quiver.yaml")).unwrap();
    assert!(yaml.contains("\nproject: repo\n"), "{yaml}");

    let plan = quiver(&repo, &["plan"]);
    assert!(plan.status.success(), "{}", describe(&plan));
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains("+ feature_view driver_hourly_stats"),
        "{text}"
    );
    assert!(
        text.contains("Plan: 12 to add, 0 to change, 0 to remove"),
        "{text}"
    );
    assert!(
        !repo.join(".quiver/registry").exists(),
        "plan writes nothing"
    );

    let apply = quiver(&repo, &["apply"]);
    assert!(apply.status.success(), "{}", describe(&apply));
    assert!(String::from_utf8_lossy(&apply.stdout).contains("Applied registry version 1"));

    let again = quiver(&repo, &["--format", "json", "apply"]);
    let json: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(json["changed"], false, "{}", describe(&again));
    assert_eq!(json["version"], 1);

    let list = quiver(
        tmp.path(),
        &["-C", "repo", "--format", "json", "registry", "list"],
    );
    let json: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let views: Vec<&str> = json["feature_views"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        views,
        [
            "customer_profile",
            "driver_activity",
            "driver_derived",
            "driver_hourly_stats"
        ]
    );
    let model_v1 = json["feature_services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "model_v1")
        .unwrap();
    assert_eq!(model_v1["features"], 20);

    let describe_out = quiver(&repo, &["registry", "describe", "driver_hourly_stats"]);
    let text = String::from_utf8_lossy(&describe_out.stdout);
    assert!(
        text.contains("conv_rate") && text.contains("ttl:       2h"),
        "{text}"
    );

    // A type change: a new version, and the view's generation moves on.
    let defs = repo.join("features/drivers.yaml");
    let yaml = std::fs::read_to_string(&defs).unwrap();
    std::fs::write(&defs, yaml.replacen("type: float32", "type: float64", 1)).unwrap();
    let plan = quiver(&repo, &["plan"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains("~ feature conv_rate: float32 → float64"),
        "{text}"
    );
    assert!(
        text.contains("! new generation") && text.contains("run `quiver materialize`"),
        "{text}"
    );
    let describe_json =
        |version| crate::generations::describe_view(&repo, "driver_hourly_stats", Some(version));
    let first_generation = describe_json("1")["generation"].as_u64().unwrap();
    assert!(quiver(&repo, &["apply"]).status.success());
    assert_ne!(describe_json("2")["generation"], first_generation);
    let history = quiver(&repo, &["--format", "json", "registry", "history"]);
    let json: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2, "{}", describe(&history));
    let json = describe_json("1");
    assert_eq!(json["generation"], first_generation);
    assert_eq!(json["features"][0]["type"], "float32");
}

/// A failing command exits 2 (user error) or 1, prints one clear message, changes nothing.
fn assert_fails_cleanly(repo: &Path, code: i32, message: &str) {
    let before = snapshot(repo);
    let out = quiver(repo, &["apply"]);
    assert_eq!(out.status.code(), Some(code), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(message),
        "expected {message:?} in\n{}",
        describe(&out)
    );
    assert!(!stderr.contains("panicked"), "{}", describe(&out));
    assert_eq!(snapshot(repo), before, "a failed apply changed files");
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    let repo = tmp.path().join("repo");
    assert!(quiver(&repo, &["apply"]).status.success());
    let defs = repo.join("features/drivers.yaml");
    let good = std::fs::read_to_string(&defs).unwrap();

    std::fs::write(
        &defs,
        good.replace("entities: [driver]", "entities: [drivr]"),
    )
    .unwrap();
    assert_fails_cleanly(&repo, 2, "features/drivers.yaml:19:16");
    assert_fails_cleanly(&repo, 2, "did you mean `driver`?");

    std::fs::write(
        &defs,
        good.replace("    ttl: 2h\n", "    ttl: 2h\n   - oops: [\n"),
    )
    .unwrap();
    assert_fails_cleanly(&repo, 2, "invalid YAML");

    std::fs::write(&defs, good.replace("type: float32", "type: decimal")).unwrap();
    assert_fails_cleanly(&repo, 2, "unknown value type `decimal`");

    std::fs::write(
        &defs,
        good.replace("data/driver_stats.parquet", "data/missing.parquet"),
    )
    .unwrap();
    assert_fails_cleanly(&repo, 2, "`data/missing.parquet` does not exist");

    std::fs::write(&defs, &good).unwrap();
    let data = repo.join("data/driver_stats.parquet");
    let bytes = std::fs::read(&data).unwrap();
    std::fs::write(&data, b"PAR1 garbage").unwrap();
    assert_fails_cleanly(&repo, 2, "is not a readable Parquet file");
    std::fs::write(&data, bytes).unwrap();

    // A registry that cannot be written: its directory is a path under a regular file.
    let config = repo.join("quiver.yaml");
    let yaml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(repo.join("blocker"), b"").unwrap();
    std::fs::write(
        &config,
        yaml.replace("path: .quiver/registry", "path: blocker/registry"),
    )
    .unwrap();
    std::fs::write(&defs, good.replace("ttl: 2h", "ttl: 3h")).unwrap();
    assert_fails_cleanly(&repo, 1, "blocker/registry");

    std::fs::write(
        &config,
        yaml.replace("project: repo", "project: repo\nprojct: x"),
    )
    .unwrap();
    assert_fails_cleanly(&repo, 2, "unknown field `projct`");

    std::fs::remove_file(&config).unwrap();
    assert_fails_cleanly(&repo, 2, "no quiver.yaml found");
}

#[test]
fn init_never_overwrites_a_repository() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    let before = snapshot(&tmp.path().join("repo"));
    let out = quiver(tmp.path(), &["init", "repo"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a Quiver repository"));
    assert_eq!(snapshot(&tmp.path().join("repo")), before);
    let out = quiver(tmp.path(), &["init", "other", "--end", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid --end `yesterday`"));
}

/// Run twice, the second time over data that ends an hour later (as a quickstart run again
/// later does: its sample ends at "now"): the online store holds the new data's values, which
/// `verify` checks against the offline join — not the first run's, nor a mix.
#[test]
fn quickstart_runs_twice_on_a_fresh_directory() {
    let tmp = tempfile::tempdir().unwrap();
    for end in ["2026-01-01T23:00:00Z", END] {
        let out = quiver(tmp.path(), &["quickstart", "--no-serve", "--end", end]);
        assert!(out.status.success(), "{}", describe(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("registry version 1"), "{text}");
        // A refresh starts afresh: no "data lost" warning about the store it replaced.
        assert!(
            !describe(&out).contains("no watermark"),
            "{}",
            describe(&out)
        );
        assert!(
            text.contains("registry describe driver_hourly_stats"),
            "{text}"
        );
    }
    let verify = quiver(tmp.path(), &["-C", "quiver_quickstart", "verify"]);
    assert!(verify.status.success(), "{}", describe(&verify));
    // While a server has the sample's store open, a refresh is refused (it would go on serving
    // the old file) and changes nothing.
    let repo = tmp.path().join("quiver_quickstart");
    let mut server = quiver_tests::QuiverServer::start(&repo, false).unwrap();
    server.wait_ready(std::time::Duration::from_secs(20));
    let before = snapshot(&repo);
    let out = quiver(tmp.path(), &["quickstart", "--no-serve", "--end", END]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        describe(&out).contains("open in another process"),
        "{}",
        describe(&out)
    );
    assert_eq!(snapshot(&repo), before);
    server.sigterm();
    let list = quiver(tmp.path(), &["-C", "quiver_quickstart", "registry", "list"]);
    assert!(list.status.success(), "{}", describe(&list));
    let get = quiver(
        tmp.path(),
        &[
            "-C",
            "quiver_quickstart",
            "--format",
            "json",
            "online",
            "get",
            "driver_hourly_stats",
            "--key",
            "driver_id=1001",
        ],
    );
    assert!(get.status.success(), "{}", describe(&get));
    let json: serde_json::Value = serde_json::from_slice(&get.stdout).unwrap();
    assert_eq!(json["found"], true, "{json}");
    assert_eq!(
        json["event_timestamp"], "2026-01-02T00:00:00Z",
        "the newest hourly row"
    );
}

/// The quickstart replaces its directory's files: pointed at another repository, it refuses
/// (exit 2) and changes nothing.
#[test]
fn quickstart_refuses_a_directory_holding_another_repository() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    let before = snapshot(&tmp.path().join("repo"));
    let out = quiver(tmp.path(), &["quickstart", "--no-serve", "--dir", "repo"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not the quickstart's sample"), "{err}");
    assert_eq!(snapshot(&tmp.path().join("repo")), before);
}

/// The read-only commands with bad arguments: exit 2, a message naming the problem, nothing
/// changed, no panic.
#[test]
fn inspection_commands_reject_bad_arguments_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    let repo = tmp.path().join("repo");
    // Before any apply.
    for args in [
        &["registry", "list"][..],
        &["materialize-incremental"],
        &["verify"],
        &[
            "retrieve",
            "--entities",
            "data/labels.parquet",
            "--features",
            "model_v1",
            "--output",
            "t.parquet",
        ],
    ] {
        quiver_tests::assert_refused(&repo, args, "run `quiver apply` first");
    }
    assert!(quiver(&repo, &["apply"]).status.success());
    let cases: &[(&[&str], &str)] = &[
        (
            &["registry", "describe", "drivr_hourly_stats"],
            "did you mean",
        ),
        (
            &["online", "get", "nope", "--key", "driver_id=1"],
            "unknown feature view `nope`",
        ),
        (&["online", "get", "driver_hourly_stats"], "--key"),
        (&["materialize", "2026-01-01"], "END"),
        (&["retrieve", "--output", "t.parquet"], "--entities"),
        (
            &[
                "retrieve",
                "--rebuild",
                "missing.manifest.json",
                "--output",
                "t.parquet",
            ],
            "missing.manifest.json",
        ),
        (&["serve", "--http", "not-an-address"], "not-an-address"),
        (&["init"], "DIR"),
        (
            &["--format", "yaml", "registry", "list"],
            "invalid value 'yaml'",
        ),
    ];
    std::fs::write(repo.join("bad.manifest.json"), "{}").unwrap();
    for (args, expected) in cases {
        quiver_tests::assert_refused(&repo, args, expected);
    }
    let out = quiver(
        &repo,
        &[
            "retrieve",
            "--rebuild",
            "bad.manifest.json",
            "--output",
            "t.parquet",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing field"),
        "{}",
        describe(&out)
    );
}

/// Renaming `project:` after applying: every command refuses the registry of the old project
/// with the same clear message (exit 2), instead of carrying on under the old name.
#[test]
fn a_renamed_project_is_refused_by_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    let repo = tmp.path().join("repo");
    assert!(quiver(&repo, &["apply"]).status.success());
    let config = repo.join("quiver.yaml");
    let yaml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, yaml.replace("project: repo", "project: renamed")).unwrap();
    for args in [
        &["plan"][..],
        &["apply"],
        &["registry", "list"],
        &["registry", "history"],
        &["materialize-incremental"],
        &[
            "online",
            "get",
            "driver_hourly_stats",
            "--key",
            "driver_id=1001",
        ],
        &["verify"],
    ] {
        quiver_tests::assert_refused(
            &repo,
            args,
            "holds project `repo`, but quiver.yaml names project `renamed`",
        );
    }
}

/// Rows without an entity key identify no entity: materialization skips them, and `verify`
/// neither counts nor samples them (it once counted the null key as one more entity).
#[test]
fn verify_counts_no_entity_for_rows_without_a_key() {
    use std::sync::Arc;

    use arrow::array::{RecordBatch, new_null_array};
    use arrow::datatypes::{Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    let repo = tmp.path().join("repo");
    let path = repo.join("data/driver_stats.parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let nullable: Vec<Field> = batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    let schema = Arc::new(Schema::new(nullable));
    let mut out =
        ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema.clone(), None).unwrap();
    for b in &batches {
        out.write(&RecordBatch::try_new(schema.clone(), b.columns().to_vec()).unwrap())
            .unwrap();
    }
    // The first rows again, their keys null.
    let keyless = batches[0].slice(0, 5);
    let columns = schema
        .fields()
        .iter()
        .zip(keyless.columns())
        .map(|(f, c)| {
            if f.name() == "driver_id" {
                new_null_array(c.data_type(), c.len())
            } else {
                c.clone()
            }
        })
        .collect();
    out.write(&RecordBatch::try_new(schema.clone(), columns).unwrap())
        .unwrap();
    out.close().unwrap();
    for step in [&["apply"][..], &["materialize-incremental"]] {
        let out = quiver(&repo, step);
        assert!(out.status.success(), "{step:?}: {}", describe(&out));
    }
    let out = quiver(
        &repo,
        &[
            "--format",
            "json",
            "verify",
            "--views",
            "driver_hourly_stats",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report[0]["entities"], 20, "{report}");
    assert_eq!(report[0]["sampled"], 20, "{report}");
}
