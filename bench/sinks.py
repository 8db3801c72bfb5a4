#!/usr/bin/env python3
"""Does exporting to OpenTelemetry change what perf measures? The same open-loop run against
the simulator, five ways: no sink; the OpenTelemetry sink exporting to a real receiver
(VictoriaMetrics, from scripts/fetch-test-assets) over OTLP/HTTP; over gRPC with gzip through a
real OTLP/gRPC collector (rotel, from scripts/fetch-test-assets) into it; to a collector that
accepts connections and never answers; to a collector that refuses every connection. Reports each run's achieved
request rate, TTFT (mean and p99) and wall time as ratios to the run without a sink.

    python3 bench/sinks.py [--binary target/dist/perf] [--rate 400] [--number 4000]
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hanging_collector():
    """Accepts connections, reads nothing, answers nothing."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    held = []

    def serve():
        while True:
            conn, _ = srv.accept()
            held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


def start_receiver(tmp):
    binary = ROOT / "target/test-assets/victoria-metrics/victoria-metrics"
    if not binary.exists():
        sys.exit(f"{binary} is missing: run scripts/fetch-test-assets")
    port = free_port()
    proc = subprocess.Popen(
        [str(binary), f"-storageDataPath={tmp}/vm", f"-httpListenAddr=127.0.0.1:{port}",
         "-opentelemetry.usePrometheusNaming"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    sys.exit("victoria-metrics did not start")


def start_rotel(forward):
    binary = ROOT / "target/test-assets/rotel/rotel-agent"
    if not binary.exists():
        sys.exit(f"{binary} is missing: run scripts/fetch-test-assets")
    port = free_port()
    proc = subprocess.Popen(
        [str(binary), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{port}",
         "--otlp-http-endpoint", f"127.0.0.1:{free_port()}", "--exporter", "otlp",
         "--otlp-exporter-endpoint", forward, "--otlp-exporter-protocol", "http"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    sys.exit("rotel did not start")


def run(binary, tmp, name, rate, number, sink, env):
    out = Path(tmp) / name
    args = [binary, "--api", "mock", "--port", "0", "--open-loop", "--rate", str(rate),
            "-n", str(number), "--max-tokens", "16", "--mock-ttft-ms", "50", "--mock-tpot-ms", "10",
            "--prompt", "hello", "--name", name, "--outputs-dir", str(out), "--no-timestamp"]
    if sink:
        args += ["--sink", sink]
    started = time.monotonic()
    proc = subprocess.run(args, env={**os.environ, **env}, capture_output=True, text=True)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"{name}: perf exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    run_dir = next(p for p in (out / name).iterdir() if p.is_dir())
    summary = json.loads((run_dir / "benchmark_summary.json").read_text())
    rows = json.loads((run_dir / "benchmark_percentile.json").read_text())
    p99 = next(r for r in rows if r["Percentiles"] == "99%")
    return {
        "req/s": summary["Req Throughput (req/s)"],
        "avg TTFT ms": summary["Avg TTFT (ms)"],
        "p99 TTFT ms": p99["TTFT (ms)"],
        "p99 dispatch lag ms": summary.get("P99 Dispatch Lag (ms)"),
        "wall s": round(wall, 2),
        "sink warnings": sum("sink 'otel'" in l for l in proc.stdout.splitlines() + proc.stderr.splitlines()),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=str(ROOT / "target/dist/perf"))
    ap.add_argument("--rate", type=float, default=400)
    ap.add_argument("--number", type=int, default=4000)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="perf-sinks-")
    receiver, vm_port = start_receiver(tmp)
    rotel, grpc_port = start_rotel(f"http://127.0.0.1:{vm_port}/opentelemetry")
    hang_port = hanging_collector()
    refused_port = free_port()
    try:
        cases = [
            ("no sink", None, {}),
            ("otel -> VictoriaMetrics", '{"interval_ms": 1000}',
             {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{vm_port}/opentelemetry"}),
            ("otel gRPC+gzip -> rotel -> VictoriaMetrics", '{"interval_ms": 1000}',
             {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{grpc_port}",
              "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}),
            ("otel -> hanging collector", '{"interval_ms": 1000}',
             {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{hang_port}"}),
            ("otel -> refusing collector", '{"interval_ms": 1000, "required": false}',
             {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{refused_port}"}),
        ]
        results = []
        for label, options, env in cases:
            sink = f"otel={options}" if options else None
            results.append((label, run(a.binary, tmp, label.split()[0] + str(len(results)), a.rate,
                                       a.number, sink, env)))
        base = results[0][1]
        print(f"open loop, {a.rate:g} req/s, {a.number} requests, simulator TTFT 50 ms "
              f"(perf {a.binary})\n")
        print("| case | req/s | avg TTFT ms | p99 TTFT ms | p99 dispatch lag ms | wall s | "
              "req/s vs no sink | p99 TTFT vs no sink | sink warnings |")
        print("|---|---|---|---|---|---|---|---|---|")
        for label, r in results:
            print(f"| {label} | {r['req/s']:.1f} | {r['avg TTFT ms']:.2f} | {r['p99 TTFT ms']:.2f} | "
                  f"{r['p99 dispatch lag ms']} | {r['wall s']} | {r['req/s'] / base['req/s']:.3f} | "
                  f"{r['p99 TTFT ms'] / base['p99 TTFT ms']:.3f} | {r['sink warnings']} |")
    finally:
        receiver.kill()
        rotel.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
