//! The reference `grpc_wire` is tested against: the core's response as prost messages, the
//! way tonic's generated server would encode it. Test code only.

use quiver_online_store::value_codec::Value;
use quiver_proto::feast::serving::get_online_features_response::FeatureVector;
use quiver_proto::feast::serving::{
    FeatureList, FeatureViewMetadata, FieldStatus, GetOnlineFeaturesResponse,
    GetOnlineFeaturesResponseMetadata,
};
use quiver_proto::feast::types::{self as pb, value::Val};
use quiver_registry::{ScalarType, ValueType};

use crate::service::{OnlineResponse, Status as FieldState};

pub(super) fn convert_response(r: OnlineResponse) -> GetOnlineFeaturesResponse {
    let results = r
        .columns
        .into_iter()
        .map(|c| FeatureVector {
            values: c
                .values
                .into_iter()
                .map(|v| pb::Value {
                    val: v.map(|v| to_val(v, c.value_type)),
                })
                .collect(),
            statuses: c.statuses.into_iter().map(|s| status(s) as i32).collect(),
            event_timestamps: c
                .event_ns
                .into_iter()
                .map(|ns| prost_types::Timestamp {
                    seconds: ns.div_euclid(1_000_000_000),
                    nanos: ns.rem_euclid(1_000_000_000) as i32,
                })
                .collect(),
        })
        .collect();
    GetOnlineFeaturesResponse {
        metadata: Some(GetOnlineFeaturesResponseMetadata {
            feature_names: Some(FeatureList { val: r.names }),
            feature_view_metadata: r
                .view_metadata
                .into_iter()
                .map(|(name, version)| FeatureViewMetadata { name, version })
                .collect(),
        }),
        results,
        status: true,
    }
}

fn status(s: FieldState) -> FieldStatus {
    match s {
        FieldState::Present => FieldStatus::Present,
        FieldState::NullValue => FieldStatus::NullValue,
        FieldState::NotFound => FieldStatus::NotFound,
        FieldState::OutsideMaxAge => FieldStatus::OutsideMaxAge,
    }
}

fn to_val(v: Value, t: ValueType) -> Val {
    match (v, t) {
        (Value::Bool(b), _) => Val::BoolVal(b),
        (Value::Int32(x), _) => Val::Int32Val(x),
        (Value::Int64(x), _) => Val::Int64Val(x),
        (Value::Float32(x), _) => Val::FloatVal(x),
        (Value::Float64(x), _) => Val::DoubleVal(x),
        (Value::String(s), _) => Val::StringVal(s),
        (Value::Bytes(b), _) => Val::BytesVal(b),
        (Value::Timestamp(ns), _) => Val::UnixTimestampVal(ns.div_euclid(1_000_000_000)),
        (Value::List(items), ValueType::List(element)) => list_val(element, items),
        (Value::List(_), ValueType::Scalar(_)) => Val::NullVal(pb::Null::Null as i32),
    }
}

/// A list as Feast's typed list message, element for element ([`crate::grpc_wire::Element`]:
/// nulls replaced, never dropped).
fn list_val(element: ScalarType, items: Vec<Option<Value>>) -> Val {
    use crate::grpc_wire::{Element, list_elements};
    let els: Vec<Element<'_>> = list_elements(element, &items).collect();
    let ints = || els.iter().map(|e| e.int());
    let bytes = || {
        els.iter().map(|e| match e {
            Element::Bytes(b) => b.to_vec(),
            _ => Vec::new(),
        })
    };
    match element {
        ScalarType::Bool => Val::BoolListVal(pb::BoolList {
            val: els.iter().map(|e| *e == Element::Bool(true)).collect(),
        }),
        ScalarType::Int32 => Val::Int32ListVal(pb::Int32List {
            val: ints().map(|x| x as i32).collect(),
        }),
        ScalarType::Int64 => Val::Int64ListVal(pb::Int64List {
            val: ints().collect(),
        }),
        ScalarType::Timestamp => Val::UnixTimestampListVal(pb::Int64List {
            val: ints().collect(),
        }),
        ScalarType::Float32 => Val::FloatListVal(pb::FloatList {
            val: els
                .iter()
                .map(|e| match e {
                    Element::F32(x) => *x,
                    _ => f32::NAN,
                })
                .collect(),
        }),
        ScalarType::Float64 => Val::DoubleListVal(pb::DoubleList {
            val: els
                .iter()
                .map(|e| match e {
                    Element::F64(x) => *x,
                    _ => f64::NAN,
                })
                .collect(),
        }),
        ScalarType::String => Val::StringListVal(pb::StringList {
            val: bytes()
                .map(|b| String::from_utf8(b).unwrap_or_default())
                .collect(),
        }),
        ScalarType::Bytes => Val::BytesListVal(pb::BytesList {
            val: bytes().collect(),
        }),
    }
}
