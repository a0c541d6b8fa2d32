"""The default SQLite history under concurrent writers: 50 tasks submitted at once in one flow,
and four processes each running flows of 50 submitted tasks on one file. No "database is
locked", every run and state recorded (Prefect users' most reported SQLite failure)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration.test_e2e_scale import counts
from tests.reliability.figures import record

from legato import flow, task
from legato.settings import reset_settings_cache


@pytest.mark.parametrize("mode", ["batched", "durable"])
def test_50_tasks_submitted_at_once(legato_home: Path, monkeypatch, mode: str) -> None:
    """The Prefect complaint: many concurrent tasks on the default SQLite history must not hit
    "database is locked". Durable mode makes every task commit on its own."""
    monkeypatch.setenv("LEGATO_HISTORY_WRITE_MODE", mode)
    monkeypatch.setenv("LEGATO_TASK_RUNNER_MAX_WORKERS", "50")
    reset_settings_cache()
    import threading

    gate = threading.Barrier(50, timeout=60)

    @task
    def together(i: int) -> int:
        gate.wait()  # all 50 running at the same moment
        from legato import get_run_logger

        get_run_logger().info("task %d", i)
        return i

    @flow
    def fifty() -> int:
        futures = [together.submit(i) for i in range(50)]
        return sum(f.result() for f in futures)

    assert fifty() == sum(range(50))
    got = counts(legato_home / "legato.db")
    assert got["task_run_by_state"] == {"COMPLETED": 50}
    assert got["task_run_state"] == 150
    assert got["flow_run_state"] == "COMPLETED"
    record(f"50 tasks submitted at once, SQLite ({mode})", "task runs recorded of 50",
           got["task_run_by_state"]["COMPLETED"], "")


_WRITER_PROCESS = """
    import os, sys, time
    from legato import flow, task, get_run_logger

    @task
    def work(i):
        get_run_logger().info("work %d", i)
        return i

    @flow(name="multi-process")
    def many():
        return sum(f.result() for f in [work.submit(i) for i in range(50)])

    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(sys.argv[1]):
        if time.monotonic() > deadline:
            sys.exit("never told to go")
        time.sleep(0.001)
    for _ in range(3):
        assert many() == sum(range(50))
    print("done", flush=True)
"""


@pytest.mark.parametrize("mode", ["batched", "durable"])
def test_processes_writing_one_history_at_once(tmp_path: Path, helpers, kill_on_exit,
                                               mode: str) -> None:
    """Four processes, each running three flows of 50 submitted tasks, on one SQLite file."""
    home = tmp_path / "home"
    go = tmp_path / "go"
    env = helpers.child_env(home, history_write_mode=mode, task_runner_max_workers="50")
    procs = [helpers.spawn(_WRITER_PROCESS, env, str(go)) for _ in range(4)]
    for p in procs:
        kill_on_exit(p)
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.communicate()[1]
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        assert "locked" not in err
    db = home / "legato.db"
    rows = helpers.sqlite_rows(db, "SELECT state_type, count(*) FROM flow_run GROUP BY 1")
    assert rows == [("COMPLETED", 12)]
    rows = helpers.sqlite_rows(db, "SELECT state_type, count(*) FROM task_run GROUP BY 1")
    assert rows == [("COMPLETED", 12 * 50)]
    assert helpers.sqlite_rows(db, "SELECT count(*) FROM task_run_state") == [(12 * 150,)]
    record(f"4 processes writing one SQLite history ({mode})", "task runs recorded of 600",
           rows[0][1], "")
