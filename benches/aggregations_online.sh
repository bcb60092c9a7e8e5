#!/usr/bin/env bash
# Online aggregation benchmark (issue 15): reading windowed aggregates from `quiver serve`, next
# to plain feature vectors, and pushing raw events that update them.
#
# Targets:
#   (a) a request of 1 entity with 6 aggregates over a 1-day window of 5-minute tiles:
#       p99 ≤ 1 ms at 8 connections, and ≥ 50% of the plain-vector throughput (b)
#   (c) a push of one event updating 6 aggregates: p99 ≤ 2 ms (8 connections)
#
# Data: `quiver init --drivers DRIVERS --hours 1` (the plain view driver_hourly_stats, one fresh
# row per driver) and two generated event files with one event in every 5-minute tile of the 24
# hours before the current tile (288 events per driver, ~2.9M rows each at 10,000 drivers), each
# the batch source of a push source feeding an aggregation view of six 1-day aggregates:
#   data/bench_trips.parquet (driver_id, event_timestamp, fare, distance_km)
#     -> push source bench_trips -> view trip_agg: count, sum/mean/stddev/last of fare,
#        max of distance_km                                               (read by load a)
#   data/bench_driver_events.parquet (driver_id, event_timestamp, created, conv_rate, acc_rate,
#     avg_daily_trips) -> push source driver_events -> view event_agg: count, sum/mean/stddev
#        of conv_rate, max of acc_rate, last of avg_daily_trips          (pushed to by load c)
# The second pair exists because the load generator's pushes (`loadgen --push`) always carry
# benches/push.sh's columns (driver_id, event_timestamp, created, conv_rate, acc_rate,
# avg_daily_trips) and a push must carry every column its views read: pushing fare and
# distance_km to bench_trips would need a change to benches/src/loadgen.rs. event_agg has the
# same shape as trip_agg (six 1-day aggregates of the same functions, a day of tiles per
# entity), so a push does the same work: read the entity's tiles, add the event, compare-and-set.
# Redis online store (a private redis-server), `quiver materialize-incremental` of the three
# views (tiles before the current one: 287 of the 288 tiles of a 1-day window hold events when
# the loads start), `quiver serve` (HTTP, default settings, no cache), then ROUNDS rounds of, at
# 8 connections, closed loop, SECS seconds each after 2 s of warm-up, random drivers:
#   (a) /get-online-features, 1 entity, feature service agg_online (the 6 aggregates of trip_agg)
#   (b) /get-online-features, 1 entity, feature service plain_online (6 plain features of
#       driver_hourly_stats: conv_rate, acc_rate, avg_daily_trips, rating, earnings, total_trips)
#   (c) POST /push of 1 event (event time now) to driver_events, feeding event_agg
# Medians over rounds of throughput and p50/p99/p99.9 per load, and the ratio of (a)'s
# throughput to (b)'s. Server, Redis and load generator share this machine's cores.
#
# Usage: bash benches/aggregations_online.sh [SECONDS] [ROUNDS]   (default 10 s, 3 rounds;
#        build first: cargo build --release -p quiver-cli -p quiver-benches; needs redis-server
#        and python3 with numpy and pyarrow)
# Environment: PYTHON=~/.cache/quiver-bench-venv/bin/python (default python3), DRIVERS=10000.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-10}"
ROUNDS="${2:-3}"
source benches/lib.sh
PYTHON="${PYTHON:-python3}"
DRIVERS="${DRIVERS:-10000}"
need "$QUIVER" "$LOADGEN"
"$PYTHON" -c 'import numpy, pyarrow' 2>/dev/null || { echo "needs $PYTHON with numpy and pyarrow: pip install numpy pyarrow (or PYTHON=...)" >&2; exit 1; }

REDIS_PORT=$(free_port) HTTP_PORT=$(free_port)
start_redis "$REDIS_PORT"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); redis $(redis-server --version | awk '{print $3}')"
"$QUIVER" init "$WORK/repo" --drivers "$DRIVERS" --hours 1 --customers 10 >/dev/null
set_online_store "$WORK/repo/quiver.yaml" "$(redis_store "$REDIS_PORT")"

echo "generating events: $DRIVERS drivers x 288 five-minute tiles..."
"$PYTHON" - "$WORK/repo/data" "$DRIVERS" <<'PY'
import sys, time
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
data, drivers = sys.argv[1], int(sys.argv[2])
HOP = 300_000_000                              # 5 minutes in microseconds
current = time.time_ns() // 1000 // HOP        # the tile now is in
tiles = np.arange(current - 288, current, dtype=np.int64)   # the 288 complete tiles before it
n = drivers * tiles.size
rng = np.random.default_rng(7)
ids = np.repeat(np.arange(1001, 1001 + drivers, dtype=np.int64), tiles.size)
at = np.tile(tiles * HOP, drivers) + rng.integers(0, HOP, size=n)   # one event in each tile
ts = lambda us: pa.array(us, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
pq.write_table(pa.table({
    "driver_id": ids,
    "event_timestamp": ts(at),
    "fare": rng.integers(500, 6000, size=n) / 100.0,
    "distance_km": rng.integers(5, 300, size=n) / 10.0,
}), f"{data}/bench_trips.parquet")
pq.write_table(pa.table({
    "driver_id": ids,
    "event_timestamp": ts(at),
    "created": ts(at + rng.integers(0, 60_000_000, size=n)),
    "conv_rate": pa.array(rng.random(n, dtype=np.float32)),
    "acc_rate": pa.array(rng.random(n, dtype=np.float32)),
    "avg_daily_trips": rng.integers(0, 40, size=n),
}), f"{data}/bench_driver_events.parquet")
print(f"  {n:,} events per file, {drivers:,} drivers")
PY

cat > "$WORK/repo/features/bench_online_agg.yaml" <<'YAML'
sources:
  - name: bench_trips_source
    path: data/bench_trips.parquet
    timestamp_field: event_timestamp
  - name: bench_driver_events_source
    path: data/bench_driver_events.parquet
    timestamp_field: event_timestamp
    created_timestamp_field: created

push_sources:
  - name: bench_trips
    batch_source: bench_trips_source
    schema: {driver_id: int64, event_timestamp: timestamp, fare: float64, distance_km: float64}
  # The columns of `loadgen --push` (benches/push.sh's driver_events).
  - name: driver_events
    batch_source: bench_driver_events_source
    schema: {driver_id: int64, event_timestamp: timestamp, created: timestamp,
             conv_rate: float32, acc_rate: float32, avg_daily_trips: int64}

feature_views:
  - name: trip_agg
    entities: [driver]
    source: bench_trips
    hop: 5m
    aggregations:
      - {name: trips_1d, function: count, window: 1d}
      - {name: fare_sum_1d, function: sum, column: fare, window: 1d}
      - {name: fare_mean_1d, function: mean, column: fare, window: 1d}
      - {name: dist_max_1d, function: max, column: distance_km, window: 1d}
      - {name: fare_std_1d, function: stddev, column: fare, window: 1d}
      - {name: fare_last_1d, function: last, column: fare, window: 1d}
  - name: event_agg
    entities: [driver]
    source: driver_events
    hop: 5m
    aggregations:
      - {name: events_1d, function: count, window: 1d}
      - {name: conv_sum_1d, function: sum, column: conv_rate, window: 1d}
      - {name: conv_mean_1d, function: mean, column: conv_rate, window: 1d}
      - {name: acc_max_1d, function: max, column: acc_rate, window: 1d}
      - {name: conv_std_1d, function: stddev, column: conv_rate, window: 1d}
      - {name: trips_last_1d, function: last, column: avg_daily_trips, window: 1d}

feature_services:
  - name: agg_online
    features: [trip_agg]
  - name: plain_online
    features:
      - driver_hourly_stats:conv_rate
      - driver_hourly_stats:acc_rate
      - driver_hourly_stats:avg_daily_trips
      - driver_hourly_stats:rating
      - driver_hourly_stats:earnings
      - driver_hourly_stats:total_trips
YAML
"$QUIVER" -C "$WORK/repo" apply >/dev/null
"$QUIVER" -C "$WORK/repo" materialize-incremental --views driver_hourly_stats,trip_agg,event_agg
"$QUIVER" -C "$WORK/repo" serve --http "127.0.0.1:$HTTP_PORT" --grpc "" 2>"$WORK/serve.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "127.0.0.1:$HTTP_PORT/ready" >/dev/null && break; sleep 0.1; done
curl -sf "127.0.0.1:$HTTP_PORT/ready" >/dev/null || { echo "!! quiver serve is not ready:" >&2; tail -20 "$WORK/serve.log" >&2; exit 1; }

# One request of each load before measuring: the answer (or the error) of each, and the size of
# one entity's stored tiles.
echo
echo "one request of each load (driver 1001):"
show() { # WHAT PATH BODY
  local out
  out=$(curl -s -w '\n%{http_code}' -H 'Content-Type: application/json' -d "$3" "127.0.0.1:$HTTP_PORT$2" || true)
  local code="${out##*$'\n'}" body="${out%$'\n'*}"
  if [ "$code" != 200 ]; then
    echo "!! $1: HTTP $code: $body" >&2
    tail -5 "$WORK/serve.log" >&2
    exit 1
  fi
  printf '  %s: ' "$1"
  printf '%s' "$body" | python3 -c '
import json, sys
r = json.load(sys.stdin)
names = r.get("metadata", {}).get("feature_names")
if names and "results" in r:
    values = [res["values"][0] for res in r["results"]]
    print(", ".join(f"{n}={v}" for n, v in zip(names, values)))
else:
    print(json.dumps(r)[:300])'
}
NOW=$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)
show "(a) agg_online" /get-online-features '{"feature_service": "agg_online", "entities": {"driver_id": [1001]}}'
show "(b) plain_online" /get-online-features '{"feature_service": "plain_online", "entities": {"driver_id": [1001]}}'
show "(c) push to driver_events" /push "{\"push_source_name\": \"driver_events\", \"to\": \"online\", \"df\": {\"driver_id\": [1001], \"event_timestamp\": [\"$NOW\"], \"created\": [\"$NOW\"], \"conv_rate\": [0.5], \"acc_rate\": [0.5], \"avg_daily_trips\": [7]}}"
generation() { "$QUIVER" -C "$WORK/repo" --format json registry describe "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["generation"])'; }
for view in trip_agg event_agg; do
  key="quiver:repo:$view:$(generation "$view" 2>/dev/null || echo '?'):{i1001}"
  echo "  $view: one entity's tiles are $(redis-cli -p "$REDIS_PORT" STRLEN "$key" 2>/dev/null || echo '?') bytes ($key)"
done
echo "  redis memory: $(redis-cli -p "$REDIS_PORT" INFO memory | tr -d '\r' | sed -n 's/^used_memory_human://p')"

run() { # LOAD EXTRA-ARGS... — one loadgen run; its JSON line appended to $WORK/LOAD.jsonl
  local load="$1" out; shift
  out=$("$LOADGEN" --target "127.0.0.1:$HTTP_PORT" --protocol http --connections 8 --rows 1 --duration "$SECS" --warmup 2 \
    --drivers "$DRIVERS" --customers 0 --json "$@")
  echo "$out" >>"$WORK/$load.jsonl"
  printf '%s' "$out" | python3 -c 'import json, sys; print("  ({}) {rps:,.0f} req/s, ms p50 {p50_ms:.3f} p99 {p99_ms:.3f} p99.9 {p999_ms:.3f} max {max_ms:.3f}, errors {errors}".format(sys.argv[1], **json.load(sys.stdin)))' "$load"
}
echo
echo "8 connections, 1 entity or event per request, ${SECS}s each after 2 s of warm-up, $ROUNDS round(s):"
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  run a --feature-service agg_online
  run b --feature-service plain_online
  run c --push driver_events
done

echo
python3 - "$WORK" <<'PY'
import json, statistics, sys
work = sys.argv[1]
loads = [
    ("a", "(a) 1 entity × 6 aggregates (1d window, 5m tiles)", "p99 ≤ 1 ms, ≥ 50% of (b)'s req/s"),
    ("b", "(b) 1 entity × 6 plain features", "—"),
    ("c", "(c) push of 1 event updating 6 aggregates", "p99 ≤ 2 ms"),
]
runs = {k: [json.loads(l) for l in open(f"{work}/{k}.jsonl") if l.strip()] for k, _, _ in loads}
med = {k: {m: statistics.median(r[m] for r in rs) for m in ("rps", "p50_ms", "p99_ms", "p999_ms")}
       for k, rs in runs.items()}
ratio = med["a"]["rps"] / med["b"]["rps"] if med["b"]["rps"] else float("nan")
per_round = " ".join(f"{a['rps'] / b['rps']:.2f}" if b["rps"] else "nan" for a, b in zip(runs["a"], runs["b"]))
met = lambda ok: "met" if ok else "**missed**"
verdict = {
    "a": f"p99: {met(med['a']['p99_ms'] <= 1.0)}; throughput: {met(ratio >= 0.5)}",
    "b": "",
    "c": met(med["c"]["p99_ms"] <= 2.0),
}
print(f"medians of {len(runs['a'])} round(s):")
print()
print("| load | req/s | p50 ms | p99 ms | p99.9 ms | errors (all rounds) | target | |")
print("|---|---|---|---|---|---|---|---|")
for k, name, target in loads:
    m, errors = med[k], sum(r["errors"] for r in runs[k])
    print(f"| {name} | {m['rps']:,.0f} | {m['p50_ms']:.3f} | {m['p99_ms']:.3f} | {m['p999_ms']:.3f} | {errors} | {target} | {verdict[k]} |")
print()
print(f"(a)/(b) throughput: {ratio:.2f} (target ≥ 0.50); per round {per_round}")
if any(r["errors"] for rs in runs.values() for r in rs):
    print("!! some requests failed (errors above): their loads are not measured as asked")
PY
counters=$(curl -s "127.0.0.1:$HTTP_PORT/metrics" | grep -E '^(quiver_push_late_events_total|quiver_store_errors_total|quiver_undecodable_values_total)' | tr '\n' ' ' || true)
echo "server counters (late pushed events, store errors, undecodable values): ${counters:-none}"
