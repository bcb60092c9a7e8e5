#!/usr/bin/env bash
# Soak and memory benchmark (issue: hardening).
#
# `quiver serve` (release) over a private redis-server with benchmark data, then, while sampling
# the server's resident memory (VmRSS from /proc/PID/status) every SAMPLE seconds:
#   1. MINUTES of mixed load: the load generator in open loop at RATE req/s (1 entity row), with
#      a 100-row client alongside;
#   2. requests at the configured limits: max_entity_rows (10,000 rows) per request, 4 connections;
#   3. 200 idle connections held open (slowloris) — they must be dropped after header_timeout_ms.
# Prints the RSS series and a summary: growth after warm-up should be ~0.
#
# Usage: bash benches/soak.sh [MINUTES] [RATE]   (build first: cargo build --release -p quiver-cli -p quiver-benches)
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES="${1:-3}" RATE="${2:-5000}" SAMPLE="${SAMPLE:-10}"
source benches/lib.sh
need "$QUIVER" "$LOADGEN"
DRIVERS="${DRIVERS:-100000}" CUSTOMERS="${CUSTOMERS:-200000}"
REDIS_PORT=$(free_port) HTTP_PORT=$(free_port)
start_redis "$REDIS_PORT"
"$QUIVER" init "$WORK/repo" --drivers "$DRIVERS" --hours 24 --customers "$CUSTOMERS" --labels 10 >/dev/null
set_online_store "$WORK/repo/quiver.yaml" "$(redis_store "$REDIS_PORT")"
printf 'serving:\n  max_entity_rows: 10000\n  max_request_bytes: 4194304\n  header_timeout_ms: 5000\n' >>"$WORK/repo/quiver.yaml"
"$QUIVER" -C "$WORK/repo" apply >/dev/null
"$QUIVER" -C "$WORK/repo" materialize-incremental --views driver_hourly_stats,customer_profile >/dev/null
"$QUIVER" -C "$WORK/repo" serve --http "127.0.0.1:$HTTP_PORT" --grpc "" 2>"$WORK/serve.log" &
SERVER=$!
PIDS+=($SERVER)
for _ in $(seq 100); do curl -sf "127.0.0.1:$HTTP_PORT/ready" >/dev/null && break; sleep 0.1; done
echo "machine: $(nproc) cores; server PID $SERVER; sampling VmRSS every ${SAMPLE}s"

rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$SERVER/status"; }
START=$(date +%s)
sample() { echo "  t=$(( $(date +%s) - START ))s phase=$1 rss=$(rss) MiB conns=$(ss -tn state established "( sport = :$HTTP_PORT )" | tail -n +2 | wc -l)"; }

echo "phase 1: ${MINUTES} min at ${RATE} req/s (1 row) + 1 connection of 100-row requests"
SECS=$(( MINUTES * 60 ))
"$LOADGEN" --target "127.0.0.1:$HTTP_PORT" --connections 8 --rate "$RATE" --duration "$SECS" --warmup 0 \
  --drivers "$DRIVERS" --customers "$CUSTOMERS" >"$WORK/load1.txt" &
L1=$!; PIDS+=($L1)
"$LOADGEN" --target "127.0.0.1:$HTTP_PORT" --connections 1 --rows 100 --duration "$SECS" --warmup 0 \
  --drivers "$DRIVERS" --customers "$CUSTOMERS" >"$WORK/load2.txt" &
L2=$!; PIDS+=($L2)
while kill -0 "$L1" 2>/dev/null; do sample load; sleep "$SAMPLE"; done
wait "$L1" "$L2" || true
cat "$WORK/load1.txt" "$WORK/load2.txt"

echo "phase 2: 60 s of requests at the limit (10,000 rows each), 4 connections"
"$LOADGEN" --target "127.0.0.1:$HTTP_PORT" --connections 4 --rows 10000 --duration 60 --warmup 0 \
  --drivers "$DRIVERS" --customers "$CUSTOMERS" >"$WORK/load3.txt" &
L3=$!; PIDS+=($L3)
python3 -c "
import json, random
r = random.Random(7)
print(json.dumps({'feature_service': 'model_v1', 'entities': {
  'driver_id': [1001 + r.randrange($DRIVERS) for _ in range(10000)],
  'customer_id': [1 + r.randrange($CUSTOMERS) for _ in range(10000)]}}))" >"$WORK/limit.json"
while kill -0 "$L3" 2>/dev/null; do
  sample limit
  # One more request at the limit alongside the load: what does a failure say?
  curl -s -o "$WORK/limit.out" -w "    a 10,000-row request: HTTP %{http_code} in %{time_total}s\n" \
    "127.0.0.1:$HTTP_PORT/get-online-features" -H 'Content-Type: application/json' --data-binary @"$WORK/limit.json"
  grep -o '"error":"[^"]*"' "$WORK/limit.out" | head -c 300 || true
  sleep "$SAMPLE"
done
cat "$WORK/load3.txt"

echo "phase 3: 200 idle connections (slowloris), header_timeout_ms = 5000"
python3 - "$HTTP_PORT" <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
socks = []
for i in range(200):
    s = socket.create_connection(("127.0.0.1", port))
    s.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")   # never finished
    socks.append(s)
time.sleep(12)
closed = 0
for s in socks:
    s.settimeout(0.1)
    try:
        closed += s.recv(1) == b""
    except Exception:
        pass
print(f"  idle connections closed by the server after 12 s: {closed} of {len(socks)}")
PY
P3=$!; PIDS+=($P3)
for _ in 1 2 3; do sample idle; sleep 4; done
wait "$P3" || true
sample end
