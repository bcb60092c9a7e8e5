"""`quiver.Client` through a running `quiver serve` (Redis shared with an in-process
FeatureStore): online reads, pushes, training tables, errors, bearer tokens."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import quiver
from quiver_testlib import (
    MAT_END, QuiverServer, assert_same_table, make_repo, online_as_http, redis_online_store, utc,
)

ENTITIES = {"driver_id": [1001, 1002, 1010, 4242], "customer_id": [1, 2, 30, 4243]}


@pytest.fixture(scope="module")
def served(tmp_path_factory, redis_server):
    """(repo, FeatureStore, server): a Redis repository, materialized, served."""
    repo = make_repo(tmp_path_factory.mktemp("client"), online_store=redis_online_store(redis_server))
    store = quiver.FeatureStore(repo)
    store.materialize_incremental(MAT_END, progress=False)
    server = QuiverServer(repo)
    yield repo, store, server
    server.stop()
    store.close()


@pytest.fixture
def client(served) -> quiver.Client:
    return quiver.Client(served[2].url, timeout=10)


def test_health(client):
    assert client.health() is True
    assert repr(client) == f"Client({client.url!r})"


def test_client_url_must_be_http():
    with pytest.raises(quiver.InvalidArgument, match="http://host:port"):
        quiver.Client("localhost:6566")


@pytest.mark.parametrize("features", ["model_v1", "driver_quality",
                                      ["driver_hourly_stats:conv_rate", "customer_profile:signup_at",
                                       "customer_profile:recent_ratings", "customer_profile:referral_code",
                                       "driver_derived:conv_pct"]],
                         ids=["model_v1", "driver_quality", "references"])
@pytest.mark.parametrize("full", [False, True], ids=["short", "full-names"])
def test_online_reads_equal_feature_store(served, client, features, full):
    _, store, _ = served
    keys = ENTITIES if features != "driver_quality" else {"driver_id": ENTITIES["driver_id"]}
    want = store.get_online_features(features, keys, full_feature_names=full)
    got = client.get_online_features(features, keys, full_feature_names=full)
    assert online_as_http(got) == online_as_http(want)
    assert got.to_arrow().schema == want.to_arrow().schema
    assert "PRESENT" in got.statuses[2] and "NOT_FOUND" in got.statuses[2]


def test_online_entity_row_forms(served, client):
    _, store, _ = served
    want = online_as_http(store.get_online_features("model_v1", ENTITIES))
    rows = [dict(zip(ENTITIES, values)) for values in zip(*ENTITIES.values())]
    assert online_as_http(client.get_online_features("model_v1", rows)) == want
    assert online_as_http(client.get_online_features("model_v1", pd.DataFrame(ENTITIES))) == want
    assert online_as_http(client.get_online_features("model_v1", pl.DataFrame(ENTITIES))) == want


def test_push_then_read_back(served, client):
    _, store, _ = served
    at = utc(2026, 1, 2, 8, 9, 10, 123456)
    frame = pd.DataFrame({"driver_id": [6001, 6002, 6003], "event_timestamp": [at] * 3, "created": [at] * 3,
                          "conv_rate": [0.25, 0.5, 0.75], "city": ["Lyon", "Oslo", None]})
    result = client.push("driver_events", frame)
    assert result == quiver.PushResult(rows=3, writes=1, values=3, stored=3)
    refs = ["driver_live:conv_rate", "driver_live:city"]
    keys = {"driver_id": [6001, 6002, 6003]}
    through_server = client.get_online_features(refs, keys)
    in_process = store.get_online_features(refs, keys)
    assert through_server == in_process  # no timestamp values here: equal exactly
    assert in_process.to_dict() == {"driver_id": [6001, 6002, 6003], "conv_rate": [0.25, 0.5, 0.75],
                                    "city": ["Lyon", "Oslo", None]}
    assert in_process.statuses[2] == ["PRESENT", "PRESENT", "NULL_VALUE"]
    assert through_server.event_timestamps[1] == [at] * 3

    # FeatureStore pushes are read back through the server too
    store.push("driver_events", {"driver_id": [6004], "event_timestamp": [at], "conv_rate": [0.125], "city": ["Rome"]})
    assert client.get_online_features(refs, {"driver_id": [6004]}).values[1:] == [[0.125], ["Rome"]]

    # several requests of batch_rows rows
    n = 7
    many = client.push("driver_events", pa.table({
        "driver_id": pa.array(range(6100, 6100 + n), pa.int64()),
        "event_timestamp": pa.array([at] * n, pa.timestamp("us", "UTC")),
        "conv_rate": pa.array([0.5] * n, pa.float32()), "city": ["Paris"] * n}), batch_rows=3)
    assert (many.rows, many.writes, many.stored) == (n, 3, n)
    assert store.get_online_features(["driver_live:city"], {"driver_id": list(range(6100, 6100 + n))}).values[1] == (
        ["Paris"] * n)


def test_push_errors_write_nothing(served, client):
    _, store, _ = served
    at = utc(2026, 1, 2, 9)
    with pytest.raises(quiver.InvalidArgument, match="driver_evnts"):
        client.push("driver_evnts", {"driver_id": [6201], "event_timestamp": [at], "conv_rate": [0.5], "city": ["a"]})
    with pytest.raises(quiver.InvalidArgument, match="abc") as e:
        client.push("driver_events", {"driver_id": [6201, 6202], "event_timestamp": [at, at],
                                      "conv_rate": ["0.5", "abc"], "city": ["a", "b"]})
    assert "conv_rate" in str(e.value) and "0 rows pushed before this" in str(e.value)
    got = store.get_online_features(["driver_live:city"], {"driver_id": [6201, 6202]})
    assert got.statuses[1] == ["NOT_FOUND", "NOT_FOUND"]
    with pytest.raises(quiver.InvalidArgument, match="batch_rows"):
        client.push("driver_events", {"driver_id": [6201]}, batch_rows=0)


def test_online_errors(client):
    with pytest.raises(quiver.InvalidArgument, match="conv_rat") as e:
        client.get_online_features(["driver_hourly_stats:conv_rat"], {"driver_id": [1001]})
    assert "400" in str(e.value) or "404" in str(e.value)
    with pytest.raises(quiver.InvalidArgument, match="model_v2"):
        client.get_online_features("model_v2", {"driver_id": [1001]})
    with pytest.raises(quiver.InvalidArgument, match="driver_id"):
        client.get_online_features(["driver_hourly_stats:conv_rate"], {"customer_id": [1]})


@pytest.mark.parametrize("form", ["path", "csv", "pyarrow", "pandas", "polars"])
def test_historical_equals_feature_store(served, client, form, tmp_path):
    repo, store, _ = served
    path = repo / "data" / "labels.parquet"
    labels = pq.read_table(path)
    want = store.get_historical_features(labels, "model_v1")
    if form == "csv":
        csv = tmp_path / "labels.csv"
        pacsv.write_csv(labels.set_column(2, "event_timestamp", pc.strftime(
            labels.column("event_timestamp"), format="%Y-%m-%dT%H:%M:%SZ")), csv)
        entity_df = csv
    else:
        entity_df = {"path": path, "pyarrow": labels, "pandas": labels.to_pandas(), "polars": pl.from_arrow(labels)}[form]
    got = client.get_historical_features(entity_df, "model_v1")
    assert_same_table(got, want, loose_nullability=["driver_id", "customer_id", "event_timestamp", "trip_completed"])


def test_historical_options_equal_feature_store(served, client):
    repo, store, _ = served
    labels = pq.read_table(repo / "data" / "labels.parquet").rename_columns(
        ["driver_id", "customer_id", "t", "trip_completed"])
    refs = ["driver_hourly_stats:rating", "customer_profile", "driver_live:city"]
    options = dict(full_feature_names=True, created_cutoff=True, timestamp_column="t")
    want = store.get_historical_features(labels, refs, **options)
    got = client.get_historical_features(labels, refs, **options)
    assert "customer_profile__recent_ratings" in got.column_names
    assert_same_table(got, want, loose_nullability=["driver_id", "customer_id", "t", "trip_completed"])


def test_historical_errors(served, client):
    repo, _, _ = served
    labels = pq.read_table(repo / "data" / "labels.parquet")
    with pytest.raises(quiver.InvalidArgument, match="customer_id"):
        client.get_historical_features(labels.drop_columns(["customer_id"]), "model_v1")
    with pytest.raises(quiver.InvalidArgument, match="model_v2"):
        client.get_historical_features(labels, "model_v2")
    with pytest.raises(quiver.InvalidArgument, match="nope.parquet"):
        client.get_historical_features(repo / "nope.parquet", "model_v1")
    with pytest.raises(quiver.InvalidArgument, match="download it"):
        client.get_historical_features("s3://bucket/labels.parquet", "model_v1")


# -- bearer tokens -----------------------------------------------------------------------------

ADMIN = "admin-token-0123456789abcdef0123"
READER = "reader-token-0123456789abcdef012"


def hash_token(repo: Path, token: str) -> str:
    import subprocess

    from quiver_testlib import QUIVER_BIN

    p = subprocess.run([QUIVER_BIN, "-C", str(repo), "auth", "hash-token"], input=token, capture_output=True,
                       text=True, timeout=30, check=True)
    digest = p.stdout.strip()
    assert len(digest) == 64
    return digest


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory, redis_server):
    repo = make_repo(tmp_path_factory.mktemp("auth"), online_store=redis_online_store(redis_server))
    with quiver.FeatureStore(repo) as store:
        store.materialize_incremental(MAT_END, progress=False)
    with open(repo / "quiver.yaml", "a") as config:
        config.write(
            "serving:\n"
            "  auth:\n"
            "    tokens:\n"
            f"      - {{name: tests, sha256: {hash_token(repo, ADMIN)}, scopes: [admin]}}\n"
            f"      - {{name: reader, sha256: {hash_token(repo, READER)}, scopes: [online:read]}}\n")
    server = QuiverServer(repo)
    yield repo, server
    server.stop()


def test_auth_without_token_is_denied(auth_server):
    repo, server = auth_server
    anonymous = quiver.Client(server.url)
    assert anonymous.health() is True  # /ready stays open
    with pytest.raises(quiver.PermissionDenied, match="401") as e:
        anonymous.get_online_features(["driver_hourly_stats:conv_rate"], {"driver_id": [1001]})
    assert "bearer token" in str(e.value) and isinstance(e.value, PermissionError)
    with pytest.raises(quiver.PermissionDenied, match="401"):
        anonymous.get_historical_features(repo / "data" / "labels.parquet", "model_v1")
    with pytest.raises(quiver.PermissionDenied, match="401"):
        anonymous.push("driver_events", {"driver_id": [1], "event_timestamp": [utc(2026, 1, 2)],
                                         "conv_rate": [0.5], "city": ["a"]})
    with pytest.raises(quiver.PermissionDenied, match="invalid bearer token"):
        quiver.Client(server.url, token="not-the-token-0123456789").get_online_features(
            ["driver_hourly_stats:conv_rate"], {"driver_id": [1001]})


def test_auth_with_tokens(auth_server):
    repo, server = auth_server
    admin = quiver.Client(server.url, token=ADMIN)
    reader = quiver.Client(server.url, token=READER)
    with quiver.FeatureStore(repo) as store:
        want = store.get_online_features("model_v1", ENTITIES)
        train = store.get_historical_features(repo / "data" / "labels.parquet", "driver_quality")
    assert online_as_http(admin.get_online_features("model_v1", ENTITIES)) == online_as_http(want)
    assert online_as_http(reader.get_online_features("model_v1", ENTITIES)) == online_as_http(want)
    got = admin.get_historical_features(repo / "data" / "labels.parquet", "driver_quality")
    assert_same_table(got, train, loose_nullability=["driver_id", "customer_id", "event_timestamp", "trip_completed"])
    # the reader's token lacks the scopes
    with pytest.raises(quiver.PermissionDenied, match="offline:read"):
        reader.get_historical_features(repo / "data" / "labels.parquet", "driver_quality")
    row = {"driver_id": [6301], "event_timestamp": [utc(2026, 1, 2, 3)], "conv_rate": [0.5], "city": ["a"]}
    with pytest.raises(quiver.PermissionDenied, match="online:write"):
        reader.push("driver_events", row)
    assert admin.push("driver_events", row).stored == 1
    assert reader.get_online_features(["driver_live:city"], {"driver_id": [6301]}).values[1] == ["a"]


def test_non_finite_floats_round_trip(served, client):
    _, store, _ = served
    at = utc(2026, 1, 2, 4)
    special = pa.array([float("nan"), float("inf"), float("-inf"), -0.0], pa.float32())
    ids = [6401, 6402, 6403, 6404]
    assert client.push("driver_events", {"driver_id": ids, "event_timestamp": [at] * 4, "conv_rate": special,
                                         "city": list("abcd")}).stored == 4
    want = store.get_online_features(["driver_live:conv_rate"], {"driver_id": ids})
    got = client.get_online_features(["driver_live:conv_rate"], {"driver_id": ids})
    assert online_as_http(got) == online_as_http(want)  # bit for bit: NaN, ±inf, -0.0
    values = want.values[1]
    assert values[0] != values[0] and values[1:3] == [float("inf"), float("-inf")]
    assert str(values[3]) == "-0.0"


def test_event_times_keep_microseconds(served, client):
    _, store, _ = served
    at = utc(2026, 1, 2, 5, 6, 7, 891234)
    client.push("driver_events", {"driver_id": [6501], "event_timestamp": [at], "conv_rate": [0.5], "city": ["x"]})
    got = client.get_online_features(["driver_live:conv_rate"], {"driver_id": [6501]})
    assert got.event_timestamps[1] == [at]
    assert got == store.get_online_features(["driver_live:conv_rate"], {"driver_id": [6501]})


def test_no_entity_rows(served, client):
    _, store, _ = served
    want = store.get_online_features(["driver_hourly_stats:conv_rate"], {"driver_id": []})
    got = client.get_online_features(["driver_hourly_stats:conv_rate"], {"driver_id": []})
    assert got == want and len(got) == 0
    assert got.to_arrow().schema == want.to_arrow().schema


def test_string_keys_echo_like_feature_store(served, client):
    _, store, _ = served
    keys = {"driver_id": ["1001", "1002"]}
    want = store.get_online_features(["driver_hourly_stats:conv_rate"], keys)
    assert want.values[0] == [1001, 1002] and want.types[0] == "int64"
    got = client.get_online_features(["driver_hourly_stats:conv_rate"], keys)
    assert got.values[1] == want.values[1]  # the same entities were read
    assert online_as_http(got) == online_as_http(want)
