#!/usr/bin/env python3
"""What the HTML report costs at scale: a 1,000,000-request run against `perf serve-mock` (zero
delay, 8-token streams, concurrency 64), then, for it and for a 1,000-request run made in the
same sitting (the baseline): the size of its perf_report.html, the wall time and peak memory
of `perf report DIR` (reads every request's row from the database, thins the scatter charts),
and the time headless Chromium takes to open the page and render it (`--dump-dom`, median of
--repeat opens after a first one not counted, beside a blank page's open time, which is
Chromium's own start-up).

Usage: python3 bench/report.py [--binary target/release/perf] [--number 1000000] [--repeat 3]
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
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from compare import MEASURE, free_port, pin  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def benchmark(perf, port, n, d):
    cmd = [perf, "--url", f"http://127.0.0.1:{port}/v1/chat/completions", "--model", "m",
           "--prompt", "Tell me about Rust", "-n", str(n), "--parallel", "64", "--max-tokens", "8",
           "--outputs-dir", d, "--name", f"n{n}", "--no-timestamp", "--log-every-n-query",
           "1000000000", "--response-messages", "text"]
    subprocess.run(pin(1, cmd), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return os.path.join(d, f"n{n}")


def regenerate(perf, bench):
    stats = bench + ".stats.json"
    subprocess.run([sys.executable, "-c", MEASURE, stats] + pin(1, [perf, "report", bench]), check=True)
    m = json.load(open(stats))
    assert m["rc"] == 0, open(stats + ".err").read()
    return m


def open_time(path, repeat):
    times = []
    for i in range(repeat + 1):  # the first open warms Chromium's caches and is not counted
        t = time.time()
        out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                              "--proxy-server=http://127.0.0.1:9", "--dump-dom", "file://" + path],
                             capture_output=True, text=True, timeout=300)
        assert "</html>" in out.stdout, out.stderr[-500:]
        if i:
            times.append(time.time() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "perf"))
    ap.add_argument("--number", type=int, default=1_000_000)
    ap.add_argument("--baseline", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    port = free_port()
    server = subprocess.Popen(pin(0, [a.binary, "serve-mock", "--port", str(port), "--mock-ttft-ms", "0",
                                      "--mock-tpot-ms", "0", "--mock-output-tokens", "8"]),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server.stdout.readline()
    d = tempfile.mkdtemp(prefix="perf-report-bench-")
    blank = os.path.join(d, "blank.html")
    with open(blank, "w") as f:
        f.write("<!DOCTYPE html><html><body>blank</body></html>")
    rows = []
    try:
        for n in (a.baseline, a.number):
            t = time.time()
            bench = benchmark(a.binary, port, n, d)
            run_s = time.time() - t
            m = regenerate(a.binary, bench)
            html = os.path.join(bench, "perf_report.html")
            db = glob.glob(os.path.join(bench, "parallel_*", "benchmark_data.db"))[0]
            rows.append({"requests": n, "run_s": run_s, "db_mb": os.path.getsize(db) / 2**20,
                         "html_mb": os.path.getsize(html) / 2**20, "report_s": m["wall_s"],
                         "report_rss_mb": m["maxrss_kb"] / 1024, "open_s": open_time(html, a.repeat)})
        blank_s = open_time(blank, a.repeat)
    finally:
        server.kill()
        shutil.rmtree(d, ignore_errors=True)
    print("| requests | database (MB) | perf_report.html (MB) | `perf report` (s) | its peak RSS (MB) "
          "| Chromium open + render (s) | open minus blank page (s) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['requests']:,} | {r['db_mb']:.1f} | {r['html_mb']:.2f} | {r['report_s']:.2f} "
              f"| {r['report_rss_mb']:.0f} | {r['open_s']:.2f} | {r['open_s'] - blank_s:.2f} |")
    base, big = rows
    print(f"\nblank page open: {blank_s:.2f} s. {big['requests']:,} vs {base['requests']:,} requests: "
          f"html size x{big['html_mb'] / base['html_mb']:.2f}, perf report time x{big['report_s'] / base['report_s']:.1f}, "
          f"open time x{big['open_s'] / base['open_s']:.2f}")


if __name__ == "__main__":
    main()
