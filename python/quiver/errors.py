"""Exceptions of the quiver package.

Every error carries the message the ``quiver`` command line prints for the same failure (for
definition errors: every problem, each with its file and line). They are classified like the
CLI's exit codes::

    QuiverError                 anything else (the CLI's exit code 1)
    ├── DefinitionError         invalid definitions or quiver.yaml (exit code 2)
    ├── InvalidArgument         a mistake in a call: unknown feature, missing join key column,
    │                           wrong type, bad path (exit code 2); also a ValueError
    ├── StoreUnavailable        a store or server did not answer in time; retry later (exit
    │                           code 1); also a ConnectionError
    └── PermissionDenied        a server refused the bearer token (Client only); also a
                                PermissionError
"""

from __future__ import annotations


class QuiverError(Exception):
    """A Quiver operation failed; ``str(e)`` says why."""


class DefinitionError(QuiverError):
    """The feature definitions or quiver.yaml are invalid (each problem with file:line)."""


class InvalidArgument(QuiverError, ValueError):
    """A call asked for something that cannot work (unknown feature, missing column, bad type)."""


class StoreUnavailable(QuiverError, ConnectionError):
    """The online store, registry, object store or server did not answer in time."""


class PermissionDenied(QuiverError, PermissionError):
    """A server answered 401 (no valid bearer token) or 403 (the token lacks the scope)."""


__all__ = ["QuiverError", "DefinitionError", "InvalidArgument", "StoreUnavailable", "PermissionDenied"]
