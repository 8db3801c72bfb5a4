#!/usr/bin/env python3
"""https against plain http at 1,000 streams: is TTFT over TLS as exact as over plain http?

The server is `perf serve-mock` (TTFT 100 ms, 16 tokens, 20 and then 50 ms per token), pinned
to core 0,
once plain and once behind its in-process TLS terminator (`--tls-cert`, a private CA made here
with openssl). Its `--mock-log` stamps when each chunk was handed to the connection (to TLS,
for https), so the truth is the same on both. perf runs pinned to core 1 with 1,000 concurrent
streams (2,000 requests after 1,000 warmup requests, which open the connections), its
requests matched to the server's by x-request-id. The runs alternate http, https, http, https.
At 20 ms a token, 1,000 streams are 50,000 chunks a second on one client core, where TLS's
extra cost saturates the client; at 50 ms it does not.

Usage: python3 bench/tls.py [--binary PATH] [--streams N] [--repeat N] [--tpot-ms MS ...]
Writes bench/results/tls.json and bench/results/tls.md (the README's "https" figures).
"""

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (the shared helpers: pinning, the server log, matching)

ROOT = compare.ROOT


def make_pki(d):
    """A private CA and a certificate for 127.0.0.1 signed by it."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=perf bench CA")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return os.path.join(d, "ca.pem"), os.path.join(d, "server.pem"), os.path.join(d, "server.key")


def one(binary, scheme, streams, tpot_ms, pki, d):
    log = os.path.join(d, "server.jsonl")
    port = compare.free_port()
    cmd = [binary, "serve-mock", "--port", str(port), "--mock-ttft-ms", "100", "--mock-tpot-ms", str(tpot_ms),
           "--mock-output-tokens", "16", "--mock-log", log]
    if scheme == "https":
        cmd += ["--tls-cert", pki[1], "--tls-key", pki[2]]
    server = subprocess.Popen(compare.pin(0, cmd), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    server.stdout.readline()
    out = os.path.join(d, "out")
    os.makedirs(out)
    client = [binary, "--api", "openai", "--url", f"{scheme}://127.0.0.1:{port}/v1/chat/completions",
              "--model", "mock", "--prompt", "hello", "-n", str(streams * 2), "--parallel", str(streams),
              "--max-tokens", "16", "--warmup-num", str(streams), "--outputs-dir", out,
              "--sleep-interval", "0", "--log-every-n-query", "1000000"]
    if scheme == "https":
        client += ["--tls-ca-cert", pki[0]]
    try:
        m = compare.measured(client, d)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)
    s, p = compare.summary_of(out)
    matched = compare.matched_ttft_ms(log, out)
    if not s or not matched:
        return {"scheme": scheme, "error": m["stderr_tail"]}
    client_ttft, server_ttft, errors = matched
    itl = compare.server_itl_ms(log, 1 + streams)
    return {
        "scheme": scheme,
        "streams": streams,
        "tpot_ms": tpot_ms,
        "matched": len(errors),
        "transport": s.get("Transport"),
        "timestamps": s.get("Timestamps"),
        "reported_p50_ttft_ms": p["50%"]["TTFT (ms)"],
        "reported_p99_ttft_ms": p["99%"]["TTFT (ms)"],
        "server_p50_ttft_ms": round(compare.nearest_rank(server_ttft, 50), 2),
        "server_p99_ttft_ms": round(compare.nearest_rank(server_ttft, 99), 2),
        "per_request_error_p99_ms": round(compare.nearest_rank([abs(e) for e in errors], 99), 3),
        "per_request_error_max_ms": round(max(abs(e) for e in errors), 3),
        "reported_p99_itl_ms": p["99%"]["ITL (ms)"],
        "server_p99_itl_ms": round(compare.nearest_rank(itl, 99), 2),
        "avg_tls_handshake_ms": s.get("Avg TLS Handshake (ms)"),
        "client_cpu_s": round(m["cpu_s"], 3),
        "client_saturated": s.get("Client Saturated"),
    }


def markdown(result):
    rows = result["runs"]
    lines = [
        f"Measured {result['date']} on {result['machine']}; command: `{result['command']}`.",
        "",
        "| transport | streams | ms per token | requests matched | reported p50 / p99 TTFT (ms) | server's p50 / p99 TTFT (ms) | per-request \\|client - server\\| TTFT p99 / max (ms) | reported / server p99 ITL (ms) | client CPU (s) | client says saturated |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['scheme']} | error: {r['error'][-200:]!r} ||||||| |")
            continue
        lines.append(
            f"| {r['transport']} | {r['streams']} | {r['tpot_ms']} | {r['matched']} | {r['reported_p50_ttft_ms']:.2f} / {r['reported_p99_ttft_ms']:.2f}"
            f" | {r['server_p50_ttft_ms']:.2f} / {r['server_p99_ttft_ms']:.2f}"
            f" | {r['per_request_error_p99_ms']:.3f} / {r['per_request_error_max_ms']:.3f}"
            f" | {r['reported_p99_itl_ms']:.2f} / {r['server_p99_itl_ms']:.2f}"
            f" | {r['client_cpu_s']:.2f} | {'yes' if r['client_saturated'] else 'no'} |")
    ok = [r for r in rows if "error" not in r]
    for tpot in sorted({r["tpot_ms"] for r in ok}):
        at = [r for r in ok if r["tpot_ms"] == tpot]
        worst = {s: max((r["per_request_error_p99_ms"] for r in at if r["scheme"] == s), default=None)
                 for s in ("http", "https")}
        cpu = {s: [r["client_cpu_s"] for r in at if r["scheme"] == s] for s in ("http", "https")}
        if worst["http"] is None or worst["https"] is None:
            continue
        ratio = (sum(cpu["https"]) / len(cpu["https"])) / (sum(cpu["http"]) / len(cpu["http"]))
        lines += ["", f"At {tpot} ms a token: per-request TTFT error at p99, worst run, {worst['https']:.3f} ms over https "
                  f"and {worst['http']:.3f} ms over plain http; client CPU over https / plain http {ratio:.2f}x."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=compare.PERF)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--tpot-ms", type=int, nargs="+", default=[20, 50])
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    args.binary = os.path.abspath(args.binary)
    if not os.path.exists(args.binary):
        subprocess.run(["cargo", "build", "--profile", "dist", "-p", "perf-host"], cwd=ROOT, check=True)
    runs = []
    with tempfile.TemporaryDirectory() as pki_dir:
        pki = make_pki(pki_dir)
        for tpot in args.tpot_ms:
            for _ in range(args.repeat):
                for scheme in ("http", "https"):
                    with tempfile.TemporaryDirectory() as d:
                        r = one(args.binary, scheme, args.streams, tpot, pki, d)
                        print(json.dumps(r), flush=True)
                        runs.append(r)
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "command": "python3 bench/tls.py" + ("" if args.streams == 1000 else f" --streams {args.streams}"),
        "runs": runs,
    }
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "tls.json"), "w") as f:
        json.dump(result, f, indent=2)
    md = markdown(result)
    with open(os.path.join(args.results, "tls.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
