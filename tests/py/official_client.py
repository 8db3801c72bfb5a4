"""The run perf's visualizer sinks send, made with the official client instead: a run named
`official` in project perf_benchmark, the arguments as its config, three running summaries
(evalscope's keys) and a final one, then finish. ClearML's is what evalscope's `--visualizer
clearml` does: a `testing` task, the arguments connected, each summary's numbers as scalars of
"Performance Metrics" at an iteration that counts up, the console as the client captures it
(a line printed), the machine as its resource monitor reports it (every second here, not every
30 s, so that a short script has a report), and the task completed at exit.

    python official_client.py wandb|swanlab|clearml
"""
import os
import sys
import time

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
elif sys.argv[1] == "clearml":
    from clearml import Task
    task = Task.init(project_name=os.getenv("CLEARML_PROJECT_NAME", "perf_benchmark"),
                     task_name="official", task_type=Task.TaskTypes.testing,
                     auto_resource_monitoring=dict(report_frequency_sec=1, first_report_sec=1,
                                                   sample_frequency_per_sec=4,
                                                   wait_for_first_iteration_to_start_sec=1))
    task.connect(CONFIG)
    print("a line of the benchmark's console")
    logger = task.get_logger()
    for iteration, step in enumerate(STEPS):
        for key, value in step.items():
            logger.report_scalar(title="Performance Metrics", series=key, value=value,
                                 iteration=iteration)
    time.sleep(3)  # a report of the resource monitor
else:
    import swanlab
    swanlab.init(project="perf_benchmark", experiment_name="official", config=CONFIG)
    for step in STEPS:
        swanlab.log(step)
    swanlab.finish()
