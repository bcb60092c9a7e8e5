"""Entity table inputs (pandas, polars, pyarrow, paths, readers) give the same training table, and
edge shapes: one row, no rows, many small batches, full feature names, duplicates, time units,
materializing twice."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import quiver
from quiver_testlib import ENTITY_COLUMNS, MAT_END, assert_same_table, feature_columns, make_repo

FEATURES = "model_v1"


@pytest.fixture(scope="module")
def hist(repo):
    """A FeatureStore for retrievals (it never opens the online store)."""
    with quiver.FeatureStore(repo) as store:
        yield store


@pytest.fixture(scope="module")
def reference(hist, repo) -> pa.Table:
    return hist.get_historical_features(pq.read_table(repo / "data" / "labels.parquet"), FEATURES)


def assert_same_training_table(actual: pa.Table, expected: pa.Table) -> None:
    """Feature columns identical (values bit for bit, types, nullability); entity columns equal in
    values and types, their nullability may differ (a DataFrame has no NOT NULL)."""
    assert_same_table(actual, expected, loose_nullability=ENTITY_COLUMNS)


def test_reference_is_complete(reference, labels):
    assert reference.num_rows == labels.num_rows == 200
    assert len(feature_columns(reference)) == 20


@pytest.mark.parametrize("form", ["pandas", "polars", "pyarrow", "path", "pathlib", "reader", "dict", "batch"])
def test_entity_inputs_give_identical_tables(form, hist, repo, labels, reference):
    path = repo / "data" / "labels.parquet"
    entity_df = {
        "pandas": lambda: labels.to_pandas(),
        "polars": lambda: pl.from_arrow(labels),
        "pyarrow": lambda: labels,
        "path": lambda: str(path),
        "pathlib": lambda: path,
        "reader": lambda: pa.RecordBatchReader.from_batches(labels.schema, labels.to_batches(max_chunksize=16)),
        "dict": lambda: labels.to_pydict(),
        "batch": lambda: labels.combine_chunks().to_batches()[0],
    }[form]()
    assert_same_training_table(hist.get_historical_features(entity_df, FEATURES), reference)


def test_pandas_index_is_not_a_column(hist, labels, reference):
    frame = labels.to_pandas()
    frame.index = pd.RangeIndex(1000, 1000 + len(frame), name="row")
    got = hist.get_historical_features(frame, FEATURES)
    assert "row" not in got.column_names and "__index_level_0__" not in got.column_names
    assert_same_training_table(got, reference)
    # a filtered frame (a non-contiguous index) gives exactly its rows
    part = labels.to_pandas().iloc[::3]
    assert_same_training_table(hist.get_historical_features(part, FEATURES), reference.take(list(range(0, 200, 3))))


def test_entity_files_parquet_ipc_csv(hist, labels, reference, tmp_path):
    ipc = tmp_path / "labels.arrow"
    feather.write_feather(labels, ipc, compression="uncompressed")
    assert_same_training_table(hist.get_historical_features(ipc, FEATURES), reference)

    csv = tmp_path / "labels.csv"
    text = labels.set_column(2, "event_timestamp", pc.strftime(labels.column("event_timestamp"),
                                                              format="%Y-%m-%dT%H:%M:%SZ"))
    assert text.column("event_timestamp")[0].as_py().endswith("Z")
    pacsv.write_csv(text, csv)
    got = hist.get_historical_features(csv, FEATURES)
    # times come out as UTC timestamps whatever the input format; the features are the same
    assert got.column("event_timestamp").to_pylist() == labels.column("event_timestamp").to_pylist()
    assert_same_table(got.select(feature_columns(got)), reference.select(feature_columns(reference)))


def test_many_small_batches(hist, labels, reference):
    one_row_batches = labels.to_batches(max_chunksize=1)
    assert len(one_row_batches) == 200
    reader = pa.RecordBatchReader.from_batches(labels.schema, one_row_batches)
    assert_same_training_table(hist.get_historical_features(reader, FEATURES), reference)
    chunked = pa.Table.from_batches(labels.to_batches(max_chunksize=7))
    assert chunked.column(0).num_chunks > 1
    assert_same_training_table(hist.get_historical_features(chunked, FEATURES), reference)
    assert_same_training_table(hist.get_historical_features(pl.from_arrow(chunked).rechunk(), FEATURES), reference)


def test_one_entity_row(hist, labels, reference):
    """A single row over a larger source gives that row of the whole table."""
    for i in (0, 17, 199):
        one = hist.get_historical_features(labels.slice(i, 1), FEATURES)
        assert one.num_rows == 1
        assert_same_table(one, reference.slice(i, 1))


def test_key_filter_and_full_sort_agree(hist, labels, reference):
    """More entity rows than the key filter takes (20,000) are joined by sorting whole sources:
    the same values."""
    big = pa.concat_tables([labels] * 101)
    assert big.num_rows > 20_000
    got = hist.get_historical_features(big, FEATURES)
    assert got.num_rows == big.num_rows
    assert_same_table(got.slice(0, 200), reference)
    assert_same_table(got.slice(big.num_rows - 200, 200), reference)


def test_empty_entity_table(hist, labels, reference):
    empty = hist.get_historical_features(labels.slice(0, 0), FEATURES)
    assert empty.num_rows == 0
    assert empty.schema == reference.schema
    got = hist.get_historical_features(labels.to_pandas().iloc[:0], FEATURES)
    assert got.num_rows == 0
    assert got.column_names == reference.column_names
    assert [f.type for f in got.schema] == [f.type for f in reference.schema]


def test_empty_polars_entity_table(hist, labels, reference):
    nothing = pl.from_arrow(labels).filter(pl.col("driver_id") < 0)
    assert nothing.height == 0
    got = hist.get_historical_features(nothing, FEATURES)
    assert got.num_rows == 0
    assert [f.type for f in got.schema] == [f.type for f in reference.schema]


def test_empty_batch_among_rows(hist, labels, reference):
    empty = pa.RecordBatch.from_pylist([], schema=labels.schema)
    batches = labels.slice(0, 100).to_batches() + [empty] + labels.slice(100).to_batches()
    got = hist.get_historical_features(pa.RecordBatchReader.from_batches(labels.schema, batches), FEATURES)
    assert_same_training_table(got, reference)


def test_full_feature_names(hist, labels, reference):
    full = hist.get_historical_features(labels, FEATURES, full_feature_names=True)
    names = feature_columns(full)
    assert names[0] == "driver_hourly_stats__conv_rate"
    assert "customer_profile__recent_ratings" in names
    assert all("__" in n and n.split("__")[0] in ("driver_hourly_stats", "customer_profile") for n in names)
    assert [n.split("__", 1)[1] for n in names] == feature_columns(reference)
    assert_same_table(full.rename_columns(reference.column_names), reference)


def test_feature_names_collide_without_full_names(hist, labels):
    refs = ["driver_hourly_stats:conv_rate", "driver_live:conv_rate"]
    with pytest.raises(quiver.InvalidArgument, match="collides"):
        hist.get_historical_features(labels, refs)
    both = hist.get_historical_features(labels, refs, full_feature_names=True)
    assert feature_columns(both) == ["driver_hourly_stats__conv_rate", "driver_live__conv_rate"]


def test_duplicate_rows_stay_duplicates(hist, labels, reference):
    order = [5, 5, 3, 5, 0]
    got = hist.get_historical_features(labels.take(order), FEATURES)
    assert_same_table(got, reference.take(order))


def test_timestamp_column_units_and_name(hist, labels, reference):
    features = feature_columns(reference)
    want = reference.select(features)
    ts = labels.column("event_timestamp")
    variants = {
        "ns": ts.cast(pa.timestamp("ns", tz="UTC")),
        "naive": ts.cast(pa.timestamp("us")),  # naive times are UTC
        "text": pc.strftime(ts, format="%Y-%m-%dT%H:%M:%SZ"),
    }
    for name, column in variants.items():
        got = hist.get_historical_features(labels.set_column(2, "event_timestamp", column), FEATURES)
        assert_same_table(got.select(features), want)
    renamed = labels.rename_columns(["driver_id", "customer_id", "label_time", "trip_completed"])
    got = hist.get_historical_features(renamed, FEATURES, timestamp_column="label_time")
    assert got.column_names[:4] == renamed.column_names
    assert_same_table(got.select(features), want)


def test_materialize_twice_is_idempotent(tmp_path):
    repo = make_repo(tmp_path)
    with quiver.FeatureStore(repo) as store:
        first = store.materialize_incremental(MAT_END, progress=False)
        assert sum(r["keys_written"] for r in first) > 0
        keys = {"driver_id": list(range(1001, 1021)), "customer_id": list(range(1, 21))}
        before = store.get_online_features("model_v1", keys)
        second = store.materialize_incremental(MAT_END, progress=False)
        assert {r["view"] for r in second} == {r["view"] for r in first}
        for run in second:
            assert (run["rows_read"], run["keys_written"]) == (0, 0), run
            assert run["watermark"] == MAT_END
        assert store.get_online_features("model_v1", keys) == before
        # a ranged run over the same range writes the same values again
        store.materialize("2025-12-01", MAT_END, progress=False)
        assert store.get_online_features("model_v1", keys) == before


def test_created_cutoff_uses_only_rows_created_before(hist, repo):
    """At exactly an hourly row's event time the row was not created yet (created is seconds
    later): with created_cutoff the previous hour's value is used."""
    source = pq.read_table(repo / "data" / "driver_stats.parquet").filter(pc.equal(pc.field("driver_id"), 1001))
    source = source.sort_by("event_timestamp")
    row = source.slice(source.num_rows - 5, 1)
    assert row.column("created")[0].as_py() > row.column("event_timestamp")[0].as_py()
    entities = pa.table({"driver_id": row.column("driver_id"), "event_timestamp": row.column("event_timestamp")})
    plain = hist.get_historical_features(entities, ["driver_hourly_stats:total_trips"])
    cut = hist.get_historical_features(entities, ["driver_hourly_stats:total_trips"], created_cutoff=True)
    assert plain.column("total_trips").to_pylist() == row.column("total_trips").to_pylist()
    before = source.slice(source.num_rows - 6, 1)
    assert cut.column("total_trips").to_pylist() == before.column("total_trips").to_pylist()


def test_any_arrow_stream_producer(hist, labels, reference):
    class Producer:  # e.g. a DuckDB relation: anything with __arrow_c_stream__
        def __arrow_c_stream__(self, requested_schema=None):
            return labels.__arrow_c_stream__(requested_schema)

    assert_same_training_table(hist.get_historical_features(Producer(), FEATURES), reference)


def test_memory_limit(hist, labels, reference):
    big = pa.concat_tables([labels] * 101)  # past the key filter: whole sources are sorted
    got = hist.get_historical_features(big, FEATURES, memory_limit=32 << 20)
    assert_same_table(got.slice(0, 200), reference)
    with pytest.raises(quiver.InvalidArgument, match="memory limit"):
        hist.get_historical_features(big, FEATURES, memory_limit=1 << 20)
