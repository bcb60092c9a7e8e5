//! The in-process cache: hits skip the store, nothing older than the staleness bound is served,
//! and invalidation (a materialization commit) takes effect at once.

use std::time::{Duration, Instant};

use quiver_feature_server::cache::BlobCache;
use quiver_online_store::value_codec::ValueEncoder;
use quiver_online_store::{EmbeddedStore, OnlineStore, WriteEntry};

fn blob(event: i64, v: i64) -> Vec<u8> {
    let mut e = ValueEncoder::new(event, None, 1);
    e.i64(v);
    e.finish()
}

async fn put(store: &EmbeddedStore, event: i64, v: i64) {
    store
        .write(vec![WriteEntry {
            key: "k".into(),
            blob: blob(event, v),
            expire_at_ms: None,
        }])
        .await
        .unwrap();
}

#[tokio::test]
async fn cached_values_are_bounded_by_staleness_and_invalidation() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("online.redb")).unwrap();
    let keys = vec!["k".to_string(), "absent".to_string()];
    // Long enough that a write (an fsync on a busy CI disk) between the first read and the
    // second cannot outlast it: the second read must come from the cache.
    let staleness = Duration::from_secs(2);
    let cache = BlobCache::new(staleness, 1000);
    put(&store, 1, 10).await;
    let first = cache.read_through(&store, &keys).await.unwrap();
    assert_eq!(first[0].as_deref(), Some(&blob(1, 10)));
    assert_eq!(first[1], None);

    put(&store, 2, 20).await;
    let cached = cache.read_through(&store, &keys).await.unwrap();
    assert_eq!(
        cached[0].as_deref(),
        Some(&blob(1, 10)),
        "served from the cache"
    );

    cache.invalidate_all();
    let fresh = cache.read_through(&store, &keys).await.unwrap();
    assert_eq!(
        fresh[0].as_deref(),
        Some(&blob(2, 20)),
        "invalidation takes effect at once"
    );

    put(&store, 3, 30).await;
    let written = Instant::now();
    loop {
        let got = cache.read_through(&store, &keys).await.unwrap();
        if got[0].as_deref() == Some(&blob(3, 30)) {
            break;
        }
        assert!(
            written.elapsed() <= staleness + Duration::from_millis(700),
            "a cached value outlived its staleness bound"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
