#!/usr/bin/env python3
"""What evalscope's `response_messages` costs: perf with `--response-messages evalscope` (the
default: base64 pickles of every chunk) against `--response-messages text` (perf's compact
JSON), interleaved runs against one `perf serve-mock` (zero delay, 32-token streams,
concurrency 64; server pinned to core 0, client to core 1). Prints requests/s, client CPU per
1,000 requests, peak RSS and database size per run, and the medians' ratios.

Usage: python3 bench/response_messages.py [--binary target/dist/perf] [--runs 4] [--number 20000]
"""

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from compare import MEASURE, free_port, pin  # noqa: E402


def run(perf, port, form, n):
    d = tempfile.mkdtemp(prefix="perf-messages-")
    try:
        stats = os.path.join(d, "stats.json")
        cmd = [perf, "--url", f"http://127.0.0.1:{port}/v1/chat/completions", "--model", "m",
               "--prompt", "Tell me about Rust", "-n", str(n), "--parallel", "64",
               "--max-tokens", "32", "--outputs-dir", d, "--name", "x", "--no-timestamp",
               "--log-every-n-query", "1000000000", "--response-messages", form]
        subprocess.run([sys.executable, "-c", MEASURE, stats] + pin(1, cmd), check=True)
        m = json.load(open(stats))
        run_dir = glob.glob(os.path.join(d, "x", "parallel_*"))[0]
        s = json.load(open(os.path.join(run_dir, "benchmark_summary.json")))
        return {"form": form, "rps": s["Req Throughput (req/s)"],
                "cpu_per_1000": m["cpu_s"] / n * 1000, "rss_mb": m["maxrss_kb"] / 1024,
                "db_mb": os.path.getsize(os.path.join(run_dir, "benchmark_data.db")) / 2**20}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "dist", "perf"))
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--number", type=int, default=20000)
    a = ap.parse_args()
    port = free_port()
    server = subprocess.Popen(pin(0, [a.binary, "serve-mock", "--port", str(port), "--mock-ttft-ms", "0",
                                      "--mock-tpot-ms", "0", "--mock-output-tokens", "32"]),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server.stdout.readline()
    results = []
    try:
        for _ in range(a.runs):
            for form in ("evalscope", "text"):
                r = run(a.binary, port, form, a.number)
                results.append(r)
                print(f"{form:9} {r['rps']:9.0f} req/s  {r['cpu_per_1000']:.3f} CPU-s/1000  "
                      f"{r['rss_mb']:5.1f} MB RSS  {r['db_mb']:6.1f} MB database")
    finally:
        server.terminate()
    med = {f: {k: statistics.median(r[k] for r in results if r["form"] == f)
               for k in ("rps", "cpu_per_1000", "rss_mb", "db_mb")} for f in ("evalscope", "text")}
    e, t = med["evalscope"], med["text"]
    print(f"medians: evalscope {e['rps']:.0f} req/s, {e['cpu_per_1000']:.3f} CPU-s/1000, {e['db_mb']:.0f} MB; "
          f"text {t['rps']:.0f} req/s, {t['cpu_per_1000']:.3f} CPU-s/1000, {t['db_mb']:.0f} MB")
    print(f"evalscope / text: {e['rps'] / t['rps']:.2f}x the request rate, "
          f"{e['cpu_per_1000'] / t['cpu_per_1000']:.2f}x the CPU per request, "
          f"{e['db_mb'] / t['db_mb']:.1f}x the database")


if __name__ == "__main__":
    main()
