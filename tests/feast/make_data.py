#!/usr/bin/env python3
"""Write the deterministic Parquet source for the Feast reference repo.

Usage: make_data.py OUT_DIR   (writes edge_stats.parquet, edge_int_bounds.parquet)

One entity `driver` (join key driver_id int64); feature view `edge_stats` with one
feature per Feast type.  Every row is described in ROWS below; ids not listed
(e.g. 999) are requested as missing entities by record.py.

Feast 0.67 materializes a column via pyarrow `to_numpy()`, so an int64 column that
also holds a null becomes float64: 2**63-1 then rounds to 2**63 and materialize fails
("ValueError: Value out of range: 9223372036854775808"), and 2**53+1 silently becomes
2**53.  edge_stats therefore holds 2**53+1 (to show that loss) and -2**63 (exact in
float64); the exact int64/int32 bounds live in a second, null-free view
`edge_int_bounds` (source edge_int_bounds.parquet).
"""
import math
import struct
import sys
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq

UTC = timezone.utc
FRESH = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)  # event_timestamp of fresh rows
CREATED = datetime(2025, 6, 2, 0, 0, 0, tzinfo=UTC)
STALE = datetime(1971, 1, 1, 0, 0, 0, tzinfo=UTC)  # older than ttl (7300 days) until ~2045

I64_MAX, I64_MIN = 2**63 - 1, -(2**63)
I32_MAX, I32_MIN = 2**31 - 1, -(2**31)
F32_MAX = 3.4028234663852886e38


def f32(x):
    """Round a Python float to the nearest float32 (what Parquet float stores)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def ts(*a, us=0):
    return datetime(*a, tzinfo=UTC) + timedelta(microseconds=us)


# Pre-1970 instants with fractional seconds.
PRE_A = ts(1969, 12, 31, 23, 59, 58, us=250000)  # -1.75 s
PRE_B = ts(1969, 12, 31, 23, 59, 59, us=500000)  # -0.5 s
PRE_C = ts(1900, 1, 1, 0, 0, 0, us=999999)       # -2208988800 + 0.999999 s
POST_A = ts(2001, 9, 9, 1, 46, 40, us=750000)    # 1000000000.75 s

FEATURES = [
    # name, feast type name, arrow type
    ("f_float64", "Float64", pa.float64()),
    ("f_float32", "Float32", pa.float32()),
    ("f_int64", "Int64", pa.int64()),
    ("f_int32", "Int32", pa.int32()),
    ("f_string", "String", pa.string()),
    ("f_bytes", "Bytes", pa.binary()),
    ("f_bool", "Bool", pa.bool_()),
    ("f_ts", "UnixTimestamp", pa.timestamp("us", tz="UTC")),
    ("l_float64", "Array(Float64)", pa.list_(pa.float64())),
    ("l_float32", "Array(Float32)", pa.list_(pa.float32())),
    ("l_int64", "Array(Int64)", pa.list_(pa.int64())),
    ("l_int32", "Array(Int32)", pa.list_(pa.int32())),
    ("l_string", "Array(String)", pa.list_(pa.string())),
    ("l_bool", "Array(Bool)", pa.list_(pa.bool_())),
    ("l_bytes", "Array(Bytes)", pa.list_(pa.binary())),
    ("l_ts", "Array(UnixTimestamp)", pa.list_(pa.timestamp("us", tz="UTC"))),
]

ALL_NULL = {name: None for name, _, _ in FEATURES}

# driver_id -> (event_timestamp, {feature: value}); unspecified features are null.
ROWS = {
    1: (FRESH, dict(  # ordinary values
        f_float64=1.5, f_float32=2.5, f_int64=42, f_int32=-7, f_string="plain",
        f_bytes=b"\x00\x01\xff", f_bool=True, f_ts=POST_A,
        l_float64=[1.0, 2.5], l_float32=[0.5, -1.25], l_int64=[1, -2, 3], l_int32=[4, 5],
        l_string=["a", "b"], l_bool=[True, False], l_bytes=[b"x", b"\x00\xff"],
        l_ts=[POST_A, ts(2020, 1, 1)])),
    2: (FRESH, dict(  # NaN, unicode, 256 bytes, pre-1970 fractional scalar ts
        f_float64=math.nan, f_float32=math.nan, f_int64=0, f_int32=0,
        f_string="h\u00e9llo \u2603 \U0001d11e \u65e5\u672c", f_bytes=bytes(range(256)),
        f_bool=False, f_ts=PRE_A,
        l_float64=[math.nan, 1.0], l_float32=[math.nan], l_int64=[0], l_int32=[0],
        l_string=["\u00e9", "\U0001F600"], l_bool=[False], l_bytes=[bytes(range(256))],
        l_ts=[PRE_A])),
    3: (FRESH, dict(  # +Inf / -Inf, max ints, NUL in strings, empty bytes, 1900 ts
        f_float64=math.inf, f_float32=-math.inf, f_int64=2**53 + 1, f_int32=I32_MAX,
        f_string="a\u0000b", f_bytes=b"", f_bool=True, f_ts=PRE_C,
        l_float64=[math.inf, -math.inf], l_float32=[math.inf, -math.inf],
        l_int64=[I64_MAX, I64_MIN], l_int32=[I32_MAX, I32_MIN],
        l_string=["\u0000", ""], l_bool=[True, True], l_bytes=[b""], l_ts=[PRE_C])),
    4: (FRESH, dict(  # -Inf / +Inf, min ints, empty string, only the \u0000 string
        f_float64=-math.inf, f_float32=math.inf, f_int64=I64_MIN, f_int32=I32_MIN,
        f_string="", f_bytes=b"\x00", f_bool=False, f_ts=PRE_B,
        l_float64=[-0.0], l_float32=[-0.0], l_int64=[I64_MIN], l_int32=[I32_MIN],
        l_string=["\u0000"], l_bool=[False, True], l_bytes=[b"\x00"], l_ts=[PRE_B])),
    5: (FRESH, dict(  # -0.0 and subnormals
        f_float64=-0.0, f_float32=-0.0, f_int64=-1, f_int32=-1, f_string=" ",
        f_bytes=b" ", f_bool=True, f_ts=ts(1970, 1, 1),
        l_float64=[-0.0, 5e-324, 2.2250738585072014e-308],
        l_float32=[-0.0, f32(1e-45), f32(1.1754942e-38)],
        l_int64=[-1], l_int32=[-1], l_string=[" "], l_bool=[True], l_bytes=[b" "],
        l_ts=[ts(1970, 1, 1)])),
    6: (FRESH, dict(  # float32 max and 0.1; float64 subnormal scalar
        f_float64=5e-324, f_float32=F32_MAX, f_int64=1, f_int32=1, f_string="0.1",
        f_bytes=b"0.1", f_bool=False, f_ts=ts(1970, 1, 1, us=1),
        l_float64=[0.1, 1e308], l_float32=[f32(0.1), F32_MAX, f32(1e-45)],
        l_int64=[1], l_int32=[1], l_string=["0.1"], l_bool=[False], l_bytes=[b"0.1"],
        l_ts=[ts(1970, 1, 1, us=1)])),
    7: (FRESH, dict(ALL_NULL)),  # every feature null
    8: (FRESH, dict(  # every list empty; scalars present
        f_float64=0.0, f_float32=0.0, f_int64=0, f_int32=0, f_string="empty-lists",
        f_bytes=b"", f_bool=False, f_ts=ts(1970, 1, 1),
        l_float64=[], l_float32=[], l_int64=[], l_int32=[], l_string=[], l_bool=[],
        l_bytes=[], l_ts=[])),
    9: (FRESH, dict(  # lists with a null element; scalar f_float32 = 0.1 as float32
        f_float64=0.1, f_float32=f32(0.1), f_int64=9, f_int32=9, f_string="null-elems",
        f_bytes=b"9", f_bool=True, f_ts=POST_A,
        # int lists with a null element cannot be materialized by Feast 0.67 (the list
        # becomes float64 -> TypeError); see probe_conversions.py / conversions.json.
        l_float64=[1.0, None, 3.0], l_float32=[1.0, None, 3.0], l_int64=[1, 2, 3],
        l_int32=[1, 2, 3], l_string=["a", None], l_bool=[True, None, False],
        l_bytes=[b"a", None], l_ts=[POST_A, None])),
    10: (STALE, dict(  # stale: event_timestamp older than the ttl
        f_float64=10.0, f_float32=10.0, f_int64=10, f_int32=10, f_string="stale",
        f_bytes=b"stale", f_bool=True, f_ts=STALE,
        l_float64=[10.0], l_float32=[10.0], l_int64=[10], l_int32=[10],
        l_string=["stale"], l_bool=[True], l_bytes=[b"stale"], l_ts=[STALE])),
    11: (FRESH, dict(  # timestamp lists mixing pre-1970 fractional and post-1970 fractional
        f_float64=11.0, f_float32=11.0, f_int64=11, f_int32=11, f_string="ts-lists",
        f_bytes=b"11", f_bool=True, f_ts=PRE_B,
        l_float64=[11.0], l_float32=[11.0], l_int64=[11], l_int32=[11],
        l_string=["ts"], l_bool=[True], l_bytes=[b"11"],
        l_ts=[PRE_A, PRE_B, PRE_C, ts(1969, 12, 31, 23, 59, 59, us=999999), POST_A])),
}

# driver 12: an older row followed by a newer one (latest must win); the newer row
# is partially null (scalar nulls next to present values).
EXTRA_ROWS = [
    (12, ts(2025, 5, 1), dict(ALL_NULL, f_float64=1.0, f_string="old", f_int64=1)),
    (12, FRESH, dict(ALL_NULL, f_float64=2.0, f_string=None, f_int64=2,
                     l_string=["new"])),
]


# Null-free source for edge_int_bounds (exact integer bounds, scalars and lists).
INT_BOUNDS = [
    # driver_id, i64, i32, list<i64>, list<i32>
    (3, I64_MAX, I32_MAX, [I64_MAX, I64_MIN, 0], [I32_MAX, I32_MIN, 0]),
    (4, I64_MIN, I32_MIN, [I64_MIN], [I32_MIN]),
    (1, 2**53 + 1, -1, [2**53 + 1, -(2**53) - 1], [-1]),
]


def build_int_bounds():
    tcol = pa.array([FRESH] * len(INT_BOUNDS), pa.timestamp("us", tz="UTC"))
    return pa.table({
        "driver_id": pa.array([r[0] for r in INT_BOUNDS], pa.int64()),
        "event_timestamp": tcol,
        "created": pa.array([CREATED] * len(INT_BOUNDS), pa.timestamp("us", tz="UTC")),
        "b_int64": pa.array([r[1] for r in INT_BOUNDS], pa.int64()),
        "b_int32": pa.array([r[2] for r in INT_BOUNDS], pa.int32()),
        "bl_int64": pa.array([r[3] for r in INT_BOUNDS], pa.list_(pa.int64())),
        "bl_int32": pa.array([r[4] for r in INT_BOUNDS], pa.list_(pa.int32())),
    })


def build():
    records = [(k, e, v) for k, (e, v) in ROWS.items()] + EXTRA_ROWS
    cols = {"driver_id": pa.array([r[0] for r in records], pa.int64()),
            "event_timestamp": pa.array([r[1] for r in records], pa.timestamp("us", tz="UTC")),
            "created": pa.array([CREATED] * len(records), pa.timestamp("us", tz="UTC"))}
    for name, _, typ in FEATURES:
        cols[name] = pa.array([r[2].get(name) for r in records], typ)
    return pa.table(cols)


if __name__ == "__main__":
    import os
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out_dir, exist_ok=True)
    for name, table in (("edge_stats", build()), ("edge_int_bounds", build_int_bounds())):
        out = os.path.join(out_dir, name + ".parquet")
        pq.write_table(table, out)
        print(f"wrote {table.num_rows} rows x {table.num_columns} columns to {out}")
