"""Cancelling a deployment's running flow run, with real processes (a `legato server start`, a
`legato agent start`, the flow run's own process):

- the flow run, its subflow runs and every task run they started end Cancelled (none Crashed),
  whether the task ran in the flow's main thread, in a thread of the task runner, or in a
  subflow;
- the whole cancel, from the `legato flow-run cancel` call until the flow's process is gone,
  takes less than 30 s with the default settings, even for a process that ignores SIGTERM
  (LEGATO_WORKER_CANCEL_GRACE_SECONDS, then SIGKILL).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.deploy_helpers import (
    Stack,
    kill_if_ours,
    open_stack,
    process_alive,
    wait_for,
)
from tests.reliability.figures import record

from legato.schemas import FlowRunFilter, TaskRunFilter
from legato.states import StateType

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups and signals")

S = StateType
FLOWS = Path(__file__).parent / "flows" / "cancel_flows.py"
BUDGET = 30.0  # docs/budgets.md: cancel stops the infrastructure within 30 s


@pytest.fixture
def stack(tmp_path: Path, legato_home: Path) -> Iterator[Stack]:
    with open_stack(tmp_path, legato_home) as s:
        target = s.project / "flows" / "cancel_flows.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FLOWS, target)
        yield s


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    path = tmp_path / "trace"
    path.mkdir()
    return path


def start_and_cancel(stack: Stack, trace: Path, func: str, tasks: int,
                     **parameters: object) -> tuple[str, float, float]:
    """Run ``func`` through an agent until its ``tasks`` task runs are running, cancel it;
    (run id, seconds until the run was Cancelled, seconds until its process was gone)."""
    stack.start_server()
    dep = stack.deploy(func, f"cancel-{func}", fixture="cancel_flows.py")
    run_id = stack.create_run(dep, trace_dir=str(trace), **parameters)
    stack.agent()
    wait_for(lambda: len(noted(trace / "tasks")) == tasks, 60,
             "the flow's task runs to be running", on_timeout=stack.logs_text)
    pid = int(noted(trace / "pid")[0])
    try:
        assert process_alive(pid)
        asked = time.monotonic()
        stack.legato("flow-run", "cancel", run_id)
        stack.wait_state(run_id, S.CANCELLED, BUDGET)
        cancelled = time.monotonic() - asked
        wait_for(lambda: not process_alive(pid), BUDGET + 5, "the flow's process to be gone",
                 interval=0.02, on_timeout=stack.logs_text)
        gone = time.monotonic() - asked
    finally:
        kill_if_ours(pid, "legato.engine.deployed")
    case = f"cancel of a running flow run ({func}{', ignoring SIGTERM' if parameters else ''})"
    record(case, "cancel call to Cancelled", cancelled)
    record(case, "cancel call to its process gone", gone)
    return run_id, cancelled, gone


def noted(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def assert_all_cancelled(stack: Stack, run_id: str, subflows: int) -> None:
    """The run, its subflow runs and every one of their task runs are Cancelled."""
    client = stack.client
    children = client.read_flow_runs(FlowRunFilter(parent_flow_run_id=run_id))
    assert len(children) == subflows
    for flow_run_id in [run_id, *(c.id for c in children)]:
        run = client.read_flow_run(flow_run_id)
        assert run.state_type is S.CANCELLED, (run.name, run.state_name, run.state_message)
        task_runs = client.read_task_runs(TaskRunFilter(flow_run_id=flow_run_id))
        assert task_runs
        ended = {(t.name, t.state_name, t.state_message) for t in task_runs
                 if t.state_type is not S.CANCELLED}
        assert not ended, f"task runs not Cancelled: {ended}"


@pytest.mark.parametrize(("func", "tasks", "subflows"), [("direct", 2, 0), ("nested", 3, 1)])
def test_cancel_ends_the_run_its_subflows_and_task_runs_cancelled(
        stack: Stack, trace: Path, func: str, tasks: int, subflows: int) -> None:
    run_id, cancelled, gone = start_and_cancel(stack, trace, func, tasks)
    assert_all_cancelled(stack, run_id, subflows)
    # a process that stops when asked is gone in a few seconds, not at the end of the grace
    assert gone < 10, f"the cancel took {gone:.1f} s"
    stack.check_agents()


def test_a_process_ignoring_sigterm_is_gone_within_the_budget(stack: Stack, trace: Path) -> None:
    run_id, cancelled, gone = start_and_cancel(stack, trace, "direct", 2, ignore_sigterm=True)
    assert gone < BUDGET, f"the process was gone only {gone:.1f} s after the cancel"
    assert_all_cancelled(stack, run_id, 0)
    stack.check_agents()
