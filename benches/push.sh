#!/usr/bin/env bash
# Push benchmark (issue 12): `POST /push` into Redis through Quiver, and — when Feast 0.67 is
# installed (QUIVER_FEAST_VENV, default ~/.cache/quiver-feast-venv) — through Feast's own
# feature server (`feast serve`, Redis online store, benches/feast_push_server.sh) on the same
# machine with the same load generator and the same bodies, one after the other.
#
# Loads (closed loop, ROUNDS rounds of SECS seconds each, alternating Quiver and Feast):
#   1 row per push, 8 connections      (target: ≥ 20,000 pushes/s, p99 ≤ 2 ms)
#   1,000 rows per push, 8 connections (target: ≥ 300,000 rows/s)
# Every push has an event time of "now", so each one wins (a write, not a skipped older value).
#
# Usage: bash benches/push.sh [ROUNDS] [SECS]   (build first: cargo build --release -p quiver-cli -p quiver-benches)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-2}" SECS="${2:-8}"
source benches/lib.sh
need "$QUIVER" "$LOADGEN"
DRIVERS=100000
echo "machine: $(nproc) cores, $(uname -r)"
"$QUIVER" init "$WORK/repo" --drivers "$DRIVERS" --hours 1 --customers 10 >/dev/null
qport=$(free_port); start_redis "$qport"
set_online_store "$WORK/repo/quiver.yaml" "$(redis_store "$qport")"
cat >> "$WORK/repo/quiver.yaml" <<'YAML'
serving:
  max_entity_rows: 10000
YAML
cat > "$WORK/repo/features/push.yaml" <<'YAML'
push_sources:
  - name: driver_events
    batch_source: driver_stats_source
    schema: {driver_id: int64, event_timestamp: timestamp, created: timestamp,
             conv_rate: float32, acc_rate: float32, avg_daily_trips: int64}
feature_views:
  - name: driver_live
    entities: [driver]
    source: driver_events
    ttl: 0
    features:
      - {name: conv_rate, type: float32}
      - {name: acc_rate, type: float32}
      - {name: avg_daily_trips, type: int64}
YAML
"$QUIVER" -C "$WORK/repo" apply >/dev/null
hp=$(free_port)
"$QUIVER" -C "$WORK/repo" serve --http "127.0.0.1:$hp" --grpc "" 2>"$WORK/quiver.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "127.0.0.1:$hp/ready" >/dev/null && break; sleep 0.1; done

FEAST_VENV="${QUIVER_FEAST_VENV:-$HOME/.cache/quiver-feast-venv}"
fp=""
if [ -x "$FEAST_VENV/bin/feast" ]; then
  fport=$(free_port); start_redis "$fport"
  fp=$(free_port)
  # As many workers as cores (Feast's default is 1; gunicorn restarts and access logs off).
  out=$(PATH="$FEAST_VENV/bin:$PATH" FEAST_WORKERS="${FEAST_WORKERS:-$(nproc)}" \
    bash benches/feast_push_server.sh "$WORK/feast" "$fport" "$fp")
  PIDS+=("$(echo "$out" | sed -n 's/^FEAST_PID=//p')")
else
  echo "!! Feast 0.67 not found in $FEAST_VENV: Quiver only"
fi

run() { # NAME PORT ROWS
  printf '%-6s %5s rows: ' "$1" "$3"
  "$LOADGEN" --target "127.0.0.1:$2" --protocol http --push driver_events --connections 8 \
    --rows "$3" --duration "$SECS" --warmup 1 --drivers "$DRIVERS" --customers 0 | grep "closed loop"
}
for round in $(seq "$ROUNDS"); do
  for rows in 1 1000; do
    run quiver "$hp" "$rows"
    [ -n "$fp" ] && run feast "$fp" "$rows"
  done
done
echo "quiver stored check: $(curl -s "127.0.0.1:$hp/metrics" | grep -E '^quiver_push_write_conflicts_total' || true)"
