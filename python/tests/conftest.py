"""Fixtures of the `quiver` package's tests: real repositories made by `quiver init`, a real
`redis-server`, real `quiver serve` processes. Nothing is mocked; every process a fixture starts
is stopped by its PID at teardown. Helpers are in quiver_testlib.py.

Environment: QUIVER_BIN, the `quiver` CLI (default: ~/.cache/quiver-target/debug/quiver).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import List, Optional

import pyarrow as pa
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quiver  # noqa: E402
from quiver_testlib import (  # noqa: E402
    MAT_END, QUIVER_BIN, QuiverServer, RedisServer, make_repo, redis_online_store, require_redis,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: generates a large repository (seconds); deselect with -m 'not slow'")


def pytest_terminal_summary(terminalreporter) -> None:
    if shutil.which("redis-server") is None:
        terminalreporter.write_sep("!", "redis-server is NOT on PATH: every Redis test was SKIPPED", red=True, bold=True)


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _quiver_bin() -> str:
    if not os.access(QUIVER_BIN, os.X_OK):
        pytest.exit(f"the quiver CLI is not at {QUIVER_BIN}: build it, or set QUIVER_BIN", returncode=4)
    return QUIVER_BIN


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """One redis-server for the session (repositories use distinct project names)."""
    require_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def make_redis(tmp_path_factory: pytest.TempPathFactory):
    """Starts redis-servers of a test's own (a test may kill or pause them)."""
    require_redis()
    started: List[RedisServer] = []

    def start() -> RedisServer:
        server = RedisServer(tmp_path_factory.mktemp("redis-own"))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def make_server():
    """Starts `quiver serve` processes for a test; each is stopped by its PID afterwards."""
    started: List[QuiverServer] = []

    def start(repo: Path, config: Optional[Path] = None) -> QuiverServer:
        server = QuiverServer(repo, config)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sample repository (embedded online store), applied, for the tests of one module that do
    not change it."""
    return make_repo(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def store(repo: Path):
    """A FeatureStore on `repo`, materialized up to MAT_END; closed at the module's end."""
    s = quiver.FeatureStore(repo)
    s.materialize_incremental(MAT_END, progress=False)
    yield s
    s.close()


@pytest.fixture(scope="module")
def redis_repo(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Path:
    """A sample repository whose online store is the session's redis-server."""
    return make_repo(tmp_path_factory.mktemp("redis-repo"), online_store=redis_online_store(redis_server))


@pytest.fixture
def fresh_repo(tmp_path: Path) -> Path:
    """A repository of the test's own (embedded store), applied, not materialized."""
    return make_repo(tmp_path)


@pytest.fixture
def labels(repo: Path) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.read_table(repo / "data" / "labels.parquet")


