"""Conversions of what users pass (DataFrames, paths, times, feature lists) into what the native
module takes. Arrow data crosses through the Arrow C stream interface (PyCapsules), so pyarrow,
polars and any other producer of ``__arrow_c_stream__`` are read without a copy."""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any, Iterable, Mapping, Sequence, Union

import pyarrow as pa

from .errors import InvalidArgument

Features = Union[str, Sequence[str]]
Time = Union[str, _dt.datetime, _dt.date]


def is_pandas(data: Any) -> bool:
    return type(data).__module__.split(".")[0] == "pandas" and hasattr(data, "to_numpy")


def arrow_stream(data: Any, what: str) -> pa.RecordBatchReader:
    """A ``pyarrow.RecordBatchReader`` over the rows of ``data``, which the native module
    imports through the Arrow C stream interface.

    pandas DataFrames are converted with ``pyarrow.Table.from_pandas`` (their index is dropped,
    as it is not a column); everything exporting ``__arrow_c_stream__`` (pyarrow Tables and
    RecordBatchReaders, polars DataFrames, DuckDB relations, ...) is read without a copy; a dict
    of columns becomes a ``pyarrow.Table``.
    """
    if is_pandas(data):
        try:
            data = pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as e:
            raise InvalidArgument(f"{what}: a column cannot be converted to Arrow: {e}") from e
    elif isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    elif isinstance(data, Mapping):
        try:
            data = pa.table(dict(data))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise InvalidArgument(f"{what}: {e}") from e
    if isinstance(data, pa.RecordBatchReader):
        return data
    if isinstance(data, pa.Table):
        return data.to_reader()
    if hasattr(data, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(data)
    if type(data).__name__ == "LazyFrame":
        raise TypeError(f"{what}: a polars LazyFrame; call .collect() first")
    raise TypeError(
        f"{what}: expected a pyarrow Table or RecordBatchReader, a pandas or polars DataFrame, "
        f"a dict of columns, or a path; got {type(data).__name__}"
    )


def positive_int(value: Any, what: str) -> int:
    """``value`` if it is an int from 1 to 2**63 - 1, else :class:`InvalidArgument`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
        raise InvalidArgument(f"{what}={value!r}: give a whole number from 1 to 2**63 - 1")
    return value


def view_names(views: Any) -> list:
    """Feature view names: a list, or one name as a str (not its letters)."""
    if views is None:
        return []
    if isinstance(views, str):
        return [views]
    names = list(views)
    if not all(isinstance(v, str) for v in names):
        raise InvalidArgument(f"feature_views: give view names (str), not {names!r}")
    return names


def is_path(data: Any) -> bool:
    return isinstance(data, (str, os.PathLike))


def selection(features: Features) -> str:
    """A feature service name, or ``view:feature`` / ``view`` references, as the CLI's
    ``--features`` takes them."""
    if isinstance(features, str):
        if not features.strip():
            raise InvalidArgument("no features given: name a feature service or view:feature references")
        return features
    refs = [str(f) for f in features]
    if not refs:
        raise InvalidArgument("no features given: name a feature service or view:feature references")
    for ref in refs:
        if "," in ref:
            raise InvalidArgument(f"feature reference `{ref}` contains a comma; give one reference per item")
    return ",".join(refs)


def time_text(t: Time, what: str) -> str:
    """RFC 3339 text of ``t``; a naive datetime is UTC, as naive times are on the command line."""
    if isinstance(t, str):
        return t
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        return t.isoformat()
    if isinstance(t, _dt.date):
        return t.isoformat()
    raise TypeError(f"{what}: expected a datetime, a date or RFC 3339 text, got {type(t).__name__}")


def entity_columns(entity_rows: Any) -> dict:
    """Join key columns from Feast's list of row dicts, or from a dict of columns (lists, numpy
    arrays, pandas or polars Series), or from a DataFrame."""
    if is_pandas(entity_rows) and hasattr(entity_rows, "columns"):
        return {str(c): entity_rows[c].tolist() for c in entity_rows.columns}
    if type(entity_rows).__module__.split(".")[0] == "polars" and hasattr(entity_rows, "columns"):
        return {str(k): list(v) for k, v in entity_rows.to_dict(as_series=False).items()}
    if isinstance(entity_rows, pa.Table):
        return entity_rows.to_pydict()
    if isinstance(entity_rows, Mapping):
        out = {}
        for name, values in entity_rows.items():
            if hasattr(values, "tolist"):
                values = values.tolist()
            elif hasattr(values, "to_list"):
                values = values.to_list()
            elif isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
                raise InvalidArgument(
                    f"entity_rows[{name!r}]: give a list of values (one per entity), not {type(values).__name__}"
                )
            out[str(name)] = list(values)
        return out
    if isinstance(entity_rows, Sequence):
        rows = list(entity_rows)
        names: list = []
        for row in rows:
            if not isinstance(row, Mapping):
                raise InvalidArgument(f"entity_rows: each row must be a dict, got {type(row).__name__}")
            for name in row:
                if name not in names:
                    names.append(name)
        return {str(n): [row.get(n) for row in rows] for n in names}
    raise TypeError(
        f"entity_rows: expected a dict of columns or a list of row dicts, got {type(entity_rows).__name__}"
    )
