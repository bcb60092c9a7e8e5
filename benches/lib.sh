# Shared by the benchmark scripts (sourced, from the repository root): the built binaries, a
# temporary work directory and the processes started in it (removed and stopped on exit), free
# ports, a private redis-server, switching a sample repository to Redis, and timing.

TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/quiver-target}"
QUIVER="$TARGET/${PROFILE:-release}/quiver"
LOADGEN="$TARGET/${PROFILE:-release}/loadgen"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

# need BINARY... — each must be built; otherwise say how and stop.
need() {
  for b in "$@"; do
    [ -x "$b" ] || { echo "build first: cargo build --release -p quiver-cli -p quiver-benches ($b is missing)" >&2; exit 1; }
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_redis PORT — a private redis-server without persistence, ready when this returns.
start_redis() {
  command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
  redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null &
  PIDS+=($!)
  for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && break; sleep 0.05; done
}

# set_online_store QUIVER_YAML BLOCK — replaces the sample's embedded online_store block.
set_online_store() {
  python3 - "$1" "$2" <<'PY'
import sys
p, block = sys.argv[1], sys.argv[2].rstrip("\n") + "\n"
s = open(p).read()
embedded = "online_store:\n  type: embedded\n  path: .quiver/online.redb\n"
assert embedded in s, "the sample's online_store block changed"
open(p, "w").write(s.replace(embedded, block))
PY
}

# redis_store PORT — the online_store block for a local Redis.
redis_store() { printf 'online_store:\n  type: redis\n  url: redis://127.0.0.1:%s\n' "$1"; }

# measure COMMAND... — prints "wall_seconds peak_rss_mib"; stdout in $WORK/out, stderr in $WORK/err;
# fails (with set -e: stops the script) when COMMAND fails.
measure() {
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err" >&2; return 1; }
  awk '{printf "%s %.0f\n", $1, $2/1024}' "$WORK/time"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
