#!/usr/bin/env bash
# Online serving benchmark (issue: feature server).
#
# Benchmark-scale data (100k drivers x 24 h, 200k customers x 5 days, ending now so values are
# fresh) materialized into a private redis-server; `quiver serve` (release) on loopback; the load
# generator for each scenario, HTTP and gRPC; and, in the same run, redis-benchmark's MGET of one
# driver key and one customer key at the same concurrency: the ceiling a server on this Redis
# works under. Server, Redis and load generator share this machine's cores.
#
# Usage: bash benches/serve.sh [SECONDS] [ROUNDS]   (build first: cargo build --release -p quiver-cli -p quiver-benches)
# Each round runs every scenario over HTTP then gRPC, side by side; report medians over rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-10}"
ROUNDS="${2:-1}"
source benches/lib.sh
need "$QUIVER" "$LOADGEN"
DRIVERS="${DRIVERS:-100000}" CUSTOMERS="${CUSTOMERS:-200000}"

REDIS_PORT=$(free_port) HTTP_PORT=$(free_port) GRPC_PORT=$(free_port)
start_redis "$REDIS_PORT"

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); redis $(redis-server --version | awk '{print $3}')"
"$QUIVER" init "$WORK/repo" --drivers "$DRIVERS" --hours 24 --customers "$CUSTOMERS" >/dev/null
set_online_store "$WORK/repo/quiver.yaml" "$(redis_store "$REDIS_PORT")"
"$QUIVER" -C "$WORK/repo" apply >/dev/null
"$QUIVER" -C "$WORK/repo" materialize-incremental --views driver_hourly_stats,customer_profile
"$QUIVER" -C "$WORK/repo" serve --http "127.0.0.1:$HTTP_PORT" --grpc "127.0.0.1:$GRPC_PORT" 2>"$WORK/serve.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "127.0.0.1:$HTTP_PORT/ready" >/dev/null && break; sleep 0.1; done

echo
echo "redis-benchmark MGET ceiling (1 driver key + 1 customer key per MGET):"
generation() { "$QUIVER" -C "$WORK/repo" --format json registry describe "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["generation"])'; }
DK="quiver:repo:driver_hourly_stats:$(generation driver_hourly_stats):{i1001}"
CK="quiver:repo:customer_profile:$(generation customer_profile):{i1}"
for c in 1 8; do
  printf '  %s clients: ' "$c"
  redis-benchmark -p "$REDIS_PORT" -c "$c" -n 200000 -q MGET "$DK" "$CK" | tr '\r' '\n' | grep -E "MGET" | tail -1
done

run() {
  "$LOADGEN" --target "127.0.0.1:$1" --protocol "$2" --connections "$3" --rows "$4" --duration "$SECS" --warmup 2 \
    --drivers "$DRIVERS" --customers "$CUSTOMERS"
}
echo
echo "feature service model_v1 (20 features: 1 driver + 1 customer row per entity row), ${SECS}s each, $ROUNDS round(s):"
for round in $(seq "$ROUNDS"); do
  [ "$ROUNDS" -gt 1 ] && echo "round $round"
  for scenario in "8 1" "1 1" "4 100"; do
    run "$HTTP_PORT" http $scenario
    run "$GRPC_PORT" grpc $scenario
  done
done

# Online answers while training retrievals run in the same server (TRAINING_ROWS=N: an entity
# table of N rows posted to /get-historical-features back to back, one request at a time,
# during the measurement). Compare with the same round's "HTTP 8 connections, 1 row" above.
if [ -n "${TRAINING_ROWS:-}" ]; then
  python3 - "$WORK/train.parquet" "$TRAINING_ROWS" "$DRIVERS" "$CUSTOMERS" <<'PY'
import datetime, random, sys
import pyarrow as pa, pyarrow.parquet as pq
path, rows, drivers, customers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(7)
now = datetime.datetime.now(datetime.timezone.utc)
pq.write_table(pa.table({
    "driver_id": pa.array([1001 + rng.randrange(drivers) for _ in range(rows)], pa.int64()),
    "customer_id": pa.array([1 + rng.randrange(customers) for _ in range(rows)], pa.int64()),
    "event_timestamp": pa.array([now - datetime.timedelta(seconds=rng.randrange(86400)) for _ in range(rows)], pa.timestamp("us", tz="UTC")),
}), path)
PY
  ( while :; do
      curl -s -o /dev/null -w '  training request: %{http_code} %{size_download} bytes in %{time_total} s\n' \
        -H 'Content-Type: application/vnd.apache.parquet' --data-binary "@$WORK/train.parquet" \
        "127.0.0.1:$HTTP_PORT/get-historical-features?features=model_v1" || break
    done ) &
  TRAIN_LOOP=$!
  PIDS+=("$TRAIN_LOOP")
  sleep 1
  echo
  echo "while training retrievals of $TRAINING_ROWS rows run back to back:"
  run "$HTTP_PORT" http 8 1
  run "$GRPC_PORT" grpc 8 1
  kill "$TRAIN_LOOP" 2>/dev/null || true
  wait "$TRAIN_LOOP" 2>/dev/null || true
fi
