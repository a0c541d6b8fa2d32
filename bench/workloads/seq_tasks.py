"""N sequential task calls in one flow (default 1,000): the per-task overhead of the engine.

A warm-up flow without tasks runs first, so the timed call does not include creating the
history database or starting Prefect's ephemeral API server: the number is the flow call itself
(flow run setup + N task runs + whatever the engine does before the call returns).
The warm-up has no task runs, so after the process exits every task run in the history is one of
the N counted here (run.py checks how many made it).
"""

import sys
import time

from _orch import load, report

orch = load()
N = int(sys.argv[2]) if len(sys.argv) > 2 else 1000


@orch.task
def inc(x: int) -> int:
    return x + 1


@orch.flow(name="bench-warmup")
def warmup() -> int:
    return 0


@orch.flow(name="bench-seq")
def sequential(n: int) -> int:
    total = 0
    for i in range(n):
        total += inc(i)
    return total


if __name__ == "__main__":
    warmup()
    t0 = time.perf_counter()
    total = sequential(N)
    flow_s = time.perf_counter() - t0
    assert total == sum(range(1, N + 1)), total
    report(n=N, flow_s=flow_s, per_task_us=flow_s / N * 1e6)
