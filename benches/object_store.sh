#!/usr/bin/env bash
# Object-storage benchmark (issue 13): the benchmark driver data (100k drivers x 24 hourly rows)
# laid out as 24 hourly Hive partitions (date=…/hour=…/part-0.parquet) on a local S3-compatible
# server (moto, started here on loopback), against the same partitions as local files and the
# original single local file. Per layout, RUNS rounds, alternating (medians):
#   full      materialize-incremental of `driver_hourly_stats` over the whole day (no watermark)
#   newest    materialize-incremental of the newest hour only (watermark at 23:00)
#   retrieve  500,000 entity rows (model_v1's driver view), entity table and output local
# Each run's files_read / bytes_read come from its run record (`--format json`).
#
# NEWEST_SHARE=0.1 keeps rows in the newest hour for every 10th driver only (the default, 1, has
# every driver in every hour, so the newest hour writes as many keys as the whole day).
#
# Usage: bash benches/object_store.sh [RUNS]
#   (build first: cargo build --release -p quiver-cli; moto: ~/.cache/quiver-moto-venv or QUIVER_MOTO_VENV)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
source benches/lib.sh
DRIVERS="${DRIVERS:-100000}" ENTITY_ROWS="${ENTITY_ROWS:-500000}"
MOTO_VENV="${QUIVER_MOTO_VENV:-$HOME/.cache/quiver-moto-venv}"
need "$QUIVER" "$MOTO_VENV/bin/moto_server"
PY="$MOTO_VENV/bin/python"
# The data layout is written with pyarrow (into the moto venv, once).
"$PY" -c 'import pyarrow, numpy, boto3' 2>/dev/null || "$MOTO_VENV/bin/pip" install -q pyarrow numpy boto3
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"

"$QUIVER" init "$WORK/local" --drivers "$DRIVERS" --hours 24 --customers 10 --end 2026-01-02T00:00:00Z >/dev/null
MOTO_PORT=$(free_port)
"$MOTO_VENV/bin/moto_server" -p "$MOTO_PORT" -H 127.0.0.1 2>"$WORK/moto.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "127.0.0.1:$MOTO_PORT/" >/dev/null && break; sleep 0.1; done
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_ALLOW_HTTP=true

# Partitions (without the partition columns in the files), locally and on the server; a
# 500,000-row entity table drawn from the drivers and the day.
"$PY" - "$WORK" "$MOTO_PORT" "$ENTITY_ROWS" <<'PY'
import os, sys, boto3, numpy as np, pyarrow as pa, pyarrow.parquet as pq, pyarrow.compute as pc
work, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = pq.read_table(f"{work}/local/data/driver_stats.parquet")
hours = pc.floor_temporal(t.column("event_timestamp"), unit="hour")
share = float(os.environ.get("NEWEST_SHARE", "1"))
if share < 1:
    # Only every k-th driver has rows in the newest hour (events touch a fraction of the
    # entities each hour); the single local file is rewritten the same way.
    k = round(1 / share)
    # The hour the `newest` run reads (its watermark 23:00 → 24:00; the data's last rows, at
    # 00:00 the next day, lie after it).
    import datetime
    newest = datetime.datetime(2026, 1, 1, 23, tzinfo=datetime.timezone.utc)
    keep = pc.or_(pc.not_equal(hours, pa.scalar(newest, hours.type)),
                  pa.array(t.column("driver_id").to_numpy() % k == 0))
    t = t.filter(keep)
    hours = hours.filter(keep)
    pq.write_table(t, f"{work}/local/data/driver_stats.parquet")
    print(f"newest hour: every {k}th driver only")
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="bench",
                  aws_secret_access_key="bench", region_name="us-east-1")
s3.create_bucket(Bucket="lake")
for h in pc.unique(hours).to_pylist():
    rel = f"date={h:%Y-%m-%d}/hour={h:%H}/part-0.parquet"
    path = f"{work}/lake_parts/{rel}"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(t.filter(pc.equal(hours, h)), path)
    s3.upload_file(path, "lake", f"trips/{rel}")
ids = pc.unique(t.column("driver_id")).to_numpy()
rng = np.random.default_rng(7)
start = pc.min(t.column("event_timestamp")).as_py()
ts = pa.array(np.datetime64(start.replace(tzinfo=None), "us")
              + rng.integers(0, 24 * 3600 * 10**6, n).astype("timedelta64[us]"), pa.timestamp("us", "UTC"))
e = pa.table({"driver_id": pa.array(rng.choice(ids, n)), "event_timestamp": ts})
pq.write_table(e, f"{work}/entities.parquet")
print(f"partitions: {len(pc.unique(hours))}, entity rows: {n}")
PY
du -sh "$WORK/local/data/driver_stats.parquet" "$WORK/lake_parts"

# The three layouts: the original file, local partitions, the same partitions on S3.
layout() { # NAME PATH
  cp -r "$WORK/local" "$WORK/$1"
  rm -rf "$WORK/$1/.quiver"
  python3 - "$WORK/$1/features/drivers.yaml" "$2" <<'PY'
import sys
p, path = sys.argv[1], sys.argv[2]
s = open(p).read()
old = "    path: data/driver_stats.parquet\n"
assert old in s
s = s.replace(old, f"    path: {path}\n    partition_columns: [{{name: date, type: string}}, {{name: hour, type: int32}}]\n"
                   "    time_partition: {column: date, format: \"%Y-%m-%d\", hour_column: hour}\n")
open(p, "w").write(s)
PY
  "$QUIVER" -C "$WORK/$1" apply >/dev/null
}
layout parts "$WORK/lake_parts/"
layout s3 "s3://lake/trips/"
"$QUIVER" -C "$WORK/local" apply >/dev/null

field() { python3 -c 'import json,sys; r=[x for x in json.load(open(sys.argv[1])) if x["view"]=="driver_hourly_stats"][0]; print(r[sys.argv[2]])' "$WORK/out" "$1"; }
for r in $(seq "$RUNS"); do
  for name in local parts s3; do
    repo="$WORK/$name"
    rm -f "$repo/.quiver/online.redb"
    # A fresh registry each round: no watermark, so `full` reads the whole day.
    rm -rf "$repo/.quiver/registry"; "$QUIVER" -C "$repo" apply >/dev/null
    t=$(measure "$QUIVER" -C "$repo" --format json materialize-incremental 2026-01-01T23:00:00Z --views driver_hourly_stats)
    echo "$name full ${t%% *} $(field files_read) $(field bytes_read)" >>"$WORK/results"
    t=$(measure "$QUIVER" -C "$repo" --format json materialize-incremental 2026-01-02T00:00:00Z --views driver_hourly_stats)
    echo "$name newest ${t%% *} $(field files_read) $(field bytes_read)" >>"$WORK/results"
    t=$(measure "$QUIVER" -C "$repo" retrieve --entities "$WORK/entities.parquet" --features driver_hourly_stats \
      --output "$WORK/$name.train.parquet" --no-manifest)
    echo "$name retrieve ${t%% *} - -" >>"$WORK/results"
  done
done
cmp "$WORK/local.train.parquet" "$WORK/s3.train.parquet" && echo "retrieve outputs: local and S3 identical"
cmp "$WORK/local.train.parquet" "$WORK/parts.train.parquet" && echo "retrieve outputs: local and partitions identical"
echo
echo "| layout | run | median s | files read | bytes read |"
echo "|---|---|---|---|---|"
for name in local parts s3; do
  for run in full newest retrieve; do
    secs=$(awk -v n="$name" -v r="$run" '$1==n && $2==r {print $3}' "$WORK/results" | median)
    last=$(awk -v n="$name" -v r="$run" '$1==n && $2==r' "$WORK/results" | tail -1)
    echo "| $name | $run | $secs | $(echo "$last" | awk '{print $4}') | $(echo "$last" | awk '{print $5}') |"
  done
done
