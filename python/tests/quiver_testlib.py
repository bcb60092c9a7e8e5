"""Helpers of the `quiver` package's tests (fixtures are in conftest.py): the CLI, real
`redis-server` and `quiver serve` processes, sample repositories, exact table comparisons.

Environment:
    QUIVER_BIN   the `quiver` CLI (default: ~/.cache/quiver-target/debug/quiver)

Every process a fixture starts is stopped by its PID at teardown.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import pyarrow as pa
import pytest

import quiver

QUIVER_BIN = os.environ.get("QUIVER_BIN") or os.path.expanduser("~/.cache/quiver-target/debug/quiver")

# The sample data is generated up to this instant, so every run sees the same bytes.
END = "2026-01-02T00:00:00Z"
# Materialization end: the newest rows are dated END exactly, and ranges are [start, end).
MAT_END = "2026-01-03T00:00:00Z"

SMALL = dict(drivers=20, hours=48, customers=30, customer_days=5, labels=200, seed=7)

# The push source of the brief: a view fed by pushes, over the driver statistics.
PUSH_YAML = """\
push_sources:
  - name: driver_events
    batch_source: driver_stats_source
    schema: {%s}
feature_views:
  - name: driver_live
    entities: [driver]
    source: driver_events
    features:
      - {name: conv_rate, type: float32}
      - {name: city, type: string}
"""
PUSH_SCHEMA = "driver_id: int64, event_timestamp: timestamp, created: timestamp, conv_rate: float32, city: string"
# Offline pushes carry every column of the batch source's files: the full schema.
PUSH_SCHEMA_FULL = (
    "driver_id: int64, event_timestamp: timestamp, created: timestamp, conv_rate: float32, "
    "acc_rate: float32, avg_daily_trips: int64, rating: float64, total_trips: int64, "
    "online_hours: float32, cancellations: int32, city: string, is_active: bool, earnings: float64"
)

ENTITY_COLUMNS = ("driver_id", "customer_id", "event_timestamp", "trip_completed")


# -- processes ---------------------------------------------------------------------------------


def cli(repo: Path, *args: str, config: Optional[Path] = None, check: bool = True,
        timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs the `quiver` CLI on `repo`."""
    cmd = [QUIVER_BIN, "-C", str(repo)]
    if config is not None:
        cmd += ["--config", str(config)]
    cmd += list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGCONT (in case a test paused it), SIGTERM, then SIGKILL: always by the process's PID."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGCONT, signal.SIGTERM):
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class RedisServer:
    """A `redis-server` on a free loopback port, without persistence."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc: Optional[subprocess.Popen] = None
        last = ""
        for _ in range(5):  # a port taken between free_port() and bind: try another
            self.port = free_port()
            self.log = workdir / f"redis-{self.port}.log"
            with open(self.log, "wb") as log:
                self.proc = subprocess.Popen(
                    ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                    stdout=log, stderr=subprocess.STDOUT)
            if self._wait_ready(10.0):
                return
            stop_process(self.proc)
            last = self.log.read_text(errors="replace")
        raise RuntimeError(f"redis-server did not start:\n{last}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def ping(self, timeout: float = 1.0) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _is_ours(self, timeout: float = 1.0) -> bool:
        """Whether the server on the port is this process (`INFO server` names its PID): another
        server that took the port between free_port() and the bind must not pass for it."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
                s.sendall(b"INFO server\r\n")
                data = b""
                while b"\r\n" not in data:
                    chunk = s.recv(65536)
                    if not chunk:
                        return False
                    data += chunk
                head, _, body = data.partition(b"\r\n")
                if not head.startswith(b"$"):
                    return False
                size = int(head[1:])
                while len(body) < size:
                    chunk = s.recv(65536)
                    if not chunk:
                        return False
                    body += chunk
                return f"process_id:{self.proc.pid}\r\n".encode() in body
        except (OSError, ValueError):
            return False

    def _wait_ready(self, within: float) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self._is_ours():
                return True
            time.sleep(0.05)
        return False

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


class QuiverServer:
    """`quiver serve` on a loopback port of its own (gRPC off), ready when /ready answers 200.

    The server binds port 0 and the address is read from its log: a port picked here and bound
    later could be taken in between by another server, whose answers a test would then take for
    this one's (CI saw a paused server's "health" answered by another process)."""

    def __init__(self, repo: Path, config: Optional[Path] = None, *, ready_within: float = 60.0) -> None:
        self.repo = repo
        self.log = repo / f"serve-{uuid.uuid4().hex[:8]}.log"
        self.port: Optional[int] = None
        cmd = [QUIVER_BIN, "-C", str(repo)]
        if config is not None:
            cmd += ["--config", str(config)]
        cmd += ["serve", "--http", "127.0.0.1:0", "--grpc", ""]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + ready_within
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"quiver serve exited {self.proc.returncode}:\n{self.log_text()}")
            if self.port is None:
                text = self.log_text()
                whole = text[: text.rfind("\n") + 1]  # only whole lines: not part of a port
                bound = re.search(r"^  HTTP 127\.0\.0\.1:(\d+)$", whole, re.MULTILINE)
                self.port = int(bound.group(1)) if bound else None
            if self.port is not None and self.ready():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"quiver serve not ready within {ready_within}s:\n{self.log_text()}")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        stop_process(self.proc)


# -- repositories ------------------------------------------------------------------------------


def unique_name(prefix: str = "q") -> str:
    """A directory (so project) name no other repository shares: repositories of one Redis never
    share a key space."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def set_online_store(config_text: str, block: Dict[str, Any]) -> str:
    """`config_text` (a quiver.yaml) with its `online_store:` section replaced by `block`."""
    out: List[str] = []
    skipping = False
    for line in config_text.splitlines():
        if line.startswith("online_store:"):
            skipping = True
            out.append("online_store:")
            out.extend(f"  {k}: {json.dumps(v) if not isinstance(v, str) else v}" for k, v in block.items())
            continue
        if skipping and (line.startswith(" ") or not line.strip()):
            continue
        skipping = False
        out.append(line)
    return "\n".join(out) + "\n"


def make_repo(parent: Path, name: Optional[str] = None, *, push: bool = True, full_push_schema: bool = False,
              batch_dir: bool = False, online_store: Optional[Dict[str, Any]] = None, no_ttl: bool = True,
              apply: bool = True, **sizes: int) -> Path:
    """A sample repository made by `quiver init` (fixed --end, small sizes), adjusted, applied
    through the Python API.

    no_ttl: `driver_hourly_stats` and `customer_profile` get `ttl: 0` (no lower bound), so their
    online values are PRESENT although the data ends in the past; `driver_derived` keeps its 2h
    ttl (its online values are OUTSIDE_MAX_AGE). push: adds the `driver_events` push source and
    the `driver_live` view. batch_dir: the driver statistics become a directory (offline pushes
    need one). online_store: replaces quiver.yaml's online_store section.
    """
    size = dict(SMALL, **sizes)
    repo = parent / (name or unique_name())
    cli(parent, "init", str(repo), "--drivers", str(size["drivers"]), "--hours", str(size["hours"]),
        "--customers", str(size["customers"]), "--customer-days", str(size["customer_days"]),
        "--labels", str(size["labels"]), "--seed", str(size["seed"]), "--end", END)
    drivers = repo / "features" / "drivers.yaml"
    text = drivers.read_text()
    if no_ttl:
        assert "ttl: 2h" in text
        text = text.replace("ttl: 2h", "ttl: 0", 1)  # driver_hourly_stats; driver_derived keeps 2h
        customers = repo / "features" / "customers.yaml"
        ctext = customers.read_text()
        assert "ttl: 7d" in ctext
        customers.write_text(ctext.replace("ttl: 7d", "ttl: 0"))
    if batch_dir:
        (repo / "data" / "driver_stats").mkdir()
        shutil.move(str(repo / "data" / "driver_stats.parquet"), str(repo / "data" / "driver_stats" / "part-0.parquet"))
        assert "path: data/driver_stats.parquet" in text
        text = text.replace("path: data/driver_stats.parquet", "path: data/driver_stats")
    drivers.write_text(text)
    if push:
        (repo / "features" / "push.yaml").write_text(PUSH_YAML % (PUSH_SCHEMA_FULL if full_push_schema else PUSH_SCHEMA))
    if online_store is not None:
        config = repo / "quiver.yaml"
        config.write_text(set_online_store(config.read_text(), online_store))
    if apply:
        with quiver.FeatureStore(repo) as store:
            store.apply()
    return repo


def redis_online_store(redis: RedisServer, **options: Any) -> Dict[str, Any]:
    return dict({"type": "redis", "url": redis.url}, **options)


def require_redis() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("!!!!!!!! redis-server is NOT on PATH: SKIPPING this Redis test. Install redis-server "
                    "(e.g. apt-get install redis-server) to run it. !!!!!!!!")


# -- comparisons -------------------------------------------------------------------------------


def _canon(v: Any) -> Any:
    """A value in a form where equality is bit equality: floats by their bits (NaN equals NaN,
    -0.0 differs from 0.0)."""
    if isinstance(v, float):
        return ("float", struct.pack("<d", v))
    if isinstance(v, list):
        return [_canon(x) for x in v]
    if isinstance(v, dict):
        return {k: _canon(x) for k, x in v.items()}
    return v


def assert_same_table(actual: pa.Table, expected: pa.Table, *, loose_nullability: Iterable[str] = ()) -> None:
    """Same column names, types, and values bit for bit (floats too, nulls in the same places).
    Field nullability must match too, except for the columns in `loose_nullability`."""
    loose = set(loose_nullability)
    assert actual.column_names == expected.column_names
    for a, e in zip(actual.schema, expected.schema):
        assert a.type == e.type, f"column {a.name}: type {a.type} != {e.type}"
        if a.name not in loose:
            assert a.nullable == e.nullable, f"column {a.name}: nullable {a.nullable} != {e.nullable}"
    assert actual.num_rows == expected.num_rows
    for name in actual.column_names:
        got, want = actual.column(name).to_pylist(), expected.column(name).to_pylist()
        if got != want or _canon(got) != _canon(want):
            for i, (g, w) in enumerate(zip(got, want)):
                if _canon(g) != _canon(w):
                    raise AssertionError(f"column {name}, row {i}: {g!r} != {w!r}")
            raise AssertionError(f"column {name} differs")


def feature_columns(table: pa.Table) -> List[str]:
    return [c for c in table.column_names if c not in ENTITY_COLUMNS]


def whole_seconds(v: Any) -> Any:
    """A datetime floored to whole seconds (the HTTP API's precision of timestamp values)."""
    if isinstance(v, dt.datetime):
        return v.replace(microsecond=0)
    if isinstance(v, list):
        return [whole_seconds(x) for x in v]
    return v


def online_as_http(response: quiver.OnlineResponse) -> Dict[str, Any]:
    """An OnlineResponse with timestamp feature values at HTTP's precision (whole seconds)."""
    values = [
        [whole_seconds(v) for v in column] if "timestamp" in t else column
        for t, column in zip(response.types, response.values)
    ]
    return dict(names=response.names, types=response.types, values=_canon(values),
                statuses=response.statuses, event_timestamps=response.event_timestamps)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.timezone.utc)
