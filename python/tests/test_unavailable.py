"""A store or server that is down raises StoreUnavailable within its configured timeout: a Redis
killed or paused (SIGSTOP) under a FeatureStore, a Client pointed at a closed port or at a paused
server. The time bounds are deliberately generous (timeout + 5 s): they catch hangs, not speed."""

from __future__ import annotations

import time

import pytest

import quiver
from quiver_testlib import MAT_END, make_repo, redis_online_store, utc

TIMEOUT_MS = 200         # online_store.timeout_ms: an online read
WRITE_TIMEOUT_MS = 500   # online_store.write_timeout_ms: each batch of writes
SLACK = 5.0

ROW = {"driver_id": [7001], "event_timestamp": [utc(2026, 1, 2, 1)], "conv_rate": [0.5], "city": ["Lyon"]}


def elapsed(call):
    start = time.monotonic()
    try:
        call()
    except BaseException as e:  # noqa: BLE001 - returned to the test, which checks it
        return e, time.monotonic() - start
    return None, time.monotonic() - start


@pytest.fixture
def redis_store(make_redis, tmp_path):
    """A materialized FeatureStore on a redis-server of its own, with small timeouts."""
    redis = make_redis()
    repo = make_repo(tmp_path, online_store=redis_online_store(
        redis, timeout_ms=TIMEOUT_MS, write_timeout_ms=WRITE_TIMEOUT_MS))
    store = quiver.FeatureStore(repo)
    store.materialize_incremental(MAT_END, progress=False)
    before = store.get_online_features(["driver_hourly_stats:rating"], {"driver_id": [1001]})
    assert before.statuses[1][0] in ("PRESENT", "NULL_VALUE")
    yield redis, repo, store
    store.close()


def assert_unavailable(call, bound: float, what: str) -> quiver.StoreUnavailable:
    error, seconds = elapsed(call)
    assert isinstance(error, quiver.StoreUnavailable), f"{what}: expected StoreUnavailable, got {error!r}"
    assert isinstance(error, ConnectionError)
    assert seconds < bound, f"{what}: StoreUnavailable after {seconds:.1f}s (bound {bound}s)"
    return error


def test_killed_redis(redis_store):
    redis, repo, store = redis_store
    redis.kill()
    read_bound = TIMEOUT_MS / 1000 + SLACK
    write_bound = WRITE_TIMEOUT_MS / 1000 + SLACK
    e = assert_unavailable(lambda: store.get_online_features(["driver_hourly_stats:rating"], {"driver_id": [1001]}),
                           read_bound, "online read")
    assert "online store unavailable" in str(e) and str(redis.port) in str(e)
    assert_unavailable(lambda: store.push("driver_events", ROW), write_bound, "push")
    assert_unavailable(lambda: store.materialize("2025-12-01", MAT_END, progress=False), write_bound, "materialize")
    assert_unavailable(lambda: store.materialize_incremental(MAT_END, progress=False), write_bound,
                       "materialize_incremental")
    # a store opened while Redis is down says so too
    with quiver.FeatureStore(repo) as fresh:
        assert_unavailable(lambda: fresh.get_online_features(["driver_hourly_stats:rating"], {"driver_id": [1001]}),
                           read_bound, "online read of a new FeatureStore")
    # training does not need the online store
    assert store.get_historical_features(repo / "data" / "labels.parquet", "driver_quality").num_rows == 200


def test_paused_redis(redis_store):
    redis, repo, store = redis_store
    before = store.get_online_features(["driver_hourly_stats:rating"], {"driver_id": [1001, 1002]})
    redis.pause()
    try:
        read_bound = TIMEOUT_MS / 1000 + SLACK
        write_bound = WRITE_TIMEOUT_MS / 1000 + SLACK
        e = assert_unavailable(
            lambda: store.get_online_features(["driver_hourly_stats:rating"], {"driver_id": [1001, 1002]}),
            read_bound, "online read")
        assert "online store unavailable" in str(e)
        assert_unavailable(lambda: store.push("driver_events", ROW), write_bound, "push")
        assert_unavailable(lambda: store.materialize("2025-12-01", MAT_END, progress=False), write_bound, "materialize")
        with quiver.FeatureStore(repo) as fresh:
            assert_unavailable(lambda: fresh.get_online_features(["driver_hourly_stats:rating"], {"driver_id": [1001]}),
                               read_bound, "online read of a new FeatureStore")
    finally:
        redis.resume()
    # Redis is back: the same FeatureStore answers again, by itself
    deadline = time.monotonic() + 10
    while True:
        try:
            after = store.get_online_features(["driver_hourly_stats:rating"], {"driver_id": [1001, 1002]})
            break
        except quiver.StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert after == before


def test_client_closed_port(tmp_path):
    from quiver_testlib import free_port

    client = quiver.Client(f"http://127.0.0.1:{free_port()}", timeout=1)
    assert client.health() is False
    e = assert_unavailable(lambda: client.get_online_features(["driver_hourly_stats:rating"], {"driver_id": [1001]}),
                           1 + SLACK, "Client online read")
    assert "127.0.0.1" in str(e)
    assert_unavailable(lambda: client.push("driver_events", ROW), 1 + SLACK, "Client push")
    labels = make_repo(tmp_path, apply=False) / "data" / "labels.parquet"
    assert_unavailable(lambda: client.get_historical_features(labels, "model_v1"), 1 + SLACK, "Client historical")


def test_client_paused_server(fresh_repo, make_server):
    with quiver.FeatureStore(fresh_repo) as store:
        store.materialize_incremental(MAT_END, progress=False)
    server = make_server(fresh_repo)
    client = quiver.Client(server.url, timeout=1, training_timeout=1)
    before = client.get_online_features(["driver_hourly_stats:rating"], {"driver_id": [1001]})
    import os
    import signal

    os.kill(server.pid, signal.SIGSTOP)
    try:
        assert client.health() is False
        e = assert_unavailable(lambda: client.get_online_features(["driver_hourly_stats:rating"], {"driver_id": [1001]}),
                               1 + SLACK, "Client online read")
        assert server.url in str(e)
        assert_unavailable(lambda: client.push("driver_events", ROW), 1 + SLACK, "Client push")
        assert_unavailable(lambda: client.get_historical_features(fresh_repo / "data" / "labels.parquet", "model_v1"),
                           1 + SLACK, "Client historical (training_timeout=1)")
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert client.get_online_features(["driver_hourly_stats:rating"], {"driver_id": [1001]}) == before
