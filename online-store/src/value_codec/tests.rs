use proptest::prelude::*;
use quiver_registry::{ScalarType as S, ValueType};

use super::*;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// The blob vector of docs/online-format.md, byte for byte.
#[test]
fn format_vectors() {
    let types =
        ["float32", "int64", "string", "list<int32>"].map(|t| t.parse::<ValueType>().unwrap());
    let decoded = Decoded {
        event_ns: 1_767_225_600_000_000_000,
        created_ns: None,
        values: vec![
            Some(Value::Float32(0.5)),
            None,
            Some(Value::String("Paris".into())),
            Some(Value::List(vec![
                Some(Value::Int32(1)),
                None,
                Some(Value::Int32(3)),
            ])),
        ],
    };
    let expected = hex(
        "02  98 86 72 51 ed fa 00 00  00 00 00 00 00 00 00 00  04 00 00 00  0d  00 00 00 3f
         05 00 00 00 50 61 72 69 73  03 00 00 00 05 01 00 00 00 03 00 00 00  6c c9 d1 97",
    );
    assert_eq!(encode(&decoded, &types), expected);
    assert_eq!(decode(&expected, &types).unwrap(), decoded);
    // The same values as a version 1 blob (no checksum) still decode.
    let mut v1 = expected[..expected.len() - 4].to_vec();
    v1[0] = 1;
    assert_eq!(decode(&v1, &types).unwrap(), decoded);
}

/// Any one flipped bit of a blob — timestamps, bitmap, lengths, values, the checksum — is
/// detected: the value is refused, never decoded into something else.
#[test]
fn every_single_bit_flip_is_detected() {
    let types = ["int64", "string", "list<float64>"].map(|t| t.parse::<ValueType>().unwrap());
    let blob = encode(
        &Decoded {
            event_ns: 1_767_225_600_000_000_000,
            created_ns: Some(7),
            values: vec![
                Some(Value::Int64(19438)),
                Some(Value::String("Paris".into())),
                Some(Value::List(vec![Some(Value::Float64(0.5)), None])),
            ],
        },
        &types,
    );
    assert!(intact(&blob));
    for at in 0..blob.len() {
        for b in 0..8 {
            let mut bad = blob.clone();
            bad[at] ^= 1 << b;
            assert!(decode(&bad, &types).is_err(), "byte {at} bit {b}");
            assert!(
                !intact(&bad) || bad[0] == UNCHECKED_VERSION,
                "byte {at} bit {b}"
            );
        }
    }
}

#[test]
fn a_damaged_stored_blob_is_replaced_whatever_its_timestamps() {
    let t = [ValueType::Scalar(S::Int64)];
    let blob = |e: i64, v: i64| {
        encode(
            &Decoded {
                event_ns: e,
                created_ns: None,
                values: vec![Some(Value::Int64(v))],
            },
            &t,
        )
    };
    let mut future = blob(i64::MAX - 1, 1);
    let last = future.len() - 5;
    future[last] ^= 0x40;
    assert!(!should_replace(&blob(10, 2), &future), "it orders after");
    assert!(should_store(&blob(10, 2), &future), "but it is damaged");
    assert!(!should_store(&blob(10, 2), &blob(11, 2)));
    // Checksum-less version 1 blobs are kept by their order; at equal timestamps the newer
    // format wins, so a re-materialization upgrades every value.
    let mut v1 = blob(10, 9);
    v1.truncate(v1.len() - 4);
    v1[0] = UNCHECKED_VERSION;
    assert!(should_store(&blob(10, 2), &v1));
    assert!(!should_store(&v1, &blob(10, 2)));
    assert!(!should_store(&blob(9, 2), &v1));
    let mut foreign = blob(i64::MAX - 1, 1);
    foreign[0] = 9;
    assert!(
        should_store(&blob(10, 2), &foreign),
        "an unknown version is not kept"
    );
    assert!(
        should_store(&blob(10, 2), &[2, 0]),
        "a truncated blob is not kept"
    );
}

#[test]
fn appended_features_decode_as_absent_and_bad_blobs_are_rejected() {
    let old = [ValueType::Scalar(S::Int64)];
    let blob = encode(
        &Decoded {
            event_ns: 5,
            created_ns: Some(6),
            values: vec![Some(Value::Int64(7))],
        },
        &old,
    );
    let now = [ValueType::Scalar(S::Int64), ValueType::Scalar(S::String)];
    let d = decode(&blob, &now).unwrap();
    assert_eq!(
        d.values.len(),
        1,
        "the appended feature has no stored value"
    );
    assert_eq!(d.created_ns, Some(6));
    assert!(decode(&blob, &[]).is_err(), "more values than declared");
    assert!(decode(&blob[..blob.len() - 1], &old).is_err(), "truncated");
    let mut long = blob.clone();
    long.push(0);
    assert!(decode(&long, &old).is_err(), "trailing bytes");
    let mut v3 = blob;
    v3[0] = 3;
    assert!(decode(&v3, &old).is_err(), "unknown version");
}

#[test]
fn order_bytes_compare_like_timestamps() {
    let blob = |e, c| ValueEncoder::new(e, c, 0).finish();
    assert!(should_replace(&blob(10, Some(1)), &blob(9, Some(100))));
    assert!(
        should_replace(&blob(10, Some(2)), &blob(10, Some(1))),
        "a later created time wins a tie"
    );
    assert!(
        !should_replace(&blob(10, Some(1)), &blob(10, Some(1))),
        "identical blobs are not rewritten"
    );
    assert!(!should_replace(&blob(10, Some(1)), &blob(10, Some(2))));
    assert!(!should_replace(&blob(-5, None), &blob(-4, None)));
    assert!(
        should_replace(&blob(10, Some(0)), &blob(10, None)),
        "a created time beats none"
    );
    // A full tie with different values: the greater bytes win, whatever the order of writes.
    let with = |v: i64| {
        encode(
            &Decoded {
                event_ns: 10,
                created_ns: None,
                values: vec![Some(Value::Int64(v))],
            },
            &[ValueType::Scalar(S::Int64)],
        )
    };
    assert!(should_replace(&with(2), &with(1)) != should_replace(&with(1), &with(2)));
}

fn scalar_value(t: S) -> BoxedStrategy<Value> {
    match t {
        S::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        S::Int32 => any::<i32>().prop_map(Value::Int32).boxed(),
        S::Int64 => any::<i64>().prop_map(Value::Int64).boxed(),
        S::Float32 => any::<u32>()
            .prop_map(|b| Value::Float32(f32::from_bits(b)))
            .boxed(),
        S::Float64 => any::<u64>()
            .prop_map(|b| Value::Float64(f64::from_bits(b)))
            .boxed(),
        S::String => ".{0,12}".prop_map(Value::String).boxed(),
        S::Bytes => proptest::collection::vec(any::<u8>(), 0..12)
            .prop_map(Value::Bytes)
            .boxed(),
        S::Timestamp => any::<i64>().prop_map(Value::Timestamp).boxed(),
    }
}

const SCALARS: [S; 8] = [
    S::Bool,
    S::Int32,
    S::Int64,
    S::Float32,
    S::Float64,
    S::String,
    S::Bytes,
    S::Timestamp,
];

fn typed_value() -> impl Strategy<Value = (ValueType, Option<Value>)> {
    (0..16usize, any::<bool>()).prop_flat_map(|(i, null)| {
        let s = SCALARS[i % 8];
        if i < 8 {
            let t = ValueType::Scalar(s);
            scalar_value(s)
                .prop_map(move |v| (t, (!null).then_some(v)))
                .boxed()
        } else {
            let t = ValueType::List(s);
            proptest::collection::vec(proptest::option::of(scalar_value(s)), 0..6)
                .prop_map(move |items| (t, (!null).then_some(Value::List(items))))
                .boxed()
        }
    })
}

/// Float NaNs compare unequal; compare their bits instead.
fn same(a: &Decoded, b: &Decoded) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

proptest! {
    #[test]
    fn every_type_round_trips(
        event in any::<i64>(),
        created in proptest::option::of(any::<i64>().prop_filter("MIN means absent", |c| *c != i64::MIN)),
        fields in proptest::collection::vec(typed_value(), 0..20),
    ) {
        let types: Vec<ValueType> = fields.iter().map(|(t, _)| *t).collect();
        let decoded = Decoded { event_ns: event, created_ns: created, values: fields.into_iter().map(|(_, v)| v).collect() };
        let blob = encode(&decoded, &types);
        let back = decode(&blob, &types).unwrap();
        prop_assert!(same(&back, &decoded), "{back:?} != {decoded:?}");
    }

    #[test]
    fn ordered_i64_preserves_order(a in any::<i64>(), b in any::<i64>()) {
        prop_assert_eq!(a.cmp(&b), ordered_i64(a).cmp(&ordered_i64(b)));
    }

    #[test]
    fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), n in 0..6usize) {
        let types = vec![ValueType::List(S::String); n];
        let _ = decode(&bytes, &types);
    }
}
