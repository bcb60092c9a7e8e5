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
source benches/lib.sh
DRIVERS="${DRIVERS:-100000}" HOURS="${HOURS:-24}" CUSTOMERS="${CUSTOMERS:-200000}"
need "$QUIVER"
PORT=$(free_port)
start_redis "$PORT"

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "generating benchmark data..."
"$QUIVER" init "$WORK/repo" --drivers "$DRIVERS" --hours "$HOURS" --customers "$CUSTOMERS" --end 2026-01-02T00:00:00Z
du -sh "$WORK/repo/data"/*.parquet

run_backend() {
  local name="$1" yaml="$2"
  cp "$WORK/repo/quiver.yaml.orig" "$WORK/repo/quiver.yaml"
  set_online_store "$WORK/repo/quiver.yaml" "$yaml"
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
run_backend redis "$(redis_store "$PORT")"
run_backend embedded $'online_store:\n  type: embedded\n  path: .quiver/online.redb\n'
echo
echo "runs per backend: $RUNS (median reported); views driver_hourly_stats + customer_profile, full range"
