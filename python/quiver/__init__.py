"""Quiver, a fast and exact feature store, from Python.

``FeatureStore`` runs Quiver's Rust engine in this process: point-in-time-correct training
tables as ``pyarrow.Table`` (no copy, no file), materialization, online reads and pushes through
the configured online store. ``Client`` does the reads and writes through a running ``quiver
serve``. Errors are the exceptions of :mod:`quiver.errors`, with the CLI's messages.

>>> import quiver
>>> store = quiver.FeatureStore("path/to/repo")
>>> train = store.get_historical_features(entity_df, "model_v1")
"""

from ._quiver import __version__
from .client import Client
from .errors import DefinitionError, InvalidArgument, PermissionDenied, QuiverError, StoreUnavailable
from .results import OnlineResponse, PushResult
from .store import FeatureStore, Plan, Registry

__all__ = [
    "FeatureStore",
    "Client",
    "OnlineResponse",
    "PushResult",
    "Plan",
    "Registry",
    "QuiverError",
    "DefinitionError",
    "InvalidArgument",
    "StoreUnavailable",
    "PermissionDenied",
    "__version__",
]
