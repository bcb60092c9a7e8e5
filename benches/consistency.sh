#!/usr/bin/env bash
# Consistency checker under load (online serving during materialization, a Redis restart and two
# generation changes). Not a speed benchmark: it fails (exit 1) when an answer is inconsistent.
#
# While `quiver serve` answers CLIENTS threads of `/get-online-features` (HTTP keep-alive, ROWS
# entity rows each: existing drivers plus one that was never written), a driver loop runs
# materialization rounds (a new Parquet file in the view's source directory, then
# `materialize-incremental` into a private redis-server, key_ttl: false) through four phases —
# steady; redis (stopped by PID with SIGTERM, one round attempted during the outage, restarted on
# the same port from its AOF); add_feature (a feature appended, `apply`, new generation refilled);
# type_change (f_d int64 -> float64, `apply`, refilled). Every value encodes (driver, version),
# so each answer row is checked for torn vectors, wrong-entity values, versions going backwards
# (against answers that completed before the request was sent, any client), the unknown driver
# being anything but NOT_FOUND, and more; then every driver is read once against the latest
# written version and `quiver verify` runs. The checks are listed in benches/consistency.py.
#
# Usage: bash benches/consistency.sh
#   QUIVER_BIN  the binary (default: $CARGO_TARGET_DIR/${PROFILE:-release}/quiver, as benches/lib.sh,
#               else the debug build there; CARGO_TARGET_DIR defaults to ~/.cache/quiver-target)
#   ROUNDS=240 (or DURATION=SECONDS: phases by time)  CLIENTS=4  DRIVERS=2000  ROWS=20
#   ROUND_PAUSE=0.3  UPDATE_FRACTION=0.3  OUTAGE=1.5  GEN_GAP=1.0  SEED=1  VERBOSE=0
#   PERSIST=1   redis with AOF (appendfsync everysec), stopped with SIGTERM so nothing is lost;
#               PERSIST=0: no persistence — the restart empties Redis, `materialize-incremental`
#               must notice (run records) and refill everything; NOT_FOUND until then is expected
#   GEN_GAP     seconds between `apply` and the refill: the server swaps to the new (empty)
#               generation within registry_poll_ms, so its NOT_FOUND answers are exercised
#   CACHE_MS=N  also turn on serving.cache with max_staleness_ms N (off by default)
# Defaults take about 2-3 minutes with the release build on a quiet 2-core machine.
# A quick run on a debug build: ROUNDS=8 DRIVERS=200 CLIENTS=2 bash benches/consistency.sh
# Prints a line per phase and a final table; exit 0 when every violation count is 0, 1 otherwise,
# 2 when the run itself could not be carried out. Every process it starts is stopped by PID and
# its temporary directory removed on exit, Ctrl-C and SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${QUIVER_BIN:-}" ]; then
  # As benches/lib.sh: $CARGO_TARGET_DIR/$PROFILE (release), else the debug build.
  TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/quiver-target}"
  QUIVER_BIN="$TARGET/${PROFILE:-release}/quiver"
  [ -x "$QUIVER_BIN" ] || QUIVER_BIN="$TARGET/debug/quiver"
fi
[ -x "$QUIVER_BIN" ] || { echo "no quiver binary at $QUIVER_BIN: build it or set QUIVER_BIN" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 2; }
python3 -c 'import pyarrow' 2>/dev/null || { echo "python3 with pyarrow is needed" >&2; exit 2; }

WORK="$(mktemp -d -t quiver-consistency.XXXXXX)"
CHECKER=""
cleanup() {
  trap - EXIT INT TERM
  # the checker stops what it started; whatever is left (it was killed) is stopped here, by PID
  if [ -n "$CHECKER" ] && kill -0 "$CHECKER" 2>/dev/null; then
    kill -TERM "$CHECKER" 2>/dev/null || true
    for _ in $(seq 200); do kill -0 "$CHECKER" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$CHECKER" 2>/dev/null || true
  fi
  for f in "$WORK"/pids/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The checks themselves first (crafted answers, a second): a checker that misses must not pass.
python3 benches/consistency.py --selftest >"$WORK/selftest.log" 2>&1 || { cat "$WORK/selftest.log" >&2; exit 2; }

# In the background (so INT/TERM reach this shell at once); the trap hands them on.
python3 benches/consistency.py --quiver "$QUIVER_BIN" --work "$WORK" &
CHECKER=$!
set +e
wait "$CHECKER"
rc=$?
set -e
CHECKER=""
exit "$rc"
