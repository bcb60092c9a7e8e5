#!/usr/bin/env bash
# Regenerate tests/feast/fixtures/ from a real Feast 0.67 (see README.md in this directory).
#
#   tests/feast/record_all.sh            # uses/creates the venv, records, cleans up
#   KEEP=1 tests/feast/record_all.sh     # keep the temporary Feast repo (path is printed)
#
# Needs: python3 (3.10+), redis-server on PATH, PyPI access if the venv must be created.
# Starts redis-server, `feast serve` (HTTP) and `feast listen` (gRPC) on free ports and
# stops exactly those processes (by PID) on exit.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${FEAST_VENV:-/root/.cache/quiver-feast-venv}"
FEAST_SPEC="feast[redis,grpcio]==0.67.*"
OUT="$HERE/fixtures"

# 1. venv check
if ! "$VENV/bin/python" -c 'import feast, sys; sys.exit(0 if feast.__version__.startswith("0.67.") else 1)' 2>/dev/null; then
  echo "creating venv $VENV with $FEAST_SPEC"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "$FEAST_SPEC"
fi
PY="$VENV/bin/python"
FEAST="$VENV/bin/feast"
echo "feast $("$PY" -c 'import feast; print(feast.__version__)')"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

WORK="$(mktemp -d /tmp/quiver-feast-ref.XXXXXX)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] || continue
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# 2. data + repo
mkdir -p "$WORK/data"
cp "$HERE/repo/definitions.py" "$WORK/"
"$PY" "$HERE/make_data.py" "$WORK/data"

# 3. redis on a free port
REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

cat >"$WORK/feature_store.yaml" <<EOF
project: quiver_ref
registry: data/registry.db
provider: local
online_store:
  type: redis
  connection_string: "127.0.0.1:$REDIS_PORT"
offline_store:
  type: file
entity_key_serialization_version: 3
EOF

# 4. apply + materialize the full range
"$FEAST" -c "$WORK" apply
"$FEAST" -c "$WORK" materialize 1960-01-01T00:00:00 2030-01-01T00:00:00

# 5. servers. PYTHONHASHSEED=0: Feast orders a view's features by iterating a Python set
#    of names, so without a fixed seed the column order changes from process to process.
HTTP_PORT="$(free_port)"
GRPC_PORT="$(free_port)"
PYTHONHASHSEED=0 "$FEAST" -c "$WORK" serve -h 127.0.0.1 -p "$HTTP_PORT" --no-access-log \
  >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
PYTHONHASHSEED=0 "$FEAST" -c "$WORK" listen -a "127.0.0.1:$GRPC_PORT" \
  >"$WORK/listen.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$HTTP_PORT/health" >/dev/null 2>&1 && break; sleep 0.5
done

# 6. record
mkdir -p "$OUT"
rm -f "$OUT"/http_*.json "$OUT"/grpc_*.json "$OUT"/grpc_*.txt "$OUT"/sdk_remote.json \
  "$OUT"/materialize_conversions.json "$OUT"/versions.txt
"$PY" "$HERE/record.py" --http "http://127.0.0.1:$HTTP_PORT" --grpc "127.0.0.1:$GRPC_PORT" \
  --repo "$WORK" --out "$OUT"
"$PY" "$HERE/probe_conversions.py" "$OUT/materialize_conversions.json"
{ echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ)  python $("$PY" -c 'import sys; print(sys.version.split()[0])')  $(redis-server --version)"
  "$VENV/bin/pip" freeze; } >"$OUT/versions.txt"
echo "fixtures written to $OUT"
