//! Any bytes as a stored value blob, for any declared types: decoding errors or succeeds, and
//! what decodes re-encodes to a blob that decodes to the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_online_store::value_codec::{decode, encode};
use quiver_registry::ValueType;

const TYPES: [&str; 16] = [
    "bool", "int32", "int64", "float32", "float64", "string", "bytes", "timestamp",
    "list<bool>", "list<int32>", "list<int64>", "list<float32>", "list<float64>", "list<string>",
    "list<bytes>", "list<timestamp>",
];

fuzz_target!(|data: &[u8]| {
    // The first byte picks how many types, the next ones which.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n % 12) as usize;
    if rest.len() < n {
        return;
    }
    let (picks, blob) = rest.split_at(n);
    let types: Vec<ValueType> = picks
        .iter()
        .map(|p| TYPES[*p as usize % TYPES.len()].parse().unwrap())
        .collect();
    if let Ok(decoded) = decode(blob, &types) {
        let again = encode(&decoded, &types);
        let round = decode(&again, &types).expect("an encoded blob decodes");
        assert_eq!(encode(&round, &types), again, "encode/decode is not stable");
    }
});
