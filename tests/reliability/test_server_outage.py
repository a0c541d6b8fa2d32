"""The server goes away (SIGKILL) while deployment runs run, finish and wait in the queue, and
comes back on the same address after 15 s, 60 s or 5 minutes (PostgreSQL, a real server, a
real agent, the flows' own processes). Every run must end in the state its code reached: none
Crashed, none run twice, every task run and log line recorded.

Past the outage window (``LEGATO_API_OUTAGE_WINDOW_SECONDS``) a flow's process writes what it
could not send to its spool and exits; the next Legato process delivers it.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.integration.deploy_helpers import (
    Server,
    Stack,
    free_port,
    now,
    wait_for,
)
from tests.reliability.figures import record

from legato.client.factory import close_clients
from legato.schemas import TaskRunFilter
from legato.states import TERMINAL_TYPES, StateType

pytestmark = [pytest.mark.skipif(os.name != "posix", reason="process groups and SIGKILL"),
              pytest.mark.postgres]

S = StateType
STEPS = 4
HEARTBEAT = 2.0  # so a server that counted its own downtime as silence would crash runs at once


@pytest.fixture
def outage_stack(pg_stack: Stack) -> Stack:
    pg_stack.settings["LEGATO_FLOW_RUN_HEARTBEAT_SECONDS"] = str(HEARTBEAT)
    pg_stack.settings["LEGATO_LATE_RUNS_GRACE_SECONDS"] = "5"
    return pg_stack


def kill_server(server: Server) -> None:
    assert server.proc is not None
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)


def traces(trace: Path, run_id: str) -> list[str]:
    path = trace / run_id
    return path.read_text().splitlines() if path.exists() else []


def done_at(trace: Path, run_id: str) -> float | None:
    """When the run's code finished (None: not yet; the file may exist but not be written)."""
    path = trace / f"{run_id}.done"
    words = path.read_text().split() if path.exists() else []
    return float(words[0]) if words else None


@pytest.mark.parametrize("outage", [15, 60, 300])
def test_a_server_outage_is_waited_out(outage_stack: Stack, tmp_path: Path,
                                      outage: int) -> None:
    stack = outage_stack
    trace, marker = tmp_path / "trace", tmp_path / "release"
    trace.mkdir()
    port = free_port()
    stack.start_server(port=port)
    dep = stack.deploy("outage_worker", "outage", fixture="outage.py")
    stack.agent("--limit", "3")
    params = {"trace_dir": str(trace), "marker": str(marker), "steps": STEPS}

    # three running (one of them fails by its own code) ...
    running = [stack.create_run(dep, **params, fail=(i == 1)) for i in range(3)]
    wait_for(lambda: all(traces(trace, r) for r in running), 90, "three runs to start",
             on_timeout=stack.logs_text)
    # ... four queued behind the agent's limit, three scheduled to come due during the outage
    queued = [stack.create_run(dep, **params) for _ in range(4)]
    due = now() + dt.timedelta(seconds=outage / 2)
    scheduled = [stack.create_run(dep, when=due, **params) for _ in range(3)]
    everything = running + queued + scheduled
    assert all(stack.run(r).state_type is not S.RUNNING for r in queued + scheduled)

    close_clients()  # (the test's own client would wait the outage out too)
    kill_server(stack.servers[0])
    killed_at = time.time()
    marker.write_text("go")  # the running flows finish while the server is away
    wait_for(lambda: all(done_at(trace, r) for r in running), 60,
             "the running flows' code to finish during the outage")
    time.sleep(max(0.0, killed_at + outage - time.time()))  # the outage itself
    restarted_at = time.time()
    stack.servers.append(Server(stack.base_env(), stack.logs / "server-2.log", port).start())

    runs = wait_for(lambda: (lambda rs: rs if all(r.state_type in TERMINAL_TYPES for r in rs)
                             else None)([stack.run(r) for r in everything]),
                    240, "every run to end", on_timeout=stack.logs_text)

    case = f"server SIGKILLed, back after {outage} s (PostgreSQL, 10 runs)"
    record(case, "from the restart to every run ended", time.time() - restarted_at)
    record(case, "runs Crashed, lost or run twice", sum(
        1 for r in runs if "Crashed" in stack.state_names(r.id) or r.state_type not in (
            S.COMPLETED, S.FAILED)) + sum(1 for r in everything if len(traces(trace, r)) != 1),
        "runs")
    # every run ends in the state its code reached: Failed for the failing one, else Completed
    for r in runs:
        expected = S.FAILED if r.id == running[1] else S.COMPLETED
        assert r.state_type is expected, (r.id, r.state_name, r.state_message,
                                          stack.state_names(r.id), stack.logs_text())
        assert "Crashed" not in stack.state_names(r.id), stack.state_names(r.id)
    # the first three finished while the server was away
    for r in running:
        assert killed_at < done_at(trace, r) < restarted_at
    # each run's code started once
    for r in everything:
        assert len(traces(trace, r)) == 1, (r, traces(trace, r))
    # every task run and every log line is there
    client = stack.client
    for r in everything:
        tasks = client.read_task_runs(TaskRunFilter(flow_run_id=r, limit=100))
        assert len(tasks) == 2 * STEPS and all(t.state_type is S.COMPLETED for t in tasks), r
        messages = {line.message for line in client.read_logs(flow_run_id=r)}
        assert {f"step {i} of {r}" for i in range(2 * STEPS)} <= messages, r
    stack.check_agents()


def test_past_the_outage_window_the_history_waits_in_the_spool(
        outage_stack: Stack, tmp_path: Path, legato_home: Path) -> None:
    """A script whose server stays away past its window ends with its history in a spool file;
    the next Legato process on the machine delivers it, in order, whole."""
    stack = outage_stack
    port = free_port()
    server = stack.start_server(port=port)
    released = tmp_path / "released"
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f'''
        import os, time
        from legato import flow, task, get_run_logger

        @task
        def step(i):
            get_run_logger().info("step %d", i)
            return i

        @flow(name="spooled")
        def spooled():
            total = sum(step(i) for i in range(3))
            print("ready", flush=True)
            while not os.path.exists({str(released)!r}):
                time.sleep(0.05)
            return total + sum(step(i) for i in range(3, 6))

        print("result", spooled())
    '''))
    env = {**stack.env, "LEGATO_API_OUTAGE_WINDOW_SECONDS": "3"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        close_clients()
        kill_server(server)
        killed = time.monotonic()
        released.write_text("1")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "result 15" in out
    record("server away past a 3 s outage window", "script's exit after the kill",
           time.monotonic() - killed, "s")
    spools = list((legato_home / "spool").glob("*.jsonl"))
    assert len(spools) == 1 and str(spools[0]) in err, err
    assert os.stat(spools[0]).st_mode & 0o077 == 0  # run logs: the user's alone

    stack.servers.append(Server(stack.base_env(), stack.logs / "server-2.log", port).start())
    # the next Legato process of this machine (here a CLI command) delivers it
    listed = stack.legato("flow-run", "ls")
    assert "spooled" in listed.stdout
    assert not list((legato_home / "spool").glob("*.jsonl*"))
    client = stack.client
    (run,) = stack.runs_of("spooled")
    assert run.state_type is S.COMPLETED, stack.state_names(run.id)
    tasks = client.read_task_runs(TaskRunFilter(flow_run_id=run.id, limit=100))
    assert sorted(t.state_type.value for t in tasks) == ["COMPLETED"] * 6
    messages = [line.message for line in client.read_logs(flow_run_id=run.id)]
    assert [m for m in messages if m.startswith("step ")] == [f"step {i}" for i in range(6)]

