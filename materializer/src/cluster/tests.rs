//! The cluster's session options, stores and failure messages.
use std::collections::BTreeMap;

use ballista_core::extension::SessionConfigHelperExt as _;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use url::Url;

use super::{Stores, cluster_config, cluster_failure, forward_storage};

/// A source's `storage:` map reaches a cluster process as written, the way Ballista sends
/// a session's options with a job (key-value pairs applied to the process's own config).
#[test]
fn storage_maps_travel_with_the_job_as_written() {
    let ctx = SessionContext::new();
    let lake: BTreeMap<String, String> = [
        ("endpoint".to_string(), "${S3_ENDPOINT}".to_string()),
        ("region".to_string(), "us-east-1".to_string()),
    ]
    .into();
    let other: BTreeMap<String, String> =
        [("endpoint".to_string(), "http://127.0.0.1:9".to_string())].into();
    forward_storage(&ctx, &Url::parse("s3://lake/trips/").unwrap(), &lake).unwrap();
    forward_storage(&ctx, &Url::parse("s3://other").unwrap(), &other).unwrap();
    // Local files and empty maps add nothing.
    forward_storage(&ctx, &Url::parse("file:///data").unwrap(), &lake).unwrap();
    forward_storage(&ctx, &Url::parse("s3://plain").unwrap(), &BTreeMap::new()).unwrap();

    let pairs = ctx.copied_config().to_key_value_pairs();
    let sent: Vec<_> = pairs
        .iter()
        .filter(|p| p.key.starts_with("quiver."))
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let received = cluster_config().update_from_key_value_pair(&pairs);
    let job = Stores::default().for_job(&received).unwrap();
    assert_eq!(job.storage.len(), 2, "{:?}", job.storage);
    assert_eq!(job.storage["s3://lake"], lake);
    assert_eq!(job.storage["s3://other"], other);
    // The same store opened with another map (or none) is another store.
    assert_eq!(job.opened_key("s3://plain"), "s3://plain");
    let other_ctx = SessionContext::new();
    forward_storage(&other_ctx, &Url::parse("s3://lake").unwrap(), &other).unwrap();
    let other_pairs = other_ctx.copied_config().to_key_value_pairs();
    let other_job = Stores::default()
        .for_job(&cluster_config().update_from_key_value_pair(&other_pairs))
        .unwrap();
    assert_ne!(
        job.opened_key("s3://lake"),
        other_job.opened_key("s3://lake")
    );
    let same_job = Stores::default().for_job(&received).unwrap();
    assert_eq!(
        job.opened_key("s3://lake"),
        same_job.opened_key("s3://lake")
    );
    // Two different maps for one store in one job are refused (one would be read with the
    // other's settings); the same map again is fine.
    let err = forward_storage(&ctx, &Url::parse("s3://lake/other/").unwrap(), &other)
        .unwrap_err()
        .to_string();
    assert!(err.contains("two different `storage:` maps"), "{err}");
    forward_storage(&ctx, &Url::parse("s3://lake/again/").unwrap(), &lake).unwrap();
    // A process whose job sent no maps opens stores from its environment alone.
    let none = Stores::default().for_job(&cluster_config()).unwrap();
    assert!(none.storage.is_empty());
}

#[test]
fn failures_of_the_cluster_are_told_apart_from_query_errors() {
    let timeout = DataFusionError::Execution(
        r#"Status { code: Cancelled, message: "Timeout expired", source: None }"#.into(),
    );
    let why = cluster_failure(&timeout).unwrap();
    assert!(
        why.contains("(Cancelled: Timeout expired)") && why.contains("engine.url"),
        "{why}"
    );
    let cancelled = DataFusionError::Execution("Job 038HH failed: Cancelled".into());
    assert!(
        cluster_failure(&cancelled)
            .unwrap()
            .contains("quiver ballista executor")
    );
    let broken =
        DataFusionError::External("h2 protocol error: error reading a body from connection".into());
    assert!(
        cluster_failure(&broken)
            .unwrap()
            .contains("broke during the job")
    );
    let gone = DataFusionError::Execution(
        r#"GrpcConnectionError("Error connecting to Ballista scheduler or executor at http://127.0.0.1:51071: transport error")"#.into(),
    );
    assert!(
        cluster_failure(&gone)
            .unwrap()
            .contains("the executor holding the job's results")
    );
    let query = DataFusionError::Plan("No field named fare".into());
    assert_eq!(cluster_failure(&query), None);
}
