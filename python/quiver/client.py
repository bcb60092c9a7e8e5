"""``Client``: the same reads and writes as ``FeatureStore``, through a running ``quiver serve``
(HTTP), for code that has no repository at hand."""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import io
import json
import math
import os
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

import pyarrow as pa
import pyarrow.ipc

from . import _convert
from .errors import InvalidArgument, PermissionDenied, QuiverError, StoreUnavailable
from .results import OnlineResponse, PushResult

_ARROW_STREAM = "application/vnd.apache.arrow.stream"
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


class Client:
    """A Quiver feature server at ``url`` (``http://host:6566`` or ``https://…``).

    >>> client = quiver.Client("http://localhost:6566", token=os.environ.get("QUIVER_TOKEN"))
    >>> client.get_online_features("model_v1", {"driver_id": [1001]}).to_dict()
    >>> client.get_historical_features(entity_df, "model_v1")      # pyarrow.Table
    >>> client.push("driver_events", df, to="online")

    ``token`` is sent as ``Authorization: Bearer …`` (``serving.auth``). ``timeout`` (seconds)
    bounds each online read and push; ``training_timeout`` bounds the wait for a training
    table's bytes. ``ca_file`` trusts a certificate authority of the server's own (HTTPS with a
    private CA). A server that does not answer in time raises
    :class:`~quiver.StoreUnavailable`.

    Values are those of ``FeatureStore``, as the HTTP API carries them: timestamps are whole
    seconds (the API's precision), bytes are decoded from base64.
    """

    def __init__(
        self,
        url: str = "http://localhost:6566",
        token: Optional[str] = None,
        *,
        timeout: float = 10.0,
        training_timeout: Optional[float] = 600.0,
        ca_file: Optional[str] = None,
    ) -> None:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidArgument(f"Client url {url!r}: give http://host:port or https://host:port")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.training_timeout = training_timeout
        self._ssl = ssl.create_default_context(cafile=ca_file) if parsed.scheme == "https" else None
        self._views: Dict[str, Dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # -- transport ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Optional[bytes] = None,
                 content_type: Optional[str] = None, timeout: Optional[float] = None):
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=timeout or self.timeout, context=self._ssl)
        except urllib.error.HTTPError as e:
            raise _http_error(e, self.url + path) from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise StoreUnavailable(f"{self.url}: {reason}") from e

    def _json(self, method: str, path: str, payload: Any = None) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        with self._request(method, path, body, "application/json" if body is not None else None) as r:
            try:
                return json.loads(r.read())
            except (socket.timeout, TimeoutError, ConnectionError) as e:
                raise StoreUnavailable(f"{self.url}{path}: {e}") from e

    def health(self) -> bool:
        """Whether the server is ready to answer (``GET /ready``)."""
        try:
            with self._request("GET", "/ready"):
                return True
        except QuiverError:
            return False

    # -- online ------------------------------------------------------------------------------

    def get_online_features(self, features: _convert.Features, entity_rows: Any, *,
                            full_feature_names: bool = False) -> OnlineResponse:
        """Like :meth:`FeatureStore.get_online_features`, through ``POST /get-online-features``."""
        entities = _convert.entity_columns(entity_rows)
        payload: Dict[str, Any] = {"entities": {k: [_key_json(v) for v in vals] for k, vals in entities.items()},
                                   "full_feature_names": full_feature_names}
        if isinstance(features, str):
            payload["feature_service"] = features
        else:
            payload["features"] = list(features)
        body = self._json("POST", "/get-online-features", payload)
        names = body["metadata"]["feature_names"]
        results = body["results"]
        feature_types = self._feature_types(features)
        n_keys = len(names) - len(feature_types)
        types: List[str] = []
        values: List[List[Any]] = []
        for i, (name, column) in enumerate(zip(names, results)):
            if i < n_keys:
                # As the server read them (`"1001"` for an int64 key is 1001); bytes keys travel
                # as base64.
                given = entities.get(name) or []
                echoed = list(column["values"])
                if any(isinstance(v, bytes) for v in given):
                    echoed = [None if v is None else base64.b64decode(v) for v in echoed]
                types.append(_key_type(echoed))
                values.append(echoed)
            else:
                t = feature_types[i - n_keys]
                types.append(t)
                values.append([_from_json(v, t) for v in column["values"]])
        statuses = [list(c["statuses"]) for c in results]
        times = [[_event_time(t, s) for t, s in zip(c["event_timestamps"], c["statuses"])] for c in results]
        return OnlineResponse(names, types, values, statuses, times)

    def _view(self, name: str) -> Dict[str, Any]:
        if name not in self._views:
            self._views[name] = self._json("GET", f"/registry/feature-views/{urllib.parse.quote(name, safe='')}")
        return self._views[name]

    def _feature_types(self, features: _convert.Features) -> List[str]:
        """The declared type of each requested feature, in request order."""
        if isinstance(features, str):
            service = self._json("GET", f"/registry/feature-services/{urllib.parse.quote(features, safe='')}")
            refs = [(f["view"], f["feature"]) for f in service["features"]]
        else:
            refs = []
            for ref in features:
                view, _, feature = str(ref).partition(":")
                if feature:
                    refs.append((view, feature))
                else:
                    refs.extend((view, f["name"]) for f in self._view(view)["features"])
        types = []
        for view, feature in refs:
            fields = {f["name"]: f["type"] for f in self._view(view)["features"]}
            if feature not in fields:
                self._views.pop(view, None)  # the definitions may have changed since cached
                fields = {f["name"]: f["type"] for f in self._view(view)["features"]}
            types.append(fields.get(feature, "string"))
        return types

    # -- training ----------------------------------------------------------------------------

    def get_historical_features(self, entity_df: Any, features: _convert.Features, *,
                                full_feature_names: bool = False, created_cutoff: bool = False,
                                timestamp_column: str = "event_timestamp") -> pa.Table:
        """Like :meth:`FeatureStore.get_historical_features`, computed by the server
        (``POST /get-historical-features``); the table streams back as Arrow IPC. A local file
        is uploaded as it is; a DataFrame as an Arrow IPC stream."""
        query = {"features": _convert.selection(features), "timestamp_column": timestamp_column}
        if full_feature_names:
            query["full_feature_names"] = "true"
        if created_cutoff:
            query["created_cutoff"] = "true"
        if _convert.is_path(entity_df):
            path = os.fspath(entity_df)
            if "://" in path:
                raise InvalidArgument(
                    f"{path}: a server reads entity tables from the request; download it, or use FeatureStore")
            try:
                with open(path, "rb") as f:
                    body = f.read()
            except OSError as e:
                raise InvalidArgument(f"{path}: {e}") from e
            content_type = "text/csv" if path.lower().endswith(".csv") else "application/octet-stream"
        else:
            table = _convert.arrow_stream(entity_df, "entity_df").read_all()
            sink = io.BytesIO()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            body, content_type = sink.getvalue(), _ARROW_STREAM
        path = "/get-historical-features?" + urllib.parse.urlencode(query)
        with self._request("POST", path, body, content_type, timeout=self.training_timeout) as r:
            try:
                return pa.ipc.open_stream(r).read_all()
            except (pa.ArrowInvalid, OSError) as e:
                raise QuiverError(f"{self.url}: the training table stopped before its end: {e}") from e

    # -- writes ------------------------------------------------------------------------------

    def push(self, push_source_name: str, df: Any, to: str = "online", *, batch_rows: int = 1_000) -> PushResult:
        """Like :meth:`FeatureStore.push`, through ``POST /push``, ``batch_rows`` rows per
        request (each checked whole, then written). A failure names the rows pushed before it."""
        _convert.positive_int(batch_rows, "batch_rows")
        table = _convert.arrow_stream(df, "df").read_all()
        rows = writes = values = stored = 0
        for start in range(0, table.num_rows, batch_rows):
            chunk = table.slice(start, batch_rows)
            payload = {"push_source_name": push_source_name, "to": to,
                       "df": {name: [_cell_json(v) for v in chunk.column(name).to_pylist()]
                              for name in chunk.column_names}}
            try:
                answer = self._json("POST", "/push", payload)
            except QuiverError as e:
                raise type(e)(f"rows {rows}..{rows + chunk.num_rows}: {e} ({rows} rows pushed before this)") from e
            rows += chunk.num_rows
            writes += 1
            values += int(answer.get("values", 0))
            stored += int(answer.get("stored", 0))
        return PushResult(rows=rows, writes=writes, values=values, stored=stored)


def _http_error(e: urllib.error.HTTPError, where: str) -> QuiverError:
    raw = e.read()
    message = raw.decode("utf-8", "replace").strip()
    try:
        answer = json.loads(raw)
        if isinstance(answer, str):  # Feast's shape: a JSON string of {module, class, message}
            answer = json.loads(answer)
        if isinstance(answer, dict):
            message = answer.get("error") or answer.get("message") or message
    except ValueError:
        pass
    text = f"{where} answered {e.code}: {message}"
    if e.code in (401, 403):
        return PermissionDenied(text)
    if e.code in (503, 504):
        return StoreUnavailable(text)
    if 400 <= e.code < 500:
        return InvalidArgument(text)
    return QuiverError(text)


def _key_json(v: Any) -> Any:
    if isinstance(v, bool):
        raise InvalidArgument(f"{v} (a bool) is not a join key value")
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    return v


def _key_type(values: Optional[List[Any]]) -> str:
    for v in values or []:
        if isinstance(v, bytes):
            return "bytes"
        if isinstance(v, str):
            return "string"
        if isinstance(v, int):
            return "int64"
    return "int64"


def _from_json(v: Any, t: str) -> Any:
    if v is None:
        return None
    if t.startswith("list<"):
        inner = t[5:-1]
        return [_from_json(x, inner) for x in v]
    if t in ("float32", "float64") and isinstance(v, str):
        return float(v)  # "NaN", "Infinity", "-Infinity"
    if t == "bytes":
        return base64.b64decode(v)
    if t == "timestamp":
        return _EPOCH + _dt.timedelta(seconds=v)
    return v


def _event_time(text: Optional[str], status: str) -> Optional[_dt.datetime]:
    if not text or status == "NOT_FOUND":
        return None
    t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if _fromiso_ok(text) else _parse_rfc3339(text)
    return None if t == _EPOCH else t


def _fromiso_ok(text: str) -> bool:
    # Python < 3.11 reads only 3 or 6 fractional digits.
    frac = text.split(".")[1].rstrip("Z") if "." in text else ""
    return len(frac) in (0, 3, 6)


def _parse_rfc3339(text: str) -> _dt.datetime:
    head, _, frac = text.rstrip("Z").partition(".")
    t = _dt.datetime.fromisoformat(head).replace(tzinfo=_dt.timezone.utc)
    return t + _dt.timedelta(microseconds=int((frac + "000000")[:6]))


def _cell_json(v: Any) -> Any:
    if isinstance(v, _dt.datetime):
        return v.isoformat()
    if isinstance(v, _dt.date):
        return v.isoformat()
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, list):
        return [_cell_json(x) for x in v]
    if isinstance(v, dict):
        return {k: _cell_json(x) for k, x in v.items()}
    return v
