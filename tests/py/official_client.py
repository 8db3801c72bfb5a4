"""The run perf's visualizer sinks send, made with the official client instead: a run named
`official` in project perf_benchmark, the arguments as its config, three running summaries
(evalscope's keys) and a final one, then finish.

    python official_client.py wandb|swanlab
"""
import sys

CONFIG = {"model": "mock", "parallel": [2], "number": [60], "api": "mock"}
STEPS = [
    {"Total Requests": 20, "Success Requests": 20, "Avg Latency (s)": 0.05, "Avg TTFT (ms)": 11.7},
    {"Total Requests": 40, "Success Requests": 40, "Avg Latency (s)": 0.05, "Avg TTFT (ms)": 11.6},
    {"Total Requests": 60, "Success Requests": 60, "Avg Latency (s)": 0.05, "Avg TTFT (ms)": 11.6,
     "P99 TTFT (ms)": 13.0},
]

if sys.argv[1] == "wandb":
    import wandb
    run = wandb.init(project="perf_benchmark", name="official", config=CONFIG)
    for step in STEPS:
        wandb.log(step)
    run.finish()
else:
    import swanlab
    swanlab.init(project="perf_benchmark", experiment_name="official", config=CONFIG)
    for step in STEPS:
        swanlab.log(step)
    swanlab.finish()
