#!/usr/bin/env python3
"""Run the Feast 0.67 Python SDK (remote online store) against a live Quiver server and
compare with what the same SDK got from real Feast (fixtures/sdk_remote.json).

Usage (with the venv that has feast 0.67, see README.md):
  /root/.cache/quiver-feast-venv/bin/python tests/feast/sdk_against_quiver.py \
      --url http://127.0.0.1:PORT --fixtures tests/feast/fixtures [--keep]

The server must serve the project tests/feast/quiver/ (applied and materialized over
1960-01-01 .. 2030-01-01). This script:

1. builds a throwaway Feast repo in a temp dir: repo/definitions.py, data from
   make_data.py, feature_store.yaml with `online_store: {type: remote, path: URL}` and a
   local file registry; runs `feast apply` (registry only, no materialize);
2. through `FeatureStore.get_online_features(...).to_dict()` asks
   a. every (feature, driver) pair that Feast's own server answered without an exception
      in sdk_remote.json's per_feature_and_driver matrix, one pair per call;
   b. the multi-row forms: `int_bounds` (feature list) and `feature_service`
      (FeatureService object, full_feature_names) exactly as recorded, plus edge_stats as
      a feature list and as the `edge_service` FeatureService over the drivers whose every
      value Feast's SDK could read (expected values composed from the matrix: the remote
      client converts each JSON value on its own, so a column is the per-pair values);
   c. a missing feature view, which must raise feast.errors.FeatureViewNotFoundException;
3. compares, allowing only the differences in DELIBERATE below, prints one line per case
   and exits 1 on any unexpected difference.

Cases where Feast's own server made the SDK fail (empty lists, float lists mixing "NaN"
and numbers, ...) and the other recorded error cases are run too and reported as INFO;
they never fail the run.

Exit status: 0 pass; 1 an unexpected difference (the summary groups SDK exceptions by
cause and shows the request the SDK sent and Quiver's answer); 3 no other difference but
only with --workaround-drop-version-metadata (a diagnostic that removes the
`include_feature_view_version_metadata: false` the Feast 0.67 SDK puts in every request,
to see past that incompatibility; it never counts as a pass).
Feast's rest_error_handler logs "Invalid error detail: ..." for every non-2xx answer whose
body is not a JSON string (Quiver's 400 bodies are {"error": ...} objects); that noise is
the SDK's, on stderr.
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
INT64_MIN = -(2**63)
STALE_DRIVERS = {10}   # event_timestamp 1971-01-01, older than the views' ttl (7300 d)
NAN_SCALAR_DRIVERS = {2}  # f_float64 / f_float32 are NaN in the Parquet source
NULL_ELEMENT_DRIVERS = {9}  # list features with a null element in the Parquet source

# Feast's materialize replaces a null list element; the replacement, by element kind
# (README.md "null list element"), in the jsonable() form used by sdk_remote.json.
FEAST_NULL_ELEMENT = {
    "l_string": [""], "l_bytes": [""], "l_bool": [False], "l_ts": [INT64_MIN],
    "l_float64": ["NaN", {"float": "nan"}], "l_float32": ["NaN", {"float": "nan"}],
}

# ---------------------------------------------------------------------------------------
# Differences Quiver keeps on purpose. A difference is accepted only if one rule matches.
# Each rule: name, reason (one line), and a predicate over the comparison at hand.
#   value rules: f(feature, driver, expected, got) with jsonable values (sdk_remote.json form)
# ---------------------------------------------------------------------------------------


def _is_nan(x):
    return x == "NaN" or x == {"float": "nan"}


def _null_elements_only(feature, expected, got):
    """got equals expected except that some elements are null where Feast stored its
    replacement for a null element."""
    repl = FEAST_NULL_ELEMENT.get(feature)
    if repl is None or not isinstance(expected, list) or not isinstance(got, list):
        return False
    if len(expected) != len(got):
        return False
    diff = [(e, g) for e, g in zip(expected, got) if e != g]
    return bool(diff) and all(g is None and e in repl for e, g in diff)


DELIBERATE = [
    ("stale_row_null",
     "Quiver applies the ttl on reads (OUTSIDE_MAX_AGE, value null); Feast's Redis store returns the stale value",
     lambda f, d, e, g: d in STALE_DRIVERS and g is None and e is not None),
    ("null_scalar_timestamp",
     "a null UnixTimestamp is null in Quiver; Feast leaks pandas NaT as INT64_MIN (-9223372036854775808)",
     lambda f, d, e, g: f == "f_ts" and e == INT64_MIN and g is None),
    ("nan_scalar_float",
     "NaN in a scalar float column stays NaN in Quiver; Feast's materialize stores it as null (pd.isnull)",
     lambda f, d, e, g: f in ("f_float64", "f_float32") and d in NAN_SCALAR_DRIVERS
     and e is None and _is_nan(g)),
    ("int64_full_precision",
     "Quiver keeps int64 exact (2^53+1); Feast rounds an int64 column holding a null through float64 (2^53)",
     lambda f, d, e, g: f == "f_int64" and e == 2**53 and g == 2**53 + 1),
    ("null_list_element",
     "a null list element is null over Quiver's HTTP; Feast's materialize replaces it (\"\", false, INT64_MIN, NaN)",
     lambda f, d, e, g: _null_elements_only(f, e, g)),
]
# Column-level rule (not a value rule):
FEATURE_ORDER_RULE = (
    "feature_order",
    "within a view Quiver returns features in request order; Feast in Python set order (PYTHONHASHSEED)")
# What a null element does to the SDK (not a value rule): when Quiver sends a null list
# element where Feast sent a replacement, the SDK may also fail to convert it; that is
# accepted only for the null_list_element cases and is reported as such.
NULL_ELEMENT_SDK_ERROR_RULE = (
    "null_list_element_sdk_error",
    "the SDK cannot convert a list holding null (consequence of null_list_element)")


def null_element_case(feature, driver, expected):
    """Feast's value holds its replacement for a null element of the source list."""
    repl = FEAST_NULL_ELEMENT.get(feature)
    return (driver in NULL_ELEMENT_DRIVERS and repl is not None and isinstance(expected, list)
            and any(v in repl for v in expected))


def match_rule(feature, driver, expected, got):
    for name, reason, pred in DELIBERATE:
        try:
            if pred(feature, driver, expected, got):
                return name
        except Exception:  # a predicate must never hide a difference by crashing
            pass
    return None


# ---------------------------------------------------------------------------------------

def jsonable(x):
    """Same encoding as record.py (floats as {"float": repr}, so NaN / -0.0 survive)."""
    if isinstance(x, float):
        return {"float": repr(x)}
    if isinstance(x, bytes):
        return {"bytes_b64": base64.b64encode(x).decode()}
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if hasattr(x, "tolist"):
        return {"type": type(x).__name__, "value": jsonable(x.tolist())}
    return {"type": type(x).__name__, "repr": repr(x)}


def short(x, n=90):
    s = json.dumps(x, ensure_ascii=False)
    return s if len(s) <= n else s[: n - 3] + "..."


def exc_name(e):
    return f"{type(e).__module__}.{type(e).__qualname__}"


def feast_cli():
    cand = os.path.join(os.path.dirname(sys.executable), "feast")
    return cand if os.path.exists(cand) else (shutil.which("feast") or "feast")


def build_repo(url, keep):
    work = tempfile.mkdtemp(prefix="quiver-feast-sdk.")
    shutil.copy(os.path.join(HERE, "repo", "definitions.py"), work)
    subprocess.run([sys.executable, os.path.join(HERE, "make_data.py"),
                    os.path.join(work, "data")], check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(work, "feature_store.yaml"), "w") as f:
        f.write("project: quiver_ref\n"
                f"registry: {os.path.join(work, 'data', 'registry.db')}\n"
                "provider: local\n"
                "online_store:\n  type: remote\n"
                f"  path: {url}\n"
                "entity_key_serialization_version: 3\n")
    r = subprocess.run([feast_cli(), "-c", work, "apply"], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr, sep="\n")
        raise SystemExit(f"feast apply failed in {work}")
    print(f"feast repo: {work}{' (kept)' if keep else ''}")
    return work


# The last request the SDK sent and the answer it got (observed, never changed, unless
# --workaround-drop-version-metadata is given).
LAST = {"request": None, "status": None, "body": None}


def observe_requests(drop_version_metadata):
    from feast.infra.online_stores import remote

    inner = remote.get_remote_online_features

    def wrapper(config, req_body):
        if drop_version_metadata and req_body.get("include_feature_view_version_metadata") is False:
            req_body = {k: v for k, v in req_body.items()
                        if k != "include_feature_view_version_metadata"}
        LAST.update(request=json.dumps(req_body), status=None, body=None)
        response = inner(config=config, req_body=req_body)
        LAST.update(status=response.status_code, body=response.text)
        return response

    remote.get_remote_online_features = wrapper


class Report:
    def __init__(self):
        self.counts = {"OK": 0, "DELIBERATE": 0, "UNEXPECTED": 0, "INFO": 0}
        self.by_rule = {}
        self.unexpected = []
        self.causes = {}  # SDK exception text -> [count, first case, request, status, answer]

    def error(self, case, expected_text, err):
        """Quiver made the SDK raise where Feast's answer converted fine."""
        cause = f"{exc_name(err)}: {err}"
        c = self.causes.setdefault(cause, [0, case, LAST["request"], LAST["status"], LAST["body"]])
        c[0] += 1
        self.line("UNEXPECTED", case, f"{expected_text} quiver raised {cause}")

    def line(self, kind, case, text="", rule=None):
        self.counts[kind] += 1
        if rule:
            self.by_rule[rule] = self.by_rule.get(rule, 0) + 1
        if kind == "UNEXPECTED":
            self.unexpected.append(f"{case}: {text}")
        tag = f"{kind}[{rule}]" if rule else kind
        print(f"{tag:<40} {case}  {text}".rstrip())


def compare_value(rep, case, feature, driver, expected, got):
    if got == expected:
        rep.line("OK", case, short(got))
        return
    rule = match_rule(feature, driver, expected, got)
    if rule:
        rep.line("DELIBERATE", case, f"feast={short(expected, 60)} quiver={short(got, 60)}", rule)
    else:
        rep.line("UNEXPECTED", case, f"feast={short(expected)} quiver={short(got)}")


def call(store, **kw):
    return store.get_online_features(**kw).to_dict()


def run_matrix(store, matrix, rep):
    print("\n== (a) per (feature, driver), one call each, where Feast's SDK succeeded")
    for ref, col in matrix.items():
        feature = ref.split(":", 1)[1]
        for drv, expected in col.items():
            d = int(drv)
            case = f"{ref} driver={drv}"
            feast_failed = isinstance(expected, dict) and "exception" in expected
            try:
                got = jsonable(call(store, features=[ref], entity_rows=[{"driver_id": d}])[feature][0])
                err = None
            except Exception as e:  # noqa: BLE001 - reported below
                got, err = None, e
            if feast_failed:
                quiver = (f"{exc_name(err)}: {err}" if err else short(got, 60))
                same = err is not None and exc_name(err) == expected["exception"] \
                    and str(err) == expected["message"]
                rep.line("INFO", case, f"Feast SDK failed ({expected['exception']}); "
                         f"quiver: {'same failure' if same else quiver}")
                continue
            if err is not None:
                if null_element_case(feature, d, expected) and isinstance(err, ValueError) \
                        and "native type nonetype" in str(err):
                    rep.line("DELIBERATE", case, f"feast={short(expected, 60)} quiver raised "
                             f"{exc_name(err)}: {err}", NULL_ELEMENT_SDK_ERROR_RULE[0])
                else:
                    rep.error(case, f"feast={short(expected)}", err)
                continue
            compare_value(rep, case, feature, d, expected, got)


def compare_table(rep, case, expected, got, feature_of=lambda col: col, drivers=None):
    """expected / got: jsonable to_dict() results (column -> list)."""
    if list(got) != list(expected):
        if set(got) == set(expected):
            rep.line("DELIBERATE", case, f"columns feast={list(expected)} quiver={list(got)}",
                     FEATURE_ORDER_RULE[0])
        else:
            rep.line("UNEXPECTED", case, f"columns feast={list(expected)} quiver={list(got)}")
            return
    for col in expected:
        if col not in got:
            continue
        e_col, g_col = expected[col], got[col]
        if len(e_col) != len(g_col):
            rep.line("UNEXPECTED", f"{case} {col}", f"{len(e_col)} rows vs {len(g_col)}")
            continue
        for i, (e, g) in enumerate(zip(e_col, g_col)):
            drv = drivers[i] if drivers else i
            sub = f"{case} {col} driver={drv}"
            if e == g:
                rep.counts["OK"] += 1  # cell-level OKs are counted, not printed
                continue
            rule = match_rule(feature_of(col), drv, e, g)
            if rule:
                rep.line("DELIBERATE", sub, f"feast={short(e, 60)} quiver={short(g, 60)}", rule)
            else:
                rep.line("UNEXPECTED", sub, f"feast={short(e)} quiver={short(g)}")
    rep.line("OK", case, "(table compared)")


def run_forms(store, fixture, rep):
    print("\n== (b) multi-row forms")
    cases = fixture["cases"]
    # Recorded as-is.
    for name, kw, fo in [
        ("int_bounds", dict(features=["edge_int_bounds:" + f for f in
                                      ("b_int64", "b_int32", "bl_int64", "bl_int32")],
                            entity_rows=[{"driver_id": i} for i in (3, 4, 1, 999)]), None),
        ("feature_service", dict(features=store.get_feature_service("bounds_service"),
                                 entity_rows=[{"driver_id": 3}, {"driver_id": 999}],
                                 full_feature_names=True), None),
    ]:
        rec = cases[name]
        assert rec["ok"], name
        drivers = [r["driver_id"] for r in kw["entity_rows"]]
        try:
            got = jsonable(call(store, **kw))
        except Exception as e:  # noqa: BLE001
            rep.error(name, "", e)
            continue
        compare_table(rep, name, rec["to_dict"], got,
                      feature_of=lambda c: c.split("__")[-1], drivers=drivers)

    # edge_stats over the drivers whose every value Feast's SDK could read.
    matrix = fixture["per_feature_and_driver"]
    refs = list(matrix)
    ids = [int(d) for d in next(iter(matrix.values()))]
    ok_ids = [d for d in ids if all(not (isinstance(matrix[r][str(d)], dict)
                                         and "exception" in matrix[r][str(d)]) for r in refs)]
    feats = [r.split(":", 1)[1] for r in refs]
    expected = {"driver_id": ok_ids}
    for r, f in zip(refs, feats):
        expected[f] = [matrix[r][str(d)] for d in ok_ids]
    print(f"   edge_stats composed from the matrix, drivers {ok_ids}")
    rows = [{"driver_id": d} for d in ok_ids]
    for name, kw, exp in [
        ("edge_stats_feature_list", dict(features=refs, entity_rows=rows), expected),
        ("edge_service_full_names",
         dict(features=store.get_feature_service("edge_service"), entity_rows=rows,
              full_feature_names=True),
         {("edge_stats__" + k if k != "driver_id" else k): v for k, v in expected.items()}),
    ]:
        try:
            got = jsonable(call(store, **kw))
        except Exception as e:  # noqa: BLE001
            rep.error(name, "", e)
            continue
        # Feast's column order for these is not recorded (its all_types call failed);
        # compare as sets of columns, values per cell.
        exp_ordered = {k: exp[k] for k in got if k in exp}
        exp_ordered.update({k: v for k, v in exp.items() if k not in exp_ordered})
        compare_table(rep, name, exp_ordered, got,
                      feature_of=lambda c: c.split("__")[-1], drivers=ok_ids)


def run_errors(store, fixture, rep):
    print("\n== (c) errors")
    from feast.errors import FeatureViewNotFoundException
    rec = fixture["cases"]["missing_feature_view"]
    try:
        call(store, features=["no_such_view:f_int64"], entity_rows=[{"driver_id": 1}])
        rep.line("UNEXPECTED", "missing_feature_view", "no exception raised")
    except FeatureViewNotFoundException as e:
        note = "" if str(e) == rec["message"] else \
            f"(message differs, not checked: feast={rec['message']!r} quiver={str(e)!r})"
        rep.line("OK", "missing_feature_view", f"{exc_name(e)} {note}".rstrip())
    except Exception as e:  # noqa: BLE001
        rep.error("missing_feature_view", f"feast={rec['exception']}", e)

    print("\n== INFO: cases Feast's own server failed or that are outside the checked scope")
    ids = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 999]
    all_refs = list(fixture["per_feature_and_driver"])
    for name, kw in [
        ("all_types_except_empty_lists",
         dict(features=all_refs, entity_rows=[{"driver_id": i} for i in ids if i != 8])),
        ("empty_lists", dict(features=all_refs, entity_rows=[{"driver_id": 8}])),
        ("missing_feature", dict(features=["edge_stats:no_such_feature"],
                                 entity_rows=[{"driver_id": 1}])),
    ]:
        rec = fixture["cases"][name]
        want = "ok" if rec["ok"] else f"{rec['exception']}: {rec['message'][:100]}"
        try:
            call(store, **kw)
            got = "ok"
        except Exception as e:  # noqa: BLE001
            got = f"{exc_name(e)}: {str(e)[:100]}"
        rep.line("INFO", name, f"feast: {want} | quiver: {'same' if got == want else got}")
    try:
        store.get_feature_service("no_such_service")
        got = "ok"
    except Exception as e:  # noqa: BLE001
        got = exc_name(e)
    rec = fixture["cases"]["missing_feature_service"]
    rep.line("INFO", "missing_feature_service (local registry, no request sent)",
             f"feast: {rec['exception']} | quiver run: {got}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="Quiver HTTP base URL")
    ap.add_argument("--fixtures", default=os.path.join(HERE, "fixtures"))
    ap.add_argument("--keep", action="store_true", help="keep the temp Feast repo")
    ap.add_argument("--workaround-drop-version-metadata", action="store_true",
                    help="DIAGNOSTIC ONLY: remove the SDK's include_feature_view_version_metadata"
                         "=false from each request (to see past that incompatibility); such a "
                         "run never counts as a pass (exit 3 instead of 0)")
    a = ap.parse_args()
    url = a.url.rstrip("/")
    with open(os.path.join(a.fixtures, "sdk_remote.json")) as f:
        fixture = json.load(f)

    import feast
    print(f"feast {feast.__version__}, server {url}")
    print("deliberate differences accepted:")
    for name, reason, _ in DELIBERATE:
        print(f"  {name:<28} {reason}")
    for name, reason in (FEATURE_ORDER_RULE, NULL_ELEMENT_SDK_ERROR_RULE):
        print(f"  {name:<28} {reason}")

    if a.workaround_drop_version_metadata:
        print("WORKAROUND ACTIVE: include_feature_view_version_metadata is removed from the "
              "SDK's requests; this run cannot pass")
    observe_requests(a.workaround_drop_version_metadata)
    work = build_repo(url, a.keep)
    rep = Report()
    try:
        from feast import FeatureStore
        store = FeatureStore(repo_path=work)
        run_matrix(store, fixture["per_feature_and_driver"], rep)
        run_forms(store, fixture, rep)
        run_errors(store, fixture, rep)
    except Exception:  # a crash of the harness itself is a failure
        traceback.print_exc()
        rep.unexpected.append("harness crashed")
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)

    print("\n== summary")
    print("  " + ", ".join(f"{k} {v}" for k, v in rep.counts.items()))
    for name, n in sorted(rep.by_rule.items()):
        print(f"  deliberate {name}: {n}")
    if rep.causes:
        print("  SDK exceptions caused by Quiver's answer (distinct causes):")
        for cause, (n, case, req, status, body) in rep.causes.items():
            print(f"   - {n} case(s), e.g. {case}: {cause}")
            print(f"       request: POST {url}/get-online-features {req}")
            print(f"       quiver answered: {status} {body}")
    others = [u for u in rep.unexpected if " quiver raised " not in u]
    if others:
        print(f"  {len(others)} UNEXPECTED value difference(s):")
        for u in others:
            print("   - " + u)
    if rep.unexpected:
        print(f"  FAIL: {len(rep.unexpected)} unexpected difference(s)")
        return 1
    if a.workaround_drop_version_metadata:
        print("  no other unexpected difference, but only WITH the request workaround (exit 3)")
        return 3
    print("  PASS: no unexpected difference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
