"""What reads and writes return: the same types from ``FeatureStore`` (in-process) and ``Client``
(through a server)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Any, Dict, List, Optional

import pyarrow as pa

# Arrow types of Quiver's value types (docs/online-format.md).
_SCALARS = {
    "bool": pa.bool_(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "string": pa.string(),
    "bytes": pa.binary(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def arrow_type(value_type: str) -> Optional[pa.DataType]:
    """The Arrow type of a Quiver value type (``int64``, ``list<float64>``, ...)."""
    if value_type.startswith("list<") and value_type.endswith(">"):
        inner = _SCALARS.get(value_type[5:-1])
        return pa.list_(inner) if inner is not None else None
    return _SCALARS.get(value_type)


class OnlineResponse:
    """Online feature values for a set of entities, columnar: join keys first, then features
    in request order. For each column: values (``None`` where there is none), statuses
    (``PRESENT``, ``NULL_VALUE``, ``NOT_FOUND``, ``OUTSIDE_MAX_AGE``) and event timestamps
    (UTC ``datetime``, ``None`` where there is no value)."""

    def __init__(
        self,
        names: List[str],
        types: List[str],
        values: List[List[Any]],
        statuses: List[List[str]],
        event_timestamps: List[List[Optional[_dt.datetime]]],
    ) -> None:
        self.names = names
        self.types = types
        self.values = values
        self.statuses = statuses
        self.event_timestamps = event_timestamps

    def __len__(self) -> int:
        return len(self.values[0]) if self.values else 0

    def __repr__(self) -> str:
        return f"OnlineResponse({len(self)} rows, columns {self.names})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OnlineResponse):
            return NotImplemented
        return (self.names, self.types, self.values, self.statuses, self.event_timestamps) == (
            other.names, other.types, other.values, other.statuses, other.event_timestamps)

    def to_dict(self, include_statuses: bool = False, include_event_timestamps: bool = False) -> Dict[str, List[Any]]:
        """``{column: values}``; with ``include_statuses`` also ``{column}__status``, with
        ``include_event_timestamps`` also ``{column}__event_timestamp``."""
        out: Dict[str, List[Any]] = {}
        for i, name in enumerate(self.names):
            out[name] = list(self.values[i])
            if include_statuses:
                out[f"{name}__status"] = list(self.statuses[i])
            if include_event_timestamps:
                out[f"{name}__event_timestamp"] = list(self.event_timestamps[i])
        return out

    def to_arrow(self, include_statuses: bool = False, include_event_timestamps: bool = False) -> pa.Table:
        """A ``pyarrow.Table`` with each column of its declared type."""
        columns = {}
        for name, values in self.to_dict(include_statuses, include_event_timestamps).items():
            if name in self.names:
                t = arrow_type(self.types[self.names.index(name)])
            elif name.endswith("__event_timestamp"):
                t = pa.timestamp("us", tz="UTC")
            else:
                t = pa.string()
            columns[name] = pa.array(values, type=t)
        return pa.table(columns)

    def to_pandas(self, include_statuses: bool = False, include_event_timestamps: bool = False):
        """A pandas DataFrame (through :meth:`to_arrow`). Integer and boolean columns with
        missing values are pandas' nullable ``Int64``/``Int32``/``boolean`` columns, not floats
        or objects: a missing value is ``pd.NA`` and the others stay exact."""
        import pandas as pd

        table = self.to_arrow(include_statuses, include_event_timestamps)
        nullable = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype(), pa.bool_(): pd.BooleanDtype()}
        df = table.to_pandas()
        for name in table.column_names:
            column = table.column(name)
            if column.null_count and column.type in nullable:
                df[name] = column.to_pandas(types_mapper=nullable.get)
        return df

    to_df = to_pandas


@dataclasses.dataclass(frozen=True)
class PushResult:
    """What a push did."""

    rows: int
    """Rows pushed."""
    writes: int
    """Writes made (each of at most ``batch_rows`` rows, checked whole, then written)."""
    values: int
    """Online values offered: one per entity and view."""
    stored: int
    """Online values stored; the others were not newer than the stored ones."""
