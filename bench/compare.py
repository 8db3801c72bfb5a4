#!/usr/bin/env python3
"""Side-by-side benchmark of perf against evalscope perf and GuideLLM, in one sitting.

The server is `perf serve-mock`, a separate process pinned to core 0; each client runs pinned
to core 1, so the server's cost is the same for every client and known. The truth about time
to first token comes from the server's own timestamps (--mock-log: when each request was
received and when each chunk went to the connection).

Scenarios:
  throughput  zero-delay server, 32 tokens per response, concurrency 64: requests/s and client
              CPU seconds per 1,000 requests.
  fidelity    TTFT 100 ms, 20 ms per token, 16 tokens, 1,000 concurrent streams, connections
              warmed first: reported p50/p99 TTFT against the server's own.
  memory      perf's peak RSS for 1,000, 100,000 and 1,000,000 requests (zero delay, concurrency 64),
              and per in-flight stream (1,000 and 10,000 streams held open).

Usage: python3 bench/compare.py [--install-peers DIR] [--evalscope PATH] [--guidellm PATH] [--quick]
Writes bench/results/latest.json and bench/results/latest.md. Builds target/dist/perf when it
is missing; pins with taskset when there is one. Peers are optional: --install-peers DIR
creates throwaway virtualenvs under DIR with evalscope[perf]==1.14.1 and guidellm==0.8.1 from
PyPI (a peer whose install fails is skipped with a message), or point at installed ones.
GuideLLM needs a tokenizer for its synthetic prompts: the Qwen3 one scripts/fetch-test-assets
fetches. GuideLLM has no warmup, so its TTFT is compared with the server's over every request.
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
PERF = os.path.join(ROOT, "target", "dist", "perf")

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


def server_itl_ms(log, skip):
    """The server's own inter-token gaps: between successive text chunks of each request (the
    last stamp is the finishing chunk, usage and [DONE]), skipping the first `skip` requests."""
    gaps = []
    with open(log) as f:
        for line in f:
            r = json.loads(line)
            text = r["chunks"][:-1]
            if r["request"] > skip:
                gaps += [(b - a) * 1000 for a, b in zip(text, text[1:])]
    return gaps


def matched_ttft_ms(log, outputs):
    """perf's TTFT and the server's for the same requests, matched by the x-request-id perf
    sends (benchmark_data.db's request_id, the server log's id): two sorted lists and the
    per-request differences (client - server), in ms."""
    import sqlite3
    server = {}
    with open(log) as f:
        for line in f:
            r = json.loads(line)
            if r.get("id") and r["chunks"]:
                server[r["id"]] = (r["chunks"][0] - r["received"]) * 1000
    dbs = glob.glob(os.path.join(outputs, "**", "benchmark_data.db"), recursive=True)
    if not dbs:
        return None
    rows = sqlite3.connect(dbs[0]).execute(
        "SELECT request_id, first_chunk_latency FROM result WHERE success = 1 AND request_id IS NOT NULL").fetchall()
    pairs = [(ttft * 1000, server[rid]) for rid, ttft in rows if rid in server and ttft is not None]
    if not pairs:
        return None
    return (sorted(c for c, _ in pairs), sorted(s for _, s in pairs), sorted(c - s for c, s in pairs))


def summary_of(outputs):
    files = glob.glob(os.path.join(outputs, "**", "benchmark_summary.json"), recursive=True)
    if not files:
        return None, None
    with open(files[0]) as f:
        s = json.load(f)
    with open(os.path.join(os.path.dirname(files[0]), "benchmark_percentile.json")) as f:
        p = {row["Percentiles"]: row for row in json.load(f)}
    return s, p


TOKENIZER = os.path.join(ROOT, "target", "test-assets", "tokenizers", "qwen3")


def client_cmd(tool, peers, url, n, parallel, warmup, max_tokens, outputs):
    if tool == "guidellm":
        base = url.rsplit("/v1/", 1)[0]
        return [peers["guidellm"], "run", "--backend", f"kind=openai_http,target={base},model=mock",
                "--profile", f"kind=concurrent,streams={parallel}", "--constraint", f"kind=max_requests,count={n}",
                "--tokenizer", f"kind=huggingface_auto,model={TOKENIZER}",
                "--data", f"kind=synthetic_text,prompt_tokens=16,output_tokens={max_tokens}",
                "--output", f"kind=json,path={os.path.join(outputs, 'guidellm.json')}", "--disable-console-interactive"]
    common = ["--url", url, "--model", "mock", "--prompt", "hello", "-n", str(n), "--parallel", str(parallel),
              "--max-tokens", str(max_tokens), "--warmup-num", str(warmup), "--outputs-dir", outputs,
              "--sleep-interval", "0", "--log-every-n-query", "1000000"]
    if tool == "perf":
        return [PERF, "--api", "openai"] + common
    return [peers["evalscope"], "perf", "--api", "openai"] + common


def guidellm_result(outputs):
    """(requests/s, output tokens/s, TTFT percentiles in ms) from GuideLLM's JSON report."""
    path = os.path.join(outputs, "guidellm.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        b = json.load(f)["benchmarks"][0]
    m = b["metrics"]
    ok = m["request_totals"]["successful"]
    duration = b["duration"]
    out_tokens = m["output_token_count"]["successful"]["total_sum"]
    ttft = m["time_to_first_token_ms"]["successful"]["percentiles"]
    # GuideLLM's TPOT includes the time to first token (see the peer notes in the README).
    tpot = m["time_per_output_token_ms"]["successful"]["percentiles"]["p50"]
    return {"req_per_s": ok / duration, "chunks_per_s": out_tokens / duration, "p50": ttft["p50"], "p99": ttft["p99"],
            "ok": ok, "tpot_p50": tpot}


def throughput(tools, peers, quick, repeat, concurrency=64):
    """Each tool `repeat` times, interleaved (perf, evalscope, perf, ...), against one server at
    `concurrency`; the row of each tool is its median run by requests/s, with every run's rate
    listed."""
    runs = {tool: [] for tool in tools}
    errors = {}
    server = Server(0, 0, 32)
    try:
        for _ in range(repeat):
            for tool in tools:
                n = {"perf": 20000 if not quick else 4000, "evalscope": 3000 if not quick else 1000,
                     "guidellm": 3000 if not quick else 1000}[tool]
                # Enough for every stream to be busy; the peers, at a few hundred requests/s,
                # get one request per stream at 10,000.
                n = max(n, (3 if tool == "perf" else 1) * concurrency)
                with tempfile.TemporaryDirectory() as d:
                    out = os.path.join(d, "out")
                    os.makedirs(out)
                    m = measured(client_cmd(tool, peers, server.url, n, concurrency, 64, 32, out), d)
                    if tool == "guidellm":
                        g = guidellm_result(out)
                        if not g:
                            errors[tool] = m["stderr_tail"]
                            continue
                        runs[tool].append({
                            "tool": tool, "requests": n, "req_per_s": g["req_per_s"], "chunks_per_s": g["chunks_per_s"],
                            "cpu_s_per_1000_req": 1000 * m["cpu_s"] / n, "peak_rss_mb": m["maxrss_kb"] / 1024,
                            "failed": n - g["ok"],
                        })
                        continue
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
        row["concurrency"] = concurrency
        rows.append(row)
    return rows


def fidelity(tools, peers, quick, streams=None):
    rows = []
    streams = streams or (1000 if not quick else 300)
    for tool in tools:
        with tempfile.TemporaryDirectory() as d:
            log = os.path.join(d, "server.jsonl")
            server = Server(100, 20, 16, log)
            try:
                out = os.path.join(d, "out")
                os.makedirs(out)
                m = measured(client_cmd(tool, peers, server.url, streams * 2, streams, streams, 16, out), d)
            finally:
                server.stop()
            if tool == "guidellm":
                g = guidellm_result(out)
                if not g:
                    rows.append({"tool": tool, "error": m["stderr_tail"]})
                    continue
                truth = server_ttft_ms(log, 0)
                rows.append({
                    "tool": tool, "streams": streams, "reported_p50_ttft_ms": g["p50"], "reported_p99_ttft_ms": g["p99"],
                    "server_p50_ttft_ms": round(nearest_rank(truth, 50), 2),
                    "server_p99_ttft_ms": round(nearest_rank(truth, 99), 2), "reported_p50_tpot_ms": g["tpot_p50"],
                })
                continue
            s, p = summary_of(out)
            if not s:
                rows.append({"tool": tool, "error": m["stderr_tail"]})
                continue
            truth = server_ttft_ms(log, 1 + streams)
            itl = server_itl_ms(log, 1 + streams)
            matched = matched_ttft_ms(log, out) if tool == "perf" else None
            if matched:
                # The same requests on both sides, not the server's requests after the warmup
                # by arrival order (which differ from the client's at saturation).
                truth = matched[1]
            rows.append({
                "tool": tool, "streams": streams,
                "reported_p50_ttft_ms": p["50%"]["TTFT (ms)"], "reported_p99_ttft_ms": p["99%"]["TTFT (ms)"],
                "server_p50_ttft_ms": round(nearest_rank(truth, 50), 2),
                "server_p99_ttft_ms": round(nearest_rank(truth, 99), 2),
                "reported_p50_tpot_ms": p["50%"]["TPOT (ms)"],
                "reported_p50_itl_ms": p["50%"]["ITL (ms)"], "reported_p99_itl_ms": p["99%"]["ITL (ms)"],
                "server_p50_itl_ms": round(nearest_rank(itl, 50), 2),
                "server_p99_itl_ms": round(nearest_rank(itl, 99), 2),
                "client_saturated": s.get("Client Saturated"),
                "matched_by_id": len(matched[1]) if matched else 0,
                "per_request_error_p99_ms": round(nearest_rank([abs(e) for e in matched[2]], 99), 3) if matched else None,
            })
    return rows


def memory(quick):
    rows = []
    server = Server(0, 0, 8)
    try:
        for n in ([1000, 100000, 1000000] if not quick else [1000, 20000]):
            with tempfile.TemporaryDirectory() as d:
                out = os.path.join(d, "out")
                m = measured(client_cmd("perf", None, server.url, n, 64, 0, 8, out), d)
                rows.append({"requests": n, "peak_rss_mb": round(m["maxrss_kb"] / 1024, 1), "rc": m["rc"]})
    finally:
        server.stop()
    return rows


def stream_memory(quick):
    """perf's peak RSS with S streams in flight at once (the server holds each response for 2 s
    before its first token), for two S: the difference per extra stream is the memory one
    in-flight stream costs."""
    small, large = (100, 1000) if quick else (1000, 10000)
    rows = []
    for streams in (small, large):
        server = Server(2000, 0, 4)
        try:
            with tempfile.TemporaryDirectory() as d:
                out = os.path.join(d, "out")
                m = measured(client_cmd("perf", None, server.url, streams, streams, 0, 4, out), d)
                s, _ = summary_of(out)
                rows.append({"streams": streams, "peak_rss_mb": round(m["maxrss_kb"] / 1024, 1),
                             "ok": s["Success Requests"] if s else 0})
        finally:
            server.stop()
    per_stream_kib = (rows[1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]) * 1024 / (large - small)
    return {"rows": rows, "per_stream_kib": round(per_stream_kib, 1)}


def markdown(results):
    lines = [f"Measured {results['date']} on {results['machine']}; command: `{results['command']}`.", ""]
    lines += ["Throughput (zero-delay simulator, 32-token streams, client and server on separate cores; at concurrency 64 "
              "the median of the interleaved runs, every run's rate in brackets; one run at 1,000 and 10,000):", "",
              "| client | concurrency | requests/s | chunks/s | client CPU s per 1,000 requests | peak RSS (MB) |", "|---|---|---|---|---|---|"]
    by_tool = {r["tool"]: r for r in results["throughput"] if "error" not in r and r.get("concurrency", 64) == 64}
    for r in results["throughput"]:
        if "error" in r:
            lines.append(f"| {r['tool']} | {r.get('concurrency', 64)} | failed | | | |")
        else:
            every = ", ".join(str(x) for x in r["all_req_per_s"])
            lines.append(f"| {r['tool']} | {r.get('concurrency', 64):,} | {r['req_per_s']:.0f} ({every}) | {r['chunks_per_s']:.0f} | {r['cpu_s_per_1000_req']:.3f} | {r['peak_rss_mb']:.0f} |")
    for peer in ["evalscope", "guidellm"]:
        if "perf" in by_tool and peer in by_tool:
            ratio = by_tool["perf"]["req_per_s"] / by_tool[peer]["req_per_s"]
            cpu = by_tool[peer]["cpu_s_per_1000_req"] / by_tool["perf"]["cpu_s_per_1000_req"]
            lines += ["", f"perf / {peer}: **{ratio:.1f}x** the request rate, **{cpu:.1f}x** less client CPU per request."]
    lines += ["", "TTFT fidelity (server TTFT 100 ms, 20 ms/token, 16 tokens; truth from the server's own timestamps):", "",
              "| client | streams | reported p50 / p99 TTFT (ms) | server's p50 / p99 TTFT (ms) | p99 error (ms) | reported p50 TPOT (ms) | client says saturated |",
              "|---|---|---|---|---|---|---|"]
    for r in results["fidelity"]:
        if "error" in r:
            lines.append(f"| {r['tool']} | failed | | | | | |")
        else:
            err = r["reported_p99_ttft_ms"] - r["server_p99_ttft_ms"]
            lines.append(f"| {r['tool']} | {r['streams']} | {r['reported_p50_ttft_ms']:.1f} / {r['reported_p99_ttft_ms']:.1f} | "
                         f"{r['server_p50_ttft_ms']:.1f} / {r['server_p99_ttft_ms']:.1f} | {err:+.1f} | {r['reported_p50_tpot_ms']:.1f} | "
                         f"{ {True: 'yes', False: 'no'}.get(r.get('client_saturated'), 'n/a')} |")
    ids = [r for r in results["fidelity"] if r.get("matched_by_id")]
    if ids:
        lines += ["", "perf's rows compare the same requests on both sides, matched by the x-request-id perf sends; "
                  "per-request |client - server| TTFT at p99: "
                  + ", ".join(f"{r['per_request_error_p99_ms']} ms at {r['streams']:,} streams ({r['matched_by_id']:,} requests)" for r in ids)
                  + ". The peers send no id, so their truth is the server's requests after the warmup, by arrival order."]
    itl_rows = [r for r in results["fidelity"] if "reported_p99_itl_ms" in r]
    if itl_rows:
        lines += ["", "ITL fidelity in the same runs (server: gaps between its own chunk stamps; evalscope and perf pool every gap):", "",
                  "| client | reported p50 / p99 ITL (ms) | server's p50 / p99 ITL (ms) | p99 error (ms) |", "|---|---|---|---|"]
        for r in itl_rows:
            err = r["reported_p99_itl_ms"] - r["server_p99_itl_ms"]
            lines.append(f"| {r['tool']} | {r['reported_p50_itl_ms']:.1f} / {r['reported_p99_itl_ms']:.1f} | "
                         f"{r['server_p50_itl_ms']:.1f} / {r['server_p99_itl_ms']:.1f} | {err:+.1f} |")
    lines += ["", "Memory (perf, zero-delay simulator, concurrency 64):", "", "| requests | peak RSS (MB) |", "|---|---|"]
    for r in results["memory"]:
        lines.append(f"| {r['requests']:,} | {r['peak_rss_mb']} |")
    sm = results.get("stream_memory")
    if sm:
        lines += ["", "Memory per in-flight stream (perf; every stream held open 2 s before its first token):", "",
                  "| streams in flight | succeeded | peak RSS (MB) |", "|---|---|---|"]
        for r in sm["rows"]:
            lines.append(f"| {r['streams']:,} | {r['ok']:,} | {r['peak_rss_mb']} |")
        lines += ["", f"Each extra in-flight stream: **{sm['per_stream_kib']} KiB**."]
    return "\n".join(lines) + "\n"


def high_concurrency(scenario, tools, peers, quick, levels, **kw):
    """`scenario` at each of `levels` (full runs only), every tool."""
    rows = []
    for level in ([] if quick else levels):
        chosen = tools
        if scenario is throughput:
            rows += throughput(chosen, peers, quick, kw.get("repeat", 1), concurrency=level)
        else:
            rows += fidelity(chosen, peers, quick, streams=level)
    return rows


def install_peer(root, name, requirement):
    """The executable of `requirement` in a virtualenv under `root`, installed if missing; None
    (with a message) when the install fails."""
    venv = os.path.join(root, name)
    exe = os.path.join(venv, "bin", name)
    if os.path.exists(exe):
        return exe
    print(f"installing {requirement} into {venv}", file=sys.stderr)
    ok = subprocess.run([sys.executable, "-m", "venv", venv]).returncode == 0 and subprocess.run(
        [os.path.join(venv, "bin", "pip"), "install", "-q", requirement]).returncode == 0
    if not ok or not os.path.exists(exe):
        print(f"installing {requirement} failed: skipping {name}", file=sys.stderr)
        return None
    return exe


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--evalscope", default=shutil.which("evalscope"), help="path to the evalscope executable")
    ap.add_argument("--guidellm", default=shutil.which("guidellm"), help="path to the guidellm executable")
    ap.add_argument("--install-peers", metavar="DIR", help="create virtualenvs with the peers under DIR (reused if present)")
    ap.add_argument("--binary", metavar="PATH", help="the perf binary (default target/dist/perf)")
    ap.add_argument("--results", metavar="DIR", default=os.path.join(ROOT, "bench", "results"),
                    help="where latest.json and latest.md go (default bench/results)")
    ap.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    ap.add_argument("--repeat", type=int, default=3, help="throughput runs per tool (the median is reported)")
    args = ap.parse_args()
    global PERF
    if args.binary:
        PERF = os.path.abspath(args.binary)
    if not os.path.exists(PERF) and not args.binary:
        print("building target/dist/perf", file=sys.stderr)
        subprocess.run(["cargo", "build", "--profile", "dist", "-p", "perf-host"], cwd=ROOT, check=False)
    if not os.path.exists(PERF):
        sys.exit(f"{PERF} is missing: cargo build --profile dist -p perf-host")
    if args.install_peers:
        args.evalscope = install_peer(args.install_peers, "evalscope", "evalscope[perf]==1.14.1") or args.evalscope
        args.guidellm = install_peer(args.install_peers, "guidellm", "guidellm==0.8.1") or args.guidellm
    tools = ["perf"]
    peers = {}
    for name, path in [("evalscope", args.evalscope), ("guidellm", args.guidellm)]:
        if path and os.path.exists(path):
            tools.append(name)
            peers[name] = path
        else:
            print(f"{name} not found (pass --{name} PATH or --install-peers DIR): skipping it", file=sys.stderr)
    if "guidellm" in peers and not os.path.exists(os.path.join(TOKENIZER, "tokenizer.json")):
        subprocess.run([os.path.join(ROOT, "scripts", "fetch-test-assets")], check=False)
    if "guidellm" in peers and not os.path.exists(os.path.join(TOKENIZER, "tokenizer.json")):
        print("GuideLLM needs the tokenizer scripts/fetch-test-assets fetches: skipping it", file=sys.stderr)
        tools.remove("guidellm")
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    results = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, {platform.system()}",
        "command": "python3 bench/compare.py" + (" --evalscope " + args.evalscope if "evalscope" in tools else "")
        + (" --guidellm " + args.guidellm if "guidellm" in tools else "")
        + (" --quick" if args.quick else "") + (f" --repeat {args.repeat}" if args.repeat != 3 else ""),
        "throughput": throughput(tools, peers, args.quick, args.repeat)
        + high_concurrency(throughput, tools, peers, args.quick, [1000, 10000], repeat=1),
        "fidelity": fidelity(tools, peers, args.quick)
        + high_concurrency(fidelity, tools, peers, args.quick, [10000]),
        "memory": memory(args.quick),
        "stream_memory": stream_memory(args.quick),
    }
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "latest.json"), "w") as f:
        json.dump(results, f, indent=2)
    md = markdown(results)
    with open(os.path.join(args.results, "latest.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
