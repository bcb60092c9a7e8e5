#!/usr/bin/env bash
# Training retrieval benchmark: entity-table sizes from one row to millions, against DuckDB.
#
# Benchmark-scale data (100k drivers x 24 hourly rows, 200k customers x 5 daily rows, ~1%
# corrections; 10 features each) and one entity table of the largest size (driver, customer,
# time, label); each smaller size is its first N rows (the generator draws rows independently,
# so a prefix is a sample of the same shape). For each size, RUNS alternating runs of
#   quiver retrieve --features model_v1          (20 features from both views)
#   DuckDB ASOF LEFT JOIN (benches/retrieve_duckdb.py: dedupe by created time, ttl bound)
# with wall time and peak RSS from GNU time; medians reported. Every size's two outputs are
# compared value by value (they must be identical); a failed run is reported, not skipped.
# Small sizes matter: a crash on entity tables under ~40k rows over this source shipped because
# this benchmark only ran big ones.
#
# Usage: bash benches/retrieve.sh [RUNS]   (build first: cargo build --release -p quiver-cli;
#        needs python3 with duckdb and pyarrow: pip install duckdb pyarrow)
# Sizes: SIZES="1 1000 10000 100000 1000000 5000000" (default); sizes of 1M rows and more run
# at most 3 times. Smaller: SIZES="1 1000 50000" bash benches/retrieve.sh 1
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
source benches/lib.sh
SIZES="${SIZES:-1 1000 10000 100000 1000000 5000000}"
need "$QUIVER"
python3 -c 'import duckdb, pyarrow' 2>/dev/null || { echo "needs: pip install duckdb pyarrow" >&2; exit 1; }
HERE="$PWD"
MAX=$(printf '%s\n' $SIZES | sort -n | tail -1)

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); duckdb $(python3 -c 'import duckdb; print(duckdb.__version__)')"
echo "generating benchmark data ($MAX entity rows)..."
"$QUIVER" init "$WORK/repo" --drivers 100000 --hours 24 --customers 200000 --labels "$MAX" --end 2026-01-02T00:00:00Z >/dev/null
"$QUIVER" -C "$WORK/repo" apply >/dev/null
for n in $SIZES; do
  python3 "$HERE/benches/retrieve_duckdb.py" head "$WORK/repo/data/labels.parquet" "$n" "$WORK/repo/data/labels_$n.parquet"
done
du -sh "$WORK/repo/data"/{driver_stats,customer_profile}.parquet

run_size() {
  local rows="$1" runs="$2" labels="$WORK/repo/data/labels_$1.parquet"
  : >"$WORK/q" ; : >"$WORK/d"
  for i in $(seq "$runs"); do
    if ! measure "$QUIVER" -C "$WORK/repo" retrieve --entities "$labels" --features model_v1 --output "$WORK/quiver.parquet" --no-manifest >>"$WORK/q"; then
      echo "| $rows | $runs | **FAILED**: $(tail -1 "$WORK/err") | | | | | |"
      return
    fi
    measure python3 "$HERE/benches/retrieve_duckdb.py" run "$WORK/repo" "$labels" "$WORK/duckdb.parquet" >>"$WORK/d"
  done
  local same
  same=$(python3 "$HERE/benches/retrieve_duckdb.py" compare "$WORK/quiver.parquet" "$WORK/duckdb.parquet" | tr '\n' ' ' || true)
  local qs qm ds dm
  qs=$(cut -d' ' -f1 "$WORK/q" | median); qm=$(cut -d' ' -f2 "$WORK/q" | median)
  ds=$(cut -d' ' -f1 "$WORK/d" | median); dm=$(cut -d' ' -f2 "$WORK/d" | median)
  echo "| $rows | $runs | $qs s | $qm MiB | $ds s | $dm MiB | $(awk -v a="$ds" -v b="$qs" 'BEGIN {printf "%.2f×", a/b}') | $same |"
  echo "  $rows runs (s, MiB): quiver $(tr '\n' ' ' <"$WORK/q"| sed 's/ $//') | duckdb $(tr '\n' ' ' <"$WORK/d" | sed 's/ $//')" >&2
}

echo
echo "| entity rows | runs | Quiver wall (median) | Quiver peak RSS | DuckDB wall (median) | DuckDB peak RSS | DuckDB/Quiver time | outputs |"
echo "|---|---|---|---|---|---|---|---|"
for n in $SIZES; do
  run_size "$n" "$(( n >= 1000000 && RUNS > 3 ? 3 : RUNS ))"
done
