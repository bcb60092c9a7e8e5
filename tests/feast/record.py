#!/usr/bin/env python3
"""Record reference responses from a running Feast 0.67 deployment.

Usage:
  record.py --http http://127.0.0.1:PORT --grpc 127.0.0.1:PORT --repo REPO_DIR --out FIXTURE_DIR

--http  `feast serve` (HTTP, FastAPI) base URL
--grpc  `feast listen` address (Feast 0.67's only Python gRPC server: service
        `GrpcFeatureServer`, method GetOnlineFeatures, same request/response messages
        as feast.serving.ServingService/GetOnlineFeatures)
--repo  the applied Feast repo (its data/registry.db is reused by the remote-SDK client)

Writes (all small):
  http_<case>.json     request (method, path, headers, raw body), status, content-type,
                       raw response body (exact text) and the parsed JSON
  grpc_<case>.json     method, request (text format + base64 bytes), status code/details,
                       response (base64 bytes); grpc_<case>.response.txt = text_format dump
  sdk_remote.json      FeatureStore(online_store: remote).get_online_features(...).to_dict()
                       (floats as {"float": repr}, bytes as {"bytes_b64": ...}), the
                       exceptions raised for error cases, and a per-(feature, driver) matrix
"""
import argparse
import base64
import json
import math
import os
import sys
import tempfile
import traceback

import grpc
import requests
from google.protobuf import text_format

from feast.protos.feast.serving import ServingService_pb2 as ss
from feast.protos.feast.serving import ServingService_pb2_grpc
from feast.protos.feast.types import Value_pb2 as vp

ALL_FEATURES = [
    "edge_stats:" + f
    for f in ["f_float64", "f_float32", "f_int64", "f_int32", "f_string", "f_bytes",
              "f_bool", "f_ts", "l_float64", "l_float32", "l_int64", "l_int32",
              "l_string", "l_bool", "l_bytes", "l_ts"]
]
BOUNDS_FEATURES = ["edge_int_bounds:" + f for f in ["b_int64", "b_int32", "bl_int64", "bl_int32"]]
ALL_IDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 999]  # 999 was never written

JSON = {"Content-Type": "application/json"}

# (case name, headers, body). A body given as str is sent verbatim.
HTTP_CASES = [
    ("all_types", JSON,
     {"features": ALL_FEATURES, "entities": {"driver_id": ALL_IDS}}),
    ("all_types_full_names", JSON,
     {"features": ALL_FEATURES[:2] + ["edge_int_bounds:b_int64"],
      "entities": {"driver_id": [1, 999]}, "full_feature_names": True}),
    ("int_bounds", JSON,
     {"features": BOUNDS_FEATURES, "entities": {"driver_id": [3, 4, 1, 999]}}),
    ("feature_service", JSON,
     {"feature_service": "bounds_service", "entities": {"driver_id": [3, 999]}}),
    ("feature_service_full_names", JSON,
     {"feature_service": "bounds_service", "entities": {"driver_id": [4]},
      "full_feature_names": True}),
    ("duplicate_ids", JSON,
     {"features": ["edge_stats:f_int64"], "entities": {"driver_id": [1, 1, 999, 999]}}),
    ("extra_entity_columns", JSON,
     {"features": ["edge_stats:f_int64"],
      "entities": {"driver_id": [1, 2], "extra_str": ["x", "y"], "extra_num": [1.5, 2.5]}}),
    ("ragged_entity_columns", JSON,
     {"features": ["edge_stats:f_int64"],
      "entities": {"driver_id": [1, 2], "extra_str": ["x"]}}),
    ("wrong_entity_key", JSON,
     {"features": ["edge_stats:f_int64"], "entities": {"no_such_key": [1]}}),
    ("key_float_integral", JSON,
     {"features": ["edge_stats:f_int64"], "entities": {"driver_id": [1.0, 2.0]}}),
    ("key_float_fractional", JSON,
     {"features": ["edge_stats:f_int64"], "entities": {"driver_id": [1.5]}}),
    ("key_numeric_string", JSON,
     {"features": ["edge_stats:f_int64"], "entities": {"driver_id": ["1", "2"]}}),
    ("key_bool", JSON,
     {"features": ["edge_stats:f_int64"], "entities": {"driver_id": [True, False]}}),
    ("key_mixed", JSON,
     {"features": ["edge_stats:f_int64"], "entities": {"driver_id": [1, "2", 3.0]}}),
    ("key_big_int", JSON,
     {"features": ["edge_stats:f_int64"], "entities": {"driver_id": [2**63]}}),
    ("request_context", JSON,
     {"features": ["edge_stats:f_int64"], "entities": {"driver_id": [1]},
      "request_context": {"val_to_add": [10]}}),
    ("missing_feature_view", JSON,
     {"features": ["no_such_view:f_int64"], "entities": {"driver_id": [1]}}),
    ("missing_feature", JSON,
     {"features": ["edge_stats:no_such_feature"], "entities": {"driver_id": [1]}}),
    ("missing_feature_service", JSON,
     {"feature_service": "no_such_service", "entities": {"driver_id": [1]}}),
    ("feature_listed_twice", JSON,
     {"features": ["edge_stats:f_int64", "edge_stats:f_int64"], "entities": {"driver_id": [1]}}),
    ("feature_without_view", JSON,
     {"features": ["f_int64"], "entities": {"driver_id": [1]}}),
    ("no_features", JSON,
     {"features": [], "entities": {"driver_id": [1]}}),
    ("empty_entities", JSON,
     {"features": ["edge_stats:f_int64"], "entities": {"driver_id": []}}),
    ("no_content_type", {},
     json.dumps({"features": ["edge_stats:f_int64"], "entities": {"driver_id": [1]}})),
    ("malformed_json", JSON, '{"features": ['),
]


def record_http(base, out):
    for name, headers, body in HTTP_CASES:
        raw = body if isinstance(body, str) else json.dumps(body)
        r = requests.post(base + "/get-online-features", data=raw.encode(), headers=headers,
                          timeout=60)
        try:
            parsed = r.json()
        except ValueError:
            parsed = None
        fixture = {
            "request": {"method": "POST", "path": "/get-online-features",
                        "headers": headers, "body": raw},
            "status": r.status_code,
            "content_type": r.headers.get("content-type"),
            "response_body": r.text,
            "response_json": parsed,
        }
        write_json(os.path.join(out, f"http_{name}.json"), fixture)
        print(f"http {name}: {r.status_code}")


def int64s(*xs):
    return vp.RepeatedValue(val=[vp.Value(int64_val=x) for x in xs])


def grpc_request(features=None, service=None, entities=None, full=False):
    req = ss.GetOnlineFeaturesRequest(full_feature_names=full)
    if service is not None:
        req.feature_service = service
    else:
        req.features.val.extend(features)
    for k, v in entities.items():
        req.entities[k].CopyFrom(v)
    return req


GRPC_CASES = [
    ("all_types", grpc_request(ALL_FEATURES, entities={"driver_id": int64s(*ALL_IDS)})),
    ("int_bounds", grpc_request(BOUNDS_FEATURES, entities={"driver_id": int64s(3, 4, 1, 999)})),
    ("feature_service", grpc_request(service="bounds_service",
                                     entities={"driver_id": int64s(3, 999)}, full=True)),
    ("key_int32", grpc_request(["edge_stats:f_int64"], entities={
        "driver_id": vp.RepeatedValue(val=[vp.Value(int32_val=1)])})),
    ("key_string", grpc_request(["edge_stats:f_int64"], entities={
        "driver_id": vp.RepeatedValue(val=[vp.Value(string_val="1")])})),
    ("extra_entity_columns", grpc_request(["edge_stats:f_int64"], entities={
        "driver_id": int64s(1, 2),
        "extra_str": vp.RepeatedValue(val=[vp.Value(string_val="x"), vp.Value(string_val="y")])})),
    ("request_context", None),  # built below (request_context map)
    ("missing_feature_view", grpc_request(["no_such_view:f_int64"],
                                          entities={"driver_id": int64s(1)})),
    ("missing_feature_service", grpc_request(service="no_such_service",
                                             entities={"driver_id": int64s(1)})),
]


def _request_context_case():
    req = grpc_request(["edge_stats:f_int64"], entities={"driver_id": int64s(1)})
    req.request_context["val_to_add"].CopyFrom(int64s(10))
    return req


def record_grpc(addr, out):
    channel = grpc.insecure_channel(addr)
    grpc.channel_ready_future(channel).result(timeout=30)
    # Raw-bytes call so the recorded response is exactly what the server sent.
    call_raw = channel.unary_unary(
        "/GrpcFeatureServer/GetOnlineFeatures",
        request_serializer=lambda r: r.SerializeToString(deterministic=True),
        response_deserializer=None)
    cases = [(n, r if r is not None else _request_context_case()) for n, r in GRPC_CASES]
    for name, req in cases:
        fixture = {"method": "/GrpcFeatureServer/GetOnlineFeatures",
                   "request_text": text_format.MessageToString(req),
                   "request_b64": base64.b64encode(req.SerializeToString(deterministic=True)).decode()}
        try:
            raw, call = call_raw.with_call(req, timeout=60)
            resp = ss.GetOnlineFeaturesResponse.FromString(raw)
            fixture.update(status_code=call.code().name, details=call.details(),
                           response_b64=base64.b64encode(raw).decode())
            with open(os.path.join(out, f"grpc_{name}.response.txt"), "w") as f:
                f.write(text_format.MessageToString(resp))
        except grpc.RpcError as e:
            fixture.update(status_code=e.code().name, details=e.details(), response_b64=None)
        write_json(os.path.join(out, f"grpc_{name}.json"), fixture)
        print(f"grpc {name}: {fixture['status_code']}")

    # The standard service name is not served by Feast 0.67's Python gRPC server.
    sstub = ServingService_pb2_grpc.ServingServiceStub(channel)
    fixture = {"method": "/feast.serving.ServingService/GetOnlineFeatures",
               "request_text": text_format.MessageToString(cases[0][1])}
    try:
        sstub.GetOnlineFeatures(cases[0][1], timeout=30)
        fixture.update(status_code="OK")
    except grpc.RpcError as e:
        fixture.update(status_code=e.code().name, details=e.details())
    try:
        sstub.GetFeastServingInfo(ss.GetFeastServingInfoRequest(), timeout=30)
        fixture["get_feast_serving_info"] = "OK"
    except grpc.RpcError as e:
        fixture["get_feast_serving_info"] = {"status_code": e.code().name, "details": e.details()}
    write_json(os.path.join(out, "grpc_servingservice_not_served.json"), fixture)
    print(f"grpc ServingService: {fixture['status_code']}")
    channel.close()


def jsonable(x):
    """Make SDK output JSON-safe without losing information: floats as repr()."""
    if isinstance(x, float):
        return {"float": repr(x)}
    if isinstance(x, bytes):
        return {"bytes_b64": base64.b64encode(x).decode()}
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if hasattr(x, "tolist"):  # numpy scalars / arrays
        return {"type": type(x).__name__, "value": jsonable(x.tolist())}
    return {"type": type(x).__name__, "repr": repr(x)}


def record_sdk_remote(http_base, repo, out):
    from feast import FeatureStore

    tmp = tempfile.mkdtemp(prefix="feast-remote-")
    with open(os.path.join(tmp, "feature_store.yaml"), "w") as f:
        f.write(
            "project: quiver_ref\n"
            f"registry: {os.path.join(os.path.abspath(repo), 'data', 'registry.db')}\n"
            "provider: local\n"
            "online_store:\n  type: remote\n"
            f"  path: {http_base}\n"
            "entity_key_serialization_version: 3\n"
        )
    store = FeatureStore(repo_path=tmp)
    result = {"feature_store_yaml": open(os.path.join(tmp, "feature_store.yaml")).read(),
              "cases": {}}
    cases = [
        # driver 8 (empty lists) is asked separately: the remote client re-infers each
        # value's type from its JSON and raises TypeError on an empty list.
        ("all_types_except_empty_lists", dict(
            features=ALL_FEATURES, entity_rows=[{"driver_id": i} for i in ALL_IDS if i != 8])),
        ("empty_lists", dict(features=ALL_FEATURES, entity_rows=[{"driver_id": 8}])),
        ("int_bounds", dict(features=BOUNDS_FEATURES,
                            entity_rows=[{"driver_id": i} for i in (3, 4, 1, 999)])),
        ("feature_service", dict(features=store.get_feature_service("bounds_service"),
                                 entity_rows=[{"driver_id": 3}, {"driver_id": 999}],
                                 full_feature_names=True)),
        ("missing_feature_view", dict(features=["no_such_view:f_int64"],
                                      entity_rows=[{"driver_id": 1}])),
        ("missing_feature", dict(features=["edge_stats:no_such_feature"],
                                 entity_rows=[{"driver_id": 1}])),
    ]
    for name, kwargs in cases:
        try:
            d = store.get_online_features(**kwargs).to_dict()
            result["cases"][name] = {"ok": True, "column_order": list(d.keys()),
                                     "to_dict": jsonable(d)}
        except Exception as e:  # record the exception class chain
            result["cases"][name] = {
                "ok": False, "exception": f"{type(e).__module__}.{type(e).__qualname__}",
                "mro": [c.__name__ for c in type(e).__mro__],
                "message": str(e),
                "traceback_tail": traceback.format_exc().splitlines()[-6:]}
        print(f"sdk {name}: {'ok' if result['cases'][name]['ok'] else result['cases'][name]['exception']}")
    # The remote client cannot read some rows at all (see above), so also ask for each
    # (feature, driver) pair on its own: value as to_dict() gives it, or the exception.
    matrix = {}
    for feat in ALL_FEATURES:
        col = matrix.setdefault(feat, {})
        for i in ALL_IDS:
            try:
                d = store.get_online_features(features=[feat],
                                              entity_rows=[{"driver_id": i}]).to_dict()
                col[str(i)] = jsonable(d[feat.split(":")[1]][0])
            except Exception as e:
                col[str(i)] = {"exception": f"{type(e).__module__}.{type(e).__qualname__}",
                               "message": str(e)}
    result["per_feature_and_driver"] = matrix
    print("sdk per-feature matrix done")
    try:
        store.get_feature_service("no_such_service")
        result["cases"]["missing_feature_service"] = {"ok": True}
    except Exception as e:
        result["cases"]["missing_feature_service"] = {
            "ok": False, "call": "store.get_feature_service('no_such_service')",
            "exception": f"{type(e).__module__}.{type(e).__qualname__}",
            "mro": [c.__name__ for c in type(e).__mro__], "message": str(e)}
    # Keep the fixture independent of the run's ports and temp paths.
    text = json.dumps(result, indent=1, ensure_ascii=False)
    text = text.replace(http_base, "http://127.0.0.1:HTTP_PORT")
    text = text.replace(http_base.split("//", 1)[1].split(":", 1)[1].join(["port=", ")"]),
                        "port=HTTP_PORT)")
    text = text.replace(os.path.abspath(repo), "REPO")
    with open(os.path.join(out, "sdk_remote.json"), "w") as f:
        f.write(text + "\n")


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False, allow_nan=True)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", required=True)
    ap.add_argument("--grpc", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    record_http(a.http.rstrip("/"), a.out)
    record_grpc(a.grpc, a.out)
    record_sdk_remote(a.http.rstrip("/"), a.repo, a.out)


if __name__ == "__main__":
    sys.exit(main())
