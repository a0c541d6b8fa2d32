"""Agents under stress, with real processes (a `legato server start`, `legato agent start`
subprocesses, the flow runs' own processes):

- several agents on one queue run every run exactly once (SQLite and PostgreSQL);
- a flow run process killed with SIGKILL is Crashed within two heartbeat intervals and retried
  when its deployment asks for it, whether its agent notices or only the server does;
- an agent killed with SIGKILL leaves its flow run to finish, once;
- long healthy runs are never taken for crashed ones;
- cancelling: a run not started never starts; a running one is stopped (its process and the
  processes it started), its subflow run is Cancelled and its task's concurrency slot freed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.deploy_helpers import (
    Stack,
    database_url,
    infrastructure_pid,
    kill_if_ours,
    lines,
    now,
    open_stack,
    process_alive,
    query,
    running_count,
    state_types,
    wait_for,
)
from tests.reliability.figures import record

from legato.states import StateType

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups and SIGKILL")

S = StateType
HEARTBEAT = 0.5
# the crash detection service runs every half interval; the rest is this busy 2-core machine
MARGIN = 1.5


@pytest.fixture
def stack(tmp_path: Path, legato_home: Path) -> Iterator[Stack]:
    with open_stack(tmp_path, legato_home) as s:
        yield s


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    """The folder the flows note what they did in."""
    path = tmp_path / "trace"
    path.mkdir()
    return path


def fast_heartbeats(stack: Stack, seconds: float = HEARTBEAT) -> None:
    stack.settings["LEGATO_FLOW_RUN_HEARTBEAT_SECONDS"] = str(seconds)


def started(stack: Stack, trace: Path, run_id: str, attempts: int = 1, timeout: float = 30
            ) -> list[str]:
    """The ``<pid> <attempt>`` lines of a wait-for-marker run, once it started ``attempts``
    times."""
    return wait_for(lambda: len(lines_of(trace / run_id)) >= attempts and lines_of(
        trace / run_id), timeout, f"flow run {run_id} to start (attempt {attempts})",
        on_timeout=lambda: f"states {stack.state_names(run_id)}\n{stack.logs_text()}")


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def crashed_state(stack: Stack, run_id: str, timeout: float) -> Any:
    def find() -> Any:
        return next((s for s in stack.states(run_id) if s.type is S.CRASHED), None)

    return wait_for(find, timeout, f"flow run {run_id} to be Crashed",
                    on_timeout=lambda: f"{stack.state_names(run_id)}\n{stack.logs_text()}")


# -- several agents --------------------------------------------------------------------------------
def test_three_agents_run_thirty_runs_each_exactly_once(history: str, stack: Stack,
                                                        tmp_path: Path) -> None:
    stack.start_server()
    dep = stack.deploy("append_id", "many")
    ran = tmp_path / "ran.txt"
    for _ in range(3):
        stack.agent("--limit", "4")
    ids = [stack.create_run(dep, log_path=str(ran)) for _ in range(30)]

    stack.wait_all(ids, S.COMPLETED, 120)
    assert sorted(lines(ran)) == sorted(ids)  # each run's code ran once
    for run_id in ids:
        assert running_count(stack, run_id) == 1, stack.state_names(run_id)
    claimers = query(database_url(stack.home),
                     "SELECT DISTINCT claimed_by FROM flow_run WHERE deployment_id = :d", d=dep)
    assert {c for (c,) in claimers} <= {"e2e-agent-1", "e2e-agent-2", "e2e-agent-3"}
    assert len(claimers) >= 2  # an agent takes 4 at a time: the others got work too
    stack.check_agents()


# -- crashes ---------------------------------------------------------------------------------------
def test_killed_flow_process_is_crashed_then_retried(stack: Stack, trace: Path) -> None:
    fast_heartbeats(stack)
    stack.start_server()
    stack.agent()
    dep = stack.deploy("wait_for_marker", "crashy", retries=1)
    marker = trace / "go"
    run_id = stack.create_run(dep, trace_dir=str(trace), marker=str(marker))

    [first] = started(stack, trace, run_id)
    pid = infrastructure_pid(stack, run_id)
    assert first == f"{pid} 1"
    killed_at = now()
    os.killpg(pid, signal.SIGKILL)

    crashed = crashed_state(stack, run_id, 2 * HEARTBEAT + MARGIN + 5)
    record(f"flow process SIGKILLed, its agent watching (heartbeat {HEARTBEAT:g} s)",
           "kill to Crashed", (crashed.timestamp - killed_at).total_seconds())
    assert crashed.timestamp - killed_at <= dt.timedelta(seconds=2 * HEARTBEAT + MARGIN)
    # retries=1: scheduled again at once, and the second attempt runs to the end
    second = started(stack, trace, run_id, attempts=2)
    marker.touch()
    stack.wait_state(run_id, S.COMPLETED, 30)
    assert second[1].endswith(" 2") and second[1].split()[0] != str(pid)
    assert state_types(stack.states(run_id)) == [
        S.SCHEDULED, S.PENDING, S.RUNNING, S.CRASHED, S.SCHEDULED, S.PENDING, S.RUNNING,
        S.COMPLETED]
    assert "AwaitingRetry" in stack.state_names(run_id)
    assert stack.run(run_id).run_count == 2
    stack.check_agents()


def test_run_whose_agent_and_process_died_is_found_by_its_heartbeat(stack: Stack,
                                                                    trace: Path) -> None:
    fast_heartbeats(stack)
    stack.start_server()
    agent = stack.agent()
    dep = stack.deploy("wait_for_marker", "orphan", retries=1)
    marker = trace / "go"
    run_id = stack.create_run(dep, trace_dir=str(trace), marker=str(marker))
    started(stack, trace, run_id)
    pid = infrastructure_pid(stack, run_id)

    agent.kill()  # nobody watches the flow run's process any more: only the server can tell
    killed_at = now()
    os.killpg(pid, signal.SIGKILL)
    crashed = crashed_state(stack, run_id, 2 * HEARTBEAT + MARGIN + 5)
    record(f"flow process and its agent SIGKILLed (heartbeat {HEARTBEAT:g} s)",
           "kill to Crashed (server's crash detection)",
           (crashed.timestamp - killed_at).total_seconds())
    assert crashed.timestamp - killed_at <= dt.timedelta(seconds=2 * HEARTBEAT + MARGIN)
    assert "heartbeat" in (crashed.message or "").lower()
    stack.wait_state(run_id, S.SCHEDULED, 10, name="AwaitingRetry")

    stack.agent()  # a new agent takes the retry
    marker.touch()
    stack.wait_state(run_id, S.COMPLETED, 30)
    assert running_count(stack, run_id) == 2
    assert stack.run(run_id).run_count == 2
    # the flow's code sees its attempt number, as with retries in one process
    assert [line.split()[1] for line in lines_of(trace / run_id)] == ["1", "2"]
    stack.check_agents()


def test_agent_frozen_while_its_run_died_does_not_undo_the_retry(stack: Stack,
                                                                 trace: Path) -> None:
    fast_heartbeats(stack)
    stack.start_server()
    agent = stack.agent()
    dep = stack.deploy("wait_for_marker", "frozen", retries=1)
    marker = trace / "go"
    run_id = stack.create_run(dep, trace_dir=str(trace), marker=str(marker))
    started(stack, trace, run_id)
    pid = infrastructure_pid(stack, run_id)

    agent.freeze()  # a stalled agent: it cannot see its flow run's process die
    os.killpg(pid, signal.SIGKILL)
    stack.wait_state(run_id, S.SCHEDULED, 2 * HEARTBEAT + MARGIN + 5, name="AwaitingRetry")
    marker.touch()
    agent.thaw()  # it now finds its process gone; the run's retry is no longer its business
    stack.wait_state(run_id, S.COMPLETED, 30)
    assert state_types(stack.states(run_id)) == [
        S.SCHEDULED, S.PENDING, S.RUNNING, S.CRASHED, S.SCHEDULED, S.PENDING, S.RUNNING,
        S.COMPLETED]
    assert len(lines_of(trace / run_id)) == 2
    stack.check_agents()


def test_killed_agent_leaves_its_flow_run_to_finish_once(stack: Stack, trace: Path) -> None:
    fast_heartbeats(stack)
    stack.start_server()
    first = stack.agent()
    dep = stack.deploy("wait_for_marker", "survivor", retries=1)
    marker = trace / "go"
    run_id = stack.create_run(dep, trace_dir=str(trace), marker=str(marker))
    started(stack, trace, run_id)
    pid = infrastructure_pid(stack, run_id)

    first.kill()
    killed_at = now()
    stack.agent()  # another agent polls the same queue meanwhile
    # the flow run's process (a session of its own) lives on and keeps its heartbeat going
    beat = wait_for(lambda: (r := stack.run(run_id)).heartbeat and r.heartbeat > killed_at
                    + dt.timedelta(seconds=3 * HEARTBEAT) and r, 15,
                    "heartbeats after the agent died")
    assert beat.state_type is S.RUNNING
    assert process_alive(pid)
    marker.touch()
    stack.wait_state(run_id, S.COMPLETED, 30)
    assert lines_of(trace / run_id) == [f"{pid} 1"]  # its code ran once, in that process
    assert lines_of(trace / f"{run_id}.done") == [str(pid)]
    assert S.CRASHED not in state_types(stack.states(run_id))
    assert running_count(stack, run_id) == 1
    stack.check_agents()


def test_long_healthy_runs_are_never_marked_crashed(stack: Stack, trace: Path) -> None:
    fast_heartbeats(stack)
    stack.start_server()
    stack.agent()
    sleepy = stack.deploy("sleep_for", "sleepy")
    doomed = stack.deploy("wait_for_marker", "doomed")
    healthy = [stack.create_run(sleepy, trace_dir=str(trace), seconds=4 * HEARTBEAT + 1)
               for _ in range(8)]
    killed = [stack.create_run(doomed, trace_dir=str(trace), marker=str(trace / "never"))
              for _ in range(2)]
    for run_id in killed:
        started(stack, trace, run_id)
        os.killpg(infrastructure_pid(stack, run_id), signal.SIGKILL)

    stack.wait_all(killed, S.CRASHED, 2 * HEARTBEAT + MARGIN + 10)
    stack.wait_all(healthy, S.COMPLETED, 60)
    for run_id in healthy:
        assert state_types(stack.states(run_id)) == [S.SCHEDULED, S.PENDING, S.RUNNING,
                                                     S.COMPLETED]
    for run_id in killed:
        assert stack.run(run_id).state_type is S.CRASHED
    stack.check_agents()


# -- cancellation ----------------------------------------------------------------------------------
def test_cancelled_before_it_starts_never_starts(stack: Stack, tmp_path: Path) -> None:
    stack.start_server()
    dep = stack.deploy("append_id", "cancel-early")
    ran = tmp_path / "ran.txt"
    run_id = stack.create_run(dep, log_path=str(ran))
    out = stack.legato("flow-run", "cancel", run_id)
    assert "Cancelled" in out.stdout
    assert stack.run(run_id).state_type is S.CANCELLED

    stack.agent()
    sentinel = stack.create_run(dep, log_path=str(ran))  # queued after it: done means polled
    stack.wait_state(sentinel, S.COMPLETED, 60)
    assert lines(ran) == [sentinel]
    assert stack.run(run_id).state_type is S.CANCELLED
    assert state_types(stack.states(run_id)) == [S.SCHEDULED, S.CANCELLED]
    again = stack.legato("flow-run", "cancel", run_id, ok=False)
    assert "already finished" in again.stdout + again.stderr
    stack.check_agents()


def test_cancelled_while_running_stops_everything_it_started(stack: Stack, trace: Path) -> None:
    fast_heartbeats(stack)
    stack.start_server()
    stack.legato("concurrency-limit", "create", "e2e-slot", "1")
    dep = stack.deploy("cancel_me", "cancel-late")
    run_id = stack.create_run(dep, trace_dir=str(trace))
    stack.agent()

    [task_run_id] = wait_for(lambda: lines(trace / "task"), 60, "the task to hold its slot",
                             on_timeout=stack.logs_text)
    [child] = lines(trace / "child")
    try:
        [parent] = lines(trace / "parent")
        [inner_id] = lines(trace / "inner")
        assert process_alive(int(child)) and process_alive(int(parent))
        slots = json.loads(stack.legato("concurrency-limit", "inspect", "e2e-slot",
                                        "--json").stdout)
        assert slots["active_slots"] == [task_run_id]

        asked = time.monotonic()
        stack.legato("flow-run", "cancel", run_id)
        stack.wait_state(run_id, S.CANCELLED, 30)
        took = time.monotonic() - asked
        assert took < 10, f"cancelling took {took:.1f} s"
        # the budget: cancel stops the infrastructure within 30 s of the request
        wait_for(lambda: not process_alive(int(parent)) and not process_alive(int(child)),
                 30 - (time.monotonic() - asked), "the flow run's processes to be gone",
                 on_timeout=stack.logs_text)
    finally:
        kill_if_ours(int(child), "e2e-child")
    slots = json.loads(stack.legato("concurrency-limit", "inspect", "e2e-slot", "--json").stdout)
    assert slots["active_slots"] == []
    assert stack.run(inner_id).state_type is S.CANCELLED
    assert stack.client.read_task_run(task_run_id).state_type is S.CANCELLED
    assert S.CANCELLING in state_types(stack.states(run_id))
    stack.check_agents()


