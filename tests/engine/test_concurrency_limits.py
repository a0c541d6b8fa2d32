"""Tag concurrency limits: at most N task runs with a tag Running at once (embedded, on
PostgreSQL, and through a server)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from legato import flow, task
from legato.client import get_client


def test_a_full_limit_makes_task_runs_wait_their_turn(history: str, h: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEGATO_CONCURRENCY_SLOT_WAIT_SECONDS", "0.02")
    from legato.settings import reset_settings_cache

    reset_settings_cache()
    get_client().set_concurrency_limit("db", 2)
    lock = threading.Lock()
    running = 0
    peak = 0

    @task(tags=["db"])
    def query(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return i

    @task
    def free(i: int) -> int:  # no tag: never waits
        return i

    @flow
    def report() -> list[int]:
        futures = [query.submit(i) for i in range(6)] + [free.submit(9)]
        return [f.result() for f in futures]

    assert report() == [0, 1, 2, 3, 4, 5, 9]
    assert peak == 2
    run = h.only_flow_run()
    tasks = h.task_runs(run.id)
    assert all(t.state_type.value == "COMPLETED" for t in tasks)
    assert get_client().read_concurrency_limit("db")["active_slots"] == []
    assert "Waiting for a concurrency slot" in h.log_text(run.id)


def test_slots_are_given_back_when_a_task_fails_or_retries(history: str, h: Any) -> None:
    get_client().set_concurrency_limit("api", 1)
    calls = []

    @task(tags=["api"], retries=1)
    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first call fails")
        return "ok"

    @task(tags=["api"])
    def broken() -> None:
        raise ValueError("always")

    @flow
    def uses_api() -> str:
        broken(return_state=True)
        return flaky()

    assert uses_api() == "ok"
    assert get_client().read_concurrency_limit("api")["active_slots"] == []
    states = h.task_states(h.task_runs_by_name(h.only_flow_run().id)["flaky-0"].id)
    assert states == ["Pending", "Running", "AwaitingRetry", "Retrying", "Completed"]
