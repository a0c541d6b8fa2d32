"""N mapped task runs (default 10,000) on the default thread-pool task runner.

`inc.map(range(N))` submits one task run per item; the flow then waits for every result.
As in seq_tasks.py, a task-less warm-up flow runs first and only the second flow call is timed.
"""

import sys
import time

from _orch import load, report

orch = load()
N = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000


@orch.task
def inc(x: int) -> int:
    return x + 1


@orch.flow(name="bench-warmup")
def warmup() -> int:
    return 0


@orch.flow(name="bench-map")
def mapped(n: int) -> int:
    futures = inc.map(range(n))
    return sum(f.result() for f in futures)


if __name__ == "__main__":
    warmup()
    t0 = time.perf_counter()
    total = mapped(N)
    flow_s = time.perf_counter() - t0
    assert total == sum(range(1, N + 1)), total
    report(n=N, flow_s=flow_s, per_task_us=flow_s / N * 1e6)
