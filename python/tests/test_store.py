"""Every entry point of `quiver.FeatureStore`, on the embedded store and on Redis."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import quiver
from quiver_testlib import MAT_END, assert_same_table, make_repo, redis_online_store, require_redis, utc

DRIVER_FEATURES = ["conv_rate", "acc_rate", "avg_daily_trips", "rating", "total_trips", "online_hours",
                   "cancellations", "city", "is_active", "earnings"]
CUSTOMER_FEATURES = ["current_balance", "avg_passenger_count", "lifetime_trips", "loyalty_tier", "is_premium",
                     "age", "signup_at", "recent_ratings", "referral_code", "churn_risk"]
DRIVERS = list(range(1001, 1021))


@pytest.fixture(scope="module", params=["embedded", "redis"])
def online_kind(request):
    """(kind, online_store section of quiver.yaml or None for the embedded default)."""
    if request.param == "redis":
        require_redis()
        return "redis", redis_online_store(request.getfixturevalue("redis_server"))
    return "embedded", None


@pytest.fixture
def kind_repo(online_kind, tmp_path) -> Path:
    """A repository of the test's own on the parametrized online store, applied."""
    return make_repo(tmp_path, online_store=online_kind[1])


@pytest.fixture(scope="module")
def kind_store(online_kind, tmp_path_factory):
    """A materialized FeatureStore on the parametrized online store, shared by read-only tests."""
    repo = make_repo(tmp_path_factory.mktemp(f"store-{online_kind[0]}"), online_store=online_kind[1])
    store = quiver.FeatureStore(repo)
    store.materialize_incremental(MAT_END, progress=False)
    yield repo, store
    store.close()


def test_plan_apply_and_registry(online_kind, tmp_path):
    repo = make_repo(tmp_path, online_store=online_kind[1], apply=False)
    with quiver.FeatureStore(repo) as store:
        plan = store.plan()
        text = str(plan)
        assert "+ feature_view driver_hourly_stats" in text and "+ feature_service model_v1" in text
        assert "will write version 1" in text
        assert plan.to_dict()["current_version"] is None and len(plan.to_dict()["changes"]) == 14

        applied = store.apply()
        assert applied["changed"] is True and applied["version"] == 1
        assert "Wrote version 1" in applied["text"]
        again = store.apply()
        assert again["changed"] is False and again["version"] == 1
        assert "No changes" in str(store.plan()) and store.plan().to_dict()["changes"] == []

        registry = store.registry
        assert registry.version == 1 and registry.to_dict()["version"] == 1
        assert {v["name"] for v in registry.list_feature_views()} == {
            "driver_hourly_stats", "customer_profile", "driver_derived", "driver_live", "driver_activity"}
        assert {s["name"] for s in registry.list_feature_services()} == {
            "model_v1", "driver_quality", "driver_activity_v1"}
        assert {e["name"] for e in registry.list_entities()} == {"driver", "customer"}
        assert {p["name"] for p in registry.list_push_sources()} == {"driver_events"}
        assert {s["name"] for s in registry.list_sources()} == {"driver_stats_source", "customer_profile_source", "trip_events"}
        view = registry.get_feature_view("driver_hourly_stats")
        assert [f["name"] for f in view["features"]] == DRIVER_FEATURES
        with pytest.raises(KeyError, match="driver_hourly_stats"):
            registry.get_feature_view("driver_hourly")

        # a changed definition is planned, applied as version 2, and seen at once
        drivers = repo / "features" / "drivers.yaml"
        drivers.write_text(drivers.read_text().replace("team: driver-performance", "team: marketplace"))
        assert "~ feature_view driver_hourly_stats" in str(store.plan())
        assert store.apply()["version"] == 2
        assert store.registry.version == 2


def test_get_historical_features(kind_store):
    repo, store = kind_store
    labels = pq.read_table(repo / "data" / "labels.parquet")
    table = store.get_historical_features(labels, "model_v1")
    assert isinstance(table, pa.Table)
    # every entity row once, in its order, with all its columns; then the features in order
    assert table.column_names == list(labels.column_names) + DRIVER_FEATURES + CUSTOMER_FEATURES
    assert table.select(labels.column_names).to_pylist() == labels.to_pylist()
    types = {f.name: f.type for f in table.schema}
    assert (types["conv_rate"], types["avg_daily_trips"], types["cancellations"], types["is_active"]) == (
        pa.float32(), pa.int64(), pa.int32(), pa.bool_())
    assert types["recent_ratings"] == pa.list_(pa.float64()) and types["referral_code"] == pa.binary()
    assert pa.types.is_timestamp(types["signup_at"]) and types["signup_at"].tz == "UTC"
    # a realistic table: most rows found a value, those before the data starts did not
    assert 0 < table.column("rating").null_count < table.num_rows // 2

    subset = store.get_historical_features(labels, ["driver_hourly_stats:conv_rate", "customer_profile:age"],
                                           memory_limit=64 << 20)
    assert subset.column_names == list(labels.column_names) + ["conv_rate", "age"]
    assert_same_table(subset.select(["conv_rate", "age"]), table.select(["conv_rate", "age"]))
    service = store.get_historical_features(labels, "driver_quality")
    assert_same_table(service.select(["conv_rate", "acc_rate", "rating"]),
                      table.select(["conv_rate", "acc_rate", "rating"]))


def test_online_equals_offline_at_the_watermark(kind_store):
    """After materializing up to MAT_END, each online value is the offline join at MAT_END."""
    repo, store = kind_store
    entities = pa.table({"driver_id": pa.array(DRIVERS, pa.int64()),
                         "event_timestamp": pa.array([utc(2026, 1, 3)] * len(DRIVERS), pa.timestamp("us", "UTC"))})
    offline = store.get_historical_features(entities, ["driver_hourly_stats"])
    online = store.get_online_features([f"driver_hourly_stats:{f}" for f in DRIVER_FEATURES], {"driver_id": DRIVERS})
    for i, name in enumerate(DRIVER_FEATURES, start=1):
        assert online.names[i] == name
        want = offline.column(name).to_pylist()
        assert online.values[i] == want, name
        assert online.statuses[i] == ["NULL_VALUE" if v is None else "PRESENT" for v in want], name


def test_materialize_ranged_and_incremental(kind_repo):
    with quiver.FeatureStore(kind_repo) as store:
        runs = store.materialize("2025-12-01", MAT_END, ["driver_hourly_stats"], progress=False)
        assert [r["view"] for r in runs] == ["driver_hourly_stats"]
        assert runs[0]["entities"] == 20 and runs[0]["keys_written"] == 20 and runs[0]["watermark"] == MAT_END
        found = store.get_online_features(["driver_hourly_stats:rating"], {"driver_id": DRIVERS})
        assert set(found.statuses[1]) <= {"PRESENT", "NULL_VALUE"}
        # not materialized yet: nothing stored for customers
        assert store.get_online_features(["customer_profile:age"], {"customer_id": [1]}).statuses[1] == ["NOT_FOUND"]

        runs = store.materialize_incremental(dt.datetime(2026, 1, 3), progress=False)  # a naive datetime is UTC
        by_view = {r["view"]: r for r in runs}
        assert set(by_view) == {"customer_profile", "driver_hourly_stats", "driver_derived", "driver_live",
                                "driver_activity"}
        assert all(r["watermark"] == MAT_END for r in runs)
        assert by_view["customer_profile"]["keys_written"] == 30
        assert by_view["driver_hourly_stats"]["keys_written"] == 0  # already up to MAT_END
        got = store.get_online_features(["customer_profile:age"], {"customer_id": [1]})
        assert got.statuses[1][0] in ("PRESENT", "NULL_VALUE")

        # a date and a datetime with a zone are accepted as the ends of a range
        runs = store.materialize(dt.date(2025, 12, 1), dt.datetime(2026, 1, 3, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
                                 ["driver_derived"], progress=False)
        assert runs[0]["watermark"] == MAT_END


def test_online_reads_and_response_shapes(kind_store):
    _, store = kind_store
    response = store.get_online_features("model_v1", {"driver_id": [1001, 1002, 99999], "customer_id": [1, 2, 3]})
    assert isinstance(response, quiver.OnlineResponse)
    assert len(response) == 3 and "3 rows" in repr(response)
    assert response.names == ["driver_id", "customer_id"] + DRIVER_FEATURES + CUSTOMER_FEATURES
    assert response.types[:4] == ["int64", "int64", "float32", "float32"]
    assert response.types[response.names.index("recent_ratings")] == "list<float64>"
    d = response.to_dict(include_statuses=True, include_event_timestamps=True)
    assert d["driver_id"] == [1001, 1002, 99999] and d["customer_id"] == [1, 2, 3]
    for name in DRIVER_FEATURES + CUSTOMER_FEATURES:
        statuses, values = d[f"{name}__status"], d[name]
        assert statuses[0] in ("PRESENT", "NULL_VALUE")
        assert all((s == "PRESENT") == (v is not None) for s, v in zip(statuses, values)), name
    assert d["conv_rate__status"][2] == "NOT_FOUND" and d["conv_rate__event_timestamp"][2] is None
    stamp = d["rating__event_timestamp"][0]
    assert isinstance(stamp, dt.datetime) and stamp.tzinfo is not None and utc(2026, 1, 1) <= stamp <= utc(2026, 1, 2)
    assert set(response.to_dict()) == set(response.names)

    arrow = response.to_arrow()
    types = {f.name: f.type for f in arrow.schema}
    assert (types["driver_id"], types["conv_rate"], types["avg_daily_trips"], types["cancellations"]) == (
        pa.int64(), pa.float32(), pa.int64(), pa.int32())
    assert types["signup_at"] == pa.timestamp("us", tz="UTC") and types["referral_code"] == pa.binary()
    assert types["recent_ratings"] == pa.list_(pa.float64()) and types["is_premium"] == pa.bool_()
    assert arrow.column("driver_id").to_pylist() == [1001, 1002, 99999]
    assert arrow.column("rating").to_pylist() == d["rating"]
    full = response.to_arrow(include_statuses=True, include_event_timestamps=True)
    assert full.column("conv_rate__status").to_pylist()[2] == "NOT_FOUND"
    assert full.schema.field("conv_rate__event_timestamp").type == pa.timestamp("us", tz="UTC")

    frame = response.to_pandas()
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == response.names
    assert frame["driver_id"].tolist() == [1001, 1002, 99999]
    assert response.to_df().equals(frame)

    # Feast's list of row dicts, references, full feature names
    rows = store.get_online_features(["driver_hourly_stats:rating", "customer_profile:age"],
                                     [{"driver_id": 1001, "customer_id": 1}, {"driver_id": 99999, "customer_id": 3}],
                                     full_feature_names=True)
    assert rows.names == ["driver_id", "customer_id", "driver_hourly_stats__rating", "customer_profile__age"]
    assert rows.values[2] == [d["rating"][0], None]
    assert rows.values[3] == [d["age"][0], d["age"][2]]
    assert rows == store.get_online_features(["driver_hourly_stats:rating", "customer_profile:age"],
                                             {"driver_id": [1001, 99999], "customer_id": [1, 3]},
                                             full_feature_names=True)

    # a view with a 2h ttl over data that ended long ago: stale, null
    stale = store.get_online_features(["driver_derived:conv_pct"], {"driver_id": [1001]})
    assert stale.statuses[1] == ["OUTSIDE_MAX_AGE"] and stale.values[1] == [None]
    assert stale.event_timestamps[1][0] is not None


def test_push_then_read(kind_repo):
    with quiver.FeatureStore(kind_repo) as store:
        at = utc(2026, 1, 2, 3, 4, 5, 678901)
        result = store.push("driver_events", pd.DataFrame({
            "driver_id": [8001, 8002], "event_timestamp": [at, at], "created": [at, at],
            "conv_rate": [0.25, 0.5], "city": ["Lyon", "Oslo"]}))
        assert result == quiver.PushResult(rows=2, writes=1, values=2, stored=2)
        got = store.get_online_features(["driver_live:conv_rate", "driver_live:city"], {"driver_id": [8001, 8002]})
        assert got.to_dict() == {"driver_id": [8001, 8002], "conv_rate": [0.25, 0.5], "city": ["Lyon", "Oslo"]}
        assert got.event_timestamps[2] == [at, at]  # microseconds kept in-process

        # replaying the same push stores nothing new (write-if-newer)
        again = store.push("driver_events", {"driver_id": [8001], "event_timestamp": [at], "created": [at],
                                             "conv_rate": [0.25], "city": ["Lyon"]})
        assert again.rows == 1 and again.stored == 0
        # an older event never replaces a newer one
        older = store.push("driver_events", {"driver_id": [8001], "event_timestamp": [utc(2026, 1, 1)],
                                             "conv_rate": [0.75], "city": ["Rome"]})
        assert older.stored == 0
        assert store.get_online_features(["driver_live:city"], {"driver_id": [8001]}).values[1] == ["Lyon"]

        # batch_rows splits the rows into writes
        n = 25
        many = store.push("driver_events", pa.table({
            "driver_id": pa.array(range(8100, 8100 + n), pa.int64()),
            "event_timestamp": pa.array([at] * n, pa.timestamp("us", "UTC")),
            "conv_rate": pa.array([0.5] * n, pa.float32()), "city": ["Paris"] * n}), batch_rows=10)
        assert (many.rows, many.writes, many.values, many.stored) == (n, 3, n, n)
        cities = store.get_online_features(["driver_live:city"], {"driver_id": list(range(8100, 8100 + n))})
        assert cities.values[1] == ["Paris"] * n


def test_push_polars_and_naive_times(kind_repo):
    import polars as pl

    with quiver.FeatureStore(kind_repo) as store:
        frame = pl.DataFrame({"driver_id": [8201], "event_timestamp": [dt.datetime(2026, 1, 2, 5)],
                              "conv_rate": [0.125], "city": ["Kyiv"]})
        assert store.push("driver_events", frame, to="online").stored == 1
        got = store.get_online_features(["driver_live:conv_rate", "driver_live:city"], {"driver_id": [8201]})
        assert got.values[1:] == [[0.125], ["Kyiv"]]
        assert got.event_timestamps[1] == [utc(2026, 1, 2, 5)]  # a naive time is UTC


def test_close_and_context_manager(kind_repo):
    with quiver.FeatureStore(kind_repo) as a:
        a.materialize_incremental(MAT_END, progress=False)
        first = a.get_online_features(["driver_hourly_stats:conv_rate"], {"driver_id": [1001]}).to_dict()
    # after the with block, another opener may use the store (the embedded one too)
    b = quiver.FeatureStore(str(kind_repo))
    try:
        assert b.get_online_features(["driver_hourly_stats:conv_rate"], {"driver_id": [1001]}).to_dict() == first
        b.close()
        b.close()  # closing twice is harmless
        # a closed store is not silently reopened (it would take the embedded store's lock back)
        with pytest.raises(quiver.InvalidArgument, match="closed"):
            b.get_online_features(["driver_hourly_stats:conv_rate"], {"driver_id": [1001]})
    finally:
        b.close()
    assert repr(b).startswith("FeatureStore(")


def test_embedded_store_is_held_until_close(tmp_path):
    repo = make_repo(tmp_path)
    a = quiver.FeatureStore(repo)
    b = quiver.FeatureStore(repo)
    try:
        a.materialize_incremental(MAT_END, progress=False)
        with pytest.raises(quiver.StoreUnavailable, match="one at a time"):
            b.get_online_features(["driver_hourly_stats:conv_rate"], {"driver_id": [1001]})
        a.close()
        assert b.get_online_features(["driver_hourly_stats:conv_rate"], {"driver_id": [1001]}).statuses[1][0] in (
            "PRESENT", "NULL_VALUE")
    finally:
        a.close()
        b.close()


def test_config_argument_names_another_file(tmp_path):
    repo = make_repo(tmp_path, apply=False)
    other = repo / "other.yaml"
    other.write_text((repo / "quiver.yaml").read_text().replace(".quiver/registry", ".quiver/other-registry"))
    with quiver.FeatureStore(repo, config=other) as store:
        assert store.apply()["version"] == 1
        assert Path(store.repo_path).resolve() == repo.resolve()
    assert (repo / ".quiver" / "other-registry").exists()
    assert not (repo / ".quiver" / "registry").exists()


def test_online_reads_see_a_newly_applied_version(kind_repo):
    with quiver.FeatureStore(kind_repo) as store:
        store.materialize_incremental(MAT_END, progress=False)
        store.get_online_features(["driver_hourly_stats:conv_rate"], {"driver_id": [1001]})
        with pytest.raises(quiver.InvalidArgument):
            store.get_online_features(["driver_extra:conv_rate"], {"driver_id": [1001]})
        (kind_repo / "features" / "extra.yaml").write_text(
            "feature_views:\n  - name: driver_extra\n    entities: [driver]\n    source: driver_stats_source\n"
            "    features:\n      - {name: conv_rate, type: float32}\n")
        store.apply()
        store.materialize_incremental(MAT_END, ["driver_extra"], progress=False)
        got = store.get_online_features(["driver_extra:conv_rate"], {"driver_id": [1001]})
        want = store.get_online_features(["driver_hourly_stats:conv_rate"], {"driver_id": [1001]})
        assert got.values[1] == want.values[1]


def test_version_and_exception_classes():
    assert isinstance(quiver.__version__, str) and quiver.__version__
    assert issubclass(quiver.InvalidArgument, ValueError)
    assert issubclass(quiver.StoreUnavailable, ConnectionError)
    assert issubclass(quiver.PermissionDenied, PermissionError)
    for cls in (quiver.DefinitionError, quiver.InvalidArgument, quiver.StoreUnavailable, quiver.PermissionDenied):
        assert issubclass(cls, quiver.QuiverError)
    assert quiver.errors.QuiverError is quiver.QuiverError


def test_push_online_and_offline(online_kind, tmp_path):
    repo = make_repo(tmp_path, online_store=online_kind[1], batch_dir=True, full_push_schema=True)
    files = repo / "data" / "driver_stats"
    at = utc(2026, 1, 2, 0, 30, 0, 123456)
    row = pq.read_table(files / "part-0.parquet").slice(0, 1).to_pylist()[0]
    row.update(driver_id=1001, event_timestamp=at, created=at, conv_rate=0.125, city="Nowhere", total_trips=7)
    with quiver.FeatureStore(repo) as store:
        store.materialize_incremental(MAT_END, progress=False)
        schema = pq.read_schema(files / "part-0.parquet")
        result = store.push("driver_events", pa.Table.from_pylist([row], schema=schema), to="online_and_offline")
        assert (result.rows, result.stored) == (1, 1)
        assert len(list(files.glob("*.parquet"))) == 2  # a new file beside the first
        online = store.get_online_features(["driver_live:conv_rate", "driver_live:city"], {"driver_id": [1001]})
        assert online.values[1:] == [[0.125], ["Nowhere"]] and online.event_timestamps[1] == [at]
        # training sees the pushed row from its time on, in every view over the batch source
        entities = pa.table({"driver_id": [1001, 1001],
                             "event_timestamp": pa.array([utc(2026, 1, 2, 0, 29), utc(2026, 1, 2, 0, 31)],
                                                         pa.timestamp("us", "UTC"))})
        train = store.get_historical_features(entities, ["driver_hourly_stats:total_trips", "driver_live:city"],
                                              full_feature_names=True)
        assert train.column("driver_hourly_stats__total_trips").to_pylist()[1] == 7
        assert train.column("driver_live__city").to_pylist()[1] == "Nowhere"
        assert train.column("driver_live__city").to_pylist()[0] != "Nowhere"

        # offline only: a file, no online value
        later = utc(2026, 1, 2, 0, 45)
        row.update(event_timestamp=later, created=later, city="Offline")
        assert store.push("driver_events", pa.Table.from_pylist([row], schema=schema), to="offline").rows == 1
        assert len(list(files.glob("*.parquet"))) == 3
        online = store.get_online_features(["driver_live:city"], {"driver_id": [1001]})
        assert online.values[1] == ["Nowhere"]
        # a ranged materialization over it picks it up
        store.materialize("2026-01-02", MAT_END, ["driver_live"], progress=False)
        assert store.get_online_features(["driver_live:city"], {"driver_id": [1001]}).values[1] == ["Offline"]


def test_to_pandas_keeps_integer_columns_with_missing_values(kind_store):
    _, store = kind_store
    response = store.get_online_features(["driver_hourly_stats:total_trips", "driver_hourly_stats:cancellations"],
                                         {"driver_id": [1001, 1002, 99999]})
    assert response.statuses[1][2] == "NOT_FOUND"
    frame = response.to_pandas()
    for column in ("total_trips", "cancellations"):
        assert pd.api.types.is_integer_dtype(frame[column].dtype), (column, frame[column].dtype)
    assert frame["total_trips"].iloc[0] == response.values[1][0]
    assert frame["total_trips"].isna().tolist()[2] is True
