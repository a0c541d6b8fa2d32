"""History completeness against a server: how much of a flow's history can be read 1 s after the
flow call returned, while the script is still alive.

Run by bench/run.py with LEGATO_API_URL / PREFECT_API_URL pointing at a running server:

    python server_history.py {legato|prefect} 1000

The same flow as seq_tasks.py (a task-less warm-up flow, then N sequential `inc` calls). When the
timed flow call returns, the script prints

    BENCH_RETURNED {"returned_at": <time.time()>, "flow_run_id": "...", "flow_s": ...}

and then waits on stdin, as a long-running program would keep running after a flow: run.py
counts the flow run's task runs, states and log lines through the API and in the database at
returned_at + 1 s (and then until the history is whole or it gives up), then writes a line (or
closes stdin) and the script exits. What a script's exit flushes is not what this measures.
"""

import importlib
import json
import sys
import time

from _orch import load, report

orch = load()
N = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
current_flow_run = importlib.import_module(f"{orch.__name__}.runtime.flow_run")


@orch.task
def inc(x: int) -> int:
    return x + 1


@orch.flow(name="bench-warmup")
def warmup() -> int:
    return 0


@orch.flow(name="bench-server-history")
def sequential(n: int) -> tuple[str, int]:
    total = 0
    for i in range(n):
        total += inc(i)
    return str(current_flow_run.id), total


if __name__ == "__main__":
    warmup()
    t0 = time.perf_counter()
    run_id, total = sequential(N)
    flow_s = time.perf_counter() - t0
    returned_at = time.time()
    assert total == sum(range(1, N + 1)), total
    print(
        "BENCH_RETURNED "
        + json.dumps({"returned_at": returned_at, "flow_run_id": run_id, "flow_s": flow_s}),
        flush=True,
    )
    sys.stdin.readline()  # run.py has counted
    report(n=N, flow_s=flow_s, flow_run_id=run_id, held_s=time.time() - returned_at)
