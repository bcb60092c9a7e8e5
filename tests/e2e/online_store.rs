//! The online store's contract on both backends: set-if-newer per key, every value type.

use quiver_online_store::value_codec::{Decoded, Value, decode, encode, should_store};
use quiver_online_store::{EmbeddedStore, OnlineStore, RedisStore, WriteEntry};
use quiver_registry::{OnlineStoreConfig, ValueType};
use quiver_tests::RedisServer;

pub fn redis_config(url: &str) -> OnlineStoreConfig {
    OnlineStoreConfig::Redis {
        url: url.to_string(),
        cluster: false,
        cluster_nodes: vec![],
        timeout_ms: 1000,
        write_timeout_ms: 5000,
        key_ttl: false,
        allow_eviction: false,
        tls_ca_file: None,
    }
}

fn all_types() -> Vec<ValueType> {
    quiver_registry::value_type::type_names()
        .iter()
        .map(|t| t.parse().unwrap())
        .collect()
}

/// One value of every type (and list type), with a null in the middle.
fn every_value(event_ns: i64, created_ns: Option<i64>, seed: i64) -> Decoded {
    let mut values = Vec::new();
    for t in all_types() {
        let scalar = |s: &str| match s {
            "bool" => Value::Bool(seed % 2 == 0),
            "int32" => Value::Int32(-(seed as i32)),
            "int64" => Value::Int64(seed << 40),
            "float32" => Value::Float32(seed as f32 / 3.0),
            "float64" => Value::Float64(f64::NAN),
            "string" => Value::String(format!("žluť {seed}")),
            "bytes" => Value::Bytes(vec![0, 255, seed as u8]),
            _ => Value::Timestamp(-1_000_000_007 * seed),
        };
        let name = t.to_string();
        values.push(Some(
            match name.strip_prefix("list<").and_then(|r| r.strip_suffix('>')) {
                Some(inner) => Value::List(vec![Some(scalar(inner)), None, Some(scalar(inner))]),
                None => scalar(&name),
            },
        ));
    }
    values[3] = None;
    Decoded {
        event_ns,
        created_ns,
        values,
    }
}

async fn check_contract(store: &dyn OnlineStore) {
    let types = all_types();
    let key = "quiver:t:v:1:{i1}".to_string();
    let put = |d: &Decoded| WriteEntry {
        key: key.clone(),
        blob: encode(d, &types),
        expire_at_ms: None,
    };
    let get = || async {
        decode(
            &store.read(std::slice::from_ref(&key)).await.unwrap()[0]
                .clone()
                .unwrap(),
            &types,
        )
        .unwrap()
    };
    let same = |a: &Decoded, b: &Decoded| format!("{a:?}") == format!("{b:?}");

    let v1 = every_value(100, Some(5), 1);
    assert_eq!(store.write(vec![put(&v1)]).await.unwrap(), 1);
    assert!(same(&get().await, &v1), "every type and a null round-trip");

    let older = every_value(99, Some(1_000), 2);
    assert_eq!(
        store.write(vec![put(&older)]).await.unwrap(),
        0,
        "an older event never overwrites"
    );
    assert!(same(&get().await, &v1));

    let earlier_created = every_value(100, Some(4), 3);
    assert_eq!(store.write(vec![put(&earlier_created)]).await.unwrap(), 0);

    let correction = every_value(100, Some(6), 4);
    assert_eq!(
        store.write(vec![put(&correction)]).await.unwrap(),
        1,
        "a later created time corrects"
    );
    assert!(same(&get().await, &correction));
    assert_eq!(
        store.write(vec![put(&correction)]).await.unwrap(),
        0,
        "identical blobs are not rewritten"
    );

    // A full tie: the greater bytes win whichever is written first.
    let (a, b) = (every_value(200, None, 7), every_value(200, None, 8));
    let winner = if encode(&a, &types) > encode(&b, &types) {
        &a
    } else {
        &b
    };
    store.write(vec![put(&a)]).await.unwrap();
    store.write(vec![put(&b)]).await.unwrap();
    assert!(same(&get().await, winner));
    store.write(vec![put(&b), put(&a)]).await.unwrap();
    assert!(same(&get().await, winner));

    // Many keys in one call, and reads of present and absent keys in one round trip.
    let many: Vec<WriteEntry> = (0..2000)
        .map(|i| WriteEntry {
            key: format!("quiver:t:w:1:{{i{i}}}"),
            blob: encode(&every_value(i, None, i), &types),
            expire_at_ms: None,
        })
        .collect();
    assert_eq!(store.write(many).await.unwrap(), 2000);
    let keys: Vec<String> = (1995..2005)
        .map(|i| format!("quiver:t:w:1:{{i{i}}}"))
        .collect();
    let got = store.read(&keys).await.unwrap();
    assert_eq!(got.iter().filter(|g| g.is_some()).count(), 5);

    // Watermarks only move forward.
    assert_eq!(store.watermark("t", "v", 1).await.unwrap(), None);
    store.advance_watermark("t", "v", 1, 50).await.unwrap();
    store.advance_watermark("t", "v", 1, 40).await.unwrap();
    assert_eq!(store.watermark("t", "v", 1).await.unwrap(), Some(50));
    assert_eq!(
        store.watermark("t", "v", 2).await.unwrap(),
        None,
        "generations are separate"
    );
}

/// The write rule on damaged, legacy and foreign blobs, decided by the store (a Lua script in
/// Redis, Rust in redb) exactly as `value_codec::should_store` decides it: every pair of a stored
/// blob (intact, a bit flipped, truncated, checksum-less version 1, unknown version) and a new
/// intact blob, over timestamps that tie and that don't.
async fn check_write_rule(store: &dyn OnlineStore) {
    let types = all_types();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let times = [
        (100, None),
        (100, Some(5)),
        (101, None),
        (i64::MAX - 1, Some(1)),
    ];
    let (mut replaced, mut kept) = (0, 0);
    for i in 0..400 {
        let pick = |r: u64| times[(r % times.len() as u64) as usize];
        let (e, c) = pick(next());
        let mut old = encode(&every_value(e, c, (next() % 3) as i64), &types);
        match next() % 5 {
            0 => {}
            1 => {
                let at = (next() % old.len() as u64) as usize;
                old[at] ^= 1 << (next() % 8);
            }
            2 => old.truncate((next() % old.len() as u64) as usize + 1),
            3 => {
                old.truncate(old.len() - 4);
                old[0] = 1;
            }
            _ => old[0] = 3,
        }
        let (e, c) = pick(next());
        let new = encode(&every_value(e, c, (next() % 3) as i64), &types);
        let key = format!("quiver:t:rule:1:{{i{i}}}");
        let put = |blob: &Vec<u8>| WriteEntry {
            key: key.clone(),
            blob: blob.clone(),
            expire_at_ms: None,
        };
        assert_eq!(store.write(vec![put(&old)]).await.unwrap(), 1);
        let expect = should_store(&new, &old);
        assert_eq!(
            store.write(vec![put(&new)]).await.unwrap(),
            u64::from(expect),
            "pair {i}: old {old:02x?}, new {new:02x?}"
        );
        let stored = store.read(std::slice::from_ref(&key)).await.unwrap()[0].clone();
        assert_eq!(stored.as_ref(), Some(if expect { &new } else { &old }));
        if expect { replaced += 1 } else { kept += 1 }
    }
    assert!(
        replaced > 50 && kept > 50,
        "both outcomes tried: {replaced} / {kept}"
    );
}

#[tokio::test]
async fn embedded_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("online.redb")).unwrap();
    check_contract(&store).await;
    check_write_rule(&store).await;
    drop(store);
    // Data survives reopening: it is on disk.
    let store = EmbeddedStore::open(&dir.path().join("online.redb")).unwrap();
    assert_eq!(store.watermark("t", "v", 1).await.unwrap(), Some(50));
}

#[tokio::test]
async fn redis_store_keeps_the_contract() {
    let redis = RedisServer::start().unwrap();
    let store = RedisStore::connect(&redis_config(&redis.url()), std::path::Path::new("."))
        .await
        .unwrap();
    check_contract(&store).await;
    check_write_rule(&store).await;
}

/// A key offered twice (or more) in one write keeps the newest, whatever the order, and only
/// writes that replaced a value are counted.
async fn check_repeated_keys(store: &dyn OnlineStore) {
    let types = all_types();
    let blob = |event_ns: i64| encode(&every_value(event_ns, None, 7), &types);
    let entry = |key: &str, blob: &Vec<u8>| WriteEntry {
        key: key.into(),
        blob: blob.clone(),
        expire_at_ms: None,
    };
    let (old, mid, new) = (blob(10), blob(20), blob(30));
    let cases: [(&str, Vec<&Vec<u8>>, u64); 4] = [
        ("quiver:t:v:1:{d1}", vec![&new, &old], 1),
        ("quiver:t:v:1:{d2}", vec![&old, &new], 2),
        ("quiver:t:v:1:{d3}", vec![&mid, &new, &old, &mid], 2),
        ("quiver:t:v:1:{d4}", vec![&new, &new], 1),
    ];
    for (key, blobs, counted) in cases {
        // Other keys around the repeats, in the same call.
        let mut entries = vec![entry("quiver:t:v:1:{x1}", &old)];
        entries.extend(blobs.iter().map(|b| entry(key, b)));
        entries.push(entry("quiver:t:v:1:{x2}", &old));
        let written = store.write(entries).await.unwrap();
        let stored = store.read(&[key.to_string()]).await.unwrap();
        assert_eq!(stored[0].as_deref(), Some(new.as_slice()), "{key}");
        // x1 and x2 are written by the first case only.
        let others = if key.ends_with("{d1}") { 2 } else { 0 };
        assert_eq!(written, counted + others, "{key}");
    }
}

#[tokio::test]
async fn repeated_keys_in_one_write_keep_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = EmbeddedStore::open(&dir.path().join("online.redb")).unwrap();
    check_repeated_keys(&embedded).await;
    let redis = RedisServer::start().unwrap();
    let store = RedisStore::connect(&redis_config(&redis.url()), std::path::Path::new("."))
        .await
        .unwrap();
    check_repeated_keys(&store).await;
}

#[tokio::test]
async fn redis_expires_values_at_their_deadline() {
    let redis = RedisServer::start().unwrap();
    let store = RedisStore::connect(&redis_config(&redis.url()), std::path::Path::new("."))
        .await
        .unwrap();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let blob = encode(&every_value(1, None, 1), &all_types());
    let newer = encode(&every_value(2, None, 1), &all_types());
    let entry = |key: &str, blob: &Vec<u8>, expire_at_ms| WriteEntry {
        key: key.into(),
        blob: blob.clone(),
        expire_at_ms,
    };
    // Stored first: i3 with a ttl, i4 newer than what the batch below offers for it.
    let before = vec![
        entry("quiver:t:v:1:{i3}", &blob, Some(now_ms + 3_600_000)),
        entry("quiver:t:v:1:{i4}", &newer, Some(now_ms + 3_600_000)),
    ];
    assert_eq!(store.write(before).await.unwrap(), 2);
    // One script call with expiring and non-expiring entries, and one that loses.
    let entries = vec![
        entry("quiver:t:v:1:{i1}", &blob, Some(now_ms + 3_600_000)),
        entry("quiver:t:v:1:{i2}", &blob, Some(now_ms - 1)),
        entry("quiver:t:v:1:{i3}", &newer, None),
        entry("quiver:t:v:1:{i4}", &blob, None),
    ];
    assert_eq!(
        store.write(entries).await.unwrap(),
        3,
        "i4 keeps its newer value"
    );
    let mut con = redis.client().unwrap();
    let pttl = |con: &mut redis::Connection, key: &str| -> i64 {
        redis::cmd("PTTL").arg(key).query(con).unwrap()
    };
    assert_eq!(
        pttl(&mut con, "quiver:t:v:1:{i3}"),
        -1,
        "a value without a ttl replaces one with a ttl, and keeps none"
    );
    let i4 = pttl(&mut con, "quiver:t:v:1:{i4}");
    assert!(i4 > 3_500_000, "a value not replaced keeps its ttl: {i4}");
    let kept: Vec<u8> = redis::cmd("GET")
        .arg("quiver:t:v:1:{i4}")
        .query(&mut con)
        .unwrap();
    assert_eq!(kept, newer);
    let ttl: i64 = redis::cmd("PTTL")
        .arg("quiver:t:v:1:{i1}")
        .query(&mut con)
        .unwrap();
    assert!(ttl > 3_500_000 && ttl <= 3_600_000, "{ttl}");
    let gone: Option<Vec<u8>> = redis::cmd("GET")
        .arg("quiver:t:v:1:{i2}")
        .query(&mut con)
        .unwrap();
    assert_eq!(gone, None, "a value already past its ttl is not kept");
}

#[tokio::test]
async fn redis_down_is_unavailable_within_the_timeout() {
    let mut redis = RedisServer::start().unwrap();
    let store = RedisStore::connect(&redis_config(&redis.url()), std::path::Path::new("."))
        .await
        .unwrap();
    store.ping().await.unwrap();
    redis.stop();
    let started = std::time::Instant::now();
    let err = store
        .read(&["quiver:t:v:1:{i1}".to_string()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, quiver_online_store::Error::Unavailable(_)),
        "{err}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    redis.restart().unwrap();
    // The connection recovers by itself.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.ping().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "no recovery after restart"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
