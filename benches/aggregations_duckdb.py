"""DuckDB's answer to the windowed aggregates `quiver retrieve` computes, and a comparison.

    python3 benches/aggregations_duckdb.py run REPO LABELS OUT   # DuckDB's table (timed by the caller)
    python3 benches/aggregations_duckdb.py compare QUIVER DUCKDB # exit 1 unless the aggregates agree
    python3 benches/aggregations_duckdb.py selftest              # the SQL against a brute-force oracle

The aggregates are benches/aggregations.sh's view `driver_agg` (hop 5m) over REPO's
data/driver_stats.parquet treated as events (every row counts, corrections included):

    rows_1h          count                    1h  (12 tiles)
    earnings_sum_1d  sum(earnings)            1d  (288 tiles)
    conv_mean_7d     mean(conv_rate)          7d  (2016 tiles)
    rating_max_10m   max(rating)              10m (2 tiles)
    earnings_std_1d  stddev(earnings)         1d  (sample standard deviation)
    trips_last_1d    last(avg_daily_trips)    1d

The window rule (README, "Time-window aggregations"): at an entity row's time t, with tile
k = floor(event_ts / hop) and K = floor(t / hop), an aggregate of window w holds the events of
tiles K - w/hop + 1 ..= K with event_ts <= t. DuckDB computes it as one range join (per label
row, its driver's events up to t within the longest window) grouped by label row, each aggregate
FILTERed to its own window. Tiles are exact integer floor divisions of epoch microseconds (the
remainder is made non-negative first, so times before 1970 floor too). `last` is the value of
the event with the greatest (event_ts, created_ts) — no created time first, on a full tie the
greater value, a null value below any other — kept even when that value is null: arg_max_null
over a key struct whose fields are never null (DuckDB's arg_max would skip a null value, and
NULL struct fields would compare as greatest). Count of no events is 0, the others null;
stddev_samp is null below two values. Rows come back in the entity table's order
(file_row_number), the entity table's columns first.

`compare` matches Quiver's output to DuckDB's row by row: driver_id and event_timestamp must be
equal (the same row order); count, max, last exactly; float sums, means and standard deviations
within 1e-9 relative + 1e-12 absolute (both add in f64, in different orders); nulls must match.
"""
import sys

HOP_US = 300_000_000  # 5 minutes
TILES = {"10m": 2, "1h": 12, "1d": 288, "7d": 2016}
# name, function, column, window
AGGREGATES = [
    ("rows_1h", "count", None, "1h"),
    ("earnings_sum_1d", "sum", "earnings", "1d"),
    ("conv_mean_7d", "mean", "conv_rate", "7d"),
    ("rating_max_10m", "max", "rating", "10m"),
    ("earnings_std_1d", "stddev", "earnings", "1d"),
    ("trips_last_1d", "last", "avg_daily_trips", "1d"),
]
EXACT = {"count", "max", "min", "last"}
KEYS = ["driver_id", "event_timestamp"]


def query(events, labels, timestamp="event_timestamp"):
    """The SQL (after `tile` is defined): LABELS' columns, then one column per aggregate."""
    longest = max(TILES[w] for _, _, _, w in AGGREGATES)
    columns = sorted({c for _, _, c, _ in AGGREGATES if c})

    def agg(name, function, column, window):
        within = f"FILTER (WHERE e.__k >= l.__k - {TILES[window] - 1})"
        c = f"e.{column}" if column else None
        if function == "count":
            # Every event (a count with a column would count its non-null values).
            expr = f"count({c or 'e.driver_id'})"
        elif function == "sum":
            expr = f"sum({c})"
        elif function == "mean":
            expr = f"avg({c})"
        elif function in ("max", "min"):
            expr = f"{function}({c})"
        elif function == "stddev":
            expr = f"stddev_samp({c})"
        elif function == "last":
            # Nothing in the key is null: (event, has created, created, has value, value).
            key = (f"{{'e': epoch_us(e.event_timestamp), 'cp': e.created IS NOT NULL, "
                   f"'c': coalesce(epoch_us(e.created), 0), 'vp': {c} IS NOT NULL, "
                   f"'v': coalesce({c}, 0)}}")
            expr = f"arg_max_null({c}, {key})"
        else:
            raise ValueError(function)
        return f"{expr} {within} AS {name}"

    aggs = ",\n               ".join(agg(*a) for a in AGGREGATES)
    return f"""
        WITH l AS (
          SELECT *, tile({timestamp}) AS __k
          FROM read_parquet('{labels}', file_row_number = true)
        ),
        e AS (
          SELECT driver_id, event_timestamp, created, {", ".join(columns)}, tile(event_timestamp) AS __k
          FROM read_parquet('{events}')
        ),
        a AS (
          SELECT l.file_row_number AS __rn,
               {aggs}
          FROM l LEFT JOIN e
            ON e.driver_id = l.driver_id
           AND e.event_timestamp <= l.{timestamp}
           AND e.__k >= l.__k - {longest - 1}
          GROUP BY l.file_row_number
        )
        SELECT l.* EXCLUDE (file_row_number, __k), a.* EXCLUDE (__rn)
        FROM l JOIN a ON a.__rn = l.file_row_number
        ORDER BY l.file_row_number
    """


def connect():
    import duckdb
    con = duckdb.connect()
    # Exact floor division of epoch microseconds: subtract the non-negative remainder first.
    con.execute(f"CREATE MACRO tile(ts) AS "
                f"(epoch_us(ts) - ((epoch_us(ts) % {HOP_US}) + {HOP_US}) % {HOP_US}) // {HOP_US}")
    return con


def run(repo, labels, out):
    con = connect()
    q = query(f"{repo}/data/driver_stats.parquet", labels)
    con.execute(f"COPY ({q}) TO '{out}' (FORMAT parquet)")


def differences(a, b, examples=5):
    """(problems, mismatching values) between tables a (Quiver) and b (DuckDB)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    problems, mismatches = [], 0
    if a.num_rows != b.num_rows:
        return [f"rows: {a.num_rows} vs {b.num_rows}"], a.num_rows + b.num_rows
    names = [n for n in KEYS] + [n for n, _, _, _ in AGGREGATES]
    for name in names:
        if name not in a.column_names or name not in b.column_names:
            problems.append(f"{name}: missing ({'quiver' if name not in a.column_names else 'duckdb'})")
            mismatches += a.num_rows
    if problems:
        return problems, mismatches
    functions = {n: f for n, f, _, _ in AGGREGATES}
    for name in names:
        x, y = a.column(name).combine_chunks(), b.column(name).combine_chunks()
        if pa.types.is_timestamp(x.type):
            x = x.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        if pa.types.is_timestamp(y.type):
            y = y.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        floats = pa.types.is_floating(x.type) or pa.types.is_floating(y.type)
        if floats:
            x, y = x.cast(pa.float64()), y.cast(pa.float64())
        xn, yn = x.is_null(), y.is_null()
        nulls = pc.xor(xn, yn)
        both = pc.and_(pc.invert(xn), pc.invert(yn))
        if functions.get(name) in EXACT or not floats:
            same = pc.equal(x, y)
        else:
            diff = pc.abs(pc.subtract(x, y))
            bound = pc.add(pc.multiply(pc.max_element_wise(pc.abs(x), pc.abs(y)), 1e-9), 1e-12)
            same = pc.less_equal(diff, bound)
        # A value differs where exactly one is null, or both are present and unequal.
        bad = pc.or_(nulls, pc.and_(both, pc.invert(pc.fill_null(same, False))))
        n = pc.sum(bad.cast(pa.int64())).as_py() or 0
        if n:
            mismatches += n
            rows = pc.indices_nonzero(bad).to_pylist()[:examples]
            shown = "".join(
                f"\n      row {r} (driver {a.column('driver_id')[r].as_py()} at {a.column('event_timestamp')[r].as_py()}): "
                f"quiver {x[r].as_py()!r} duckdb {y[r].as_py()!r}" for r in rows)
            problems.append(f"{name} [{a.column(name).type} vs {b.column(name).type}]: {n} differ, e.g.{shown}")
    return problems, mismatches


def compare(a_path, b_path):
    import pyarrow.parquet as pq
    a, b = pq.read_table(a_path), pq.read_table(b_path)
    problems, mismatches = differences(a, b)
    if problems:
        print(f"DIFFERENT: {mismatches} mismatching values")
        print("  " + "\n  ".join(problems))
        sys.exit(1)
    print(f"agree: {a.num_rows} rows x {len(AGGREGATES)} aggregates, 0 mismatches")


def oracle(events, labels):
    """The window rule, literally: per label row, every event of its driver, one at a time
    (times as integer microseconds; Python's // floors)."""
    import statistics
    import pyarrow as pa
    micros = lambda t, c: t.set_column(t.column_names.index(c), c, t.column(c).cast(pa.int64()))
    events = micros(micros(events, "event_timestamp"), "created")
    labels = micros(labels, "event_timestamp")
    by_driver = {}
    for ev in events.to_pylist():
        by_driver.setdefault(ev["driver_id"], []).append(ev)

    out = {n: [] for n, _, _, _ in AGGREGATES}
    for row in labels.to_pylist():
        t = row["event_timestamp"]
        K = t // HOP_US
        for name, function, column, window in AGGREGATES:
            first = K - TILES[window] + 1
            evs = [e for e in by_driver.get(row["driver_id"], [])
                   if e["event_timestamp"] <= t and e["event_timestamp"] // HOP_US >= first]
            vals = [e[column] for e in evs if e[column] is not None] if column else None
            if function == "count":
                v = len(evs)
            elif function == "sum":
                v = sum(vals) if vals else None
            elif function == "mean":
                v = sum(vals) / len(vals) if vals else None
            elif function == "max":
                v = max(vals) if vals else None
            elif function == "stddev":
                v = statistics.stdev(vals) if len(vals) >= 2 else None
            elif function == "last":
                def key(e):
                    c = e["created"]
                    return (e["event_timestamp"], c is not None, c or 0,
                            e[column] is not None, e[column] or 0)
                v = max(evs, key=key)[column] if evs else None
            out[name].append(v)
    cols = {"driver_id": labels.column("driver_id"),
            "event_timestamp": labels.column("event_timestamp").cast(pa.timestamp("us", tz="UTC"))}
    for name, function, _, _ in AGGREGATES:
        t = pa.int64() if function in ("count", "last") else pa.float64()
        cols[name] = pa.array(out[name], t)
    return pa.table(cols)


def selftest():
    """A hand-made event table (ties, corrections, null values, a null created time, tile
    edges, times before 1970) and label rows at tile edges and in between; DuckDB's SQL must
    equal the brute-force oracle."""
    import os
    import tempfile
    import pyarrow as pa
    import pyarrow.parquet as pq
    M = 60_000_000  # a minute in microseconds
    base = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z, a tile edge
    #        driver, event,            created,      conv,  rating, earnings, trips
    rows = [
        (1, base - 2 * M,              base - 2 * M,  0.5,   4.0,   10.0,     3),
        (1, base,                      base,          0.25,  3.5,   20.0,     5),      # on a tile edge
        (1, base,                      base + M,      None,  None,  None,     None),   # correction: null values win
        (1, base + 4 * M,              base + 4 * M,  0.75,  4.5,   30.0,     7),
        (1, base + 5 * M,              base + 5 * M,  0.125, 2.0,   40.0,     9),      # next tile's edge
        (1, base + 5 * M,              base + 5 * M,  0.5,   2.5,   50.0,     8),      # full tie: 9 > 8
        (1, base + 61 * M,             base + 61 * M, 0.1,   1.0,   5.0,      1),
        (1, base + 25 * 60 * M,        base + 25 * 60 * M, 0.2, 1.5, 6.0,     2),      # a day later
        (2, base + 1 * M,              None,          0.3,   3.0,   7.0,      4),      # no created time
        (2, base + 1 * M,              base,          0.4,   3.1,   8.0,      6),      # created beats none
        (2, base + 2 * M,              base + 2 * M,  0.6,   None,  9.0,      None),   # last value null
        (2, base + 3 * M,              base + 3 * M,  None,  3.3,   None,     11),
        (2, base + 3 * M,              base + 3 * M,  None,  3.3,   None,     None),   # full tie: value > null
        (3, -7 * M,                    -7 * M,        0.9,   4.9,   1.0,      1),      # before 1970
        (3, -3 * M,                    -3 * M,        0.8,   4.8,   2.0,      2),
        (3, 1 * M,                     1 * M,         0.7,   4.7,   3.0,      3),
        (4, base + 8 * 24 * 60 * M,    base,          0.1,   1.0,   1.0,      1),      # 8 days on
        (4, base,                      base,          0.2,   2.0,   2.0,      2),      # out of 7d at the end
        (4, base + 7 * 24 * 60 * M - M, base,         0.3,   3.0,   3.0,      3),
        (5, base,                      base,          0.5,   5.0,   5.0,      5),      # no label rows
    ]
    ts = pa.timestamp("us", tz="UTC")
    events = pa.table({
        "driver_id": pa.array([r[0] for r in rows], pa.int64()),
        "event_timestamp": pa.array([r[1] for r in rows], pa.int64()).cast(ts),
        "created": pa.array([r[2] for r in rows], pa.int64()).cast(ts),
        "conv_rate": pa.array([r[3] for r in rows], pa.float32()),
        "rating": pa.array([r[4] for r in rows], pa.float64()),
        "earnings": pa.array([r[5] for r in rows], pa.float64()),
        "avg_daily_trips": pa.array([r[6] for r in rows], pa.int64()),
    })
    times = [base - 3 * M, base - 2 * M, base - 1, base, base + 1, base + M, base + 2 * M, base + 4 * M, base + 5 * M - 1,
             base + 5 * M, base + 9 * M, base + 10 * M, base + 61 * M, base + 65 * M, base + 24 * 60 * M,
             base + 25 * 60 * M + 30_000_000, base + 3 * M, -8 * M, -5 * M, -3 * M, 0, 2 * M,
             base + 7 * 24 * 60 * M - 1, base + 7 * 24 * 60 * M + 4 * M, base + 8 * 24 * 60 * M]
    label_rows = [(d, t) for t in times for d in (1, 2, 3, 4, 9)]
    labels = pa.table({
        "driver_id": pa.array([d for d, _ in label_rows], pa.int64()),
        "customer_id": pa.array(range(len(label_rows)), pa.int64()),
        "event_timestamp": pa.array([t for _, t in label_rows], pa.int64()).cast(ts),
        "trip_completed": pa.array([i % 2 == 0 for i in range(len(label_rows))]),
    })
    with tempfile.TemporaryDirectory() as tmp:
        ep, lp, out = (os.path.join(tmp, n) for n in ("events.parquet", "labels.parquet", "out.parquet"))
        pq.write_table(events, ep)
        pq.write_table(labels, lp)
        con = connect()
        con.execute(f"COPY ({query(ep, lp)}) TO '{out}' (FORMAT parquet)")
        got = pq.read_table(out)
    want = oracle(events, labels)
    assert got.column_names[:4] == labels.column_names, got.column_names
    problems, mismatches = differences(want, got, examples=20)
    # Spot checks of the cases the data was made for (label rows are (time, driver) ordered).
    at = {(d, t): i for i, (d, t) in enumerate(label_rows)}
    last = got.column("trips_last_1d").to_pylist()
    rows_1h = got.column("rows_1h").to_pylist()
    checks = [
        (last[at[(1, base)]], None, "a correction with null values is the last"),
        (last[at[(1, base + 4 * M)]], 7, "the latest event's value"),
        (last[at[(1, base + 5 * M)]], 9, "a full tie goes to the greater value"),
        (last[at[(2, base + M)]], 6, "a created time beats none"),
        (last[at[(2, base + 2 * M)]], None, "a null last value stays null"),
        (last[at[(2, base + 3 * M)]], 11, "a full tie: a value beats null"),
        (rows_1h[at[(9, base)]], 0, "no events: count 0"),
        (rows_1h[at[(1, base + 5 * M)]], 6, "tile edges, corrections and ties all count"),
        (rows_1h[at[(3, -5 * M)]], 1, "before 1970"),
    ]
    for value, expected, what in checks:
        if value != expected:
            problems.append(f"spot check '{what}': {value!r}, expected {expected!r}")
    if problems:
        print(f"SELFTEST FAILED: {mismatches} mismatching values")
        print("  " + "\n  ".join(problems))
        sys.exit(1)
    print(f"selftest: DuckDB's SQL equals the brute-force window rule on {len(rows)} events x "
          f"{len(label_rows)} label rows x {len(AGGREGATES)} aggregates; {len(checks)} spot checks pass")


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "run":
        run(*sys.argv[2:5])
    elif len(sys.argv) >= 4 and sys.argv[1] == "compare":
        compare(*sys.argv[2:4])
    elif len(sys.argv) >= 2 and sys.argv[1] == "selftest":
        selftest()
    else:
        sys.exit(__doc__)
