#!/usr/bin/env python3
"""Side-by-side benchmark of perf against evalscope perf, in one sitting.

The server is `perf serve-mock`, a separate process pinned to core 0; each client runs pinned
to core 1, so the server's cost is the same for every client and known. The truth about time
to first token comes from the server's own timestamps (--mock-log: when each request was
received and when each chunk went to the connection).

Scenarios:
  throughput  zero-delay server, 32 tokens per response, concurrency 64: requests/s and client
              CPU seconds per 1,000 requests.
  fidelity    TTFT 100 ms, 20 ms per token, 16 tokens, 1,000 concurrent streams, connections
              warmed first: reported p50/p99 TTFT against the server's own.
  memory      perf's peak RSS for 1,000, 100,000 and 400,000 requests (zero delay, concurrency 64).

Usage: python3 bench/compare.py [--evalscope PATH/TO/evalscope] [--quick]
Writes bench/results/latest.json and bench/results/latest.md. Needs target/release/perf
(cargo build --release -p perf-host) and taskset; evalscope is optional (pip install
'evalscope[perf]==1.14.1' in a virtualenv; the scenario is skipped with a message without it).
"""

import argparse
import datetime
import glob
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PERF = os.path.join(ROOT, "target", "release", "perf")

MEASURE = r"""
import json, resource, subprocess, sys, time
t = time.time()
rc = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=open(sys.argv[1] + '.err', 'w')).returncode
u = resource.getrusage(resource.RUSAGE_CHILDREN)
json.dump({'rc': rc, 'wall_s': time.time() - t, 'cpu_s': u.ru_utime + u.ru_stime, 'maxrss_kb': u.ru_maxrss}, open(sys.argv[1], 'w'))
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pin(core, cmd):
    if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1:
        return ["taskset", "-c", str(core)] + cmd
    return cmd


def measured(cmd, workdir):
    """Runs cmd on core 1 in a fresh interpreter so its rusage is its own."""
    out = os.path.join(workdir, "measure.json")
    subprocess.run([sys.executable, "-c", MEASURE, out] + pin(1, cmd), cwd=workdir, check=False)
    with open(out) as f:
        result = json.load(f)
    with open(out + ".err") as f:
        result["stderr_tail"] = f.read()[-2000:]
    return result


class Server:
    def __init__(self, ttft_ms, tpot_ms, tokens, log=None):
        self.port = free_port()
        cmd = [PERF, "serve-mock", "--port", str(self.port), "--mock-ttft-ms", str(ttft_ms),
               "--mock-tpot-ms", str(tpot_ms), "--mock-output-tokens", str(tokens)]
        if log:
            cmd += ["--mock-log", log]
        self.proc = subprocess.Popen(pin(0, cmd), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.proc.stdout.readline()  # "listening on ..."
        self.url = f"http://127.0.0.1:{self.port}/v1/chat/completions"

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def nearest_rank(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = max(1, math.ceil(p / 100 * len(v)))
    return v[min(k, len(v)) - 1]


def server_ttft_ms(log, skip):
    """The server's own TTFT (first chunk sent - request received), skipping the first `skip`
    requests (connection test and warmup)."""
    rows = []
    with open(log) as f:
        for line in f:
            r = json.loads(line)
            if r["request"] > skip and r["chunks"]:
                rows.append((r["chunks"][0] - r["received"]) * 1000)
    return rows


def summary_of(outputs):
    files = glob.glob(os.path.join(outputs, "**", "benchmark_summary.json"), recursive=True)
    if not files:
        return None, None
    with open(files[0]) as f:
        s = json.load(f)
    with open(os.path.join(os.path.dirname(files[0]), "benchmark_percentile.json")) as f:
        p = {row["Percentiles"]: row for row in json.load(f)}
    return s, p


def client_cmd(tool, evalscope, url, n, parallel, warmup, max_tokens, outputs):
    common = ["--url", url, "--model", "mock", "--prompt", "hello", "-n", str(n), "--parallel", str(parallel),
              "--max-tokens", str(max_tokens), "--warmup-num", str(warmup), "--outputs-dir", outputs,
              "--sleep-interval", "0", "--log-every-n-query", "1000000"]
    if tool == "perf":
        return [PERF, "--api", "openai"] + common
    return [evalscope, "perf", "--api", "openai"] + common


def throughput(tools, evalscope, quick, repeat):
    """Each tool `repeat` times, interleaved (perf, evalscope, perf, ...), against one server;
    the row of each tool is its median run by requests/s, with every run's rate listed."""
    runs = {tool: [] for tool in tools}
    errors = {}
    server = Server(0, 0, 32)
    try:
        for _ in range(repeat):
            for tool in tools:
                n = {"perf": 20000 if not quick else 4000, "evalscope": 3000 if not quick else 1000}[tool]
                with tempfile.TemporaryDirectory() as d:
                    out = os.path.join(d, "out")
                    m = measured(client_cmd(tool, evalscope, server.url, n, 64, 64, 32, out), d)
                    s, _ = summary_of(out)
                    if not s:
                        errors[tool] = m["stderr_tail"]
                        continue
                    runs[tool].append({
                        "tool": tool, "requests": n, "req_per_s": s["Req Throughput (req/s)"],
                        "chunks_per_s": s["Output Throughput (tok/s)"],
                        "cpu_s_per_1000_req": 1000 * m["cpu_s"] / (n + 64), "peak_rss_mb": m["maxrss_kb"] / 1024,
                        "failed": s["Failed Requests"],
                    })
    finally:
        server.stop()
    rows = []
    for tool in tools:
        if not runs[tool]:
            rows.append({"tool": tool, "error": errors.get(tool, "no run")})
            continue
        ordered = sorted(runs[tool], key=lambda r: r["req_per_s"])
        row = dict(ordered[len(ordered) // 2])
        row["all_req_per_s"] = [round(r["req_per_s"]) for r in runs[tool]]
        rows.append(row)
    return rows


def fidelity(tools, evalscope, quick):
    rows = []
    streams = 1000 if not quick else 300
    for tool in tools:
        with tempfile.TemporaryDirectory() as d:
            log = os.path.join(d, "server.jsonl")
            server = Server(100, 20, 16, log)
            try:
                out = os.path.join(d, "out")
                m = measured(client_cmd(tool, evalscope, server.url, streams * 2, streams, streams, 16, out), d)
            finally:
                server.stop()
            s, p = summary_of(out)
            if not s:
                rows.append({"tool": tool, "error": m["stderr_tail"]})
                continue
            truth = server_ttft_ms(log, 1 + streams)
            rows.append({
                "tool": tool, "streams": streams,
                "reported_p50_ttft_ms": p["50%"]["TTFT (ms)"], "reported_p99_ttft_ms": p["99%"]["TTFT (ms)"],
                "server_p50_ttft_ms": round(nearest_rank(truth, 50), 2),
                "server_p99_ttft_ms": round(nearest_rank(truth, 99), 2),
                "reported_p50_tpot_ms": p["50%"]["TPOT (ms)"],
            })
    return rows


def memory(quick):
    rows = []
    server = Server(0, 0, 8)
    try:
        for n in ([1000, 100000, 400000] if not quick else [1000, 20000]):
            with tempfile.TemporaryDirectory() as d:
                out = os.path.join(d, "out")
                m = measured(client_cmd("perf", None, server.url, n, 64, 0, 8, out), d)
                rows.append({"requests": n, "peak_rss_mb": round(m["maxrss_kb"] / 1024, 1), "rc": m["rc"]})
    finally:
        server.stop()
    return rows


def markdown(results):
    lines = [f"Measured {results['date']} on {results['machine']}; command: `{results['command']}`.", ""]
    lines += ["Throughput (zero-delay simulator, 32-token streams, concurrency 64, client and server on separate cores; "
              "median of the interleaved runs, every run's rate in brackets):", "",
              "| client | requests/s | chunks/s | client CPU s per 1,000 requests | peak RSS (MB) |", "|---|---|---|---|---|"]
    by_tool = {r["tool"]: r for r in results["throughput"] if "error" not in r}
    for r in results["throughput"]:
        if "error" in r:
            lines.append(f"| {r['tool']} | failed | | | |")
        else:
            every = ", ".join(str(x) for x in r["all_req_per_s"])
            lines.append(f"| {r['tool']} | {r['req_per_s']:.0f} ({every}) | {r['chunks_per_s']:.0f} | {r['cpu_s_per_1000_req']:.3f} | {r['peak_rss_mb']:.0f} |")
    if "perf" in by_tool and "evalscope" in by_tool:
        ratio = by_tool["perf"]["req_per_s"] / by_tool["evalscope"]["req_per_s"]
        cpu = by_tool["evalscope"]["cpu_s_per_1000_req"] / by_tool["perf"]["cpu_s_per_1000_req"]
        lines += ["", f"perf / evalscope: **{ratio:.1f}x** the request rate, **{cpu:.1f}x** less client CPU per request."]
    lines += ["", "TTFT fidelity (server TTFT 100 ms, 20 ms/token, 16 tokens; truth from the server's own timestamps):", "",
              "| client | streams | reported p50 / p99 TTFT (ms) | server's p50 / p99 TTFT (ms) | p99 error (ms) | reported p50 TPOT (ms) |",
              "|---|---|---|---|---|---|"]
    for r in results["fidelity"]:
        if "error" in r:
            lines.append(f"| {r['tool']} | failed | | | | |")
        else:
            err = r["reported_p99_ttft_ms"] - r["server_p99_ttft_ms"]
            lines.append(f"| {r['tool']} | {r['streams']} | {r['reported_p50_ttft_ms']:.1f} / {r['reported_p99_ttft_ms']:.1f} | "
                         f"{r['server_p50_ttft_ms']:.1f} / {r['server_p99_ttft_ms']:.1f} | {err:+.1f} | {r['reported_p50_tpot_ms']:.1f} |")
    lines += ["", "Memory (perf, zero-delay simulator, concurrency 64):", "", "| requests | peak RSS (MB) |", "|---|---|"]
    for r in results["memory"]:
        lines.append(f"| {r['requests']:,} | {r['peak_rss_mb']} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--evalscope", default=shutil.which("evalscope"), help="path to the evalscope executable")
    ap.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    ap.add_argument("--repeat", type=int, default=3, help="throughput runs per tool (the median is reported)")
    args = ap.parse_args()
    if not os.path.exists(PERF):
        sys.exit(f"{PERF} is missing: cargo build --release -p perf-host")
    tools = ["perf"]
    if args.evalscope and os.path.exists(args.evalscope):
        tools.append("evalscope")
    else:
        print("evalscope not found (pass --evalscope PATH): measuring perf alone", file=sys.stderr)
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    results = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, {platform.system()}",
        "command": "python3 bench/compare.py" + (" --evalscope " + args.evalscope if "evalscope" in tools else "")
        + (" --quick" if args.quick else "") + (f" --repeat {args.repeat}" if args.repeat != 3 else ""),
        "throughput": throughput(tools, args.evalscope, args.quick, args.repeat),
        "fidelity": fidelity(tools, args.evalscope, args.quick),
        "memory": memory(args.quick),
    }
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "latest.json"), "w") as f:
        json.dump(results, f, indent=2)
    md = markdown(results)
    with open(os.path.join(ROOT, "bench", "results", "latest.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
