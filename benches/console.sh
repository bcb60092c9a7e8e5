#!/usr/bin/env bash
# The console's JSON endpoints under a registry with many run records (issue 17): how long one
# page's data takes to read, and what the page weighs.
#
# A quickstart repository (embedded store, local registry) gets RUNS extra run records of one
# view (`driver_activity`: a view run every 5 minutes for weeks), written by real
# `quiver materialize` runs for the first 20 and copied as files for the rest (the same JSON;
# the index of each view's newest record is what `record_run` wrote), then `quiver serve`; each
# endpoint is fetched N times with curl, medians in milliseconds.
#
# Usage: bash benches/console.sh [RUNS] [N]   (build first: cargo build --release -p quiver-cli)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-10000}" N="${2:-20}"
source benches/lib.sh
need "$QUIVER"
echo "machine: $(nproc) cores, $(uname -r); $RUNS extra run records, $N requests per endpoint"
(cd "$WORK" && "$QUIVER" quickstart --no-serve >/dev/null)
repo="$WORK/quiver_quickstart"
now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
for _ in $(seq 20); do
  "$QUIVER" -C "$repo" materialize 2000-01-01 "$(now)" --views driver_activity >/dev/null
done
runs="$repo/.quiver/registry/runs"
sample=$(ls "$runs" | grep -- '-driver_activity.json$' | tail -1)
base=$(date +%s%N)
for i in $(seq "$RUNS"); do
  cp "$runs/$sample" "$runs/$(printf '%020d' $((base + i)))-driver_activity.json"
done
echo "run record files: $(ls "$runs" | wc -l)"

hp=$(free_port)
"$QUIVER" -C "$repo" serve --http "127.0.0.1:$hp" --grpc "" 2>"$WORK/serve.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "127.0.0.1:$hp/ready" >/dev/null && break; sleep 0.1; done

time_ms() {
  for _ in $(seq "$N"); do
    curl -s -o /dev/null -w '%{time_total}\n' "127.0.0.1:$hp$1"
  done | awk '{print $1 * 1000}' | median
}
bytes() { curl -s "127.0.0.1:$hp$1" | wc -c; }
printf '%-58s %10s %10s\n' endpoint "median ms" bytes
for path in /registry/overview /registry/versions /registry/versions/1 '/registry/diff?from=0&to=1' \
  '/registry/runs?view=driver_activity&limit=1000' '/registry/runs?view=customer_profile' \
  /registry/sources/driver_stats_source/schema /serving-stats; do
  printf '%-58s %10s %10s\n' "$path" "$(time_ms "$path")" "$(bytes "$path")"
done
weight=0
for f in /ui /ui/core.js /ui/charts.js /ui/pages.js /ui/live.js /ui/app.css /ui/icon.svg; do
  weight=$((weight + $(bytes "$f")))
done
echo "page weight (HTML, scripts, style, icon; uncompressed): $weight bytes"
