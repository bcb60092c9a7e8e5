#!/usr/bin/env bash
# Start Feast's own HTTP feature server (`feast serve`) ready to take pushes, as the
# Feast side of the Quiver-vs-Feast push benchmark.
#
# Usage:
#   bash benches/feast_push_server.sh WORKDIR REDIS_PORT HTTP_PORT
#
# Needs: Feast 0.67.0 in the venv ~/.cache/quiver-feast-venv (override with FEAST_VENV=...),
# and a redis-server already listening on 127.0.0.1:REDIS_PORT (this script does not start it).
#
# What it does:
#   1. creates a Feast repo in WORKDIR/feast_repo (removed and rebuilt if present):
#        project push_bench, provider local, registry data/registry.db,
#        online_store {type: redis, connection_string: "127.0.0.1:REDIS_PORT"},
#        offline_store file, entity_key_serialization_version 3;
#   2. writes WORKDIR/feast_repo/data/driver_stats.parquet (3 rows: driver_id int64,
#      event_timestamp/created timestamp[us, UTC], conv_rate/acc_rate float32,
#      avg_daily_trips int64) as the push source's batch source;
#   3. definitions.py: Entity driver (driver_id INT64), FileSource driver_stats_source
#      (timestamp_field event_timestamp, created_timestamp_column created), PushSource
#      driver_events, FeatureView driver_live (ttl 3650 days; conv_rate Float32,
#      acc_rate Float32, avg_daily_trips Int64; source=driver_events; online=True);
#   4. `feast apply`, then `feast serve -h 127.0.0.1 -p HTTP_PORT` in the background
#      (log: WORKDIR/feast_serve.log), waits up to 60 s for GET /health to answer 200,
#      prints exactly one line `FEAST_PID=<pid>` to stdout and exits, leaving it running.
#      Everything else goes to stderr or to the log files. Stop it with `kill <pid>`
#      (the PID is the gunicorn master; SIGTERM also stops its worker(s)).
#
# Server options (env overrides):
#   FEAST_WORKERS=1        gunicorn worker processes (`feast serve -w`; -1 = auto from cores).
#   FEAST_MAX_REQUESTS=0   `--max-requests`. Feast's default (1000 + jitter 50) recycles
#                          a worker every ~1000 requests, which would show up as pauses in
#                          a benchmark; 0 disables recycling (gunicorn semantics).
#   FEAST_ACCESS_LOG=0     0 passes `--no-access-log` (no per-request log line); 1 keeps it.
#
# Push with (Content-Type: application/json is required, `created` is required because the
# batch source declares created_timestamp_column):
#   curl -s -X POST http://127.0.0.1:HTTP_PORT/push -H 'content-type: application/json' \
#     -d '{"push_source_name":"driver_events","to":"online","df":{"driver_id":[1001],
#          "event_timestamp":["2026-11-30T07:00:00Z"],"created":["2026-11-30T07:00:00Z"],
#          "conv_rate":[0.5],"acc_rate":[0.25],"avg_daily_trips":[7]}}'
#   -> 200, empty body. Note: Feast's Redis store skips rows whose event_timestamp is <= the
#   stored one for that entity, so a benchmark must push increasing timestamps per driver
#   to measure real writes.
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: bash $0 WORKDIR REDIS_PORT HTTP_PORT" >&2
  exit 2
fi
WORKDIR=$1
REDIS_PORT=$2
HTTP_PORT=$3

FEAST_VENV=${FEAST_VENV:-$HOME/.cache/quiver-feast-venv}
PY=$FEAST_VENV/bin/python
FEAST=$FEAST_VENV/bin/feast
FEAST_WORKERS=${FEAST_WORKERS:-1}
FEAST_MAX_REQUESTS=${FEAST_MAX_REQUESTS:-0}
FEAST_ACCESS_LOG=${FEAST_ACCESS_LOG:-0}

for exe in "$PY" "$FEAST"; do
  [[ -x $exe ]] || { echo "error: $exe not found (set FEAST_VENV)" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "error: curl not found" >&2; exit 1; }

# Refuse to start if something already answers on HTTP_PORT (the health poll would lie).
if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$HTTP_PORT/" 2>/dev/null; then
  echo "error: something is already listening on 127.0.0.1:$HTTP_PORT" >&2
  exit 1
fi

mkdir -p "$WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)
REPO=$WORKDIR/feast_repo
LOG=$WORKDIR/feast_serve.log
rm -rf "$REPO"
mkdir -p "$REPO/data"

cat >"$REPO/feature_store.yaml" <<EOF
project: push_bench
provider: local
registry: data/registry.db
online_store:
  type: redis
  connection_string: "127.0.0.1:$REDIS_PORT"
offline_store:
  type: file
entity_key_serialization_version: 3
EOF

"$PY" - "$REPO/data/driver_stats.parquet" <<'EOF'
import sys
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq

t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
ts = pa.timestamp("us", tz="UTC")
table = pa.table(
    {
        "driver_id": pa.array([1001, 1002, 1003], pa.int64()),
        "event_timestamp": pa.array([t0, t0 + timedelta(hours=1), t0 + timedelta(hours=2)], ts),
        "created": pa.array([t0, t0 + timedelta(hours=1), t0 + timedelta(hours=2)], ts),
        "conv_rate": pa.array([0.1, 0.2, 0.3], pa.float32()),
        "acc_rate": pa.array([0.9, 0.8, 0.7], pa.float32()),
        "avg_daily_trips": pa.array([10, 20, 30], pa.int64()),
    }
)
pq.write_table(table, sys.argv[1])
EOF

cat >"$REPO/definitions.py" <<'EOF'
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Float32, Int64

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)

driver_stats_source = FileSource(
    name="driver_stats_source",
    path="data/driver_stats.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

driver_events = PushSource(name="driver_events", batch_source=driver_stats_source)

driver_live = FeatureView(
    name="driver_live",
    entities=[driver],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="conv_rate", dtype=Float32),
        Field(name="acc_rate", dtype=Float32),
        Field(name="avg_daily_trips", dtype=Int64),
    ],
    source=driver_events,
    online=True,
)
EOF

cd "$REPO"
if ! "$FEAST" apply >"$WORKDIR/feast_apply.log" 2>&1; then
  echo "error: feast apply failed; see $WORKDIR/feast_apply.log:" >&2
  tail -n 30 "$WORKDIR/feast_apply.log" >&2
  exit 1
fi

serve_args=(serve -h 127.0.0.1 -p "$HTTP_PORT" -w "$FEAST_WORKERS" --max-requests "$FEAST_MAX_REQUESTS")
[[ $FEAST_ACCESS_LOG == 1 ]] || serve_args+=(--no-access-log)

# stdin/stdout/stderr detached so the caller's pipes (e.g. $(...)) are not held open.
"$FEAST" "${serve_args[@]}" </dev/null >"$LOG" 2>&1 &
FEAST_PID=$!

deadline=$((SECONDS + 60))
while :; do
  if ! kill -0 "$FEAST_PID" 2>/dev/null; then
    echo "error: feast serve (pid $FEAST_PID) exited; see $LOG:" >&2
    tail -n 30 "$LOG" >&2
    exit 1
  fi
  code=$(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/health" || true)
  [[ $code == 200 ]] && break
  if ((SECONDS >= deadline)); then
    echo "error: feast serve did not answer /health within 60 s (last code '$code'); see $LOG" >&2
    kill "$FEAST_PID" 2>/dev/null || true
    exit 1
  fi
  sleep 0.5
done

echo "FEAST_PID=$FEAST_PID"
