//! Sources, entity tables and outputs on Azure Blob Storage (issue 13), against Azurite —
//! Microsoft's emulator, started by the harness on a free loopback port — reached through the
//! standard `AZURE_STORAGE_USE_EMULATOR` / `AZURITE_BLOB_STORAGE_URL` variables: the same data
//! as local files gives the same training table and online values; outputs are whole blobs; a
//! missing container and a dead server are clear errors that write nothing. Skipped, loudly,
//! where Azurite is not installed (`bash .ci/run` installs it).

use std::time::{Duration, Instant};

use quiver_tests::azurite::Azurite;
use quiver_tests::describe;

use crate::object_store::{
    BUCKET, DRIVER_VIEWS, assert_same_online, assert_same_table, big_entities, finish, lake,
    materialize, ok, partitioned, repo, run, run_of, spawn,
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

    // Containers that do not exist, for the entity table and for the output: clear errors
    // naming them, and nothing written anywhere.
    let missing_in = retrieve(
        "az://nowhere/labels/2026-01.parquet",
        "az://lake/train/v8.parquet",
    );
    let missing_out = retrieve(
        "az://lake/labels/2026-01.parquet",
        "az://nowhere/v8.parquet",
    );
    for (args, named) in [
        (&missing_in, "az://nowhere/labels/2026-01.parquet"),
        (&missing_out, "az://nowhere/v8.parquet"),
    ] {
        let out = run(
            &az,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &env,
        );
        let text = describe(&out);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains(named) && text.contains("not found"), "{text}");
    }
    assert_eq!(
        server.list(BUCKET, "train/"),
        ["train/v7.manifest.json", "train/v7.parquet"]
    );

    // An output above the single-request size goes up in blocks, committed once at the end.
    let big = big_entities(&local.join("data/labels.parquet"), 80);
    std::fs::write(local.join("big.parquet"), &big).unwrap();
    server.put(BUCKET, "labels/big.parquet", &big).unwrap();
    let args = retrieve("big.parquet", "big-train.parquet");
    ok(
        &local,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &env,
    );
    let expected = std::fs::read(local.join("big-train.parquet")).unwrap();
    assert!(expected.len() > 8 << 20, "only {} bytes", expected.len());
    let blocks_before = server
        .log_text()
        .matches("Operation=BlockBlob_StageBlock")
        .count();
    let args = retrieve(
        "az://lake/labels/big.parquet",
        "az://lake/train/big.parquet",
    );
    ok(
        &az,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &env,
    );
    let blocks = server
        .log_text()
        .matches("Operation=BlockBlob_StageBlock")
        .count()
        - blocks_before;
    assert!(blocks >= 2, "{blocks} blocks staged for the big output");
    let uploaded = server.get(BUCKET, "train/big.parquet").unwrap();
    assert_same_table(&expected, &uploaded, "the output written in blocks");

    // The server killed while a big retrieval runs, and down from the start: a clear error
    // within the retry bound, and no output anywhere.
    let args = retrieve(
        "az://lake/labels/big.parquet",
        "az://lake/train/dead.parquet",
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let (mut child, _, err_file) = spawn(&az, &args, &env, "midrun");
    std::thread::sleep(Duration::from_millis(300));
    server.kill();
    let status = finish(&mut child, Duration::from_secs(90));
    let err = std::fs::read_to_string(&err_file).unwrap();
    let status = status.unwrap_or_else(|| panic!("still running after 90 s: {err}"));
    assert!(!status.success(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}: {err}",
        started.elapsed()
    );
    assert!(
        err.contains("did not answer") && err.contains("AZURITE_BLOB_STORAGE_URL"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let local_left: Vec<_> = std::fs::read_dir(&az)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("dead"))
        .collect();
    assert!(local_left.is_empty(), "{local_left:?}");
}
