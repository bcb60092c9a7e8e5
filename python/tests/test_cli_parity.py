"""The package computes what the `quiver` CLI computes, bit for bit: training tables (`quiver
retrieve`) and online values (`quiver online get`), and what a server answers (`Client`)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import quiver
from quiver_testlib import MAT_END, assert_same_table, cli, make_repo, online_as_http

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def parity_repo(tmp_path_factory) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("parity"))
    with quiver.FeatureStore(repo) as store:
        store.materialize_incremental(MAT_END, progress=False)
    return repo


def cli_retrieve(repo: Path, entities: Path, features: str, out: Path, *flags: str) -> pa.Table:
    cli(repo, "retrieve", "--entities", str(entities), "--features", features, "--output", str(out),
        "--no-manifest", *flags)
    return feather.read_table(out) if out.suffix == ".arrow" else pq.read_table(out)


@pytest.mark.parametrize("flags", [(), ("--full-feature-names",), ("--created-cutoff",),
                                   ("--full-feature-names", "--created-cutoff")],
                         ids=["plain", "full-names", "created-cutoff", "both"])
def test_retrieve_equals_cli(parity_repo, tmp_path, flags):
    labels = parity_repo / "data" / "labels.parquet"
    want = cli_retrieve(parity_repo, labels, "model_v1", tmp_path / "train.parquet", *flags)
    with quiver.FeatureStore(parity_repo) as store:
        kwargs = dict(full_feature_names="--full-feature-names" in flags, created_cutoff="--created-cutoff" in flags)
        from_path = store.get_historical_features(labels, "model_v1", **kwargs)
        from_table = store.get_historical_features(pq.read_table(labels), "model_v1", **kwargs)
    assert want.num_rows == 200
    assert_same_table(from_path, want)
    assert_same_table(from_table, want)


def test_retrieve_references_and_arrow_output_equal_cli(parity_repo, tmp_path):
    labels = parity_repo / "data" / "labels.parquet"
    refs = ["customer_profile", "driver_hourly_stats:rating", "driver_derived:conv_pct", "driver_live:city"]
    want = cli_retrieve(parity_repo, labels, ",".join(refs), tmp_path / "train.arrow", "--full-feature-names")
    with quiver.FeatureStore(parity_repo) as store:
        got = store.get_historical_features(labels, refs, full_feature_names=True)
    assert_same_table(got, want)
    assert "driver_derived__conv_pct" in got.column_names


def test_retrieve_timestamp_column_and_created_cutoff_equal_cli(parity_repo, tmp_path):
    """Entity rows dated exactly at hourly event times, where --created-cutoff changes the
    answer (a row is created seconds after its event time)."""
    source = pq.read_table(parity_repo / "data" / "driver_stats.parquet")
    hours = source.select(["driver_id", "event_timestamp"]).slice(0, 300)
    entities = pa.table({"driver_id": hours.column("driver_id"), "label_time": hours.column("event_timestamp"),
                         "weight": pa.array(range(hours.num_rows), pa.int32())})
    path = tmp_path / "entities.parquet"
    pq.write_table(entities, path)
    results = {}
    for cutoff in (False, True):
        flags = ["--timestamp-column", "label_time"] + (["--created-cutoff"] if cutoff else [])
        want = cli_retrieve(parity_repo, path, "driver_quality", tmp_path / f"out-{cutoff}.parquet", *flags)
        with quiver.FeatureStore(parity_repo) as store:
            got = store.get_historical_features(entities, "driver_quality", timestamp_column="label_time",
                                                created_cutoff=cutoff)
        assert got.column_names == ["driver_id", "label_time", "weight", "conv_rate", "acc_rate", "rating"]
        assert_same_table(got, want, loose_nullability=["driver_id", "label_time", "weight"])
        results[cutoff] = got
    # the option reached the engine: some values differ with the cutoff
    assert results[False].column("rating").to_pylist() != results[True].column("rating").to_pylist()


# -- online ------------------------------------------------------------------------------------


def as_http_json(value: Any, value_type: str) -> Any:
    """A FeatureStore value as the HTTP API (and `quiver online get`) write it: timestamps in
    Unix seconds (floored), bytes base64, non-finite floats as words."""
    if value is None:
        return None
    if value_type.startswith("list<"):
        inner = value_type[5:-1]
        return [as_http_json(v, inner) for v in value]
    if value_type == "timestamp":
        return math.floor((value - EPOCH).total_seconds())
    if value_type == "bytes":
        return base64.b64encode(value).decode()
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def online_get(repo: Path, view: str, key: str, value: Any) -> dict:
    return json.loads(cli(repo, "--format", "json", "online", "get", view, "--key", f"{key}={value}").stdout)


def same_json(a: Any, b: Any) -> bool:
    """Equality where floats compare by their bits."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.copysign(1, a) == math.copysign(1, b) \
            and float(a) == float(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return a == b


CASES = [
    ("driver_hourly_stats", "driver_id", [1001, 1002, 1007, 1020]),
    ("customer_profile", "customer_id", [1, 2, 30]),
    ("driver_derived", "driver_id", [1001, 1003]),  # a 2h ttl: OUTSIDE_MAX_AGE
    ("driver_hourly_stats", "driver_id", [424242]),  # never stored
]


@pytest.mark.parametrize("view,key,ids", CASES, ids=[f"{c[0]}-{c[2][0]}" for c in CASES])
def test_online_equals_cli_online_get(parity_repo, view, key, ids):
    with quiver.FeatureStore(parity_repo) as store:
        names = [f["name"] for f in store.registry.get_feature_view(view)["features"]]
        response = store.get_online_features([f"{view}:{n}" for n in names], {key: ids})
    # the store is closed now: the CLI may open the embedded file
    for row, entity in enumerate(ids):
        shown = online_get(parity_repo, view, key, entity)
        if not shown["found"]:
            assert all(response.statuses[1 + i][row] == "NOT_FOUND" for i in range(len(names)))
            assert all(response.values[1 + i][row] is None for i in range(len(names)))
            continue
        assert [f["name"] for f in shown["features"]] == names
        event_time = dt.datetime.fromisoformat(shown["event_timestamp"].replace("Z", "+00:00"))
        for i, feature in enumerate(shown["features"], start=1):
            status, value, value_type = response.statuses[i][row], response.values[i][row], response.types[i]
            assert value_type == feature["type"], feature["name"]
            assert status == feature["status"], feature["name"]
            assert response.event_timestamps[i][row] == event_time, feature["name"]
            if status == "OUTSIDE_MAX_AGE":
                assert value is None  # served as null; the CLI shows what is stored
                continue
            assert same_json(as_http_json(value, value_type), feature["value"]), (feature["name"], value, feature["value"])
            assert (status == "NULL_VALUE") == (feature["value"] is None)


def test_online_equals_client_through_server(parity_repo, make_server):
    entities = {"driver_id": [1001, 1002, 1003, 1019, 555], "customer_id": [1, 2, 3, 4, 5]}
    refs = ["driver_hourly_stats:conv_rate", "driver_hourly_stats:city", "customer_profile:signup_at",
            "customer_profile:recent_ratings", "customer_profile:referral_code", "driver_derived:city_slug"]
    with quiver.FeatureStore(parity_repo) as store:
        by_service = store.get_online_features("model_v1", entities)
        by_refs = store.get_online_features(refs, entities, full_feature_names=True)
    server = make_server(parity_repo)  # the embedded store: one process at a time, so after close
    client = quiver.Client(server.url, timeout=10)
    assert client.health()
    assert online_as_http(client.get_online_features("model_v1", entities)) == online_as_http(by_service)
    assert online_as_http(client.get_online_features(refs, entities, full_feature_names=True)) == online_as_http(by_refs)
