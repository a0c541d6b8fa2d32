"""A flow the server-outage tests deploy: it notes each start of its code, runs tasks that log,
waits for the test's marker (the server is down by then), then runs and logs more and ends
while the server is still away."""

from __future__ import annotations

import os
import time

from legato import flow, get_run_logger, task
from legato.runtime import flow_run


def note(path: str, text: str) -> None:
    with open(path, "a") as fh:
        fh.write(text + "\n")


@task
def step(i: int) -> int:
    get_run_logger().info("step %d of %s", i, flow_run.id)
    return i


@flow(name="outage-worker")
def outage_worker(trace_dir: str, marker: str, steps: int = 4, fail: bool = False,
                  limit: float = 900.0) -> int:
    note(os.path.join(trace_dir, flow_run.id), str(os.getpid()))
    total = sum(step(i) for i in range(steps))
    deadline = time.monotonic() + limit
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    total += sum(step(i) for i in range(steps, 2 * steps))
    note(os.path.join(trace_dir, flow_run.id + ".done"), f"{time.time():.3f}")
    if fail:
        raise ValueError("the flow's own code failed")
    return total
