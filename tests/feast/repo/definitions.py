"""Feast definitions for the Quiver reference fixtures (see tests/feast/README.md)."""
import os
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import (Array, Bool, Bytes, Float32, Float64, Int32, Int64, String,
                         UnixTimestamp)
from feast.value_type import ValueType

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)

source = FileSource(
    name="edge_source",
    path=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "edge_stats.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

edge_stats = FeatureView(
    name="edge_stats",
    entities=[driver],
    ttl=timedelta(days=7300),
    schema=[
        Field(name="driver_id", dtype=Int64),
        Field(name="f_float64", dtype=Float64),
        Field(name="f_float32", dtype=Float32),
        Field(name="f_int64", dtype=Int64),
        Field(name="f_int32", dtype=Int32),
        Field(name="f_string", dtype=String),
        Field(name="f_bytes", dtype=Bytes),
        Field(name="f_bool", dtype=Bool),
        Field(name="f_ts", dtype=UnixTimestamp),
        Field(name="l_float64", dtype=Array(Float64)),
        Field(name="l_float32", dtype=Array(Float32)),
        Field(name="l_int64", dtype=Array(Int64)),
        Field(name="l_int32", dtype=Array(Int32)),
        Field(name="l_string", dtype=Array(String)),
        Field(name="l_bool", dtype=Array(Bool)),
        Field(name="l_bytes", dtype=Array(Bytes)),
        Field(name="l_ts", dtype=Array(UnixTimestamp)),
    ],
    online=True,
    source=source,
)

edge_service = FeatureService(name="edge_service", features=[edge_stats])

# Null-free source: exact int64/int32 bounds (see make_data.py for why they are separate).
bounds_source = FileSource(
    name="edge_int_bounds_source",
    path=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "edge_int_bounds.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

edge_int_bounds = FeatureView(
    name="edge_int_bounds",
    entities=[driver],
    ttl=timedelta(days=7300),
    schema=[
        Field(name="driver_id", dtype=Int64),
        Field(name="b_int64", dtype=Int64),
        Field(name="b_int32", dtype=Int32),
        Field(name="bl_int64", dtype=Array(Int64)),
        Field(name="bl_int32", dtype=Array(Int32)),
    ],
    online=True,
    source=bounds_source,
)

bounds_service = FeatureService(name="bounds_service", features=[edge_int_bounds])

# Note: a view keyed by a BOOL join key cannot be materialized by Feast 0.67
# (key_encoding_utils._serialize_val: "Value type not supported for feast feature
# store: bool_val: true"), so there is none here.
