#!/usr/bin/env bash
# Online reads from Python: one feature vector (model_v1: 20 features of 2 views) per call through
# quiver.FeatureStore with Redis (in-process), and through quiver.Client against `quiver serve`
# on the same Redis, N calls each after a warm-up; p50/p99/p99.9 from the caller's side.
#
# Usage: bash benches/python_online.sh [N]   (build first: cargo build --release -p quiver-cli,
#        and install a release wheel: cd python && maturin build --release, pip install the
#        wheel into the interpreter QUIVER_PYTHON, default ~/.cache/quiver-python-venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20000}"
source benches/lib.sh
need "$QUIVER"
PY="${QUIVER_PYTHON:-$HOME/.cache/quiver-python-venv/bin/python}"
"$PY" -c 'import quiver' || { echo "install the quiver wheel into $PY first" >&2; exit 1; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); $("$PY" --version); redis $(redis-server --version | grep -o 'v=[0-9.]*')"
RPORT=$(free_port); start_redis "$RPORT"
# Data ending now, so values are within their views' ttl (PRESENT, decoded), as in serving.
END="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
"$QUIVER" init "$WORK/repo" --drivers 100000 --hours 24 --customers 200000 --labels 1 --end "$END" >/dev/null
set_online_store "$WORK/repo/quiver.yaml" "$(redis_store "$RPORT")"
"$QUIVER" -C "$WORK/repo" apply >/dev/null
"$QUIVER" -C "$WORK/repo" materialize-incremental >/dev/null
HPORT=$(free_port); GPORT=$(free_port)
"$QUIVER" -C "$WORK/repo" serve --http "127.0.0.1:$HPORT" --grpc "127.0.0.1:$GPORT" 2>"$WORK/serve.err" &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "127.0.0.1:$HPORT/ready" >/dev/null && break; sleep 0.1; done
"$PY" benches/python_online.py "$WORK/repo" "$N" "http://127.0.0.1:$HPORT"
