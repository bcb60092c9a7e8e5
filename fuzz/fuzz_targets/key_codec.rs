//! Any join key values: the encoded entity key is the key's Redis Cluster hash tag, so all views
//! of one entity share a slot, and different values never encode alike.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_online_store::key_codec::{KeyValue, entity_key, hash_tag, online_key, view_prefix};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let half = rest.len() / 2;
    let value = |bytes: &[u8]| match kind % 3 {
        0 => KeyValue::Int(i64::from_le_bytes(
            bytes.iter().copied().chain([0; 8]).take(8).collect::<Vec<_>>().try_into().unwrap(),
        )),
        1 => KeyValue::Str(String::from_utf8_lossy(bytes).into_owned()),
        _ => KeyValue::Bytes(bytes.to_vec()),
    };
    let (a, b) = (value(&rest[..half]), value(&rest[half..]));
    let ka = entity_key(std::slice::from_ref(&a));
    let kb = entity_key(std::slice::from_ref(&b));
    assert_eq!(a == b, ka == kb, "{a:?} and {b:?} encode as {ka} and {kb}");
    let both = entity_key(&[a, b]);
    let key = online_key(&view_prefix("p", "v", 1), &both);
    assert_eq!(hash_tag(&key), both);
    // Arbitrary text as a key must not panic either.
    let _ = hash_tag(&String::from_utf8_lossy(data));
});
