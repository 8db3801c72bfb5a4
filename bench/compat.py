#!/usr/bin/env python3
"""Side by side with evalscope perf 1.14.1: both tools on the same command lines against
`perf serve-mock`, every file, key and column compared, and the README's compatibility table
written from what was found.

The command lines and the comparison are tests/py/evalscope_compat.py's (the test suite holds
perf to evalscope's recorded outputs with the same code); this script runs evalscope live
instead, inventories every key and column of both tools' files, checks each difference the
README states against the files (a stated difference that is not observed, or one observed and
not stated, is reported), and writes bench/results/compat.md.

Usage: python3 bench/compat.py --evalscope /tmp/evs/bin/evalscope [--perf target/debug/perf]
(evalscope from `pip install 'evalscope[perf]==1.14.1'` in a throwaway virtualenv).
"""

import argparse
import base64
import json
import os
import pickle
import re
import sqlite3
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
import evalscope_compat as ec  # noqa: E402


def rows(path, query):
    con = sqlite3.connect(path)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def first_run(out):
    return os.path.join(out, ec.run_dirs(out)[0])


# Differences on purpose: (file, key, evalscope, perf, why, check(evalscope_dir, perf_dir) ->
# bool that holds when the difference is as stated). Each check reads the files.
def _request_ids(e, p):
    eq = rows(os.path.join(first_run(e), "benchmark_data.db"), "SELECT request_id FROM result")
    pq = rows(os.path.join(first_run(p), "benchmark_data.db"), "SELECT request_id FROM result")
    return all(r[0] is None for r in eq) and all(re.fullmatch(r"perf-\d+-\d+", r[0]) for r in pq)


def _request_text(e, p):
    q = "SELECT request FROM result ORDER BY rowid LIMIT 1"
    er = rows(os.path.join(first_run(e), "benchmark_data.db"), q)[0][0]
    pr = rows(os.path.join(first_run(p), "benchmark_data.db"), q)[0][0]
    return ", " in er and ", " not in pr and json.loads(er) == json.loads(pr)


def _start_clock(e, p):
    q = "SELECT MIN(start_time) FROM result"
    es = rows(os.path.join(first_run(e), "benchmark_data.db"), q)[0][0]
    ps = rows(os.path.join(first_run(p), "benchmark_data.db"), q)[0][0]
    return es > 10 and 0 <= ps < 10


STATED = [
    ("benchmark_data.db", "request_id", "NULL (set only by trace replay)",
     "`perf-<pid>-<index>`, the `x-request-id` header each request carried (servers such as vLLM log it)",
     "every row can be matched with the server's log", "stream", _request_ids),
    ("benchmark_data.db", "request", "the body as `json.dumps` writes it (`, ` and `: `)",
     "the exact bytes sent (compact JSON; the same fields and values)",
     "the column holds what went over the wire", "stream", _request_text),
    ("benchmark_data.db", "start_time, completed_time",
     "`time.perf_counter()` seconds (a process clock)",
     "seconds since the run started; the Unix time of every phase is in perf's `*_epoch` columns",
     "neither clock means anything outside the run; perf's start at 0", "stream", _start_clock),
]

# Differences that no file shows on these command lines (they concern other inputs).
NOTED = [
    ("benchmark_percentile.json", "ITL (ms)", "exact nearest rank over every gap",
     "nearest rank from an HDR histogram of every gap (three significant digits, within 0.1 %)",
     "memory stays flat however many gaps a run has; `Avg ITL (ms)` is exact in both"),
    ("benchmark_data.db", "a stream that ends without output", "a success with TTFT 0 (evalscope #1694)",
     "a failure of kind `empty_response`", "a request that produced nothing did not succeed"),
    ("requests", "`--stop-token-ids`", "sent as strings", "sent as integers (the args file keeps strings)",
     "servers expect integers"),
    ("performance_summary.txt", "layout", "rich's tables", "the same tables and columns, drawn by comfy-table, "
     "plus `Client CPU%` and `P99 Lag(ms)` in the overview and perf's own group in the summary", "a text file for people"),
    ("perf_report.html", "the page", "Plotly charts loaded from a CDN (blank offline), en/zh toggle",
     "inline SVG charts (plotters), no script and no network; also dispatch lag, the saturation verdict and failure kinds",
     "it opens offline, from file://, and prints"),
]


def inventory(e, p):
    """Keys and columns of both tools' files, over every scenario: {file: (evalscope, perf)}."""
    found = {}

    def add(name, theirs, ours):
        t, o = found.setdefault(name, ([], []))
        t.extend(k for k in theirs if k not in t)
        o.extend(k for k in ours if k not in o)

    for scenario, _, _ in ec.SCENARIOS:
        es, ps = os.path.join(e, scenario), os.path.join(p, scenario)
        if not (os.path.isdir(es) and os.path.isdir(ps)):
            continue
        for run in ec.run_dirs(es):
            er, pr = os.path.join(es, run), os.path.join(ps, run)
            if not os.path.isdir(pr):
                continue
            for name in ("benchmark_summary.json", "benchmark_args.json"):
                add(name, list(ec.load(os.path.join(er, name))), list(ec.load(os.path.join(pr, name))))
            ep, pp = ec.load(os.path.join(er, "benchmark_percentile.json")), ec.load(os.path.join(pr, "benchmark_percentile.json"))
            add("benchmark_percentile.json", list(ep[0]) if ep else [], list(pp[0]) if pp else [])
            for name in ("workload_throughput.json", "workload_timeline.json"):
                if os.path.exists(os.path.join(er, name)) and os.path.exists(os.path.join(pr, name)):
                    add(name, list(ec.load(os.path.join(er, name))), list(ec.load(os.path.join(pr, name))))
            cols = lambda path: [r[1] for r in rows(path, "PRAGMA table_info(result)")]
            add("benchmark_data.db", cols(os.path.join(er, "benchmark_data.db")),
                cols(os.path.join(pr, "benchmark_data.db")))
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--evalscope", required=True)
    ap.add_argument("--perf", default=os.path.join(ROOT, "target", "debug", "perf"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "compat.md"))
    a = ap.parse_args()
    import tempfile
    work = tempfile.mkdtemp(prefix="perf-compat-")
    e_root, p_root = os.path.join(work, "evalscope"), os.path.join(work, "perf")
    fail = ec.Failures()
    files = []
    for name, sim_flags, flags in ec.SCENARIOS:
        sim = ec.Simulator(a.perf, sim_flags)
        try:
            theirs = ec.run([a.evalscope, "perf"], sim.base, name, flags, e_root)
            ours = ec.run([a.perf], sim.base, name, flags, p_root)
        finally:
            sim.stop()
        for f in ec.files_of(theirs):
            if f.split("/")[-1] not in files:
                files.append(f.split("/")[-1])
        try:
            ec.read(theirs, f"{name} (evalscope)", fail)
            ec.read(ours, f"{name} (perf)", fail)
            ec.compare(theirs, ours, name, fail)
        except Exception as ex:  # reported, as a script reading the files would crash
            fail.check(False, f"{name}: reading failed: {type(ex).__name__}: {ex}")
    inv = inventory(e_root, p_root)
    stated = []
    for file, key, theirs, ours, why, scenario, check in STATED:
        try:
            held = check(os.path.join(e_root, scenario), os.path.join(p_root, scenario))
        except Exception as ex:
            held = False
            why += f" (check failed: {ex})"
        stated.append((file, key, theirs, ours, why, held))

    out = []
    out.append(f"Side by side with evalscope 1.14.1 on {len(ec.SCENARIOS)} command lines "
               f"({', '.join(s for s, _, _ in ec.SCENARIOS)}) against `perf serve-mock`; "
               f"command: `python3 bench/compat.py --evalscope <evalscope>`.\n")
    out.append("| file | evalscope's keys / columns | perf | perf adds (after evalscope's) |")
    out.append("|---|---|---|---|")
    for f in files:
        if f in ("benchmark.log",):
            continue
        if f in ec.PENDING:
            out.append(f"| `{f}` | | not written yet: {ec.PENDING[f]} | |")
            continue
        if f in ec.NOT_COMPARED:
            out.append(f"| `{f}` | | written: {ec.NOT_COMPARED[f]} | |")
            continue
        if f in inv:
            theirs, ours = inv[f]
            added = [k for k in ours if k not in theirs]
            missing = [k for k in theirs if k not in ours]
            same = "same keys, order, JSON types and sentinels" if f.endswith(".json") else \
                "same columns, order and SQLite types; `response_messages` unpickles to the same list of chunk dicts"
            if missing:
                same = f"MISSING: {', '.join(missing)}"
            out.append(f"| `{f}` | {len(theirs)}: {', '.join(f'`{k}`' for k in theirs)} | {same} | "
                       f"{', '.join(f'`{k}`' for k in added) or '-'} |")
        else:
            out.append(f"| `{f}` | | written (same tables: Basic Information, Performance Overview, "
                       f"Per-Request Metrics, Workload Throughput) | |")
    out.append("")
    out.append("Where the values differ on purpose (each checked against both tools' files on these "
               "command lines, or, below the line, stated for inputs they do not exercise):\n")
    out.append("| file | key | evalscope | perf | why |")
    out.append("|---|---|---|---|---|")
    for file, key, theirs, ours, why, held in stated:
        mark = "" if held else " **(not observed: check the table)**"
        out.append(f"| `{file}` | {key} | {theirs} | {ours}{mark} | {why} |")
    out.append("| | | | | |")
    for file, key, theirs, ours, why in NOTED:
        out.append(f"| `{file}` | {key} | {theirs} | {ours} | {why} |")
    out.append("")
    if fail.items:
        out.append("Unexplained differences found:\n")
        out.extend(f"- {i}" for i in fail.items)
    else:
        out.append("No other difference: every key, type, sentinel, deterministic value and column of "
                   "evalscope's files is the same in perf's.")
    text = "\n".join(out) + "\n"
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text)
    print(text)
    print(f"written to {a.out}; both tools' outputs in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
