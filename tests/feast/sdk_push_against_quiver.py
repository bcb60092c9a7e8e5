#!/usr/bin/env python3
"""Feast 0.67's Python SDK writing through Quiver: `store.push(...)` and
`store.write_to_online_store(...)` with `online_store: {type: remote, path: URL}`, then read
back with `store.get_online_features(...)`.

Usage: PYTHON tests/feast/sdk_push_against_quiver.py --url http://127.0.0.1:PORT

The server must serve a project with the definitions below (tests/e2e/push.rs writes it):
entity `driver` (driver_id int64), batch source `driver_stats_source` (data/driver_stats.parquet:
driver_id, event_timestamp, created, conv_rate float32, trips int64, label string), push source
`driver_events` over it, and view `driver_live` over the push source with conv_rate, trips and
label. This script builds the same definitions as a throwaway Feast repo (registry only), pushes
and writes through the SDK, reads back, and exits 1 on any difference.
"""
import argparse
import os
import sys
import tempfile
from datetime import datetime, timedelta, timezone

DEFINITIONS = '''
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float32, Int64, String

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
driver_stats_source = FileSource(name="driver_stats_source", path="data/driver_stats.parquet",
    timestamp_field="event_timestamp", created_timestamp_column="created")
driver_events = PushSource(name="driver_events", batch_source=driver_stats_source)
driver_live = FeatureView(name="driver_live", entities=[driver], ttl=timedelta(days=3650),
    schema=[Field(name="conv_rate", dtype=Float32), Field(name="trips", dtype=Int64),
            Field(name="label", dtype=String)],
    source=driver_events)
'''


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    args = parser.parse_args()

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from feast import FeatureStore
    from feast.data_source import PushMode

    tmp = tempfile.mkdtemp(prefix="quiver-feast-push-")
    os.makedirs(os.path.join(tmp, "data"))
    t0 = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)
    pq.write_table(pa.table({
        "driver_id": pa.array([1], pa.int64()),
        "event_timestamp": pa.array([t0], pa.timestamp("us", tz="UTC")),
        "created": pa.array([t0], pa.timestamp("us", tz="UTC")),
        "conv_rate": pa.array([0.1], pa.float32()),
        "trips": pa.array([1], pa.int64()),
        "label": pa.array(["seed"], pa.string()),
    }), os.path.join(tmp, "data", "driver_stats.parquet"))
    with open(os.path.join(tmp, "definitions.py"), "w") as f:
        f.write(DEFINITIONS)
    with open(os.path.join(tmp, "feature_store.yaml"), "w") as f:
        f.write(
            "project: push_demo\nprovider: local\nregistry: data/registry.db\n"
            f"online_store:\n  type: remote\n  path: {args.url}\n"
            "offline_store:\n  type: file\nentity_key_serialization_version: 3\n"
        )
    os.chdir(tmp)
    import subprocess
    subprocess.run([sys.executable, "-m", "feast.cli.cli", "apply"], check=True,
                   stdout=subprocess.DEVNULL)
    store = FeatureStore(repo_path=tmp)

    t1 = t0 + timedelta(hours=1)
    pushed = pd.DataFrame({
        "driver_id": [1001, 1002],
        "event_timestamp": [t1, t1 + timedelta(microseconds=123456)],
        "created": [t1, t1],
        "conv_rate": [0.5, 0.25],
        "trips": [7, 2**53 + 1],
        "label": ["fast", "na\u00efve \"q\""],
    })
    store.push("driver_events", pushed, to=PushMode.ONLINE)
    written = pd.DataFrame({
        "driver_id": [1003],
        "event_timestamp": [t1],
        "created": [t1],
        "conv_rate": [0.75],
        "trips": [3],
        "label": ["written"],
    })
    store.write_to_online_store("driver_live", written)
    # An older event for 1001 arrives late: Quiver keeps the newer value.
    late = pushed.iloc[:1].copy()
    late["event_timestamp"] = [t0]
    late["conv_rate"] = [0.9]
    store.push("driver_events", late, to=PushMode.ONLINE)

    got = store.get_online_features(
        features=["driver_live:conv_rate", "driver_live:trips", "driver_live:label"],
        entity_rows=[{"driver_id": d} for d in (1001, 1002, 1003, 1004)],
    ).to_dict()
    want = {
        "driver_id": [1001, 1002, 1003, 1004],
        "conv_rate": [0.5, 0.25, 0.75, None],
        "trips": [7, 2**53 + 1, 3, None],
        "label": ["fast", "na\u00efve \"q\"", "written", None],
    }
    failures = []
    for column, values in want.items():
        if got.get(column) != values:
            failures.append(f"{column}: got {got.get(column)!r}, want {values!r}")
    for line in failures:
        print("FAIL", line)
    if not failures:
        print("PASS: Feast SDK push / write_to_online_store / get_online_features through Quiver")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
