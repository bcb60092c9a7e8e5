"""Mistakes raise the documented exception, with a message that says what is wrong; a refused
write writes nothing."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import quiver
from quiver_testlib import MAT_END, make_repo, utc


@pytest.fixture(scope="module")
def err_store(repo):
    store = quiver.FeatureStore(repo)
    store.materialize_incremental(MAT_END, progress=False)
    yield store
    store.close()


@pytest.fixture
def push_store(tmp_path):
    with quiver.FeatureStore(make_repo(tmp_path)) as store:
        yield store


AT = utc(2026, 1, 2, 6)


def push_rows(**overrides):
    rows = {"driver_id": [9001], "event_timestamp": [AT], "created": [AT], "conv_rate": [0.5], "city": ["Lyon"]}
    rows.update(overrides)
    return rows


def live(store, ids):
    return store.get_online_features(["driver_live:conv_rate", "driver_live:city"], {"driver_id": ids})


# -- training ----------------------------------------------------------------------------------


def test_missing_join_key_column(err_store, labels):
    with pytest.raises(quiver.InvalidArgument, match="customer_id") as e:
        err_store.get_historical_features(labels.drop_columns(["customer_id"]), "model_v1")
    assert "join key" in str(e.value) and "customer_profile" in str(e.value)
    assert isinstance(e.value, ValueError)


def test_missing_timestamp_column(err_store, labels):
    with pytest.raises(quiver.InvalidArgument, match="no timestamp column `event_timestamp`") as e:
        err_store.get_historical_features(labels.drop_columns(["event_timestamp"]), "model_v1")
    assert "driver_id" in str(e.value)  # the columns there are
    with pytest.raises(quiver.InvalidArgument, match="no timestamp column `ts`"):
        err_store.get_historical_features(labels, "model_v1", timestamp_column="ts")


def test_unknown_feature(err_store, labels):
    with pytest.raises(quiver.InvalidArgument, match="has no feature `conv_rat`") as e:
        err_store.get_historical_features(labels, ["driver_hourly_stats:conv_rat"])
    assert "driver_hourly_stats" in str(e.value)
    with pytest.raises(quiver.InvalidArgument, match="did you mean `driver_hourly_stats`"):
        err_store.get_historical_features(labels, ["driver_hourly:conv_rate"])
    with pytest.raises(quiver.InvalidArgument, match="no features given"):
        err_store.get_historical_features(labels, [])
    with pytest.raises(quiver.InvalidArgument, match="comma"):
        err_store.get_historical_features(labels, ["driver_hourly_stats:conv_rate,driver_hourly_stats:city"])


def test_unknown_feature_service(err_store, labels):
    with pytest.raises(quiver.InvalidArgument, match="`model_v2`") as e:
        err_store.get_historical_features(labels, "model_v2")
    assert "feature service" in str(e.value) and "did you mean `model_v1`" in str(e.value)


def test_integer_timestamp_column(err_store, labels):
    ints = labels.set_column(2, "event_timestamp", pa.array(range(labels.num_rows), pa.int64()))
    with pytest.raises(quiver.InvalidArgument, match="timestamp column `event_timestamp` is Int64") as e:
        err_store.get_historical_features(ints, "model_v1")
    assert "which unit" in str(e.value)


def test_unreadable_time_names_its_row(err_store, labels):
    text = labels.set_column(2, "event_timestamp", pa.array(["2026-01-01T00:00:00Z", "2026/01/01"] * 100))
    with pytest.raises(quiver.InvalidArgument, match="row 2") as e:
        err_store.get_historical_features(text, "model_v1")
    assert "2026/01/01" in str(e.value) and "RFC 3339" in str(e.value)


def test_fractional_float_entity_key(err_store, labels):
    floats = labels.set_column(0, "driver_id", pa.array([1001.5] * labels.num_rows))
    with pytest.raises(quiver.InvalidArgument, match="column `driver_id`") as e:
        err_store.get_historical_features(floats, "model_v1")
    assert "1001.5" in str(e.value) and "int64" in str(e.value) and "row 1" in str(e.value)


def test_bad_entity_paths(err_store, tmp_path):
    with pytest.raises(quiver.InvalidArgument, match="No such file") as e:
        err_store.get_historical_features(tmp_path / "nope.parquet", "model_v1")
    assert "nope.parquet" in str(e.value)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"this is not parquet")
    with pytest.raises(quiver.QuiverError, match="junk.parquet"):
        err_store.get_historical_features(junk, "model_v1")


def test_unsupported_entity_types(err_store, labels):
    with pytest.raises(TypeError, match="LazyFrame; call .collect"):
        err_store.get_historical_features(pl.from_arrow(labels).lazy(), "model_v1")
    with pytest.raises(TypeError, match="got list"):
        err_store.get_historical_features([1001, 1002], "model_v1")
    with pytest.raises(TypeError, match="got int"):
        err_store.get_historical_features(42, "model_v1")


# -- repository and definitions ----------------------------------------------------------------


def test_bad_repo_path(tmp_path):
    with pytest.raises(quiver.InvalidArgument, match="no quiver.yaml found") as e:
        quiver.FeatureStore(tmp_path / "missing")
    assert str(tmp_path / "missing") in str(e.value) and "quiver init" in str(e.value)
    with pytest.raises(quiver.QuiverError, match="nope.yaml"):
        quiver.FeatureStore(tmp_path, config=tmp_path / "nope.yaml")


def test_invalid_definitions(tmp_path):
    repo = make_repo(tmp_path, apply=False)
    (repo / "features" / "broken.yaml").write_text(
        "feature_views:\n"
        "  - name: broken_view\n"
        "    entities: [nobody]\n"
        "    source: driver_stats_source\n"
        "    features:\n"
        "      - {name: conv_rate, type: float32}\n"
        "      - {name: weird, type: complex128}\n")
    store = quiver.FeatureStore(repo)  # definitions are read at plan/apply, not at open
    for call in (store.plan, store.apply):
        with pytest.raises(quiver.DefinitionError) as e:
            call()
        text = str(e.value)
        assert "features/broken.yaml:3:" in text and "unknown entity `nobody`" in text
        assert "features/broken.yaml:7:" in text and "unknown value type `complex128`" in text
        assert "2 errors" in text
        assert not isinstance(e.value, quiver.InvalidArgument)
    # nothing was applied
    with pytest.raises(quiver.QuiverError):
        store.registry.version


def test_invalid_yaml_syntax(tmp_path):
    repo = make_repo(tmp_path, apply=False)
    (repo / "features" / "syntax.yaml").write_text("feature_views:\n  - name: x\n    entities: [driver\n")
    with pytest.raises(quiver.DefinitionError, match=r"features/syntax.yaml:3:\d+") as e:
        quiver.FeatureStore(repo).plan()
    assert "invalid YAML" in str(e.value)


def test_invalid_config(tmp_path):
    repo = make_repo(tmp_path, apply=False)
    config = repo / "quiver.yaml"
    config.write_text(config.read_text().replace("type: embedded", "type: embeded"))
    with pytest.raises(quiver.DefinitionError, match="embeded") as e:
        quiver.FeatureStore(repo)
    assert "quiver.yaml:" in str(e.value) and "embedded, redis" in str(e.value)


# -- online ------------------------------------------------------------------------------------


def test_online_mistakes(err_store):
    with pytest.raises(quiver.InvalidArgument, match="has no feature `nope`"):
        err_store.get_online_features(["driver_hourly_stats:nope"], {"driver_id": [1001]})
    with pytest.raises(quiver.InvalidArgument, match="unknown feature service `nope`"):
        err_store.get_online_features("nope", {"driver_id": [1001]})
    with pytest.raises(quiver.InvalidArgument, match="needs entity key `driver_id`"):
        err_store.get_online_features(["driver_hourly_stats:conv_rate"], {"customer_id": [1]})
    with pytest.raises(quiver.InvalidArgument, match="1001.5 is not a join key value"):
        err_store.get_online_features(["driver_hourly_stats:conv_rate"], {"driver_id": [1001.5]})
    with pytest.raises(quiver.InvalidArgument, match="bool"):
        err_store.get_online_features(["driver_hourly_stats:conv_rate"], {"driver_id": [True]})
    with pytest.raises(quiver.InvalidArgument, match="list of values"):
        err_store.get_online_features(["driver_hourly_stats:conv_rate"], {"driver_id": 1001})
    with pytest.raises(quiver.InvalidArgument, match="each row must be a dict"):
        err_store.get_online_features(["driver_hourly_stats:conv_rate"], [1001])
    with pytest.raises(TypeError, match="entity_rows"):
        err_store.get_online_features(["driver_hourly_stats:conv_rate"], 1001)


# -- push --------------------------------------------------------------------------------------


def test_unknown_push_source(push_store):
    with pytest.raises(quiver.InvalidArgument, match="unknown push source `driver_evnts`") as e:
        push_store.push("driver_evnts", push_rows())
    assert "did you mean `driver_events`" in str(e.value)
    assert live(push_store, [9001]).statuses[1] == ["NOT_FOUND"]


def test_bad_destination(push_store):
    with pytest.raises(quiver.InvalidArgument, match="`to` is `both`") as e:
        push_store.push("driver_events", push_rows(), to="both")
    assert "online_and_offline" in str(e.value)
    with pytest.raises(quiver.InvalidArgument, match="batch_rows"):
        push_store.push("driver_events", push_rows(), batch_rows=0)
    assert live(push_store, [9001]).statuses[1] == ["NOT_FOUND"]


def test_string_in_float_column_writes_nothing(push_store):
    bad = push_rows(driver_id=[9001, 9002, 9003], event_timestamp=[AT] * 3, created=[AT] * 3,
                    conv_rate=["0.25", "abc", "0.75"], city=["a", "b", "c"])
    with pytest.raises(quiver.InvalidArgument, match='row 1: "abc" is not a float32') as e:
        push_store.push("driver_events", bad)
    assert "conv_rate" in str(e.value) and "0 rows pushed before this" in str(e.value)
    got = live(push_store, [9001, 9002, 9003])
    assert got.statuses[1] == got.statuses[2] == ["NOT_FOUND"] * 3

    # pandas: the column does not even convert to Arrow
    frame = pd.DataFrame({"driver_id": [9001, 9002], "event_timestamp": [AT, AT], "conv_rate": [0.1, "abc"],
                          "city": ["a", "b"]})
    with pytest.raises(quiver.InvalidArgument, match="conv_rate"):
        push_store.push("driver_events", frame)
    assert live(push_store, [9001, 9002]).statuses[1] == ["NOT_FOUND"] * 2


def test_refused_push_keeps_the_old_value(push_store):
    assert push_store.push("driver_events", push_rows()).stored == 1
    newer = utc(2026, 1, 2, 7)
    bad = {"driver_id": [9001, 9002], "event_timestamp": [newer, newer], "conv_rate": [0.99, 0.1],
           "city": ["Changed", None]}
    bad["event_timestamp"] = pa.array([newer, None], pa.timestamp("us", "UTC"))  # a null event time
    with pytest.raises(quiver.InvalidArgument, match="event_timestamp"):
        push_store.push("driver_events", bad)
    got = live(push_store, [9001, 9002])
    assert got.values[1:] == [[0.5, None], ["Lyon", None]]
    assert got.statuses[1] == ["PRESENT", "NOT_FOUND"]
    assert got.event_timestamps[1][0] == AT


def test_missing_push_column_names_it(push_store):
    rows = push_rows()
    del rows["city"]
    with pytest.raises(quiver.InvalidArgument, match="no column `city`") as e:
        push_store.push("driver_events", rows)
    assert "driver_live" in str(e.value)
    assert live(push_store, [9001]).statuses[1] == ["NOT_FOUND"]


def test_failed_batch_names_rows_pushed_before(push_store):
    rows = {"driver_id": [9101, 9102, 9103], "event_timestamp": [AT] * 3, "conv_rate": ["0.1", "0.2", "x"],
            "city": ["a", "b", "c"]}
    with pytest.raises(quiver.InvalidArgument, match="2 rows pushed before this") as e:
        push_store.push("driver_events", rows, batch_rows=1)
    assert "rows 2..3" in str(e.value)
    got = live(push_store, [9101, 9102, 9103])
    assert got.statuses[1] == ["PRESENT", "PRESENT", "NOT_FOUND"]


def test_push_type_errors(push_store):
    with pytest.raises(TypeError, match="LazyFrame"):
        push_store.push("driver_events", pl.DataFrame(push_rows()).lazy())
    with pytest.raises(TypeError, match="got str"):
        push_store.push("driver_events", "rows.parquet")
    assert live(push_store, [9001]).statuses[1] == ["NOT_FOUND"]


def test_offline_push_to_a_single_file_is_refused(tmp_path):
    repo = make_repo(tmp_path, full_push_schema=True)
    rows = pq.read_table(repo / "data" / "driver_stats.parquet").slice(0, 1)
    rows = rows.set_column(0, "driver_id", pa.array([9001], pa.int64()))
    with quiver.FeatureStore(repo) as store:
        for to in ("offline", "online_and_offline"):
            with pytest.raises(quiver.InvalidArgument, match="must be a directory or a glob") as e:
                store.push("driver_events", rows, to=to)
            assert "data/driver_stats.parquet" in str(e.value)
        assert live(store, [9001]).statuses[1] == ["NOT_FOUND"]
    assert sorted(p.name for p in (repo / "data").iterdir()) == [
        "customer_profile.parquet", "driver_stats.parquet", "labels.parquet", "trip_events.parquet"]


def test_offline_push_missing_file_columns_is_refused(tmp_path):
    repo = make_repo(tmp_path, batch_dir=True)  # the push source declares 5 of the files' 13 columns
    with quiver.FeatureStore(repo) as store:
        with pytest.raises(quiver.InvalidArgument, match="column `acc_rate`, which the push source does not declare"):
            store.push("driver_events", push_rows(), to="online_and_offline")
        assert live(store, [9001]).statuses[1] == ["NOT_FOUND"]
    assert [p.name for p in (repo / "data" / "driver_stats").iterdir()] == ["part-0.parquet"]


# -- materialize -------------------------------------------------------------------------------


def test_materialize_mistakes(push_store):
    with pytest.raises(quiver.InvalidArgument, match="unknown feature view `nope`"):
        push_store.materialize("2026-01-01", "2026-01-02", ["nope"], progress=False)
    with pytest.raises(quiver.InvalidArgument, match="must be before end"):
        push_store.materialize("2026-01-02", "2026-01-01", progress=False)
    with pytest.raises(quiver.InvalidArgument, match="invalid time `yesterday`"):
        push_store.materialize("yesterday", "2026-01-01", progress=False)
    with pytest.raises(TypeError, match="start_date"):
        push_store.materialize(20260101, "2026-01-02", progress=False)


def test_entity_column_colliding_with_a_feature(err_store, labels):
    clash = labels.append_column("conv_rate", pa.array([1.0] * labels.num_rows))
    with pytest.raises(quiver.InvalidArgument, match="`conv_rate`.*collides with a column of the entity table") as e:
        err_store.get_historical_features(clash, "model_v1")
    assert "full feature names" in str(e.value)
    got = err_store.get_historical_features(clash, "model_v1", full_feature_names=True)
    assert got.column("conv_rate").to_pylist() == [1.0] * labels.num_rows
    assert "driver_hourly_stats__conv_rate" in got.column_names
