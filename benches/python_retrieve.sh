#!/usr/bin/env bash
# Training retrieval from Python: Quiver's in-process `FeatureStore.get_historical_features` against
# `quiver retrieve` on the same input (target: within 5%, the in-process path adds no copy), side by
# side with Feast 0.67's `get_historical_features` (file offline store) over the same Parquet files.
#
# Benchmark-scale data (as benches/retrieve.sh: 100k drivers x 24 hourly rows, 200k customers x 5
# daily rows, ~1% corrections; feature service model_v1 = 20 features of driver_hourly_stats and
# customer_profile) and one entity table of the largest size; each smaller size is its prefix. For
# each size, RUNS alternating runs of
#   cli     quiver retrieve --entities LABELS --features model_v1 --output out.arrow --no-manifest
#   path    python: quiver.FeatureStore(repo).get_historical_features("LABELS", "model_v1")
#   pandas  python: the same with a pandas DataFrame read before the clock starts (PANDAS=0: skip)
#   feast   python: Feast's get_historical_features(entity_df=DataFrame, features=service)
#           .to_arrow(), the first FEAST_RUNS runs only (default 2; FEAST_RUNS=0: skip Feast)
# Each Python process times its call with time.perf_counter() (entity DataFrame read before,
# result written as Arrow IPC after, like the CLI's output) and is itself measured with GNU time
# (wall, peak RSS), so both the in-call time and the whole process are reported; medians.
# Outputs: Quiver's Python tables must equal the CLI's out.arrow (same columns and values: the
# script exits 1 at the end otherwise); Feast's table is matched to Quiver's by entity row and the
# rows it lacks and the rows/values that differ are counted (reported, never a failure; on this
# data Feast 0.67's file store drops entity rows earlier than their driver's first row and, where
# a row was corrected (same event time, later created), returns the uncorrected values).
#
# Usage: bash benches/python_retrieve.sh [RUNS]      (RUNS default 5)
#   build first: cargo build --release -p quiver-cli, and a release wheel of python/ installed in
#   QUIVER_PYTHON's environment (`pip install ./python`, or `cd python && maturin build --release`
#   then `pip install --force-reinstall --no-deps` the wheel).
# Environment:
#   SIZES="500000"                 entity-table sizes (rows)
#   QUIVER_PYTHON=~/.cache/quiver-python-venv/bin/python   interpreter with quiver, pyarrow, pandas
#   FEAST_PYTHON=~/.cache/quiver-feast-venv/bin/python     interpreter with feast 0.67
#   FEAST_RUNS=2  PANDAS=1
#   DRIVERS=100000 HOURS=24 CUSTOMERS=200000 CUSTOMER_DAYS=5   generated data (smaller for a quick
#   check: SIZES=2000 DRIVERS=2000 CUSTOMERS=4000 PROFILE=debug bash benches/python_retrieve.sh 2)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
source benches/lib.sh
SIZES="${SIZES:-500000}"
QUIVER_PYTHON="${QUIVER_PYTHON:-$HOME/.cache/quiver-python-venv/bin/python}"
FEAST_PYTHON="${FEAST_PYTHON:-$HOME/.cache/quiver-feast-venv/bin/python}"
FEAST_RUNS="${FEAST_RUNS:-2}"
PANDAS="${PANDAS:-1}"
DRIVERS="${DRIVERS:-100000}" HOURS="${HOURS:-24}" CUSTOMERS="${CUSTOMERS:-200000}" CUSTOMER_DAYS="${CUSTOMER_DAYS:-5}"
need "$QUIVER"
HERE="$PWD"
PYR="$HERE/benches/python_retrieve.py"
MAX=$(printf '%s\n' $SIZES | sort -n | tail -1)

"$QUIVER_PYTHON" -c 'import quiver, pyarrow, pandas' 2>/dev/null \
  || { echo "QUIVER_PYTHON=$QUIVER_PYTHON cannot import quiver, pyarrow and pandas (install the wheel built from python/)" >&2; exit 1; }
QV=$("$QUIVER_PYTHON" -c 'import quiver, sys; print(getattr(quiver, "__version__", "?"), "python", sys.version.split()[0])')
FV="skipped"
if [ "$FEAST_RUNS" -gt 0 ]; then
  "$FEAST_PYTHON" -c 'import feast, sys; sys.exit(0 if feast.__version__.startswith("0.67.") else 1)' 2>/dev/null \
    || { echo "FEAST_PYTHON=$FEAST_PYTHON has no Feast 0.67 (see tests/feast/README.md; FEAST_RUNS=0 skips Feast)" >&2; exit 1; }
  FV=$("$FEAST_PYTHON" -c 'import feast, pandas, pyarrow; print(feast.__version__, "pandas", pandas.__version__, "pyarrow", pyarrow.__version__)')
fi

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); quiver CLI ${PROFILE:-release} ($QUIVER); quiver python $QV ($QUIVER_PYTHON); feast $FV"
echo "generating benchmark data ($DRIVERS drivers x $HOURS h, $CUSTOMERS customers x $CUSTOMER_DAYS d, $MAX entity rows)..."
"$QUIVER" init "$WORK/repo" --drivers "$DRIVERS" --hours "$HOURS" --customers "$CUSTOMERS" \
  --customer-days "$CUSTOMER_DAYS" --labels "$MAX" --end 2026-01-02T00:00:00Z >/dev/null
"$QUIVER" -C "$WORK/repo" apply >/dev/null
for n in $SIZES; do
  "$QUIVER_PYTHON" "$PYR" head "$WORK/repo/data/labels.parquet" "$n" "$WORK/labels_$n.parquet"
done
du -sh "$WORK/repo/data"/{driver_stats,customer_profile}.parquet
if [ "$FEAST_RUNS" -gt 0 ]; then
  "$FEAST_PYTHON" "$PYR" feast-setup "$WORK/feast" "$WORK/repo" 2>"$WORK/feast-setup.err" \
    || { cat "$WORK/feast-setup.err" >&2; exit 1; }
fi

# one LOG COMMAND... — a measured run: appends "wall rss" to $WORK/LOG, and for the Python runs
# (LOG other than c) their line "call rows cols write".
one() {
  local log="$1" m extra=""; shift
  m=$(measure "$@") || return 1
  [ "$log" = c ] || extra=" $(head -1 "$WORK/out")"
  echo "$m$extra" >>"$WORK/$log"
}
# med LOG FIELD [DECIMALS] — the median of one field of a log.
med() { cut -d' ' -f"$2" "$WORK/$1" | median | awk -v d="${3:-3}" '{printf "%.*f", d, $1}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a/b}'; }
FAILED=0

run_size() {
  local rows="$1" runs="$2" labels="$WORK/labels_$1.parquet" feast_runs="$3" note=""
  : >"$WORK/c"; : >"$WORK/p"; : >"$WORK/d"; : >"$WORK/f"
  for i in $(seq "$runs"); do
    if ! one c "$QUIVER" -C "$WORK/repo" retrieve --entities "$labels" --features model_v1 \
        --output "$WORK/cli.arrow" --no-manifest; then
      echo "| $rows | $runs | **CLI FAILED**: $(tail -1 "$WORK/err") |||||||||||"; FAILED=1; return
    fi
    if ! one p "$QUIVER_PYTHON" "$PYR" quiver "$WORK/repo" "$labels" "$WORK/py_path.arrow"; then
      echo "| $rows | $runs | **Python FAILED**: $(tail -1 "$WORK/err") |||||||||||"; FAILED=1; return
    fi
    if [ "$PANDAS" = 1 ] && ! one d "$QUIVER_PYTHON" "$PYR" quiver "$WORK/repo" "$labels" "$WORK/py_pandas.arrow" --pandas; then
      echo "| $rows | $runs | **Python (pandas) FAILED**: $(tail -1 "$WORK/err") |||||||||||"; FAILED=1; return
    fi
    if [ "$i" -le "$feast_runs" ] && [ -z "$note" ] \
        && ! one f "$FEAST_PYTHON" "$PYR" feast "$WORK/feast" "$labels" "$WORK/feast.arrow"; then
      note="Feast failed: $(grep -v -i warning "$WORK/err" | tail -1)"
    fi
  done

  local outputs same
  same=$("$QUIVER_PYTHON" "$PYR" same "$WORK/cli.arrow" "$WORK/py_path.arrow") || FAILED=1
  outputs="Python (path) vs CLI: $same"
  if [ "$PANDAS" = 1 ]; then
    same=$("$QUIVER_PYTHON" "$PYR" same "$WORK/cli.arrow" "$WORK/py_pandas.arrow") || FAILED=1
    outputs="$outputs; Python (pandas) vs CLI: $same"
  fi
  if [ -s "$WORK/f" ]; then
    outputs="$outputs; Feast vs Quiver: $("$QUIVER_PYTHON" "$PYR" vs-feast "$WORK/cli.arrow" "$WORK/feast.arrow" 2>&1 | tail -1)"
  fi
  if [ -n "$note" ]; then outputs="$outputs; $note"; fi

  local cw cm pc pwr pw pm dc="–" fc="–" fw="–" fm="–" fratio="–"
  cw=$(med c 1 2); cm=$(med c 2 0)
  pw=$(med p 1 2); pm=$(med p 2 0); pc=$(med p 3); pwr=$(med p 6)
  if [ "$PANDAS" = 1 ]; then dc="$(med d 3) s"; fi
  if [ -s "$WORK/f" ]; then
    fc="$(med f 3) s"; fw="$(med f 1 2) s"; fm="$(med f 2 0) MiB"
    fratio="$(awk -v a="$(med f 3)" -v b="$pc" 'BEGIN {printf "%.1f×", a/b}')"
  fi
  echo "| $rows | $runs / $(wc -l <"$WORK/f") | $cw s | $pc s (+$pwr s write) | $pw s | $(ratio "$pc" "$cw") / $(ratio "$pw" "$cw") | $cm / $pm MiB | $dc | $fc | $fw | $fm | $fratio | $outputs |"
  runs_of() { tr '\n' ';' <"$WORK/$1" | sed 's/;$//; s/;/; /g'; }
  { echo "  $rows rows, per run (wall s, peak RSS MiB[, in-call s, rows, columns, write s]):"
    echo "    cli:    $(runs_of c)"
    echo "    path:   $(runs_of p)"
    if [ "$PANDAS" = 1 ]; then echo "    pandas: $(runs_of d)"; fi
    if [ -s "$WORK/f" ]; then echo "    feast:  $(runs_of f)"; fi
  } >&2
}

echo
echo "| entity rows | runs (Quiver / Feast) | CLI wall | Python in-call (path) | Python process wall | Python/CLI (in-call / process) | peak RSS (CLI / Python) | Python in-call (pandas) | Feast in-call | Feast process wall | Feast peak RSS | Feast/Quiver (in-call) | outputs |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for n in $SIZES; do
  fr="$FEAST_RUNS"; [ "$fr" -gt "$RUNS" ] && fr="$RUNS"
  run_size "$n" "$RUNS" "$fr"
done
exit "$FAILED"
