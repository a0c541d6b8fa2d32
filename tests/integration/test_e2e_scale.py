"""Scale: 100,000 tasks in one flow with the history whole, and 20,000 mapped tasks. (50 tasks
submitted at once and several processes writing one SQLite history together are in
tests/reliability/test_concurrent_writes.py.)"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from legato import flow, task


def counts(db: Path) -> dict[str, object]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "task_run": one("SELECT count(*) FROM task_run"),
            "task_run_by_state": dict(
                conn.execute("SELECT state_type, count(*) FROM task_run GROUP BY 1").fetchall()
            ),
            "task_run_state": one("SELECT count(*) FROM task_run_state"),
            "flow_run_state": one("SELECT state_type FROM flow_run"),
            "log": one("SELECT count(*) FROM log"),
        }
    finally:
        conn.close()


@task
def inc(x: int) -> int:
    return x + 1


@pytest.mark.slow
def test_100k_tasks_in_one_flow_leave_the_history_whole(legato_home: Path) -> None:
    n = 100_000

    @flow
    def huge(n: int) -> int:
        s = 0
        for _ in range(n):
            s = inc(s)
        return s

    t0 = time.perf_counter()
    assert huge(n) == n
    elapsed = time.perf_counter() - t0
    # right after the call returns, from another connection: every row is there
    got = counts(legato_home / "legato.db")
    assert got["task_run"] == n
    assert got["task_run_by_state"] == {"COMPLETED": n}
    assert got["task_run_state"] == 3 * n
    assert got["flow_run_state"] == "COMPLETED"
    assert got["log"] >= n  # one "Finished in state" line a task, plus the flow's
    print(f"\n100,000 sequential tasks: {elapsed:.1f} s in the flow call")


@pytest.mark.slow
def test_20k_mapped_tasks(legato_home: Path) -> None:
    n = 20_000

    @flow
    def mapped(n: int) -> int:
        return sum(inc.map(range(n)).result())

    t0 = time.perf_counter()
    assert mapped(n) == n * (n + 1) // 2
    elapsed = time.perf_counter() - t0
    got = counts(legato_home / "legato.db")
    assert got["task_run_by_state"] == {"COMPLETED": n}
    assert got["task_run_state"] == 3 * n
    print(f"\n20,000 mapped tasks: {elapsed:.1f} s in the flow call")
