"""A plain script (``python script.py`` calling a flow: no deployment) killed with SIGKILL does
not stay Running: on the embedded history (SQLite, PostgreSQL) the next Legato process that
opens it ends the run Crashed, through a server its crash detection does; its task runs and
subflow runs end with it, and a script's crashed run is not retried as a deployment's would be.
A healthy script running for many heartbeat intervals is never marked Crashed.

Each test prints the time it measured (run pytest with ``-s`` to see it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.integration.deploy_helpers import (
    LEGATO,
    Stack,
    database_url,
    open_stack,
    query,
    truncate,
    wait_for,
)
from tests.reliability.figures import record

from legato import flow
from legato.settings import reset_settings_cache

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL")

HEARTBEAT = 1.0
# the crash detection service runs every half interval; the rest is this busy 2-core machine
MARGIN = 3.0
TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")

DOOMED = """
    import sys
    import time
    from pathlib import Path

    from legato import flow, runtime, task

    trace = Path(sys.argv[1])


    @task
    def step(i: int) -> int:
        if i == 2:
            time.sleep(3600)  # the test kills the script here
        return i


    @flow(name="doomed-child")
    def child() -> list:
        return [step(i) for i in range(4)]


    @flow(name="doomed-script", retries=2)  # a script's retries: no retry after a crash
    def main() -> list:
        (trace / "run_id").write_text(runtime.flow_run.id)
        step(0)
        return child()


    if __name__ == "__main__":
        main()
"""

HEALTHY = """
    import sys
    import time
    from pathlib import Path

    from legato import flow, runtime, task

    trace = Path(sys.argv[1])


    @task
    def nap(i: int) -> int:
        time.sleep(0.25)
        return i


    @flow(name="healthy-child")
    def naps(n: int) -> int:  # a subflow beats too
        return sum(nap(i) for i in range(n))


    @flow(name="healthy-script")
    def main(n: int) -> int:
        (trace / "run_id").write_text(runtime.flow_run.id)
        return naps(n)


    if __name__ == "__main__":
        print(main(int(sys.argv[2])))
"""

OPENER = """
    from legato import flow

    @flow(name="opener")
    def opener() -> int:
        return 1

    opener()
"""


@pytest.fixture
def stack(tmp_path: Path, legato_home: Path) -> Iterator[Stack]:
    with open_stack(tmp_path, legato_home) as s:
        s.settings["LEGATO_FLOW_RUN_HEARTBEAT_SECONDS"] = str(HEARTBEAT)
        yield s


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        "server"])
def door(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
         stack: Stack) -> str:
    """The embedded history on SQLite or PostgreSQL, or a real `legato server start`."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        truncate(url)
        monkeypatch.setenv("LEGATO_DATABASE_URL", url)  # (Stack.base_env passes it on)
    if request.param == "server":
        stack.start_server()
    return request.param


def client_env(stack: Stack) -> dict[str, str]:
    """A script's environment: through the server when the test started one."""
    return stack.env if stack.api_url else stack.base_env()


def start_script(stack: Stack, code: str, trace: Path, *args: str,
                 kill_on_exit: object) -> subprocess.Popen[bytes]:
    script = stack.project / "script.py"
    script.write_text(textwrap.dedent(code))
    trace.mkdir(exist_ok=True)
    out = open(stack.logs / "script.log", "ab")  # noqa: SIM115 - the child holds it
    proc = subprocess.Popen([sys.executable, str(script), str(trace), *args], cwd=stack.project,
                            env=client_env(stack), stdout=out, stderr=subprocess.STDOUT)
    out.close()
    kill_on_exit(proc)  # type: ignore[operator]
    return proc


def script_run_id(stack: Stack, trace: Path, proc: subprocess.Popen[bytes]) -> str:
    def started() -> str | None:
        if proc.poll() is not None:
            raise AssertionError(f"the script exited {proc.returncode}:\n{stack.logs_text()}")
        path = trace / "run_id"
        return path.read_text() if path.exists() and path.stat().st_size else None

    return wait_for(started, 60, "the script's flow run to start")


def flow_runs(url: str, run_id: str) -> dict[str, tuple[str, str | None]]:
    """The script's flow run and its subflow runs: id -> (state type, state message)."""
    rows = query(url, "SELECT id, state_type, state_message FROM flow_run WHERE id = :r OR "
                 "parent_task_run_id IN (SELECT id FROM task_run WHERE flow_run_id = :r)",
                 r=run_id)
    return {str(i): (t, m) for i, t, m in rows}


def task_run_states(url: str, flow_run_ids: list[str]) -> list[str]:
    ids = ", ".join(f"'{i}'" for i in flow_run_ids)
    return [t for (t,) in query(url, f"SELECT state_type FROM task_run WHERE flow_run_id IN "
                                f"({ids}) ORDER BY created")]


def killed_while_running(stack: Stack, trace: Path, kill_on_exit: object) -> tuple[str, str]:
    """Start the doomed script, wait until its flow run, subflow run and a task run of each
    are Running in the history, and SIGKILL it. Returns (the history's URL, the run's id)."""
    proc = start_script(stack, DOOMED, trace, kill_on_exit=kill_on_exit)
    run_id = script_run_id(stack, trace, proc)
    url = database_url(stack.home)

    def all_running() -> bool:
        runs = flow_runs(url, run_id)
        return (len(runs) == 2 and {t for t, _ in runs.values()} == {"RUNNING"}
                and task_run_states(url, list(runs)).count("RUNNING") == 2)

    wait_for(all_running, 60, "the flow run, its subflow and their task runs to be Running",
             on_timeout=stack.logs_text)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    return url, run_id


def assert_crashed_with_everything_ended(url: str, run_id: str, why: str) -> None:
    runs = flow_runs(url, run_id)
    assert {t for t, _ in runs.values()} == {"CRASHED"}, runs
    assert all(why in (m or "") for _, m in runs.values()), runs
    tasks = task_run_states(url, list(runs))
    assert len(tasks) >= 3 and all(t in TERMINAL for t in tasks), tasks
    assert tasks.count("CRASHED") == 2, tasks  # the sleeping step, and the subflow's stand-in
    # retries=2, but a script is not a deployment: nothing can run it again
    names = [n for (n,) in query(url, "SELECT name FROM flow_run_state WHERE flow_run_id = :r "
                                 "ORDER BY timestamp", r=run_id)]
    assert names[-1] == "Crashed" and "AwaitingRetry" not in names, names


def run_legato(stack: Stack, *args: str, **settings: str) -> str:
    env = {**client_env(stack), **settings}
    done = subprocess.run([LEGATO, *args], cwd=stack.project, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"legato {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def listed_state(stack: Stack, run_id: str, **settings: str) -> str:
    """The run's state type as `legato flow-run ls` shows it (a process opening the history)."""
    runs = json.loads(run_legato(stack, "flow-run", "ls", "--json", "--limit", "100",
                                 **settings))
    return next(r["state_type"] for r in runs if r["id"] == run_id)


def run_opener(stack: Stack) -> None:
    """Another script: its first flow run opens the history."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(OPENER)], cwd=stack.project,
                          env=client_env(stack), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"


# -- killed ----------------------------------------------------------------------------------------
def test_killed_script_is_crashed_by_the_next_process_that_opens_the_history(
        history: str, stack: Stack, tmp_path: Path, kill_on_exit: object) -> None:
    url, run_id = killed_while_running(stack, tmp_path / "trace", kill_on_exit)
    killed_at = time.monotonic()
    assert {t for t, _ in flow_runs(url, run_id).values()} == {"RUNNING"}  # nobody looked yet

    run_opener(stack)  # its process is gone from this host: Crashed at once, whatever the time
    took = time.monotonic() - killed_at
    assert_crashed_with_everything_ended(url, run_id, "is gone")
    record(f"plain script SIGKILLed, embedded {history} (heartbeat {HEARTBEAT:g} s)",
           "kill to Crashed (the next script's whole run, which finds its pid dead)", took)


@pytest.mark.parametrize("silent", ["another host", "pid alive"])
def test_silent_run_is_crashed_after_two_heartbeat_intervals(
        history: str, stack: Stack, tmp_path: Path, kill_on_exit: object, silent: str) -> None:
    url, run_id = killed_while_running(stack, tmp_path / "trace", kill_on_exit)
    killed_at = time.monotonic()
    # as if it ran on another machine (whose processes this one cannot see), or as if its pid
    # had been taken by a live process: only its silence tells
    column, value = ("host", "'another-machine'") if silent == "another host" else (
        "pid", str(os.getpid()))
    query_write(url, f"UPDATE flow_run SET {column} = {value} WHERE state_type = 'RUNNING'")

    # opened by a process whose heartbeat interval is long: not silent for two of them yet
    assert listed_state(stack, run_id, LEGATO_FLOW_RUN_HEARTBEAT_SECONDS="600") == "RUNNING"
    assert {t for t, _ in flow_runs(url, run_id).values()} == {"RUNNING"}

    wait_for(lambda: time.monotonic() - killed_at > 2 * HEARTBEAT, 10, "two intervals")
    assert listed_state(stack, run_id) == "CRASHED"
    took = time.monotonic() - killed_at
    assert_crashed_with_everything_ended(url, run_id, "No heartbeat")
    record(f"plain script silent ({silent}), embedded {history} (heartbeat {HEARTBEAT:g} s)",
           "kill to Crashed (two opens of the history)", took)


def test_killed_script_through_a_server_is_crashed_by_its_heartbeat(
        stack: Stack, tmp_path: Path, kill_on_exit: object) -> None:
    stack.start_server()
    url, run_id = killed_while_running(stack, tmp_path / "trace", kill_on_exit)
    killed_at = time.monotonic()

    budget = 2 * HEARTBEAT + HEARTBEAT / 2 + MARGIN
    wait_for(lambda: {t for t, _ in flow_runs(url, run_id).values()} == {"CRASHED"},
             budget, "the server to mark the script's runs Crashed",
             on_timeout=lambda: f"{flow_runs(url, run_id)}\n{stack.logs_text()}")
    took = time.monotonic() - killed_at
    assert_crashed_with_everything_ended(url, run_id, "No heartbeat")
    record(f"plain script SIGKILLed, through a server (heartbeat {HEARTBEAT:g} s)",
           "kill to Crashed (server's crash detection)", took)


def query_write(url: str, sql: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


# -- healthy ---------------------------------------------------------------------------------------
def test_healthy_long_script_is_never_marked_crashed(
        door: str, stack: Stack, tmp_path: Path, kill_on_exit: object) -> None:
    trace = tmp_path / "trace"
    tasks = 40  # 10 s of naps: ten heartbeat intervals
    proc = start_script(stack, HEALTHY, trace, str(tasks), kill_on_exit=kill_on_exit)
    run_id = script_run_id(stack, trace, proc)
    url = database_url(stack.home)
    started = time.monotonic()
    first_beat = query(url, "SELECT heartbeat FROM flow_run WHERE id = :r", r=run_id)[0][0]

    late_opens = 0
    opens = 0
    while proc.poll() is None:
        # other processes open the history meanwhile: a CLI command, and a script's first flow
        # (through a server, its crash detection looks every half interval all along)
        opened_at = time.monotonic()
        if opens % 2 == 0:
            state = listed_state(stack, run_id)
        else:
            run_opener(stack)
            state = flow_runs(url, run_id)[run_id][0]
        opens += 1
        assert state in ("RUNNING", "COMPLETED"), (state, stack.logs_text())
        if state == "RUNNING" and opened_at - started > 2 * HEARTBEAT:
            late_opens += 1
            beat = query(url, "SELECT heartbeat FROM flow_run WHERE id = :r", r=run_id)[0][0]
            assert beat != first_beat  # its heartbeats reached the history
    assert proc.wait() == 0, stack.logs_text()
    assert late_opens >= 1  # opened while it ran, after two intervals (a silent run's crash)
    runs = flow_runs(url, run_id)
    assert len(runs) == 2 and {t for t, _ in runs.values()} == {"COMPLETED"}, runs
    for flow_run_id in runs:  # the script's flow run and its subflow run
        states = [t for (t,) in query(url, "SELECT type FROM flow_run_state WHERE flow_run_id "
                                      "= :r ORDER BY timestamp", r=flow_run_id)]
        assert states == ["PENDING", "RUNNING", "COMPLETED"], states
    assert task_run_states(url, list(runs)) == ["COMPLETED"] * (tasks + 1)


def test_the_heartbeat_thread_runs_only_while_a_flow_runs(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setenv("LEGATO_FLOW_RUN_HEARTBEAT_SECONDS", "0.05")
    reset_settings_cache()

    def beating() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name == "legato-heartbeat"]

    @flow(name="inner")
    def inner() -> list[str]:
        return beating()

    @flow(name="outer")
    def outer() -> tuple[list[str], list[str]]:
        return beating(), inner()

    wait_for(lambda: not beating(), 10, "no flow running in this process")
    assert outer() == (["legato-heartbeat"], ["legato-heartbeat"])  # one thread for both runs
    wait_for(lambda: not beating(), 10, "the heartbeat thread to stop after the flow")
    assert outer() == (["legato-heartbeat"], ["legato-heartbeat"])  # and again for the next
    wait_for(lambda: not beating(), 10, "the heartbeat thread to stop after the flow")
