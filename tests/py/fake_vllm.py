"""A stand-in for `python -m vllm.entrypoints.openai.api_server`, for the `--api local_vllm`
tests: it records its command line and pid, takes a while to start as vLLM does, then serves
/health and the OpenAI API by running `perf serve-mock` on the port it was given.

perf runs it as `PERF_VLLM_PYTHON=<this script's wrapper>`, so it receives vLLM's arguments
(`-m vllm.entrypoints.openai.api_server --model M ... --port P ...`). Its behaviour comes from
the environment: FAKE_VLLM_RECORD (a file for the arguments and pid), FAKE_VLLM_PERF (the perf
binary), FAKE_VLLM_MODE (`serve`, `missing`: fail as an absent vLLM does, `hang`: never become
healthy), FAKE_VLLM_DELAY_S (start-up time).
"""
import json
import os
import subprocess
import sys
import time

args = sys.argv[1:]
mode = os.environ.get("FAKE_VLLM_MODE", "serve")
with open(os.environ["FAKE_VLLM_RECORD"], "w") as f:
    json.dump({"args": args, "pid": os.getpid(), "env": {k: v for k, v in os.environ.items() if k.startswith("VLLM_")}}, f)
print("INFO fake vLLM starting", flush=True)
if mode == "missing":
    print("/usr/bin/python3: Error while finding module specification for 'vllm.entrypoints.openai.api_server' (ModuleNotFoundError: No module named 'vllm')", file=sys.stderr, flush=True)
    sys.exit(1)
time.sleep(float(os.environ.get("FAKE_VLLM_DELAY_S", "1.5")))
if mode == "hang":
    while True:
        time.sleep(1)
port = args[args.index("--port") + 1]
print("INFO loading weights... done; serving on port " + port, flush=True)
# The child stays in this process group, so stopping the group stops it too.
server = subprocess.Popen([os.environ["FAKE_VLLM_PERF"], "serve-mock", "--port", port,
                           "--mock-ttft-ms", os.environ.get("FAKE_VLLM_TTFT_MS", "20")])
with open(os.environ["FAKE_VLLM_RECORD"] + ".child", "w") as f:
    f.write(str(server.pid))
sys.exit(server.wait())
