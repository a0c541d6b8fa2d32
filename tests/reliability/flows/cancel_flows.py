"""Flows the cancel tests deploy. Each notes in ``trace_dir`` what it started (its pid, the ids
of its runs), then waits until it is stopped."""

from __future__ import annotations

import os
import signal
import time

from legato import flow, task
from legato.runtime import flow_run, task_run


def note(trace_dir: str, name: str, text: str) -> None:
    with open(os.path.join(trace_dir, name), "a") as fh:
        fh.write(text + "\n")


def wait_forever(limit: float) -> None:
    """Sleep in short naps until ``limit`` seconds passed (a run that must be stopped)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        time.sleep(0.05)


@task
def hold(trace_dir: str, where: str, limit: float) -> None:
    note(trace_dir, "tasks", f"{where} {task_run.id}")
    wait_forever(limit)


@flow(name="cancel-inner")
def inner(trace_dir: str, limit: float) -> None:
    note(trace_dir, "subflows", flow_run.id)
    hold.submit(trace_dir, "inner-thread", limit)
    hold(trace_dir, "inner-main", limit)


@flow(name="cancel-direct")
def direct(trace_dir: str, limit: float = 90.0, ignore_sigterm: bool = False) -> None:
    """A task in a thread, and one called in the flow's own (main) thread."""
    if ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    note(trace_dir, "pid", str(os.getpid()))
    hold.submit(trace_dir, "thread", limit)
    hold(trace_dir, "main", limit)


@flow(name="cancel-nested")
def nested(trace_dir: str, limit: float = 90.0) -> None:
    """A task in a thread, and a subflow (running in the main thread) with two tasks of its
    own, one in a thread and one in the subflow's thread."""
    note(trace_dir, "pid", str(os.getpid()))
    hold.submit(trace_dir, "thread", limit)
    inner(trace_dir, limit)
