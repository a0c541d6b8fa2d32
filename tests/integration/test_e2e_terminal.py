"""When a flow call returns (or raises), every task run under it has a final state in the
history, whatever happened inside: failures, timeouts, unobserved futures, subflows."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from legato import flow, task
from legato.settings import get_settings

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def history_rows(sql: str) -> list[tuple[Any, ...]]:
    """Rows read through a new connection, right now (no flush on our side)."""
    url = get_settings().resolved_database_url.replace("postgresql://", "postgresql+psycopg://")
    eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with eng.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        eng.dispose()


def assert_all_final() -> dict[str, str]:
    runs = history_rows("SELECT name, state_type FROM task_run")
    not_final = [(n, s) for n, s in runs if s not in TERMINAL]
    assert not_final == [], not_final
    flows = history_rows("SELECT name, state_type FROM flow_run")
    assert all(s in TERMINAL for _, s in flows), flows
    return dict(runs)


def test_unobserved_futures_are_waited_for(history: str) -> None:
    @task
    def slow(i: int) -> int:
        time.sleep(0.05)
        return i

    @flow
    def fire_and_forget() -> str:
        for i in range(8):
            slow.submit(i)
        return "returned before the tasks finished"

    assert fire_and_forget() == "returned before the tasks finished"
    runs = assert_all_final()
    assert set(runs.values()) == {"COMPLETED"} and len(runs) == 8


def test_flow_raising_while_tasks_run(history: str) -> None:
    started = threading.Event()

    @task
    def busy(i: int) -> int:
        started.set()
        time.sleep(0.05)
        return i

    @flow
    def raising() -> None:
        for i in range(6):
            busy.submit(i)
        started.wait(10)
        raise RuntimeError("the flow gives up")

    with pytest.raises(RuntimeError, match="gives up"):
        raising()
    runs = assert_all_final()
    assert len(runs) == 6
    assert history_rows("SELECT state_type FROM flow_run") == [("FAILED",)]


def test_failures_timeouts_and_upstream_failures(history: str) -> None:
    @task
    def breaks() -> int:
        raise ValueError("broken")

    @task(timeout_seconds=0.1)
    def too_slow() -> None:
        for _ in range(200):  # pure Python: interruptible
            time.sleep(0.01)

    @task
    def needs(x: int) -> int:
        return x

    @flow
    def mixed() -> None:
        b = breaks.submit()
        too_slow.submit()
        needs.submit(b)  # upstream failed: never starts
        needs(1)

    with pytest.raises((ValueError, TimeoutError)):  # the first failure nobody looked at
        mixed()
    runs = assert_all_final()
    assert runs["breaks-0"] == "FAILED"
    assert runs["too_slow-0"] == "FAILED"
    assert runs["needs-0"] == "FAILED"
    assert runs["needs-1"] == "COMPLETED"
    names = dict(history_rows("SELECT name, state_name FROM task_run"))
    assert names["too_slow-0"] == "TimedOut"
    assert names["needs-0"] == "NotReady"


def test_failing_subflow(history: str) -> None:
    @task
    def leaf(i: int) -> int:
        if i == 2:
            raise KeyError(i)
        return i

    @flow
    def child(i: int) -> int:
        return leaf(i)

    @flow
    def parent() -> list[Any]:
        return [child(i, return_state=True) for i in range(3)]

    states = parent()
    assert [s.type.value for s in states] == ["COMPLETED", "COMPLETED", "FAILED"]
    runs = assert_all_final()
    assert sorted(runs.values()).count("FAILED") == 2  # the leaf and the subflow's stand-in


def test_async_flow_with_async_tasks(history: str) -> None:
    @task
    async def a(i: int) -> int:
        await asyncio.sleep(0.01)
        if i == 3:
            raise RuntimeError("three")
        return i

    @flow
    async def async_flow() -> int:
        futures = [a.submit(i) for i in range(5)]
        return sum(f.result(raise_on_failure=False) for f in futures
                   if not isinstance(f.result(raise_on_failure=False), Exception))

    assert asyncio.run(async_flow()) == 0 + 1 + 2 + 4
    runs = assert_all_final()
    assert sorted(runs.values()) == ["COMPLETED"] * 4 + ["FAILED"]


def test_flow_timeout_while_a_task_runs(history: str) -> None:
    """The flow's deadline passes while one of its tasks is blocked in C (time.sleep): the task
    run is marked final when the flow ends, and its late finish does not reopen it."""
    release = threading.Event()
    finished = threading.Event()

    @task
    def stuck() -> str:
        release.wait(30)  # blocked in C: not interruptible
        return "late"

    @task
    def after() -> str:
        return "never reached"

    @flow(timeout_seconds=0.2)
    def timed() -> str:
        try:
            stuck()
            return after()
        finally:
            finished.set()

    with pytest.raises(TimeoutError):
        timed()
    runs = assert_all_final()
    assert runs["stuck-0"] in {"CRASHED", "FAILED"}
    release.set()  # let the abandoned task finish now
    assert finished.wait(30)
    from legato.client import get_client

    get_client().flush()
    runs = assert_all_final()
    assert runs["stuck-0"] in {"CRASHED", "FAILED"}  # the late result did not reopen it
    states = history_rows("SELECT s.name FROM task_run_state s JOIN task_run t ON "
                          "t.id = s.task_run_id WHERE t.name = 'stuck-0' ORDER BY s.timestamp")
    assert [n for (n,) in states][:2] == ["Pending", "Running"]
    assert len(states) == 3  # exactly one final state
    assert "after-0" not in runs  # the abandoned flow body started nothing new
