"""``FeatureStore``: a feature repository used in-process, as the ``quiver`` CLI uses it."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Union

import pyarrow as pa

from . import _convert
from ._quiver import Store as _Store
from .errors import InvalidArgument
from .results import OnlineResponse, PushResult

# Native stores of a parent process, inherited through fork(): never dropped in the child (their
# runtime's threads do not exist there, so dropping them could block), never used again.
_inherited: List[_Store] = []


class Plan:
    """What ``apply`` would change. ``str(plan)`` is the CLI's ``quiver plan`` text;
    :meth:`to_dict` its ``--format json``."""

    def __init__(self, text: str, data: Dict[str, Any]) -> None:
        self.text = text
        self._data = data

    def to_dict(self) -> Dict[str, Any]:
        return self._data

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Plan({self.text.strip()!r})"


class Registry:
    """The newest applied registry version: its definitions, as dicts (the shapes of
    ``quiver registry describe --format json``)."""

    def __init__(self, store: _Store) -> None:
        self._store = store

    def _load(self) -> Dict[str, Any]:
        return json.loads(self._store.registry())

    @property
    def version(self) -> int:
        """The registry version number."""
        return self._load()["version"]

    def to_dict(self) -> Dict[str, Any]:
        """``{version, hash, applied_at, registry}``."""
        return self._load()

    def _list(self, key: str) -> List[Dict[str, Any]]:
        items = self._load()["registry"].get(key, {})
        return list(items.values()) if isinstance(items, dict) else list(items)

    def list_entities(self) -> List[Dict[str, Any]]:
        return self._list("entities")

    def list_sources(self) -> List[Dict[str, Any]]:
        return self._list("sources")

    def list_push_sources(self) -> List[Dict[str, Any]]:
        return self._list("push_sources")

    def list_feature_views(self) -> List[Dict[str, Any]]:
        return self._list("feature_views")

    def list_feature_services(self) -> List[Dict[str, Any]]:
        return self._list("feature_services")

    def get_feature_view(self, name: str) -> Dict[str, Any]:
        """One feature view; ``KeyError`` naming the known views if there is none."""
        views = self._load()["registry"].get("feature_views", {})
        if name not in views:
            raise KeyError(f"unknown feature view {name!r} (known: {sorted(views)})")
        return views[name]

    def __repr__(self) -> str:
        return f"Registry(version {self.version})"


class FeatureStore:
    """A feature repository, used in-process: the engine runs in this Python process (no server),
    exactly as the ``quiver`` CLI runs it, and tables come back as ``pyarrow.Table`` without a
    copy.

    >>> store = quiver.FeatureStore("path/to/repo")        # reads quiver.yaml like the CLI
    >>> train = store.get_historical_features(entity_df, "model_v1")
    >>> store.materialize_incremental()
    >>> store.get_online_features(["driver_hourly_stats:conv_rate"], {"driver_id": [1001]}).to_dict()

    ``repo_path`` is the directory holding ``quiver.yaml`` (``config`` names another file, like
    ``quiver --config``). The online store is opened at its first use and kept open until
    :meth:`close` (or the end of a ``with`` block): the embedded store admits one process at a
    time. Online reads see a newly applied registry version within a second.
    """

    def __init__(self, repo_path: Union[str, os.PathLike] = ".", config: Optional[Union[str, os.PathLike]] = None) -> None:
        self._args = (os.fspath(repo_path), None if config is None else os.fspath(config))
        self._native = _Store(*self._args)
        self._pid = os.getpid()
        self._closed = False
        self.repo_path = self._native.root()

    @property
    def _store(self) -> _Store:
        """The native store of this process: after a fork (multiprocessing, DataLoader workers)
        the child opens its own, since the parent's engine threads do not exist in it (an
        embedded online store stays the parent's: use Redis for online reads in workers)."""
        if self._closed:
            raise InvalidArgument(f"{self!r} is closed: open a new FeatureStore")
        if os.getpid() != self._pid:
            _inherited.append(self._native)
            self._native = _Store(*self._args)
            self._pid = os.getpid()
        return self._native

    def __repr__(self) -> str:
        return f"FeatureStore({self.repo_path!r})"

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes the online store (another process may then open an embedded store); later
        calls raise :class:`~quiver.InvalidArgument`. Closing twice is allowed."""
        if not self._closed:
            self._store.close()
            self._closed = True

    # -- definitions -------------------------------------------------------------------------

    def plan(self) -> Plan:
        """Validates the definitions and says what :meth:`apply` would change (``quiver plan``).
        Raises :class:`~quiver.DefinitionError` listing every problem with its file:line."""
        text, data = self._store.plan()
        return Plan(text, json.loads(data))

    def apply(self) -> Dict[str, Any]:
        """Validates the definitions and stores them as a new registry version (``quiver
        apply``). Returns ``{changed, version, hash, text}``."""
        return json.loads(self._store.apply())

    @property
    def registry(self) -> Registry:
        """The newest applied registry version."""
        return Registry(self._store)

    # -- training ----------------------------------------------------------------------------

    def get_historical_features(
        self,
        entity_df: Any,
        features: _convert.Features,
        *,
        full_feature_names: bool = False,
        created_cutoff: bool = False,
        timestamp_column: str = "event_timestamp",
        memory_limit: Optional[int] = None,
    ) -> pa.Table:
        """A point-in-time-correct training table (``quiver retrieve``): for every row of
        ``entity_df``, each feature's value as it was at the row's time. Every entity row
        appears once, in its order, with all its columns.

        ``entity_df``: a pyarrow Table or RecordBatchReader, a pandas or polars DataFrame, or a
        path or URL (``s3://…``) of a Parquet, Arrow IPC or CSV file; it holds the join keys and
        ``timestamp_column``. ``features``: a feature service name, or a list of
        ``view:feature`` (or ``view``) references. ``full_feature_names`` names columns
        ``view__feature``; ``created_cutoff`` uses only rows created at or before each entity
        row's time. ``memory_limit`` (bytes) bounds the sorts before they spill to disk.

        Ctrl-C interrupts it (``KeyboardInterrupt``).
        """
        selection = _convert.selection(features)
        if memory_limit is not None:
            _convert.positive_int(memory_limit, "memory_limit")
        kwargs = dict(
            timestamp_column=timestamp_column,
            full_feature_names=full_feature_names,
            created_cutoff=created_cutoff,
            memory_limit=memory_limit,
        )
        if _convert.is_path(entity_df):
            return self._store.get_historical_features(selection, path=os.fspath(entity_df), **kwargs)
        stream = _convert.arrow_stream(entity_df, "entity_df")
        return self._store.get_historical_features(selection, entities=stream, **kwargs)

    # -- materialization ---------------------------------------------------------------------

    def materialize(
        self,
        start_date: _convert.Time,
        end_date: _convert.Time,
        feature_views: Optional[Sequence[str]] = None,
        *,
        progress: bool = True,
    ) -> List[Dict[str, Any]]:
        """Writes each entity's latest values in ``[start_date, end_date)`` to the online store
        (``quiver materialize``). Returns one run per view (rows read, keys written, the
        watermark); naive datetimes are UTC. Progress goes to stderr when it is a terminal."""
        runs = self._store.materialize(
            _convert.view_names(feature_views),
            end=_convert.time_text(end_date, "end_date"),
            start=_convert.time_text(start_date, "start_date"),
            progress=progress,
        )
        return json.loads(runs)

    def materialize_incremental(
        self,
        end_date: Optional[_convert.Time] = None,
        feature_views: Optional[Sequence[str]] = None,
        *,
        progress: bool = True,
    ) -> List[Dict[str, Any]]:
        """Continues each view from its watermark up to ``end_date`` (default: now), like
        ``quiver materialize-incremental``. Returns one run per view."""
        end = None if end_date is None else _convert.time_text(end_date, "end_date")
        return json.loads(self._store.materialize(_convert.view_names(feature_views), end=end, progress=progress))

    # -- online ------------------------------------------------------------------------------

    def get_online_features(
        self,
        features: _convert.Features,
        entity_rows: Any,
        *,
        full_feature_names: bool = False,
    ) -> OnlineResponse:
        """The online values of ``features`` (a feature service name or ``view:feature``
        references) for ``entity_rows``: a dict of join key columns (``{"driver_id": [1001,
        1002]}``) or Feast's list of row dicts (``[{"driver_id": 1001}, ...]``). Read from the
        configured online store through the same serving core as ``quiver serve``."""
        if not isinstance(features, str):
            features = list(features)
            if not all(isinstance(f, str) for f in features):
                raise InvalidArgument(f"features: give `view:feature` strings, not {features!r}")
        answer = self._store.get_online_features(
            features, _convert.entity_columns(entity_rows), full_feature_names
        )
        return OnlineResponse(**answer)

    def push(
        self,
        push_source_name: str,
        df: Any,
        to: str = "online",
        *,
        batch_rows: int = 10_000,
    ) -> PushResult:
        """Pushes the rows of ``df`` (a pandas or polars DataFrame, a pyarrow Table, or a dict of
        columns) to a push source: ``to`` is ``online``, ``offline`` or ``online_and_offline``
        (``quiver push``). Rows are written ``batch_rows`` at a time, each write checked whole;
        a failure names the rows written before it."""
        _convert.positive_int(batch_rows, "batch_rows")
        stream = _convert.arrow_stream(df, "df")
        rows, writes, values, stored = self._store.push(push_source_name, stream, to, batch_rows)
        return PushResult(rows=rows, writes=writes, values=values, stored=stored)
