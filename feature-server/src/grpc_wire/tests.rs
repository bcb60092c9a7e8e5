//! `grpc_wire` holds to prost's bytes for the same response.

use super::reference::convert_response;
use super::*;
use proptest::prelude::*;
use prost::Message;

fn scalar_type() -> impl Strategy<Value = ScalarType> {
    prop_oneof![
        Just(ScalarType::Bool),
        Just(ScalarType::Int32),
        Just(ScalarType::Int64),
        Just(ScalarType::Float32),
        Just(ScalarType::Float64),
        Just(ScalarType::String),
        Just(ScalarType::Bytes),
        Just(ScalarType::Timestamp),
    ]
}

fn scalar(t: ScalarType) -> BoxedStrategy<Value> {
    match t {
        ScalarType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        ScalarType::Int32 => any::<i32>().prop_map(Value::Int32).boxed(),
        ScalarType::Int64 => prop_oneof![Just(0i64), any::<i64>()]
            .prop_map(Value::Int64)
            .boxed(),
        ScalarType::Float32 => any::<f32>().prop_map(Value::Float32).boxed(),
        ScalarType::Float64 => any::<f64>().prop_map(Value::Float64).boxed(),
        ScalarType::String => ".{0,20}".prop_map(Value::String).boxed(),
        ScalarType::Bytes => proptest::collection::vec(any::<u8>(), 0..200)
            .prop_map(Value::Bytes)
            .boxed(),
        ScalarType::Timestamp => prop_oneof![Just(0i64), any::<i64>()]
            .prop_map(Value::Timestamp)
            .boxed(),
    }
}

/// A cell of a column of type `t`: usually of that type, sometimes absent, sometimes a value
/// of another shape (a list where a scalar is declared, a stray element type in a list).
fn cell(t: ValueType) -> BoxedStrategy<Option<Value>> {
    let typed = match t {
        ValueType::Scalar(s) => scalar(s),
        ValueType::List(e) => proptest::collection::vec(
            prop_oneof![
                6 => scalar(e).prop_map(Some),
                1 => Just(None),
                1 => scalar_type().prop_flat_map(scalar).prop_map(Some),
            ],
            0..6,
        )
        .prop_map(Value::List)
        .boxed(),
    };
    prop_oneof![
        8 => typed.prop_map(Some),
        2 => Just(None),
        1 => Just(Some(Value::List(vec![Some(Value::Int64(1)), None]))),
    ]
    .boxed()
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Present),
        Just(Status::NullValue),
        Just(Status::NotFound),
        Just(Status::OutsideMaxAge),
    ]
}

fn column(rows: usize) -> impl Strategy<Value = Column> {
    (scalar_type(), any::<bool>()).prop_flat_map(move |(s, is_list)| {
        let t = if is_list {
            ValueType::List(s)
        } else {
            ValueType::Scalar(s)
        };
        (
            proptest::collection::vec(cell(t), rows),
            proptest::collection::vec(status(), rows),
            proptest::collection::vec(
                prop_oneof![Just(0i64), any::<i64>(), 0i64..4_000_000_000_000_000_000],
                rows,
            ),
        )
            .prop_map(move |(values, statuses, event_ns)| Column {
                value_type: t,
                values,
                statuses,
                event_ns,
            })
    })
}

fn response() -> impl Strategy<Value = OnlineResponse> {
    (0usize..5, 0usize..6).prop_flat_map(|(rows, columns)| {
        (
            proptest::collection::vec(column(rows), columns),
            proptest::collection::vec("[a-z_]{0,12}", columns),
            proptest::collection::vec(("[a-z_]{0,12}", any::<i32>()), 0..3),
        )
            .prop_map(|(columns, names, view_metadata)| OnlineResponse {
                names,
                columns,
                view_metadata,
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The oracle is prost: the same response through the message structs must give the
    /// very same bytes.
    #[test]
    fn writes_exactly_what_prost_writes(r in response()) {
        let want = convert_response(r.clone()).encode_to_vec();
        let mut got = Vec::new();
        encode(&r, &mut got);
        prop_assert_eq!(got, want);
    }
}

/// Bodies whose lengths need two and three varint bytes (the moved-body path), at every
/// level: a 20,000-byte value, a 3,000-row vector, metadata over 128 bytes.
#[test]
fn long_bodies_match_prost_too() {
    let rows = 3_000;
    let r = OnlineResponse {
        names: vec![
            "a_rather_long_feature_name_to_pass_128_bytes".repeat(3),
            "b".into(),
        ],
        columns: vec![
            Column {
                value_type: ValueType::Scalar(ScalarType::Bytes),
                values: vec![Some(Value::Bytes(vec![7; 20_000]))],
                statuses: vec![Status::Present],
                event_ns: vec![1_700_000_000_123_456_789],
            },
            Column {
                value_type: ValueType::List(ScalarType::Int64),
                values: (0..rows)
                    .map(|i| {
                        Some(Value::List(
                            (0..i % 40).map(|x| Some(Value::Int64(-x))).collect(),
                        ))
                    })
                    .collect(),
                statuses: vec![Status::Present; rows as usize],
                event_ns: (0..rows).map(|i| i * 1_000_000_007).collect(),
            },
        ],
        view_metadata: vec![("v".repeat(200), 7)],
    };
    let mut got = Vec::new();
    encode(&r, &mut got);
    assert!(got.len() > 100_000);
    assert_eq!(got, convert_response(r).encode_to_vec());
}
