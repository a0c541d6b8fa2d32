"""Flows the reliability tests deploy. Each leaves traces in files the test reads: which run
ran, in which process, and how often."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from legato import flow, task
from legato.runtime import flow_run, task_run


def note(path: str, text: str) -> None:
    """Append one line (a single small write to an O_APPEND file: lines never interleave)."""
    with open(path, "a") as fh:
        fh.write(text + "\n")


def wait_until(marker: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not os.path.exists(marker):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{marker} did not appear within {limit} s")
        time.sleep(0.05)


@flow(name="append-id")
def append_id(log_path: str) -> str:
    """Notes its run id in ``log_path``."""
    note(log_path, flow_run.id)
    return flow_run.id


@flow(name="wait-for-marker")
def wait_for_marker(trace_dir: str, marker: str, limit: float = 90.0) -> int:
    """Notes ``<pid> <attempt>`` in ``trace_dir/<run id>``, then sleeps until ``marker``
    exists."""
    note(os.path.join(trace_dir, flow_run.id), f"{os.getpid()} {flow_run.run_count}")
    wait_until(marker, limit)
    note(os.path.join(trace_dir, flow_run.id + ".done"), str(os.getpid()))
    return os.getpid()


@flow(name="sleep-for")
def sleep_for(trace_dir: str, seconds: float) -> float:
    """Notes its pid in ``trace_dir/<run id>``, sleeps ``seconds`` in short naps."""
    note(os.path.join(trace_dir, flow_run.id), str(os.getpid()))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)
    return seconds


@task(tags=["e2e-slot"])
def hold_slot(trace_dir: str, limit: float) -> None:
    """Holds a slot of the tag ``e2e-slot`` until the flow run is stopped."""
    note(os.path.join(trace_dir, "task"), task_run.id)
    wait_until(os.path.join(trace_dir, "never"), limit)


@flow(name="inner-flow")
def inner_flow(trace_dir: str, limit: float) -> None:
    note(os.path.join(trace_dir, "inner"), flow_run.id)
    hold_slot(trace_dir, limit)


@flow(name="cancel-me")
def cancel_me(trace_dir: str, limit: float = 90.0) -> None:
    """Starts a child process, then a subflow whose task holds a tag's concurrency slot; runs
    until stopped."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)  # e2e-child"])
    note(os.path.join(trace_dir, "child"), str(child.pid))
    note(os.path.join(trace_dir, "parent"), str(os.getpid()))
    inner_flow(trace_dir, limit)
