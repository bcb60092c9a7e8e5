"""DuckDB's answer to the same point-in-time question as `quiver retrieve`, and a comparison.

    python3 benches/retrieve_duckdb.py run REPO LABELS OUT      # DuckDB's table (timed by the caller)
    python3 benches/retrieve_duckdb.py compare A B              # exit 1 unless A and B hold equal data
    python3 benches/retrieve_duckdb.py head IN N OUT            # the first N rows of a Parquet file

DuckDB's ASOF LEFT JOIN takes, per label row, the latest view row with event_timestamp <= t. To
compute what Quiver computes: view rows are first deduplicated to the latest `created` per
(key, event_timestamp), and a value older than the view's ttl (driver 2 h, customer 7 d) is null.
Rows come back in the entity table's order (file_row_number).
"""
import sys

DRIVER = ["conv_rate", "acc_rate", "avg_daily_trips", "rating", "total_trips", "online_hours",
          "cancellations", "city", "is_active", "earnings"]
CUSTOMER = ["current_balance", "avg_passenger_count", "lifetime_trips", "loyalty_tier", "is_premium",
            "age", "signup_at", "recent_ratings", "referral_code", "churn_risk"]


def run(repo, labels, out):
    import duckdb
    con = duckdb.connect()
    con.execute("SET threads = 2")

    def latest(path, key):
        return (f"(SELECT * EXCLUDE (rn) FROM (SELECT *, row_number() OVER (PARTITION BY {key}, "
                f"event_timestamp ORDER BY created DESC) AS rn FROM read_parquet('{repo}/data/{path}')) "
                f"WHERE rn = 1)")

    def within(alias, ttl, col):
        return (f"CASE WHEN {alias}.event_timestamp >= l.event_timestamp - INTERVAL {ttl} "
                f"THEN {alias}.{col} END AS {col}")

    cols = [within("d", "2 HOUR", c) for c in DRIVER] + [within("c", "7 DAY", c) for c in CUSTOMER]
    query = f"""
        SELECT l.driver_id, l.customer_id, l.event_timestamp, l.trip_completed, {", ".join(cols)}
        FROM read_parquet('{labels}', file_row_number = true) l
        ASOF LEFT JOIN {latest("driver_stats.parquet", "driver_id")} d
          ON l.driver_id = d.driver_id AND l.event_timestamp >= d.event_timestamp
        ASOF LEFT JOIN {latest("customer_profile.parquet", "customer_id")} c
          ON l.customer_id = c.customer_id AND l.event_timestamp >= c.event_timestamp
        ORDER BY l.file_row_number
    """
    con.execute(f"COPY ({query}) TO '{out}' (FORMAT parquet)")


def compare(a_path, b_path):
    import pyarrow.parquet as pq
    a, b = pq.read_table(a_path), pq.read_table(b_path)
    problems = []
    if a.num_rows != b.num_rows:
        problems.append(f"rows: {a.num_rows} vs {b.num_rows}")
    if a.column_names != b.column_names:
        problems.append(f"columns: {a.column_names} vs {b.column_names}")
    for name in a.column_names:
        if name not in b.column_names or a.num_rows != b.num_rows:
            continue
        x, y = a.column(name), b.column(name)
        if x.type != y.type:
            # Same values in different physical types (e.g. timestamp units): compare as Python.
            xs, ys = x.to_pylist(), y.to_pylist()
        else:
            if x.equals(y):
                continue
            xs, ys = x.to_pylist(), y.to_pylist()
        diff = sum(1 for p, q in zip(xs, ys) if p != q)
        if diff:
            first = next(i for i, (p, q) in enumerate(zip(xs, ys)) if p != q)
            problems.append(f"{name}: {diff} values differ (first at row {first}: {xs[first]!r} vs {ys[first]!r})")
    if problems:
        print("DIFFERENT:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print(f"identical: {a.num_rows} rows x {a.num_columns} columns")


def head(src, n, out):
    import pyarrow.parquet as pq
    pq.write_table(pq.read_table(src).slice(0, int(n)), out)


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run(*sys.argv[2:5])
    elif sys.argv[1] == "compare":
        compare(*sys.argv[2:4])
    elif sys.argv[1] == "head":
        head(*sys.argv[2:5])
    else:
        sys.exit(__doc__)
