"""LEGATO_HISTORY_WRITE_MODE=durable: each task's final state is committed before the next task
starts, so another program (or a crash) sees every finished task."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from legato import flow, task
from legato.settings import get_settings, reset_settings_cache


@pytest.fixture
def durable(monkeypatch: pytest.MonkeyPatch, history: str) -> str:
    monkeypatch.setenv("LEGATO_HISTORY_WRITE_MODE", "durable")
    # a background flush must not be what makes the rows visible
    monkeypatch.setenv("LEGATO_HISTORY_FLUSH_INTERVAL", "3600")
    reset_settings_cache()
    return history


def committed_task_states(url: str) -> dict[str, str]:
    """task run name -> state type, read through a brand-new connection (SQLite: sqlite3)."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return dict(conn.execute("SELECT name, state_type FROM task_run").fetchall())
        finally:
            conn.close()
    eng = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"),
                           poolclass=sa.pool.NullPool)
    try:
        with eng.connect() as conn:
            return dict(conn.execute(sa.text("SELECT name, state_type FROM task_run")).all())
    finally:
        eng.dispose()


def committed_state_rows(url: str, name: str) -> list[str]:
    q = ("SELECT s.name FROM task_run_state s JOIN task_run t ON t.id = s.task_run_id "
         "WHERE t.name = :n ORDER BY s.timestamp")
    eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with eng.connect() as conn:
            return [r[0] for r in conn.execute(sa.text(q), {"n": name})]
    finally:
        eng.dispose()


def test_each_finished_task_is_committed_before_the_next_starts(durable: str) -> None:
    url = get_settings().resolved_database_url
    seen: list[dict[str, str]] = []

    @task
    def step(i: int) -> int:
        seen.append(committed_task_states(url))
        return i

    @flow
    def durable_flow(n: int) -> int:
        return sum(step(i) for i in range(n))

    assert durable_flow(6) == 15
    for n, states in enumerate(seen):
        # when step-n runs, steps 0..n-1 are Completed in the database (and step-n itself is
        # not there yet: its Pending/Running rows go with its own final state)
        assert states == {f"step-{k}": "COMPLETED" for k in range(n)}, n
    assert committed_task_states(url) == {f"step-{k}": "COMPLETED" for k in range(6)}
    assert committed_state_rows(url, "step-2") == ["Pending", "Running", "Completed"]


def test_failed_and_retried_tasks_are_committed_too(durable: str) -> None:
    url = get_settings().resolved_database_url
    seen: list[dict[str, str]] = []
    attempts: list[int] = []

    @task
    def breaks() -> None:
        raise RuntimeError("no")

    @task(retries=1)
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    @task
    def look() -> None:
        seen.append(committed_task_states(url))

    @flow
    def mixed() -> str:
        breaks(return_state=True)
        out = flaky()
        look()
        return out

    assert mixed() == "ok"
    assert seen == [{"breaks-0": "FAILED", "flaky-0": "COMPLETED"}]
    assert committed_state_rows(url, "flaky-0") == [
        "Pending", "Running", "AwaitingRetry", "Retrying", "Completed"
    ]


def test_submitted_tasks_see_their_upstream_committed(durable: str) -> None:
    url = get_settings().resolved_database_url
    seen: dict[str, dict[str, str]] = {}

    @task
    def first(i: int) -> int:
        return i

    @task
    def second(xs: Any) -> int:
        seen["second"] = committed_task_states(url)
        return sum(xs)

    @flow
    def fan_in() -> int:
        futs = first.map(range(4))
        return second.submit(list(futs)).result()  # (a LegatoFutureList is not resolved)

    assert fan_in() == 6
    assert {k: v for k, v in seen["second"].items() if k.startswith("first")} == {
        f"first-{i}": "COMPLETED" for i in range(4)
    }


def test_durable_mode_from_the_environment_in_a_script(tmp_path: Path, helpers) -> None:
    """The setting as a user sets it: a script run with LEGATO_HISTORY_WRITE_MODE=durable."""
    home = tmp_path / "home"
    code = """
        import sqlite3, sys
        from legato import flow, task
        db = sys.argv[1]

        @task
        def step(i):
            conn = sqlite3.connect(db)
            done = conn.execute(
                "SELECT count(*) FROM task_run WHERE state_type = 'COMPLETED'").fetchone()[0]
            conn.close()
            assert done == i, (i, done)
            return i

        @flow
        def script_flow():
            return [step(i) for i in range(5)]

        print(script_flow())
    """
    p = helpers.spawn(code, helpers.child_env(home, history_write_mode="durable",
                                              history_flush_interval="3600"),
                      str(home / "legato.db"))
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert out.strip() == "[0, 1, 2, 3, 4]"


def test_batched_mode_writes_in_the_background_while_the_flow_runs(
    history: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default mode: no task waits for the database, yet finished tasks show up while the
    flow still runs (the background flush), not only when it returns."""
    import time

    monkeypatch.setenv("LEGATO_HISTORY_WRITE_MODE", "batched")
    monkeypatch.setenv("LEGATO_HISTORY_FLUSH_INTERVAL", "0.05")
    reset_settings_cache()
    url = get_settings().resolved_database_url
    seen: list[dict[str, str]] = []

    @task
    def quick(i: int) -> int:
        return i

    @task
    def watch() -> None:
        deadline = time.monotonic() + 30
        while True:
            states = committed_task_states(url)
            if all(states.get(f"quick-{i}") == "COMPLETED" for i in range(5)):
                seen.append(states)
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not written in the background: {states}")
            time.sleep(0.01)

    @flow
    def batched_flow() -> None:
        for i in range(5):
            quick(i)
        watch()

    batched_flow()
    assert seen
