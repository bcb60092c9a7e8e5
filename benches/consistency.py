#!/usr/bin/env python3
"""Consistency checker under load — the engine behind benches/consistency.sh (read its header).

Runs in WORK (created and removed by the shell script): a private redis-server (AOF persistence;
PERSIST=0: none, and the restart is followed by a full refill),
a Quiver project with one entity (`driver_id`) and one feature view `stats` over a directory of
Parquet files, `quiver serve` (HTTP only), CLIENTS threads sending `/get-online-features` over
keep-alive connections, and a driver loop of materialization rounds through four phases:

  steady        rounds only
  redis         redis-server stopped (SIGTERM: AOF fsynced), one round attempted during the outage
                (it must fail), restarted on the same port from its AOF, the round run again
  add_feature   f_e appended to the view (every Parquet file rewritten with it), `quiver apply`
                (a new generation), `materialize-incremental` refills it from the beginning;
                clients then ask for f_e too
  type_change   f_d int64 -> float64 (files rewritten), apply, refill

Every value encodes (driver_id, version): v = driver_id * 1_000_000 + version, and
  f_a = v (int64)   f_b = v + 0.5 (float64)   f_c = "c<v>" (string)
  f_d = 2 * v (int64, float64 after the type change)   f_e = -v (int64, after add_feature)
Each version has one event timestamp (= created timestamp), so per response row the checker
knows which source row every feature came from.

Violations (any non-zero count: exit status 1):
  torn           one row's features (or event timestamps) from different source rows, a partial
                 vector (some features PRESENT, some not), a value that no source row ever had,
                 or a JSON type that the served generation cannot have
  wrong_entity   a value encoding another driver, or the join-key column not echoing the request
  backwards      a driver's version lower than one returned by any response (any client) that
                 completed before this request was sent
  not_found_viol the driver that was never written got anything but NOT_FOUND / null
  vanished       a driver already served came back NOT_FOUND outside a generation change
  errors         any other HTTP status (e.g. a 500) or malformed answer; a 400 for the new feature f_e
                 after the registry swap window
  final_mismatch after the last round: a driver's served version != the latest written one
  round_errors   a round that failed when it should not, or read a different number of rows
                 than were pending (or a round during the redis outage that succeeded)
  verify         `quiver verify` over every driver at the end failed
Not violations (counted): 503s (expected during the outage), connection errors, NOT_FOUND during
a generation change (the new generation is empty until materialized: see README "The registry")
or, with PERSIST=0, between the restart and the refill,
400 "unknown feature" for f_e within the registry poll window after its apply.
"""

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq

MUL = 1_000_000
VIEW = "stats"


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


def env_float(name, default):
    v = os.environ.get(name, "")
    return float(v) if v.strip() else default


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def iso_us(ts_us):
    """Event timestamps as the HTTP API writes them: RFC 3339, UTC, microseconds, trailing Z."""
    secs, us = divmod(ts_us, 1_000_000)
    t = time.gmtime(secs)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + ("" if us == 0 else ".%06d" % us) + "Z"


def parse_us(text):
    """An RFC 3339 UTC timestamp (any number of fraction digits) -> µs since the epoch; None
    when it is not one."""
    import calendar
    try:
        assert text.endswith("Z")
        main, _, frac = text[:-1].partition(".")
        secs = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
        frac = (frac + "000000")[:6] if frac else "0"
        return secs * 1_000_000 + int(frac)
    except (AssertionError, ValueError, TypeError, AttributeError):
        return None


class Counters:
    FIELDS = ["requests", "ok", "rows", "s503", "conn_errors", "gen_gap_not_found", "f_e_400",
              "torn", "wrong_entity", "backwards", "not_found_viol", "vanished", "errors",
              "final_mismatch", "round_errors", "verify"]
    VIOLATIONS = ["torn", "wrong_entity", "backwards", "not_found_viol", "vanished", "errors",
                  "final_mismatch", "round_errors", "verify"]

    def __init__(self):
        self.c = {f: 0 for f in self.FIELDS}
        self.rounds = 0
        self.lat = []

    def violations(self):
        return sum(self.c[f] for f in self.VIOLATIONS)


class Checker:
    def __init__(self, args):
        self.a = args
        self.work = args.work
        self.repo = os.path.join(self.work, "repo")
        self.data = os.path.join(self.repo, "data")
        self.pids = os.path.join(self.work, "pids")
        os.makedirs(self.pids, exist_ok=True)
        self.drivers = env_int("DRIVERS", 2000)
        self.clients = env_int("CLIENTS", 4)
        self.rounds_total = env_int("ROUNDS", 240)
        self.duration = env_float("DURATION", 0.0)   # seconds; > 0: phases by time, not rounds
        self.rows_per_req = env_int("ROWS", 20)
        self.pause = env_float("ROUND_PAUSE", 0.3)    # between rounds, seconds
        self.update_frac = env_float("UPDATE_FRACTION", 0.3)
        self.outage = env_float("OUTAGE", 1.5)        # seconds redis stays down
        self.seed = env_int("SEED", 1)
        self.gen_gap = env_float("GEN_GAP", 1.0)      # apply .. materialize: serving the empty generation
        self.persist = env_int("PERSIST", 1)          # 0: redis without AOF, refilled after the restart
        self.cache_ms = env_int("CACHE_MS", 0)        # > 0: serving.cache.max_staleness_ms
        self.verbose = env_int("VERBOSE", 0)
        self.missing_id = self.drivers + 5 * MUL      # never written
        self.rng = random.Random(self.seed)
        # Written state (the driver loop owns it; clients read it under the lock).
        self.lock = threading.Lock()
        self.ts_of = {}                 # version -> event timestamp (µs)
        self.latest = {}                # driver -> latest written version
        self.written = {}               # driver -> set of versions written
        self.gmax = {}                  # driver -> highest version of a completed response
        self.gseen = set()              # drivers a completed response returned PRESENT
        self.pending_rows = 0
        self.next_version = 0
        self.has_e = False
        self.d_float = False
        self.features = ["f_a", "f_b", "f_c", "f_d"]
        self.windows = []               # [start, end] monotonic: generation changes in progress
        self.e_since = None             # when clients started asking for f_e (monotonic)
        self.d_float_since = None       # apply of the type change finished (monotonic)
        self.d_float_from = None        # apply of the type change started (monotonic)
        # Phases and counters.
        self.phase = "setup"
        self.phase_order = []
        self.counts = {}
        self.stop = threading.Event()
        self.procs = {}                 # name -> Popen
        self.child = None               # the quiver command running now
        self.redis_port = free_port()
        self.http_port = free_port()
        self.samples = []
        self.swap_lag = 0.0             # longest 400 for f_e after its apply (s)

    # ---- processes -------------------------------------------------------------------------
    def start(self, name, argv, log):
        # own session: a terminal's Ctrl-C reaches the checker, which stops these in order
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(log, "ab"),
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs[name] = p
        with open(os.path.join(self.pids, name + ".pid"), "w") as f:
            f.write(str(p.pid))
        return p

    def stop_proc(self, name, timeout=15):
        p = self.procs.pop(name, None)
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        try:
            os.unlink(os.path.join(self.pids, name + ".pid"))
        except FileNotFoundError:
            pass

    def start_redis(self):
        rdir = os.path.join(self.work, "redis")
        os.makedirs(rdir, exist_ok=True)
        self.start("redis", ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "yes" if self.persist else "no",
                             "--appendfsync", "everysec",
                             "--dir", rdir], os.path.join(self.work, "redis.log"))
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.redis_port), 0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.procs["redis"].poll() is not None:
                raise RuntimeError("redis-server exited; see redis.log")
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING")

    def quiver(self, *args, check=True, timeout=300):
        argv = [self.a.quiver, "-C", self.repo, "--format", "json", *args]
        self.child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            out, err = self.child.communicate(timeout=timeout)
        finally:
            rc = self.child.wait()
            self.child = None
        if check and rc != 0:
            raise RuntimeError("quiver %s failed (exit %d): %s" % (" ".join(args), rc,
                                                                     err.decode()[-2000:]))
        return rc, out.decode(), err.decode()

    def http_get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=5)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.http_get("/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("quiver serve not ready after %ss; see serve.log" % timeout)

    # ---- data --------------------------------------------------------------------------------
    def columns(self, ids, vs, ts):
        cols = {
            "driver_id": pa.array(ids, pa.int64()),
            "event_timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "created": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "f_a": pa.array(vs, pa.int64()),
            "f_b": pa.array([v + 0.5 for v in vs], pa.float64()),
            "f_c": pa.array(["c%d" % v for v in vs], pa.string()),
            "f_d": (pa.array([2.0 * v for v in vs], pa.float64()) if self.d_float
                    else pa.array([2 * v for v in vs], pa.int64())),
        }
        if self.has_e:
            cols["f_e"] = pa.array([-v for v in vs], pa.int64())
        return pa.table(cols)

    def write_atomic(self, name, table):
        tmp = os.path.join(self.work, "tmp.parquet")   # outside data/: never half-read
        pq.write_table(table, tmp)
        os.replace(tmp, os.path.join(self.data, name))

    def write_round(self, r, full=False):
        """A new Parquet file: every driver (full) or a random subset, 1-3 rows each with
        increasing versions; returns the number of rows."""
        chosen = (range(1, self.drivers + 1) if full else
                  sorted(self.rng.sample(range(1, self.drivers + 1),
                                         max(1, int(self.drivers * self.update_frac)))))
        k = self.rng.randint(1, 3)
        t0 = int(time.time() * 1_000_000)
        vers = []
        for j in range(k):
            ver = self.next_version
            self.next_version += 1
            vers.append(ver)
            with self.lock:
                self.ts_of[ver] = t0 + j
        ids, vs, ts = [], [], []
        # rows in a shuffled order: the materializer must pick the latest, not the last
        rows = [(d, ver, j) for d in chosen for j, ver in enumerate(vers[: self.rng.randint(1, k)])]
        self.rng.shuffle(rows)
        for d, ver, j in rows:
            ids.append(d)
            vs.append(d * MUL + ver)
            ts.append(t0 + j)
        self.write_atomic("r%06d.parquet" % r, self.columns(ids, vs, ts))
        with self.lock:
            for d, ver, _ in rows:
                self.written.setdefault(d, set()).add(ver)
                if ver > self.latest.get(d, -1):
                    self.latest[d] = ver
        self.pending_rows += len(rows)
        return len(rows)

    def rewrite_all(self):
        """Every file again with the current schema (f_e added / f_d as float64)."""
        for name in sorted(os.listdir(self.data)):
            t = pq.read_table(os.path.join(self.data, name))
            vs = t.column("f_a").to_pylist()
            ids = t.column("driver_id").to_pylist()
            ts = t.column("event_timestamp").cast(pa.int64()).to_pylist()   # µs
            self.write_atomic(name, self.columns(ids, vs, ts))

    def write_definitions(self):
        feats = [("f_a", "int64"), ("f_b", "float64"), ("f_c", "string"),
                 ("f_d", "float64" if self.d_float else "int64")]
        if self.has_e:
            feats.append(("f_e", "int64"))
        lines = "\n".join("      - {name: %s, type: %s}" % f for f in feats)
        with open(os.path.join(self.repo, "features", "drivers.yaml"), "w") as f:
            f.write("""entities:
  - name: driver
    join_keys:
      - name: driver_id
        type: int64
sources:
  - name: driver_rounds
    path: data
    timestamp_field: event_timestamp
    created_timestamp_field: created
feature_views:
  - name: %s
    entities: [driver]
    source: driver_rounds
    ttl: 0
    online: true
    features:
%s
""" % (VIEW, lines))

    def write_project(self):
        os.makedirs(os.path.join(self.repo, "features"), exist_ok=True)
        os.makedirs(self.data, exist_ok=True)
        with open(os.path.join(self.repo, "quiver.yaml"), "w") as f:
            f.write("""project: consistency
definitions: [features/*.yaml]
registry:
  type: local
  path: .quiver/registry
online_store:
  type: redis
  url: redis://127.0.0.1:%d
  key_ttl: false
""" % self.redis_port)
            if self.cache_ms > 0:
                f.write("serving:\n  cache:\n    max_staleness_ms: %d\n" % self.cache_ms)
        self.write_definitions()

    # ---- counting ----------------------------------------------------------------------------
    def cnt(self):
        return self.counts[self.phase]

    def bump(self, field, n=1, detail=None):
        with self.lock:
            self.counts[self.phase].c[field] += n
        if detail and (self.verbose or field in Counters.VIOLATIONS):
            self.log_violation(field, detail)

    def log_violation(self, field, detail):
        with self.lock:
            self.samples.append((self.phase, field, detail))
            shown = sum(1 for s in self.samples if s[1] == field)
        if shown <= 5:
            print("  ! [%s] %s: %s" % (self.phase, field, detail), flush=True)

    def in_window(self, t0, t1, grace=1.0):
        with self.lock:
            return any(s <= t1 and (e is None or t0 <= e + grace) for s, e in self.windows)

    # ---- clients -----------------------------------------------------------------------------
    def client(self, idx):
        rng = random.Random(self.seed * 1000 + idx)
        conn = None
        while not self.stop.is_set():
            with self.lock:
                feats = list(self.features)
            ids = rng.sample(range(1, self.drivers + 1), min(self.rows_per_req - 1, self.drivers))
            pos = rng.randrange(len(ids) + 1)
            ids.insert(pos, self.missing_id)
            body = json.dumps({"features": ["%s:%s" % (VIEW, f) for f in feats],
                               "entities": {"driver_id": ids}})
            with self.lock:
                snap = {d: self.gmax.get(d, -1) for d in ids}
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
                conn.request("POST", "/get-online-features", body,
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                raw = resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
                self.bump("requests")
                self.bump("conn_errors")
                time.sleep(0.05)
                continue
            t1 = time.monotonic()
            self.bump("requests")
            if status == 503:
                self.bump("s503")
                time.sleep(0.02)
                continue
            if status == 400 and "f_e" in feats and b"f_e" in raw and self.e_since is not None \
                    and t0 < self.e_since + 3.0:
                self.bump("f_e_400")     # the server has not swapped to the new version yet
                with self.lock:
                    self.swap_lag = max(self.swap_lag, t1 - self.e_since)
                time.sleep(0.01)
                continue
            if status != 200:
                self.bump("errors", detail="HTTP %d: %s" % (status, raw[:300]))
                continue
            try:
                doc = json.loads(raw)
                self.check(doc, ids, feats, snap, t0, t1)
            except Exception as e:   # a malformed answer
                self.bump("errors", detail="unreadable answer (%r): %s" % (e, raw[:300]))
            with self.lock:
                self.cnt().lat.append(t1 - t0)
        if conn is not None:
            conn.close()

    def decode(self, f, value):
        """(driver, version) encoded by one feature value, or None when it cannot be one."""
        if f == "f_a":
            if type(value) is not int:
                return None
            v = value
        elif f == "f_b":
            if type(value) is not float or value - 0.5 != int(value - 0.5):
                return None
            v = int(value - 0.5)
        elif f == "f_c":
            if type(value) is not str or not value.startswith("c"):
                return None
            v = int(value[1:])
        elif f == "f_d":
            if type(value) not in (int, float) or value % 2:
                return None
            v = int(value) // 2
        elif f == "f_e":
            if type(value) is not int:
                return None
            v = -value
        else:
            return None
        return divmod(v, MUL)

    def check(self, doc, ids, feats, snap, t0, t1):
        names = doc["metadata"]["feature_names"]
        res = doc["results"]
        if names != ["driver_id"] + feats or len(res) != len(feats) + 1:
            self.bump("errors", detail="columns %s for %s" % (names, feats))
            return
        if res[0]["values"] != ids:
            self.bump("wrong_entity", detail="join keys %s for %s" % (res[0]["values"][:5], ids[:5]))
            return
        ok_vers = {}
        for i, d in enumerate(ids):
            vals = [res[k + 1]["values"][i] for k in range(len(feats))]
            sts = [res[k + 1]["statuses"][i] for k in range(len(feats))]
            tss = [res[k + 1]["event_timestamps"][i] for k in range(len(feats))]
            if d == self.missing_id:
                if any(s != "NOT_FOUND" for s in sts) or any(v is not None for v in vals):
                    self.bump("not_found_viol", detail="driver %d: %s %s" % (d, sts, vals))
                continue
            if all(s == "NOT_FOUND" for s in sts):
                # every driver was written and materialized before `serve` started
                if self.in_window(t0, t1):
                    self.bump("gen_gap_not_found")
                else:
                    with self.lock:
                        seen = "served before" if d in self.gseen else "never served"
                    self.bump("vanished", detail="driver %d NOT_FOUND (%s)" % (d, seen))
                continue
            if any(s != "PRESENT" for s in sts):
                self.bump("torn", detail="driver %d partial vector: %s" % (d, dict(zip(feats, sts))))
                continue
            dec = [self.decode(f, v) for f, v in zip(feats, vals)]
            if any(x is None for x in dec):
                self.bump("torn", detail="driver %d undecodable %s" % (d, dict(zip(feats, vals))))
                continue
            if any(x[0] != d for x in dec):
                self.bump("wrong_entity", detail="driver %d got %s" % (d, dict(zip(feats, vals))))
                continue
            vers = {x[1] for x in dec}
            if len(vers) != 1:
                self.bump("torn", detail="driver %d versions %s" % (d, dict(zip(feats, vals))))
                continue
            ver = vers.pop()
            with self.lock:
                known = ver in self.written.get(d, ())
                want_ts = self.ts_of.get(ver)
            if not known:
                self.bump("torn", detail="driver %d: version %d never written" % (d, ver))
                continue
            if any(parse_us(t) != want_ts for t in tss):
                self.bump("torn", detail="driver %d v%d timestamps %s, want %s"
                          % (d, ver, set(tss), iso_us(want_ts)))
                continue
            if "f_d" in feats:
                fd = vals[feats.index("f_d")]
                if type(fd) is float and self.d_float_from is None:
                    self.bump("torn", detail="driver %d: f_d %r float before the type change" % (d, fd))
                    continue
                if type(fd) is int and self.d_float_since is not None and t0 > self.d_float_since + 2.0:
                    self.bump("torn", detail="driver %d: f_d %r int after the type change" % (d, fd))
                    continue
            if ver < snap[d]:
                self.bump("backwards", detail="driver %d v%d after v%d was served" % (d, ver, snap[d]))
            ok_vers[d] = ver
        with self.lock:
            self.cnt().c["ok"] += 1
            self.cnt().c["rows"] += len(ids)
            for d, ver in ok_vers.items():
                self.gseen.add(d)
                if ver > self.gmax.get(d, -1):
                    self.gmax[d] = ver

    # ---- rounds and phases -------------------------------------------------------------------
    def materialize(self, expect_fail=False):
        rc, out, err = self.quiver("materialize-incremental", check=False)
        if expect_fail:
            if rc == 0:
                self.bump("round_errors", detail="materialize succeeded while redis was down")
            return rc
        if rc != 0:
            self.bump("round_errors", detail="materialize failed (exit %d): %s" % (rc, err[-500:]))
            return rc
        runs = json.loads(out)
        read = sum(r["rows_read"] for r in runs if r["view"] == VIEW)
        if read != self.pending_rows:
            self.bump("round_errors", detail="materialize read %d rows, %d were pending"
                      % (read, self.pending_rows))
        self.pending_rows = 0
        return rc

    def round(self, full=False):
        r = self.next_round
        self.next_round += 1
        self.write_round(r, full=full)
        # the rows are dated now; materialize-incremental covers [watermark, now]
        self.materialize()
        with self.lock:
            self.cnt().rounds += 1
        if self.pause:
            time.sleep(self.pause)

    def set_phase(self, name):
        with self.lock:
            self.phase = name
            self.phase_order.append(name)
            self.counts[name] = Counters()
        self.phase_started = time.monotonic()

    def run_rounds(self, n):
        """n rounds, or (DURATION) half of a phase's share of the time (each phase runs rounds
        twice: before and after its event)."""
        if self.duration > 0:
            end = time.monotonic() + self.duration / 8
            while time.monotonic() < end:
                self.round()
        else:
            for _ in range(n):
                self.round()

    def generation_change(self, what):
        """Rewrite data and definitions (what() flips the schema), apply, refill."""
        with self.lock:
            self.windows.append([time.monotonic(), None])
        what()
        self.rewrite_all()
        self.write_definitions()
        self.quiver("apply")
        applied = time.monotonic()
        time.sleep(self.gen_gap)   # the server swaps within registry_poll_ms: the new generation is empty
        # a new generation has no watermark: everything is pending again
        self.pending_rows = self.all_rows()
        self.materialize()
        with self.lock:
            self.windows[-1][1] = time.monotonic()
        return applied

    def all_rows(self):
        return sum(pq.ParquetFile(os.path.join(self.data, n)).metadata.num_rows
                   for n in os.listdir(self.data))

    def summary_line(self, name):
        c = self.counts[name]
        lat = sorted(c.lat)
        p50 = lat[len(lat) // 2] * 1000 if lat else 0.0
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0
        x = c.c
        print("phase %-12s %5.1fs  requests %6d  rounds %3d  503s %4d  torn %d  wrong_entity %d  "
              "backwards %d  not_found_viol %d  vanished %d  errors %d  gen_gap_nf %d  "
              "p50 %.1fms p99 %.1fms" % (name, getattr(c, "secs", 0.0), x["requests"], c.rounds,
                                          x["s503"], x["torn"], x["wrong_entity"], x["backwards"],
                                          x["not_found_viol"], x["vanished"], x["errors"],
                                          x["gen_gap_not_found"], p50, p99), flush=True)

    def end_phase(self):
        with self.lock:
            self.counts[self.phase].secs = time.monotonic() - self.phase_started
        self.summary_line(self.phase)

    def final_check(self):
        """Every driver once: the latest written version, nothing older, nothing missing."""
        time.sleep(0.6)  # a registry poll
        ids = list(range(1, self.drivers + 1))
        feats = list(self.features)
        for i in range(0, len(ids), 500):
            chunk = ids[i: i + 500]
            c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
            c.request("POST", "/get-online-features",
                      json.dumps({"features": ["%s:%s" % (VIEW, f) for f in feats],
                                  "entities": {"driver_id": chunk}}),
                      {"Content-Type": "application/json"})
            r = c.getresponse()
            raw = r.read()
            c.close()
            if r.status != 200:
                self.bump("final_mismatch", len(chunk), "HTTP %d: %s" % (r.status, raw[:200]))
                continue
            res = json.loads(raw)["results"]
            for j, d in enumerate(chunk):
                got = [self.decode(f, res[k + 1]["values"][j]) for k, f in enumerate(feats)]
                want = (d, self.latest[d])
                if any(g != want for g in got):
                    self.bump("final_mismatch", detail="driver %d: %s, want v%d"
                              % (d, [res[k + 1]["values"][j] for k in range(len(feats))], want[1]))
        rc, out, err = self.quiver("verify", "--sample", str(self.drivers), check=False)
        if rc != 0:
            self.bump("verify", detail="quiver verify exit %d: %s %s" % (rc, out[-600:], err[-300:]))

    def run(self):
        t_start = time.monotonic()
        self.set_phase("setup")
        self.start_redis()
        self.write_project()
        self.next_round = 0
        self.write_round(self.next_round, full=True)
        self.next_round += 1
        self.quiver("apply")
        self.materialize()
        self.start("serve", [self.a.quiver, "-C", self.repo, "serve", "--http",
                             "127.0.0.1:%d" % self.http_port, "--grpc", ""],
                   os.path.join(self.work, "serve.log"))
        self.wait_ready()
        n = max(1, self.rounds_total // 4)
        print("quiver %s; %d drivers, %d clients x %d rows/request, %s; redis :%d (%s), http :%d%s"
              % (self.a.quiver, self.drivers, self.clients, self.rows_per_req,
                 ("%.0fs" % self.duration) if self.duration > 0 else "%d rounds" % (4 * n),
                 self.redis_port, "AOF" if self.persist else "no persistence", self.http_port,
                 ", cache %d ms" % self.cache_ms if self.cache_ms else ""), flush=True)
        threads = [threading.Thread(target=self.client, args=(i,), daemon=True)
                   for i in range(self.clients)]
        self.set_phase("steady")
        for t in threads:
            t.start()
        self.run_rounds(n // 2)
        self.run_rounds(n - n // 2)
        self.end_phase()

        self.set_phase("redis")
        self.run_rounds(max(1, n // 2))
        if not self.persist:
            with self.lock:
                self.windows.append([time.monotonic(), None])
        self.stop_proc("redis")              # SIGTERM: AOF written and fsynced at shutdown
        self.write_round(self.next_round)    # a round during the outage: must fail
        self.next_round += 1
        self.materialize(expect_fail=True)
        time.sleep(self.outage)
        self.start_redis()
        if not self.persist:
            # an empty Redis: materialize-incremental must notice (run records) and refill all
            self.pending_rows = self.all_rows()
        self.materialize()                   # the failed round's rows: still pending
        if not self.persist:
            with self.lock:
                self.windows[-1][1] = time.monotonic()
        with self.lock:
            self.cnt().rounds += 1
        self.run_rounds(max(1, n - n // 2))
        self.end_phase()

        self.set_phase("add_feature")
        self.run_rounds(max(1, n // 2))

        def add_e():
            self.has_e = True
        applied = self.generation_change(add_e)
        with self.lock:
            self.features = ["f_a", "f_b", "f_c", "f_d", "f_e"]
            self.e_since = applied
        self.run_rounds(max(1, n - n // 2))
        self.end_phase()

        self.set_phase("type_change")
        self.run_rounds(max(1, n // 2))

        def d_float():
            self.d_float = True
            self.d_float_from = time.monotonic()
        self.d_float_since = self.generation_change(d_float)
        self.run_rounds(max(1, n - n // 2))
        self.stop.set()
        for t in threads:
            t.join(30)
        self.end_phase()

        self.set_phase("final")
        self.final_check()
        x = self.counts["final"].c
        print("final        every driver read once: final_mismatch %d; quiver verify %s"
              % (x["final_mismatch"], "failed" if x["verify"] else "ok"), flush=True)
        return time.monotonic() - t_start

    def report(self, secs):
        tot = Counters()
        lat = []
        for c in self.counts.values():
            for f in Counters.FIELDS:
                tot.c[f] += c.c[f]
            tot.rounds += c.rounds
            lat += c.lat
        lat.sort()
        p50 = lat[len(lat) // 2] * 1000 if lat else 0.0
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0
        x = tot.c
        rows = [("requests", x["requests"]), ("rounds", tot.rounds), ("503s", x["s503"]),
                ("torn", x["torn"]), ("wrong_entity", x["wrong_entity"]),
                ("backwards", x["backwards"]), ("not_found_violations", x["not_found_viol"]),
                ("vanished", x["vanished"]), ("errors", x["errors"]),
                ("final_mismatch", x["final_mismatch"]), ("round_errors", x["round_errors"]),
                ("verify_failed", x["verify"]),
                ("p50_ms", "%.2f" % p50), ("p99_ms", "%.2f" % p99),
                ("(rows checked)", x["rows"]), ("(conn_errors)", x["conn_errors"]),
                ("(gen_gap_not_found)", x["gen_gap_not_found"]), ("(f_e_400 before swap)", x["f_e_400"]),
                ("(f_e 400 up to, s)", "%.2f" % self.swap_lag),
                ("(seconds)", "%.1f" % secs)]
        print()
        print("| %-24s | %12s |" % ("metric", "value"))
        print("|%s|%s|" % ("-" * 26, "-" * 14))
        for k, v in rows:
            print("| %-24s | %12s |" % (k, v))
        bad = tot.violations()
        log = os.path.join(self.work, "serve.log")
        if bad and os.path.exists(log):
            lines = [l for l in open(log, errors="replace") if "ERROR" in l or "WARN" in l or "panic" in l]
            if lines:
                print("\nquiver serve's log, errors and warnings (last %d of %d):" % (min(15, len(lines)), len(lines)))
                print("".join(lines[-15:]).rstrip())
        print("\n%s: %d violation(s)" % ("FAIL" if bad else "OK", bad), flush=True)
        return 1 if bad else 0

    def cleanup(self):
        self.stop.set()
        if self.child is not None and self.child.poll() is None:
            self.child.kill()
        for name in list(self.procs):
            self.stop_proc(name)


def selftest():
    """The checks themselves, on crafted answers (no Quiver needed): each must be caught."""
    import tempfile
    with tempfile.TemporaryDirectory() as work:
        ck = Checker(argparse.Namespace(quiver="quiver", work=work))
        ck.set_phase("selftest")
        feats = ["f_a", "f_b", "f_c", "f_d"]
        ck.ts_of = {0: 1_700_000_000_000_000, 1: 1_700_000_001_000_000}
        for d in (1, 2, 3):
            ck.written[d] = {0, 1}
        ck.gseen.add(3)

        def answer(rows):   # rows: (driver, [(value, status, ts_us)] per feature)
            res = [{"values": [d for d, _ in rows], "statuses": ["PRESENT"] * len(rows),
                    "event_timestamps": ["1970-01-01T00:00:00Z"] * len(rows)}]
            for k in range(len(feats)):
                res.append({"values": [r[k][0] for _, r in rows],
                            "statuses": [r[k][1] for _, r in rows],
                            "event_timestamps": [iso_us(r[k][2]) for _, r in rows]})
            return {"metadata": {"feature_names": ["driver_id"] + feats}, "results": res}

        def good(d, ver, drv=None):
            v = (drv or d) * MUL + ver
            t = ck.ts_of[ver]
            return [(v, "PRESENT", t), (v + 0.5, "PRESENT", t), ("c%d" % v, "PRESENT", t),
                    (2 * v, "PRESENT", t)]
        nf = [(None, "NOT_FOUND", 0)] * 4
        miss = ck.missing_id
        cases = [
            ("ok", [(1, good(1, 1)), (miss, nf)], {}),
            ("torn", [(1, good(1, 1)[:2] + good(1, 0)[2:])], {"torn": 1}),
            ("torn", [(1, good(1, 1)[:3] + [(None, "NOT_FOUND", 0)])], {"torn": 1}),
            ("torn", [(1, good(1, 1)[:3] + [(2.0 * (MUL + 1), "PRESENT", ck.ts_of[1])])], {"torn": 1}),
            ("torn", [(1, [(x[0], x[1], x[2] + (k == 1)) for k, x in enumerate(good(1, 1))])], {"torn": 1}),
            ("torn", [(1, [(MUL + 7, "PRESENT", ck.ts_of[1])] + good(1, 1)[1:])], {"torn": 1}),
            ("wrong_entity", [(2, good(2, 1, drv=3))], {"wrong_entity": 1}),
            ("not_found_viol", [(miss, good(miss, 1, drv=1))], {"not_found_viol": 1}),
            ("vanished", [(3, nf)], {"vanished": 1}),
            ("backwards", [(2, good(2, 0))], {"backwards": 1}),
        ]
        failed = 0
        for name, rows, want in cases:
            before = dict(ck.cnt().c)
            ids = [d for d, _ in rows]
            snap = {d: (1 if name == "backwards" else -1) for d in ids}
            ck.check(answer(rows), ids, feats, snap, 0.0, 0.0)
            got = {k: ck.cnt().c[k] - before[k] for k in Counters.VIOLATIONS
                   if ck.cnt().c[k] != before[k]}
            ok = got == want
            failed += not ok
            print("selftest %-15s %s (caught %s)" % (name, "ok" if ok else "FAILED", got))
        return 1 if failed else 0


def main():
    if sys.argv[1:] == ["--selftest"]:
        sys.exit(selftest())
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quiver", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()

    def on_signal(signum, frame):
        # once: the cleanup that follows must not be interrupted by the next signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("interrupted (signal %d): stopping" % signum, file=sys.stderr, flush=True)
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ck = Checker(args)
    rc = 2
    try:
        secs = ck.run()
        rc = ck.report(secs)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except Exception as e:
        print("error: %s" % e, file=sys.stderr)
        for name in ("serve", "redis"):
            log = os.path.join(args.work, name + ".log")
            if os.path.exists(log):
                print("--- %s (tail) ---" % log, file=sys.stderr)
                print(open(log, errors="replace").read()[-1500:], file=sys.stderr)
        rc = 2
    finally:
        ck.cleanup()
    sys.exit(rc)


if __name__ == "__main__":
    main()
