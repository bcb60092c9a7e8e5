#!/usr/bin/env bash
# Windowed-aggregate training retrieval benchmark (issue 15), against DuckDB and against plain
# point-in-time retrieval of the same number of features.
#
# Target: 500,000 entity rows x 6 aggregates over the benchmark's 2.4M driver rows treated as
# events: faster than DuckDB computing the same values, and within 2x of the plain point-in-time
# retrieval's time.
#
# Benchmark-scale data (`quiver init --drivers 100000 --hours 24`: 100k drivers x 24 hourly rows,
# ~1% corrections — same event time, later created time — which count as separate events here;
# 1,000 customers, unused) and its entity table data/labels.parquet of LABELS rows (driver,
# customer, time, label). features/bench_agg.yaml adds the view `driver_agg` over the existing
# source `driver_stats_source` (hop 5m) with six aggregates — count 1h, sum(earnings) 1d,
# mean(conv_rate) 7d, max(rating) 10m, stddev(earnings) 1d, last(avg_daily_trips) 1d — and two
# feature services: `agg_bench` (the whole view) and `plain_bench` (six plain features of
# driver_hourly_stats: conv_rate, acc_rate, avg_daily_trips, rating, earnings, total_trips).
# RUNS alternating runs of
#   quiver retrieve --features agg_bench     (the six aggregates at each row's time)
#   DuckDB: a range join of labels with the events within the longest window, grouped by label
#           row, each aggregate FILTERed to its window (benches/aggregations_duckdb.py)
#   quiver retrieve --features plain_bench   (six plain features: the as-of join with dedupe)
# with wall time and peak RSS from GNU time; medians reported. After the first run Quiver's and
# DuckDB's aggregates are compared value by value (counts, max, last exactly; float sums, means
# and standard deviations within 1e-9 relative; nulls must match): a difference is printed with
# examples and makes the script exit 1 once the table is out.
#
# Usage: bash benches/aggregations.sh [RUNS]   (RUNS default 3; build first: cargo build
#        --release -p quiver-cli; needs python3 with duckdb and pyarrow: pip install duckdb pyarrow)
# Environment: PYTHON=~/.cache/quiver-bench-venv/bin/python (interpreter with duckdb and pyarrow,
#        default python3), LABELS=500000 (entity rows), DRIVERS=100000 (the target's data; smaller
#        for a quick check: DRIVERS=2000 LABELS=20000 PROFILE=debug bash benches/aggregations.sh 1).
# The DuckDB query alone, checked against a brute-force oracle of the window rule on hand-made
# data: python3 benches/aggregations_duckdb.py selftest
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
source benches/lib.sh
PYTHON="${PYTHON:-python3}"
LABELS="${LABELS:-500000}"
DRIVERS="${DRIVERS:-100000}"
need "$QUIVER"
"$PYTHON" -c 'import duckdb, pyarrow' 2>/dev/null || { echo "needs $PYTHON with duckdb and pyarrow: pip install duckdb pyarrow (or PYTHON=...)" >&2; exit 1; }
HERE="$PWD"

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); duckdb $("$PYTHON" -c 'import duckdb; print(duckdb.__version__)')"
echo "generating benchmark data ($LABELS entity rows)..."
"$QUIVER" init "$WORK/repo" --drivers "$DRIVERS" --hours 24 --customers 1000 --labels "$LABELS" --end 2026-01-02T00:00:00Z >/dev/null
cat > "$WORK/repo/features/bench_agg.yaml" <<'YAML'
feature_views:
  - name: driver_agg
    description: The hourly driver rows treated as raw events (corrections count as events).
    entities: [driver]
    source: driver_stats_source
    hop: 5m
    aggregations:
      - {name: rows_1h, function: count, window: 1h}
      - {name: earnings_sum_1d, function: sum, column: earnings, window: 1d}
      - {name: conv_mean_7d, function: mean, column: conv_rate, window: 7d}
      - {name: rating_max_10m, function: max, column: rating, window: 10m}
      - {name: earnings_std_1d, function: stddev, column: earnings, window: 1d}
      - {name: trips_last_1d, function: last, column: avg_daily_trips, window: 1d}

feature_services:
  - name: agg_bench
    features: [driver_agg]
  - name: plain_bench
    features:
      - driver_hourly_stats:conv_rate
      - driver_hourly_stats:acc_rate
      - driver_hourly_stats:avg_daily_trips
      - driver_hourly_stats:rating
      - driver_hourly_stats:earnings
      - driver_hourly_stats:total_trips
YAML
"$QUIVER" -C "$WORK/repo" apply >/dev/null
LABELS_FILE="$WORK/repo/data/labels.parquet"
"$PYTHON" - "$WORK/repo/data/driver_stats.parquet" "$LABELS_FILE" <<'PY'
import os, sys
import pyarrow.parquet as pq
for p in sys.argv[1:]:
    print(f"  {os.path.basename(p)}: {pq.ParquetFile(p).metadata.num_rows:,} rows, {os.path.getsize(p) / 2**20:.1f} MiB")
PY

# GNU time runs the binaries themselves (not a shell function), so each command is spelled out.
RETRIEVE=("$QUIVER" -C "$WORK/repo" retrieve --entities "$LABELS_FILE" --no-manifest)
: >"$WORK/qa"; : >"$WORK/d"; : >"$WORK/qp"
outputs="not compared"
for i in $(seq "$RUNS"); do
  measure "${RETRIEVE[@]}" --features agg_bench --output "$WORK/agg.parquet" >>"$WORK/qa" || { echo "!! quiver retrieve --features agg_bench failed (run $i)" >&2; exit 1; }
  measure "$PYTHON" "$HERE/benches/aggregations_duckdb.py" run "$WORK/repo" "$LABELS_FILE" "$WORK/duckdb.parquet" >>"$WORK/d" \
    || { echo "!! DuckDB failed (run $i)" >&2; exit 1; }
  measure "${RETRIEVE[@]}" --features plain_bench --output "$WORK/plain.parquet" >>"$WORK/qp" || { echo "!! quiver retrieve --features plain_bench failed (run $i)" >&2; exit 1; }
  echo "  run $i (s MiB): quiver agg $(tail -1 "$WORK/qa") | duckdb $(tail -1 "$WORK/d") | quiver plain $(tail -1 "$WORK/qp")" >&2
  if [ "$i" = 1 ]; then
    # The outputs are the same every run: compare once, early, and say so loudly.
    if "$PYTHON" "$HERE/benches/aggregations_duckdb.py" compare "$WORK/agg.parquet" "$WORK/duckdb.parquet" >"$WORK/cmp"; then
      outputs="agree"
      cat "$WORK/cmp"
    else
      outputs="**DIFFERENT**"
      echo "!! Quiver's and DuckDB's aggregates differ:" >&2
      cat "$WORK/cmp" >&2
    fi
  fi
done
fmt() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f×", a/b}'; }
qs=$(cut -d' ' -f1 "$WORK/qa" | median); qm=$(cut -d' ' -f2 "$WORK/qa" | median)
ds=$(cut -d' ' -f1 "$WORK/d" | median); dm=$(cut -d' ' -f2 "$WORK/d" | median)
ps=$(cut -d' ' -f1 "$WORK/qp" | median); pm=$(cut -d' ' -f2 "$WORK/qp" | median)
verdict=$(awk -v q="$qs" -v d="$ds" -v p="$ps" 'BEGIN {
  a = (q < d) ? "faster than DuckDB: met" : "faster than DuckDB: **missed**";
  b = (q <= 2 * p) ? "within 2× of plain: met" : "within 2× of plain: **missed**";
  print a "; " b }')

echo
echo "$LABELS entity rows, $RUNS run(s), medians:"
echo
echo "| Quiver agg wall | Quiver agg peak RSS | DuckDB wall | DuckDB peak RSS | Quiver plain wall | Quiver plain peak RSS | DuckDB/Quiver-agg time | Quiver-agg/Quiver-plain time | outputs | target |"
echo "|---|---|---|---|---|---|---|---|---|---|"
echo "| $qs s | $qm MiB | $ds s | $dm MiB | $ps s | $pm MiB | $(fmt "$ds" "$qs") | $(fmt "$qs" "$ps") | $outputs | $verdict |"
if [ "$outputs" != "agree" ]; then
  echo >&2
  echo "!! FAILED: Quiver's aggregates differ from DuckDB's (see above)" >&2
  exit 1
fi
