#!/usr/bin/env python3
"""Record how Feast 0.67 turns Parquet/Arrow columns into stored Values at materialize.

Usage: probe_conversions.py OUT.json

Calls the exact function `feast materialize` uses (feast.utils._columns_to_proto_values
on an Arrow RecordBatch) for cases that cannot all be put through a real materialize
(some of them make it fail), plus entity-key serialization of a BOOL key.  No server or
Redis needed.  Each case: the Arrow input, then either the stored Values (text format)
or the exception.
"""
import json
import math
import sys
from datetime import datetime, timezone

import pyarrow as pa
from google.protobuf import text_format

from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.utils import _columns_to_proto_values
from feast.value_type import ValueType as V

U = timezone.utc
T = pa.timestamp("us", tz="UTC")
PRE = datetime(1969, 12, 31, 23, 59, 58, 250000, tzinfo=U)  # -1.75 s

CASES = [
    # name, value type, arrow type, values
    ("double_scalar_nan_and_null", V.DOUBLE, pa.float64(), [math.nan, None, -0.0]),
    ("float_scalar_nan", V.FLOAT, pa.float32(), [math.nan, 0.1]),
    ("int64_scalar_max_no_null", V.INT64, pa.int64(), [2**63 - 1, -(2**63)]),
    ("int64_scalar_max_with_null", V.INT64, pa.int64(), [2**63 - 1, None]),
    ("int64_scalar_2p53p1_with_null", V.INT64, pa.int64(), [2**53 + 1, None]),
    ("int32_scalar_with_null", V.INT32, pa.int32(), [2**31 - 1, None]),
    ("bool_scalar_with_null", V.BOOL, pa.bool_(), [True, None]),
    ("string_scalar_with_null", V.STRING, pa.string(), ["a\u0000b", None]),
    ("ts_scalar_pre1970_and_null", V.UNIX_TIMESTAMP, T, [PRE, None]),
    ("double_list_null_elem", V.DOUBLE_LIST, pa.list_(pa.float64()), [[1.0, None, 3.0], None, []]),
    ("float_list_null_elem", V.FLOAT_LIST, pa.list_(pa.float32()), [[1.0, None, 3.0]]),
    ("int64_list_null_elem", V.INT64_LIST, pa.list_(pa.int64()), [[1, None, 3]]),
    ("int32_list_null_elem", V.INT32_LIST, pa.list_(pa.int32()), [[1, None, 3]]),
    ("string_list_null_elem", V.STRING_LIST, pa.list_(pa.string()), [["a", None]]),
    ("bool_list_null_elem", V.BOOL_LIST, pa.list_(pa.bool_()), [[True, None, False]]),
    ("bytes_list_null_elem", V.BYTES_LIST, pa.list_(pa.binary()), [[b"a", None]]),
    ("ts_list_null_elem_and_pre1970", V.UNIX_TIMESTAMP_LIST, pa.list_(T), [[PRE, None]]),
]


def main(out):
    result = {}
    for name, vt, typ, values in CASES:
        batch = pa.RecordBatch.from_pydict({"c": pa.array(values, typ)})
        entry = {"value_type": vt.name, "arrow_type": str(typ), "input": repr(values)}
        try:
            protos = _columns_to_proto_values(batch, [("c", vt)])["c"]
            entry["stored"] = [text_format.MessageToString(p, as_one_line=True) for p in protos]
        except Exception as e:
            entry["exception"] = f"{type(e).__module__}.{type(e).__qualname__}: {e}"
        result[name] = entry
    for name, val in (("entity_key_bool", Value(bool_val=True)),
                      ("entity_key_int64", Value(int64_val=1)),
                      ("entity_key_int32", Value(int32_val=1)),
                      ("entity_key_string", Value(string_val="1"))):
        try:
            key = serialize_entity_key(EntityKey(join_keys=["k"], entity_values=[val]), 3)
            result[name] = {"serialized_hex": key.hex()}
        except Exception as e:
            result[name] = {"exception": f"{type(e).__module__}.{type(e).__qualname__}: {e}"}
    with open(out, "w") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for k, v in result.items():
        print(k, v.get("stored", v.get("exception", v.get("serialized_hex"))))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "materialize_conversions.json")
