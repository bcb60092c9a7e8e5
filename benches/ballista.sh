#!/usr/bin/env bash
# The local engine against a Ballista cluster (1 scheduler + 2 executors) on this machine:
# `retrieve --features model_v1` for an entity table of ROWS rows and a full `materialize` over
# the benchmark-scale sample (100k drivers x 24 hourly rows, 200k customers x 5 daily rows).
# Alternating runs; wall time and the client's peak RSS from GNU time, each cluster process's
# peak RSS (VmHWM) after the runs, and the bytes the executors' stages wrote to their work
# directories (shuffle and result files) per job. Outputs of both engines must be identical
# (the retrieval files byte for byte, the online values by `verify` on the cluster).
# This machine has 2 cores: the point is the cost of distribution, not a speed-up.
#
# Usage: bash benches/ballista.sh [RUNS]   (build first: cargo build --release -p quiver-cli)
#        ROWS=5000000 by default.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
ROWS="${ROWS:-5000000}"
source benches/lib.sh
need "$QUIVER"

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "generating benchmark data ($ROWS entity rows)..."
"$QUIVER" init "$WORK/local" --drivers 100000 --hours 24 --customers 200000 --labels "$ROWS" --end 2026-01-02T00:00:00Z >/dev/null
cp -r "$WORK/local" "$WORK/cluster"
du -sh "$WORK/local/data"/*.parquet

SCHED=$(free_port)
QUIVER_LOG=warn "$QUIVER" ballista scheduler --bind "127.0.0.1:$SCHED" --external-host 127.0.0.1 >"$WORK/scheduler.log" 2>&1 &
PIDS+=($!); SCHED_PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$SCHED") 2>/dev/null && break; sleep 0.1; done
EXEC_PIDS=()
for i in 0 1; do
  mkdir -p "$WORK/exec$i"
  QUIVER_LOG=warn "$QUIVER" ballista executor --scheduler "df://127.0.0.1:$SCHED" \
    --flight-port "$(free_port)" --grpc-port "$(free_port)" --concurrent-tasks 1 \
    --work-dir "$WORK/exec$i" >"$WORK/exec$i.log" 2>&1 &
  PIDS+=($!); EXEC_PIDS+=($!)
done
sleep 3
printf 'engine:\n  type: ballista\n  url: df://127.0.0.1:%s\n' "$SCHED" >>"$WORK/cluster/quiver.yaml"
for r in local cluster; do "$QUIVER" -C "$WORK/$r" apply >/dev/null; done

work_bytes() { du -sb "$WORK/exec0" "$WORK/exec1" | awk '{s += $1} END {print s}'; }
hwm() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

: >"$WORK/rl"; : >"$WORK/rc"; : >"$WORK/ml"; : >"$WORK/mc"; : >"$WORK/shuffle_r"; : >"$WORK/shuffle_m"
for i in $(seq "$RUNS"); do
  measure "$QUIVER" -C "$WORK/local" retrieve --entities "$WORK/local/data/labels.parquet" --features model_v1 --output "$WORK/local.parquet" --no-manifest >>"$WORK/rl"
  before=$(work_bytes)
  measure "$QUIVER" -C "$WORK/cluster" retrieve --entities "$WORK/cluster/data/labels.parquet" --features model_v1 --output "$WORK/cluster.parquet" --no-manifest >>"$WORK/rc"
  echo $(( $(work_bytes) - before )) >>"$WORK/shuffle_r"
  cmp "$WORK/local.parquet" "$WORK/cluster.parquet" || { echo "OUTPUTS DIFFER" >&2; exit 1; }
  measure "$QUIVER" -C "$WORK/local" materialize 2026-01-01T00:00:00Z 2026-01-02T00:00:00Z >>"$WORK/ml"
  before=$(work_bytes)
  measure "$QUIVER" -C "$WORK/cluster" materialize 2026-01-01T00:00:00Z 2026-01-02T00:00:00Z >>"$WORK/mc"
  echo $(( $(work_bytes) - before )) >>"$WORK/shuffle_m"
done
"$QUIVER" -C "$WORK/cluster" verify --sample 2000 >"$WORK/verify" || { cat "$WORK/verify"; echo "VERIFY FAILED" >&2; exit 1; }

row() {
  local what="$1" l="$2" c="$3" s="$4"
  local lt lm ct cm
  lt=$(cut -d' ' -f1 "$l" | median); lm=$(cut -d' ' -f2 "$l" | median)
  ct=$(cut -d' ' -f1 "$c" | median); cm=$(cut -d' ' -f2 "$c" | median)
  echo "| $what | $lt s | $lm MiB | $ct s | $cm MiB | $(awk -v a="$ct" -v b="$lt" 'BEGIN {printf "%.2f×", a/b}') | $(median <"$s" | awk '{printf "%.0f MiB", $1/1048576}') |"
  echo "  $what runs (s MiB): local $(tr '\n' ' ' <"$l") | cluster $(tr '\n' ' ' <"$c")" >&2
}
echo
echo "| job | local wall | local peak RSS | cluster wall | client peak RSS | cluster / local time | written by executors per job |"
echo "|---|---|---|---|---|---|---|"
row "retrieve, $ROWS entity rows" "$WORK/rl" "$WORK/rc" "$WORK/shuffle_r"
row "materialize 2026-01-01, every view" "$WORK/ml" "$WORK/mc" "$WORK/shuffle_m"
echo
echo "cluster peak RSS over all runs: scheduler $(hwm "$SCHED_PID") MiB, executors $(hwm "${EXEC_PIDS[0]}") MiB and $(hwm "${EXEC_PIDS[1]}") MiB"
echo "outputs: retrieval identical byte for byte in every run; $(grep -c 'online = offline' "$WORK/verify") views verified online = offline on the cluster"
