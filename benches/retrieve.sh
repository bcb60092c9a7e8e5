#!/usr/bin/env bash
# Training retrieval benchmark (issue: point-in-time retrieval).
#
# Benchmark-scale data (100k drivers x 24 hourly rows, 200k customers x 5 daily rows, ~1%
# corrections; 10 features each) and an entity table of 500,000 rows (driver, customer, time,
# label), then 5,000,000 rows. For each size, RUNS alternating runs of
#   quiver retrieve --features model_v1          (20 features from both views)
#   DuckDB ASOF LEFT JOIN (benches/retrieve_duckdb.py: dedupe by created time, ttl bound)
# with wall time and peak RSS from GNU time; medians reported. The two outputs are compared
# value by value (they must be identical). Prints a Markdown table.
#
# Usage: bash benches/retrieve.sh [RUNS]   (build first: cargo build --release -p quiver-cli;
#        needs python3 with duckdb and pyarrow: pip install duckdb pyarrow)
# Smaller: LABELS=50000 BIG_LABELS=0 bash benches/retrieve.sh 1
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
source benches/lib.sh
LABELS="${LABELS:-500000}" BIG_LABELS="${BIG_LABELS:-5000000}"
need "$QUIVER"
python3 -c 'import duckdb, pyarrow' 2>/dev/null || { echo "needs: pip install duckdb pyarrow" >&2; exit 1; }
HERE="$PWD"

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); duckdb $(python3 -c 'import duckdb; print(duckdb.__version__)')"
echo "generating benchmark data..."
"$QUIVER" init "$WORK/repo" --drivers 100000 --hours 24 --customers 200000 --labels "$LABELS" --end 2026-01-02T00:00:00Z >/dev/null
"$QUIVER" -C "$WORK/repo" apply >/dev/null
if [ "$BIG_LABELS" -gt 0 ]; then
  "$QUIVER" init "$WORK/big" --drivers 100000 --hours 24 --customers 200000 --labels "$BIG_LABELS" --end 2026-01-02T00:00:00Z >/dev/null
  mv "$WORK/big/data/labels.parquet" "$WORK/repo/data/labels_big.parquet"
  rm -rf "$WORK/big"
fi
du -sh "$WORK/repo/data"/*.parquet

run_size() {
  local labels="$1" rows="$2" runs="$3"
  : >"$WORK/q" ; : >"$WORK/d"
  for i in $(seq "$runs"); do
    measure "$QUIVER" -C "$WORK/repo" retrieve --entities "$labels" --features model_v1 --output "$WORK/quiver.parquet" --no-manifest >>"$WORK/q"
    measure python3 "$HERE/benches/retrieve_duckdb.py" run "$WORK/repo" "$labels" "$WORK/duckdb.parquet" >>"$WORK/d"
  done
  local same
  same=$(python3 "$HERE/benches/retrieve_duckdb.py" compare "$WORK/quiver.parquet" "$WORK/duckdb.parquet" || true)
  local qs qm ds dm
  qs=$(cut -d' ' -f1 "$WORK/q" | median); qm=$(cut -d' ' -f2 "$WORK/q" | median)
  ds=$(cut -d' ' -f1 "$WORK/d" | median); dm=$(cut -d' ' -f2 "$WORK/d" | median)
  echo "| $rows | $runs | $qs s | $qm MiB | $ds s | $dm MiB | $(awk -v a="$ds" -v b="$qs" 'BEGIN {printf "%.2f×", a/b}') | $same |"
  echo "  runs (s, MiB): quiver $(tr '\n' ' ' <"$WORK/q"| sed 's/ $//') | duckdb $(tr '\n' ' ' <"$WORK/d" | sed 's/ $//')" >&2
}

echo
echo "| entity rows | runs | Quiver wall (median) | Quiver peak RSS | DuckDB wall (median) | DuckDB peak RSS | DuckDB/Quiver time | outputs |"
echo "|---|---|---|---|---|---|---|---|"
run_size "$WORK/repo/data/labels.parquet" "$LABELS" "$RUNS"
if [ "$BIG_LABELS" -gt 0 ]; then
  run_size "$WORK/repo/data/labels_big.parquet" "$BIG_LABELS" "$(( RUNS < 3 ? RUNS : 3 ))"
fi
