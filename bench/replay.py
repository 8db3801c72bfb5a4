#!/usr/bin/env python3
"""Trace replay fidelity at 1,000 requests a second: how late does perf send a recorded trace?

A `workload_trace` of N requests (default 20,000) whose timestamps are a Poisson process at
1,000 requests/s is replayed with `--open-loop` against `perf serve-mock` (TTFT 20 ms, 8 tokens
5 ms apart: about 60 requests in flight) pinned to core 0; perf runs pinned to core 1. The
replay lag of each request is its actual send minus the trace's offset (`dispatch_lag` in
benchmark_data.db); the baseline, measured in the same invocation, is perf's own Poisson
schedule at the same rate (`--rate 1000 --open-loop` with the same prompts), so the ratio says
what replaying a file costs over generating the schedule.

Usage: python3 bench/replay.py [--binary PATH] [--requests N] [--rate R] [--repeat N]
Writes bench/results/replay.json and bench/results/replay.md (the README's figures).
"""

import argparse
import datetime
import json
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (pinning, ports, the default binary)

ROOT = compare.ROOT


def write_trace(path, n, rate, seed=7):
    rng = random.Random(seed)
    t = 0.0
    with open(path, "w") as f:
        for i in range(n):
            body = {"model": "m", "messages": [{"role": "user", "content": f"request {i}"}],
                    "max_tokens": 8, "stream": True}
            f.write(json.dumps({"body": body, "timestamp": round(t, 6), "request_id": f"r{i}"}) + "\n")
            t += rng.expovariate(rate)


def lags(db):
    con = sqlite3.connect(db)
    v = sorted(r[0] * 1000.0 for r in con.execute("SELECT dispatch_lag FROM result"))
    ok = con.execute("SELECT COUNT(*) FROM result WHERE success = 1").fetchone()[0]
    con.close()

    def q(p):
        return v[min(len(v) - 1, max(0, int(-(-p * len(v) // 100)) - 1))]
    return {"n": len(v), "ok": ok, "p50_ms": q(50), "p90_ms": q(90), "p99_ms": q(99), "max_ms": v[-1]}


def one(binary, mode, trace, n, rate, d):
    port = compare.free_port()
    server = subprocess.Popen(compare.pin(0, [binary, "serve-mock", "--port", str(port), "--mock-ttft-ms", "20",
                                              "--mock-tpot-ms", "5", "--mock-output-tokens", "8"]),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    server.stdout.readline()
    out = os.path.join(d, f"out-{mode}")
    cmd = [binary, "--api", "openai", "--url", f"http://127.0.0.1:{port}/v1/chat/completions", "--model", "m",
           "--open-loop", "--outputs-dir", out, "--no-timestamp", "--name", "r", "--no-test-connection",
           "--response-messages", "text"]
    if mode == "trace":
        cmd += ["--dataset", "workload_trace", "--dataset-path", trace]
        label = "rate_-1.0_number_1000"
    else:
        cmd += ["--prompt", "request", "--max-tokens", "8", "--rate", str(rate), "-n", str(n)]
        label = f"rate_{float(rate)}_number_{n}"
    try:
        subprocess.run(compare.pin(1, cmd), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        server.terminate()
        server.wait()
    return lags(os.path.join(out, "r", label, "benchmark_data.db"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "dist", "perf"))
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    a = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as d:
        trace = os.path.join(d, "trace.jsonl")
        write_trace(trace, a.requests, a.rate)
        for i in range(a.repeat):
            for mode in ("trace", "poisson"):
                run_dir = os.path.join(d, f"{mode}-{i}")
                os.makedirs(run_dir)
                r = one(a.binary, mode, trace, a.requests, a.rate, run_dir)
                r["mode"] = mode
                runs.append(r)
                print(mode, json.dumps(r), file=sys.stderr)

    def median(mode, key):
        v = sorted(r[key] for r in runs if r["mode"] == mode)
        return v[len(v) // 2]
    summary = {m: {k: median(m, k) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")} for m in ("trace", "poisson")}
    ratio = summary["trace"]["p99_ms"] / max(summary["poisson"]["p99_ms"], 1e-9)
    os.makedirs(a.results, exist_ok=True)
    doc = {"when": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.machine(),
           "cores": os.cpu_count(), "requests": a.requests, "rate": a.rate, "repeat": a.repeat,
           "runs": runs, "median": summary, "p99_ratio_trace_over_poisson": ratio}
    with open(os.path.join(a.results, "replay.json"), "w") as f:
        json.dump(doc, f, indent=2)
    md = [f"Replay lag, {a.requests} requests at {a.rate:g} req/s, median of {a.repeat} runs (ms):", "",
          "| schedule | p50 | p90 | p99 | max |", "|---|---|---|---|---|"]
    for m, name in (("trace", "workload_trace replay"), ("poisson", "perf's own Poisson schedule (baseline)")):
        s = summary[m]
        md.append(f"| {name} | {s['p50_ms']:.3f} | {s['p90_ms']:.3f} | {s['p99_ms']:.3f} | {s['max_ms']:.3f} |")
    md += ["", f"p99 ratio, replay over baseline: {ratio:.2f}"]
    with open(os.path.join(a.results, "replay.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
