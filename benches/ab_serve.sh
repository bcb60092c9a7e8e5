#!/usr/bin/env bash
# Online serving, two builds compared in one run: each serves the same data from its own private
# Redis (each build materializes it in its own online format), and they serve alternately, round
# after round, at 1 and 8 connections, 1 row per request, over each of PROTOCOLS (default
# "http grpc"). On a shared, noisy machine this interleaving is what makes a before/after
# comparison hold.
#
# Usage: OLD=<target dir of the old build> NEW=<target dir of the new build> bash benches/ab_serve.sh [ROUNDS] [SECONDS]
#   each dir holds release/quiver and release/loadgen (e.g. copies of ~/.cache/quiver-target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-3}" SECS="${2:-6}"
source benches/lib.sh
: "${OLD:?set OLD to the old build's target dir}" "${NEW:?set NEW to the new build's target dir}"
need "$OLD/release/quiver" "$NEW/release/quiver" "$NEW/release/loadgen"
LOADGEN="$NEW/release/loadgen"
DRIVERS="${DRIVERS:-100000}" CUSTOMERS="${CUSTOMERS:-200000}" PROTOCOLS="${PROTOCOLS:-http grpc}"
"$NEW/release/quiver" init "$WORK/base" --drivers "$DRIVERS" --hours 24 --customers "$CUSTOMERS" >/dev/null
declare -A BIN=([old]="$OLD/release/quiver" [new]="$NEW/release/quiver")
for v in old new; do
  port=$(free_port); start_redis "$port"
  cp -r "$WORK/base" "$WORK/$v"
  set_online_store "$WORK/$v/quiver.yaml" "$(redis_store "$port")"
  "${BIN[$v]}" -C "$WORK/$v" apply >/dev/null
  "${BIN[$v]}" -C "$WORK/$v" materialize-incremental --views driver_hourly_stats,customer_profile >/dev/null 2>&1
done
for round in $(seq "$ROUNDS"); do
  for v in old new; do
    hp=$(free_port); gp=$(free_port)
    "${BIN[$v]}" -C "$WORK/$v" serve --http "127.0.0.1:$hp" --grpc "127.0.0.1:$gp" 2>/dev/null &
    pid=$!
    for _ in $(seq 100); do curl -sf "127.0.0.1:$hp/ready" >/dev/null && break; sleep 0.1; done
    for protocol in $PROTOCOLS; do
      port=$hp; [ "$protocol" = grpc ] && port=$gp
      for c in 1 8; do
        printf '%s %s round %s: ' "$v" "$protocol" "$round"
        "$LOADGEN" --target "127.0.0.1:$port" --protocol "$protocol" --connections "$c" --rows 1 --duration "$SECS" \
          --warmup 1 --drivers "$DRIVERS" --customers "$CUSTOMERS" | grep "closed loop"
      done
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
