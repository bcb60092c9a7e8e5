//! Sources, entity tables and outputs on Azure Blob Storage (issue 13), against Azurite —
//! Microsoft's emulator, started by the harness on a free loopback port — reached through the
//! standard `AZURE_STORAGE_USE_EMULATOR` / `AZURITE_BLOB_STORAGE_URL` variables: the same data
//! as local files gives the same training table and online values; outputs are whole blobs; a
//! missing container and a dead server are clear errors that write nothing. Skipped, loudly,
//! where Azurite is not installed (`bash .ci/run` installs it).

use quiver_tests::azurite::Azurite;
use quiver_tests::describe;

use crate::object_store::{
    BUCKET, DRIVER_VIEWS, assert_same_online, assert_same_table, lake, materialize, ok,
    partitioned, repo, run, run_of,
};

macro_rules! azurite_or_skip {
    ($test:literal) => {
        match Azurite::start().expect("azurite-blob starts") {
            Some(server) => server,
            None => {
                eprintln!("SKIPPED: {}: no azurite-blob (see above)", $test);
                return;
            }
        }
    };
}

#[test]
fn a_partitioned_source_and_training_files_on_azure_give_the_local_results() {
    let mut server =
        azurite_or_skip!("a_partitioned_source_and_training_files_on_azure_give_the_local_results");
    let lake = lake(60, 24);
    server.create_container(BUCKET).unwrap();
    for (key, bytes) in &lake.parts {
        server.put(BUCKET, &format!("trips/{key}"), bytes).unwrap();
    }
    assert_eq!(server.list(BUCKET, "trips/").len(), 24);
    let env = server.env();

    let local = repo(&lake, "local", None);
    let az = repo(&lake, "az", Some(&partitioned("az://lake/trips/", "")));
    for r in [&local, &az] {
        ok(r, &["apply"], &env);
    }
    server
        .put_file(
            BUCKET,
            "labels/2026-01.parquet",
            &local.join("data/labels.parquet"),
        )
        .unwrap();

    // Training: the entity table from Azure, the output written to Azure.
    let retrieve = |entities: &str, output: &str| {
        vec![
            "retrieve".to_string(),
            "--entities".into(),
            entities.into(),
            "--features".into(),
            "model_v1".into(),
            "--output".into(),
            output.into(),
        ]
    };
    let args = retrieve("data/labels.parquet", "train.parquet");
    ok(
        &local,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &env,
    );
    let args = retrieve(
        "az://lake/labels/2026-01.parquet",
        "az://lake/train/v7.parquet",
    );
    ok(
        &az,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &env,
    );
    let expected = std::fs::read(local.join("train.parquet")).unwrap();
    let written = server
        .get(BUCKET, "train/v7.parquet")
        .expect("the output is in the container");
    assert_same_table(&expected, &written, "the training table written to Azure");
    // The output and its manifest, nothing else (no parts or temporaries left behind).
    assert_eq!(
        server.list(BUCKET, "train/"),
        ["train/v7.manifest.json", "train/v7.parquet"]
    );

    // Materialization reads every partition and stores what the local run stores.
    let range = [
        "materialize",
        "2026-01-01T00:00:00Z",
        "2026-01-02T00:00:00Z",
    ];
    materialize(&local, &range, &env);
    let runs = materialize(&az, &range, &env);
    for view in DRIVER_VIEWS {
        let run = run_of(&runs, view);
        assert_eq!(run["files_read"], 24, "{run}");
        assert!(run["bytes_read"].as_u64().unwrap() > 0, "{run}");
    }
    assert_same_online(&local, &az, lake.drivers);
    ok(&az, &["verify"], &env);

    // A container that does not exist: a clear error naming it, and nothing written.
    let missing = retrieve(
        "az://nowhere/labels/2026-01.parquet",
        "az://lake/train/v8.parquet",
    );
    let out = run(
        &az,
        &missing.iter().map(String::as_str).collect::<Vec<_>>(),
        &env,
    );
    assert!(!out.status.success(), "{}", describe(&out));
    let text = describe(&out);
    assert!(text.contains("not found"), "{text}");
    assert!(
        text.contains("az://nowhere/labels/2026-01.parquet"),
        "{text}"
    );
    assert!(server.get(BUCKET, "train/v8.parquet").is_none());

    // The server gone: a clear error within bounded time, not a hang; nothing written locally.
    server.kill();
    let started = std::time::Instant::now();
    let args = retrieve("az://lake/labels/2026-01.parquet", "train-after.parquet");
    let out = run(
        &az,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &env,
    );
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(120),
        "{:?}",
        started.elapsed()
    );
    let text = describe(&out);
    assert!(
        text.contains("did not answer") && text.contains("AZURITE_BLOB_STORAGE_URL"),
        "{text}"
    );
    assert!(!az.join("train-after.parquet").exists());
}
