#!/usr/bin/env bash
# Materialization benchmark (issue: online store and materializer).
#
# Generates the benchmark-scale sample (100k drivers x 24 hourly rows, 200k customers x 5 daily
# rows, ~1% corrections; 10 features each), then materializes every online view over the full
# range into (1) a private redis-server and (2) the embedded store, RUNS times each, reporting
# wall time and peak RSS (GNU time), and redis-benchmark's pipelined SET throughput measured in
# the same run as the ceiling. Prints a Markdown table.
#
# Usage: bash benches/materialize.sh [RUNS]      (build first: cargo build --release -p quiver-cli)
# Smaller data for a quick check: DRIVERS=1000 CUSTOMERS=2000 bash benches/materialize.sh 1
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/quiver-target}"
QUIVER="$TARGET/${PROFILE:-release}/quiver"
DRIVERS="${DRIVERS:-100000}" HOURS="${HOURS:-24}" CUSTOMERS="${CUSTOMERS:-200000}"
[ -x "$QUIVER" ] || { echo "build first: cargo build --release -p quiver-cli" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }

WORK="$(mktemp -d)"
REDIS_PID=""
cleanup() { [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null &
REDIS_PID=$!
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "generating benchmark data..."
"$QUIVER" init "$WORK/repo" --drivers "$DRIVERS" --hours "$HOURS" --customers "$CUSTOMERS" --end 2026-01-02T00:00:00Z
du -sh "$WORK/repo/data"/*.parquet

# Wall seconds and peak RSS (MiB) of one command, as "seconds rss".
measure() {
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
  awk '{printf "%s %.0f\n", $1, $2/1024}' "$WORK/time"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

run_backend() {
  local name="$1" yaml="$2"
  cp "$WORK/repo/quiver.yaml.orig" "$WORK/repo/quiver.yaml"
  python3 - "$WORK/repo/quiver.yaml" "$yaml" <<'PY'
import sys
p, block = sys.argv[1], sys.argv[2]
s = open(p).read()
s = s.replace("online_store:\n  type: embedded\n  path: .quiver/online.redb\n", block)
open(p, "w").write(s)
PY
  "$QUIVER" -C "$WORK/repo" apply >/dev/null
  : >"$WORK/$name.times"
  for i in $(seq "$RUNS"); do
    redis-cli -p "$PORT" flushall >/dev/null
    rm -f "$WORK/repo/.quiver/online.redb"
    measure "$QUIVER" -C "$WORK/repo" --format json materialize 2025-12-01 2026-01-03 \
      --views driver_hourly_stats,customer_profile >>"$WORK/$name.times"
    keys=$(python3 -c 'import json,sys; print(sum(r["keys_written"] for r in json.load(open(sys.argv[1]))))' "$WORK/out")
    rows=$(python3 -c 'import json,sys; print(sum(r["rows_read"] for r in json.load(open(sys.argv[1]))))' "$WORK/out")
  done
  local secs rss
  secs=$(awk '{print $1}' "$WORK/$name.times" | median)
  rss=$(awk '{print $2}' "$WORK/$name.times" | median)
  echo "| $name | $rows | $keys | $secs | $(python3 -c "print(round($keys/$secs))") | $rss |"
}

cp "$WORK/repo/quiver.yaml" "$WORK/repo/quiver.yaml.orig"
echo
echo "redis-benchmark ceiling (same server, same run):"
redis-benchmark -p "$PORT" -t set -n 2000000 -P 64 -d 120 -q | tr '\r' '\n' | grep -E "^SET" | tail -1
redis-cli -p "$PORT" flushall >/dev/null
echo
echo "| backend | rows read | keys written | median wall s | keys/s | median peak RSS MiB |"
echo "|---|---|---|---|---|---|"
run_backend redis $'online_store:\n  type: redis\n  url: redis://127.0.0.1:'"$PORT"$'\n'
run_backend embedded $'online_store:\n  type: embedded\n  path: .quiver/online.redb\n'
echo
echo "runs per backend: $RUNS (median reported); views driver_hourly_stats + customer_profile, full range"
