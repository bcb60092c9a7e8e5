"""Ctrl-C interrupts a long `get_historical_features` (`KeyboardInterrupt`), promptly.

A large repository is generated (numpy; `quiver init` at this size takes far longer in a debug
build), a retrieval that takes several seconds runs in a subprocess, and SIGINT is sent ~1 s into
it. The subprocess runs once for the module; two tests read its outcome."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import quiver
from quiver_testlib import make_repo

pytestmark = pytest.mark.slow

DRIVERS, HOURS, LABELS = 2000, 500, 600_000   # 1M source rows, 600k entity rows: ~10 s in a debug build
SIGNAL_AFTER = 1.0
PROMPT = 3.0          # the process must be gone within this many seconds of SIGINT

CHILD = textwrap.dedent("""
    import sys, time
    import pyarrow.parquet as pq
    import quiver

    store = quiver.FeatureStore(sys.argv[1])
    labels = pq.read_table(sys.argv[2])
    print("READY", flush=True)
    start = time.monotonic()
    try:
        store.get_historical_features(labels, "model_v1")
    except KeyboardInterrupt:
        print("INTERRUPTED %.3f" % (time.monotonic() - start), flush=True)
        raise
    print("FINISHED %.3f" % (time.monotonic() - start), flush=True)
""")


def generate(repo: Path) -> None:
    """Replaces the sample's driver statistics and labels with large ones of the same schema."""
    rng = np.random.default_rng(0)
    stats = repo / "data" / "driver_stats.parquet"
    schema = pq.read_schema(stats)
    n = DRIVERS * HOURS
    end = np.datetime64("2026-01-02T00:00:00", "us")
    ts = end - np.tile(np.arange(HOURS, 0, -1), DRIVERS).astype("timedelta64[h]").astype("timedelta64[us]")
    columns = {}
    for field in schema:
        if field.name == "driver_id":
            array = pa.array(np.repeat(np.arange(1001, 1001 + DRIVERS, dtype=np.int64), HOURS))
        elif field.name == "event_timestamp":
            array = pa.array(ts).cast(field.type)
        elif field.name == "created":
            array = pa.array(ts + np.timedelta64(5, "s")).cast(field.type)
        elif pa.types.is_floating(field.type):
            array = pa.array(rng.random(n)).cast(field.type)
        elif pa.types.is_integer(field.type):
            array = pa.array(rng.integers(0, 100, n)).cast(field.type)
        elif pa.types.is_boolean(field.type):
            array = pa.array(rng.random(n) < 0.5)
        else:
            array = pa.array(np.array(["Paris", "Lyon", "Oslo"])[rng.integers(0, 3, n)])
        columns[field.name] = array
    pq.write_table(pa.table(columns, schema=schema), stats)

    labels = repo / "data" / "labels.parquet"
    lschema = pq.read_schema(labels)
    times = end - rng.integers(0, HOURS * 3600, LABELS).astype("timedelta64[s]").astype("timedelta64[us]")
    pq.write_table(pa.table({
        "driver_id": pa.array(rng.integers(1001, 1001 + DRIVERS, LABELS)),
        "customer_id": pa.array(rng.integers(1, 31, LABELS)),
        "event_timestamp": pa.array(times).cast(lschema.field("event_timestamp").type),
        "trip_completed": pa.array(rng.random(LABELS) < 0.5),
    }), labels)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """Runs the retrieval in a subprocess, sends SIGINT after SIGNAL_AFTER seconds; returns what
    happened."""
    parent = tmp_path_factory.mktemp("big")
    repo = make_repo(parent, push=False, apply=False)
    generate(repo)
    with quiver.FeatureStore(repo) as store:
        store.apply()
    script = parent / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(repo), str(repo / "data" / "labels.parquet")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=parent)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "READY", f"the child did not start: {line!r} {proc.stderr.read() if proc.poll() else ''}"
        time.sleep(SIGNAL_AFTER)
        signalled = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"the child did not end within 120 s of SIGINT\n{out}\n{err}")
        ended = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return dict(returncode=proc.returncode, stdout=out, stderr=err, seconds=ended)


def test_ctrl_c_raises_keyboard_interrupt(interrupted):
    out, err = interrupted["stdout"], interrupted["stderr"]
    assert "FINISHED" not in out, f"the retrieval ended before the signal; make it longer ({out})"
    assert "INTERRUPTED" in out, f"get_historical_features did not raise KeyboardInterrupt:\n{out}\n{err}"
    assert "KeyboardInterrupt" in err
    assert "get_historical_features" in err
    assert interrupted["returncode"] != 0


def test_ctrl_c_is_prompt(interrupted):
    assert "INTERRUPTED" in interrupted["stdout"]
    assert interrupted["seconds"] < PROMPT, (
        f"the process ended {interrupted['seconds']:.1f} s after SIGINT (stdout: {interrupted['stdout'].strip()})")
