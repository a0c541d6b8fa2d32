"""A flow process killed with SIGKILL: the history stays readable and writable, and in durable
mode every task that finished before the kill is recorded Completed."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL")

_FLOW = """
    import sys
    from legato import flow, task

    @task
    def step(i):
        if i == int(sys.argv[1]):
            print("blocking", flush=True)
            sys.stdin.readline()  # never answered: the test kills us here
        return i

    @flow(name="killed-flow")
    def killed(n):
        return [step(i) for i in range(n)]

    killed(10)
"""

_MAPPED = """
    import sys, threading
    from legato import flow, task

    gate = threading.Event()

    @task
    def step(i):
        if i >= int(sys.argv[1]):
            if i == int(sys.argv[1]):
                print("blocking", flush=True)
            gate.wait()  # never set: the test kills us while these wait
        return i

    @flow(name="killed-mapped")
    def killed():
        return step.map(range(40)).result()

    killed()
"""

_BIG = """
    import sys
    from legato import flow, task

    @task
    def inc(x):
        return x + 1

    @flow(name="killed-big")
    def big():
        s = 0
        for i in range(10_000_000):
            s = inc(s)
            if i == 2000:
                print("started", flush=True)
        return s

    big()
"""


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def kill(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def wait_for_line(proc, expected: str) -> None:
    line = proc.stdout.readline()  # blocks until the child says where it is (or dies)
    assert line.strip() == expected, proc.stderr.read()


def then_a_new_flow_works(home: Path, helpers) -> None:
    code = """
        from legato import flow, task

        @task
        def one():
            return 1

        @flow(name="after-the-crash")
        def after():
            return one() + one()

        print(after())
    """
    p = helpers.spawn(code, helpers.child_env(home))
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert out.strip() == "2"
    rows = helpers.sqlite_rows(home / "legato.db",
                               "SELECT f.name, r.state_type FROM flow_run r JOIN flow f "
                               "ON f.id = r.flow_id WHERE f.name = 'after-the-crash'")
    assert rows == [("after-the-crash", "COMPLETED")]


def test_sigkill_in_durable_mode_keeps_every_finished_task(tmp_path: Path, helpers,
                                                          kill_on_exit) -> None:
    home = tmp_path / "home"
    p = helpers.spawn(_FLOW, helpers.child_env(home, history_write_mode="durable",
                                               history_flush_interval="3600"), "6")
    kill_on_exit(p)
    wait_for_line(p, "blocking")
    kill(p)
    db = home / "legato.db"
    assert integrity(db) == "ok"
    done = helpers.sqlite_rows(db, "SELECT name, state_type FROM task_run ORDER BY name")
    assert done == [(f"step-{i}", "COMPLETED") for i in range(6)]
    states = helpers.sqlite_rows(db, "SELECT count(*) FROM task_run_state")
    assert states == [(18,)]
    # the flow run was committed Running before the user's code started; nobody ended it (the
    # next process to open the history does: tests/reliability/test_killed_script.py)
    assert helpers.sqlite_rows(db, "SELECT state_type FROM flow_run") == [("RUNNING",)]
    then_a_new_flow_works(home, helpers)


def test_sigkill_with_parallel_tasks_in_durable_mode(tmp_path: Path, helpers,
                                                    kill_on_exit) -> None:
    home = tmp_path / "home"
    env = helpers.child_env(home, history_write_mode="durable", history_flush_interval="3600",
                            task_runner_max_workers="4")
    p = helpers.spawn(_MAPPED, env, "30")
    kill_on_exit(p)
    wait_for_line(p, "blocking")
    db = home / "legato.db"
    # steps 0..29 do not block; wait (with a deadline) until the durable writes show them all
    deadline = time.monotonic() + 60
    while True:
        done = helpers.sqlite_rows(db, "SELECT count(*) FROM task_run "
                                       "WHERE state_type = 'COMPLETED'")[0][0]
        if done == 30:
            break
        assert time.monotonic() < deadline, f"only {done} of 30 tasks committed"
        time.sleep(0.01)
    kill(p)
    assert integrity(db) == "ok"
    rows = helpers.sqlite_rows(db, "SELECT name FROM task_run WHERE state_type = 'COMPLETED'")
    assert sorted(int(n.split("-")[1]) for (n,) in rows) == list(range(30))
    then_a_new_flow_works(home, helpers)


@pytest.mark.parametrize("mode", ["batched", "durable"])
def test_sigkill_during_a_long_flow_leaves_a_consistent_history(tmp_path: Path, helpers,
                                                                kill_on_exit, mode: str) -> None:
    """Killed at an arbitrary moment while rows pour in (possibly mid-transaction): the file
    is intact and holds whole flushes only: every task run row has the state rows that led
    to its current state, and every state row its task run."""
    home = tmp_path / "home"
    p = helpers.spawn(_BIG, helpers.child_env(home, history_write_mode=mode,
                                              history_flush_interval="0.05"))
    kill_on_exit(p)
    wait_for_line(p, "started")
    db = home / "legato.db"
    deadline = time.monotonic() + 60
    while helpers.sqlite_rows(db, "SELECT count(*) FROM task_run")[0][0] < 1000:
        assert time.monotonic() < deadline, "no task runs written"
        time.sleep(0.01)
    kill(p)
    assert integrity(db) == "ok"
    q = helpers.sqlite_rows
    n_runs = q(db, "SELECT count(*) FROM task_run")[0][0]
    assert n_runs >= 1000
    # a task run's row and the state row that put it in its current state are never split
    assert q(db, "SELECT count(*) FROM task_run t WHERE NOT EXISTS (SELECT 1 FROM "
                 "task_run_state s WHERE s.task_run_id = t.id AND s.type = t.state_type)") == [(0,)]
    assert q(db, "SELECT count(*) FROM task_run_state s WHERE NOT EXISTS (SELECT 1 FROM "
                 "task_run t WHERE t.id = s.task_run_id)") == [(0,)]
    completed = q(db, "SELECT count(*) FROM task_run WHERE state_type = 'COMPLETED'")[0][0]
    assert q(db, "SELECT count(*) FROM task_run_state WHERE type = 'COMPLETED'") == [(completed,)]
    assert n_runs - completed <= 1  # only the task running at the kill may be unfinished
    then_a_new_flow_works(home, helpers)
