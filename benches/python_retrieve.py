"""Training retrieval from Python: Quiver's in-process `get_historical_features` and Feast 0.67's,
timed inside the call, plus the comparisons `benches/python_retrieve.sh` reports.

    PY python_retrieve.py quiver REPO LABELS OUT [--pandas]  # quiver.FeatureStore(REPO), model_v1
    PY python_retrieve.py feast FEAST_REPO LABELS OUT        # Feast FeatureStore, service model_v1
    PY python_retrieve.py feast-setup FEAST_REPO QUIVER_REPO # a Feast repo over QUIVER_REPO's data
    PY python_retrieve.py head IN N OUT                      # the first N rows of a Parquet file
    PY python_retrieve.py same A.arrow B.arrow               # "identical ..." or the first difference
    PY python_retrieve.py vs-feast QUIVER.arrow FEAST.arrow  # rows and values where Feast differs

`quiver` and `feast` print one line, `CALL_SECONDS ROWS COLUMNS WRITE_SECONDS`: the call is timed
with time.perf_counter() around `get_historical_features` (for Feast, `...to_arrow()`, which is
where Feast computes); the entity table is read before the clock starts (`--pandas`: into a
pandas DataFrame; otherwise Quiver gets the path and reads it inside the call, as the CLI does).
The result is then written to OUT as an Arrow IPC file (the CLI's cheapest output) so the caller
can compare tables; that write is outside the timed call but inside the process.

`feast-setup` translates the Quiver repository's definitions (features/*.yaml, feature service
`model_v1`) into Feast objects over the same Parquet files: one FileSource per source (same
timestamp_field and created_timestamp_column), the entities with their join keys, the views with
the same features, types and ttl, and a FeatureService `model_v1`; offline store `file`, local
registry, sqlite online store (never used: only offline retrieval is measured). It applies them
with `FeatureStore.apply`, as `feast apply` does.

`quiver`, `head`, `same`, `vs-feast` need pyarrow (and pandas for --pandas / vs-feast); `feast`
and `feast-setup` run in Feast's venv (PyYAML comes with Feast).
"""
import os
import sys
import time

SERVICE = "model_v1"


def write_ipc(table, out):
    import pyarrow as pa
    start = time.perf_counter()
    with pa.OSFile(out, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return time.perf_counter() - start


def run_quiver(repo, labels, out, *args):
    import quiver
    store = quiver.FeatureStore(repo)
    entities = labels
    if "--pandas" in args:
        import pandas as pd
        entities = pd.read_parquet(labels)
    start = time.perf_counter()
    table = store.get_historical_features(entities, SERVICE)
    call = time.perf_counter() - start
    write = write_ipc(table, out)
    print(f"{call:.4f} {table.num_rows} {table.num_columns} {write:.4f}")


def run_feast(feast_repo, labels, out):
    import pandas as pd
    from feast import FeatureStore
    store = FeatureStore(repo_path=feast_repo)
    service = store.get_feature_service(SERVICE)
    entity_df = pd.read_parquet(labels)
    start = time.perf_counter()
    table = store.get_historical_features(entity_df=entity_df, features=service).to_arrow()
    call = time.perf_counter() - start
    write = write_ipc(table, out)
    print(f"{call:.4f} {table.num_rows} {table.num_columns} {write:.4f}")


# Quiver feature types -> Feast types (the subset the benchmark repository uses, and a bit more).
def feast_type(name):
    from feast import types as t
    scalar = {"float64": t.Float64, "float32": t.Float32, "int64": t.Int64, "int32": t.Int32,
              "string": t.String, "bytes": t.Bytes, "bool": t.Bool, "timestamp": t.UnixTimestamp}
    name = name.strip()
    if name.startswith("list<") and name.endswith(">"):
        return t.Array(scalar[name[5:-1].strip()])
    return scalar[name]


def ttl(text):
    from datetime import timedelta
    import re
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h|d|w)\s*", str(text))
    if not m:
        raise SystemExit(f"feast-setup: cannot read ttl {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    return {"ms": timedelta(milliseconds=n), "s": timedelta(seconds=n), "m": timedelta(minutes=n),
            "h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n)}[unit]


def feast_setup(feast_repo, quiver_repo):
    import glob
    import yaml
    from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource
    from feast.value_type import ValueType

    quiver_repo = os.path.abspath(quiver_repo)
    cfg = yaml.safe_load(open(os.path.join(quiver_repo, "quiver.yaml")))
    defs = {"entities": {}, "sources": {}, "feature_views": {}, "feature_services": {}}
    for pattern in cfg.get("definitions", ["features/*.yaml"]):
        for path in sorted(glob.glob(os.path.join(quiver_repo, pattern))):
            doc = yaml.safe_load(open(path)) or {}
            for kind in defs:
                for item in doc.get(kind, []) or []:
                    defs[kind][item["name"]] = item

    service = defs["feature_services"][SERVICE]
    wanted = {}  # view -> feature names (None: all), in first-mention order
    for ref in service["features"]:
        view, _, feature = ref.partition(":")
        if feature:
            if wanted.get(view, []) is not None:
                wanted.setdefault(view, []).append(feature)
        else:
            wanted[view] = None

    key_types = {"int64": ValueType.INT64, "int32": ValueType.INT32, "string": ValueType.STRING}
    entities = {}
    for e in defs["entities"].values():
        keys = e["join_keys"]
        entities[e["name"]] = Entity(name=e["name"], join_keys=[k["name"] for k in keys],
                                     value_type=key_types[keys[0]["type"]])
    sources, views = {}, []
    for view_name, features in wanted.items():
        v = defs["feature_views"][view_name]
        if v.get("query"):
            raise SystemExit(f"feast-setup: view {view_name} is a SQL view; no Feast equivalent here")
        s = defs["sources"][v["source"]]
        if s["name"] not in sources:
            sources[s["name"]] = FileSource(
                name=s["name"],
                path=os.path.join(quiver_repo, s["path"]),
                timestamp_field=s.get("timestamp_field", "event_timestamp"),
                created_timestamp_column=s.get("created_timestamp_field", ""),
            )
        ents = [entities[n] for n in v["entities"]]
        keys = [Field(name=k["name"], dtype=feast_type(k["type"]))
                for n in v["entities"] for k in defs["entities"][n]["join_keys"]]
        feats = [Field(name=f["name"], dtype=feast_type(f["type"])) for f in v["features"]
                 if features is None or f["name"] in features]
        views.append(FeatureView(name=view_name, entities=ents, ttl=ttl(v.get("ttl", "0s")),
                                 schema=keys + feats, online=False, source=sources[s["name"]]))

    os.makedirs(os.path.join(feast_repo, "data"), exist_ok=True)
    with open(os.path.join(feast_repo, "feature_store.yaml"), "w") as f:
        f.write("project: quiver_bench\n"
                "registry: data/registry.db\n"
                "provider: local\n"
                "online_store:\n  type: sqlite\n  path: data/online.db\n"
                "offline_store:\n  type: file\n"
                "entity_key_serialization_version: 3\n")
    store = FeatureStore(repo_path=feast_repo)
    store.apply(list(entities.values()) + list(sources.values()) + views
                + [FeatureService(name=SERVICE, features=views)])
    print(f"feast repo {feast_repo}: views {', '.join(v.name for v in views)}; service {SERVICE}")


def head(src, n, out):
    import pyarrow.parquet as pq
    pq.write_table(pq.read_table(src).slice(0, int(n)), out)


def read_ipc(path):
    import pyarrow as pa
    with pa.memory_map(path) as source:
        try:
            return pa.ipc.open_file(source).read_all()
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_stream(source).read_all()


def differs(x, y):
    """A boolean array: where two equal-length arrays differ, a null equal only to a null."""
    import pyarrow as pa
    import pyarrow.compute as pc
    x = x.combine_chunks() if isinstance(x, pa.ChunkedArray) else x
    y = y.combine_chunks() if isinstance(y, pa.ChunkedArray) else y
    try:
        if x.type != y.type:
            y = y.cast(x.type)
        return pc.or_(pc.fill_null(pc.not_equal(x, y), False),
                      pc.not_equal(pc.is_valid(x), pc.is_valid(y)))
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        # Nested types (lists) and uncastable pairs: compare as Python values.
        return pa.array([a != b for a, b in zip(x.to_pylist(), y.to_pylist())], type=pa.bool_())


def first_difference(x, y):
    """(count, first row index, x value, y value) of the positions where x and y differ."""
    import pyarrow.compute as pc
    d = differs(x, y)
    count = pc.sum(d).as_py() or 0
    if not count:
        return 0, None, None, None
    i = pc.index(d, True).as_py()
    return count, i, x[i].as_py(), y[i].as_py()


def same(a_path, b_path):
    a, b = read_ipc(a_path), read_ipc(b_path)
    if a.num_rows != b.num_rows:
        print(f"DIFFERENT: rows {a.num_rows} vs {b.num_rows}")
        return 1
    if a.column_names != b.column_names:
        print(f"DIFFERENT: columns {a.column_names} vs {b.column_names}")
        return 1
    for name in a.column_names:
        x, y = a.column(name), b.column(name)
        if x.type != y.type:
            print(f"DIFFERENT: column {name} type {x.type} vs {y.type}")
            return 1
        if not x.equals(y):
            n, i, p, q = first_difference(x, y)
            print(f"DIFFERENT: {name}: {n} values differ (first at row {i}: {p!r} vs {q!r})")
            return 1
    note = "" if a.schema.metadata == b.schema.metadata else " (schema metadata differs)"
    print(f"identical: {a.num_rows} rows x {a.num_columns} columns{note}")
    return 0


def vs_feast(quiver_path, feast_path):
    """Feast returns rows in its own order: rows are matched on the entity table's columns (and
    the occurrence number among equal rows), then every feature compared on matched rows."""
    import pyarrow as pa
    import pyarrow.compute as pc
    q, f = read_ipc(quiver_path), read_ipc(feast_path)
    keys = ["driver_id", "customer_id", "event_timestamp", "trip_completed"]
    keys = [k for k in keys if k in q.column_names and k in f.column_names]

    def frame(t):
        cols = {}
        for k in keys:
            c = t.column(k)
            if pa.types.is_timestamp(c.type):
                c = pc.cast(c, pa.timestamp("us", "UTC")).cast(pa.int64())
            cols[k] = c
        df = pa.table(cols).to_pandas()
        df["_occ"] = df.groupby(keys, sort=False).cumcount()
        df["_row"] = range(len(df))
        return df

    qd, fd = frame(q), frame(f)
    m = qd.merge(fd, on=keys + ["_occ"], how="outer", suffixes=("_q", "_f"), indicator=True)
    missing = int((m["_merge"] == "left_only").sum())
    extra = int((m["_merge"] == "right_only").sum())
    both = m[m["_merge"] == "both"]
    qi = pa.array(both["_row_q"].astype("int64").to_numpy())
    fi = pa.array(both["_row_f"].astype("int64").to_numpy())
    features = [c for c in q.column_names if c not in keys]
    absent = [c for c in features if c not in f.column_names]
    row_bad = pa.array([False] * len(both))
    per_col, first = [], None
    for name in features:
        if name in absent:
            continue
        x, y = q.column(name).take(qi), f.column(name).take(fi)
        d = differs(x, y)
        n = pc.sum(d).as_py() or 0
        if n:
            i = pc.index(d, True).as_py()
            per_col.append(f"{name} {n}")
            if first is None:
                first = (f"{name} at entity row {both['_row_q'].iloc[i]}: "
                         f"quiver {x[i].as_py()!r} vs feast {y[i].as_py()!r}")
            row_bad = pc.or_(row_bad, d)
    bad_rows = pc.sum(row_bad).as_py() or 0
    parts = [f"quiver {q.num_rows} rows, feast {f.num_rows}"]
    if missing or extra:
        parts.append(f"{missing} quiver rows missing from feast, {extra} extra feast rows")
    parts.append(f"{bad_rows} of {len(both)} matched rows differ"
                 + (f" ({', '.join(per_col)} values; first: {first})" if per_col else ""))
    if absent:
        parts.append(f"feast lacks columns {absent}")
    print("; ".join(parts))
    return 0


if __name__ == "__main__":
    cmd, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else (None, [])
    if cmd == "quiver" and len(args) >= 3:
        run_quiver(*args)
    elif cmd == "feast" and len(args) == 3:
        run_feast(*args)
    elif cmd == "feast-setup" and len(args) == 2:
        feast_setup(*args)
    elif cmd == "head" and len(args) == 3:
        head(*args)
    elif cmd == "same" and len(args) == 2:
        sys.exit(same(*args))
    elif cmd == "vs-feast" and len(args) == 2:
        sys.exit(vs_feast(*args))
    else:
        sys.exit(__doc__)
