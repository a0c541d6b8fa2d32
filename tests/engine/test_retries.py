"""Retries: attempts recorded as states, delays (number, list, backoff, jitter), conditions."""

from __future__ import annotations

import pytest

import legato.engine.drivers as drivers_mod
from legato import flow, task
from legato.engine.common import exponential_backoff, retry_delay
from legato.states import StateType
from legato.tasks import exponential_backoff as public_backoff


@pytest.fixture
def sleeps(monkeypatch):
    """Record the delays the engine asks for instead of sleeping."""
    asked: list[float] = []
    monkeypatch.setattr(drivers_mod.time, "sleep", asked.append)
    return asked


def flaky(failures: int, exc: type[Exception] = RuntimeError):
    """A function failing ``failures`` times, then returning the attempt number."""
    calls = {"n": 0}

    def fn():
        calls["n"] += 1
        if calls["n"] <= failures:
            raise exc(f"attempt {calls['n']} failed")
        return calls["n"]

    return fn, calls


def test_fails_twice_then_succeeds_under_retries_3(history, h, sleeps):
    fn, calls = flaky(2)
    t = task(retries=3)(fn)

    @flow
    def f():
        return t()

    assert f() == 3
    assert calls["n"] == 3
    fr = h.only_flow_run()
    assert fr.state_name == "Completed"
    (tr,) = h.task_runs(fr.id)
    assert tr.state_name == "Completed"
    assert tr.run_count == 3
    assert tr.empirical_policy.get("retries") == 3
    assert h.task_states(tr.id) == [
        "Pending", "Running", "AwaitingRetry", "Retrying", "AwaitingRetry", "Retrying",
        "Completed",
    ]
    states = h.client.read_task_run_states(tr.id)
    assert "Retry 1/3" in states[2].message and "attempt 1 failed" in states[2].message
    assert states[2].type is StateType.SCHEDULED
    assert states[3].type is StateType.RUNNING
    # each failed attempt is in the task's log
    text = h.log_text(task_run_id=tr.id)
    assert "attempt 1 failed" in text and "attempt 2 failed" in text
    assert "Retry 1/3" in text
    assert sleeps == []  # no delay asked for


def test_retries_exhausted_fails_with_last_error(history, h, sleeps):
    fn, calls = flaky(10)
    t = task(retries=2)(fn)

    @flow
    def f():
        return t()

    with pytest.raises(RuntimeError, match="attempt 3 failed"):
        f()
    assert calls["n"] == 3
    fr = h.only_flow_run()
    (tr,) = h.task_runs(fr.id)
    assert tr.state_type is StateType.FAILED
    assert tr.run_count == 3
    assert h.task_states(tr.id) == [
        "Pending", "Running", "AwaitingRetry", "Retrying", "AwaitingRetry", "Retrying", "Failed",
    ]
    assert "after 3 attempts" in h.log_text(task_run_id=tr.id)


def test_retry_delay_as_a_number(history, sleeps):
    fn, _ = flaky(2)
    t = task(retries=2, retry_delay_seconds=0.01)(fn)

    @flow
    def f():
        return t()

    assert f() == 3
    assert sleeps == [0.01, 0.01]


def test_retry_delay_as_a_list_repeats_the_last(history, sleeps):
    fn, _ = flaky(4)
    t = task(retries=4, retry_delay_seconds=[0.01, 0.02])(fn)

    @flow
    def f():
        return t()

    assert f() == 5
    assert sleeps == [0.01, 0.02, 0.02, 0.02]


def test_retry_delay_exponential_backoff(history, sleeps):
    fn, _ = flaky(3)
    t = task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=0.01))(fn)

    @flow
    def f():
        return t()

    assert f() == 4
    assert sleeps == pytest.approx([0.01, 0.02, 0.04])
    assert public_backoff is exponential_backoff


def test_awaiting_retry_records_when_the_retry_is_due(history, h, sleeps):
    fn, _ = flaky(1)
    t = task(retries=1, retry_delay_seconds=30)(fn)

    @flow
    def f():
        return t()

    f()
    tr = h.task_runs(h.only_flow_run().id)[0]
    states = h.client.read_task_run_states(tr.id)
    awaiting = [s for s in states if s.name == "AwaitingRetry"][0]
    assert "scheduled_time" in awaiting.details
    assert sleeps == [30.0]


def test_retry_jitter_factor_bounds(history, sleeps):
    fn, _ = flaky(20)
    t = task(retries=20, retry_delay_seconds=1.0, retry_jitter_factor=0.5)(fn)

    @flow
    def f():
        return t()

    assert f() == 21
    assert len(sleeps) == 20
    assert all(0.5 <= s <= 1.5 for s in sleeps)
    assert len(set(sleeps)) > 1  # actually jittered


def test_retry_delay_helper_with_jitter_bounds():
    for attempt in range(1, 50):
        d = retry_delay([2.0, 4.0], 5, attempt, 0.25)
        base = 2.0 if attempt == 1 else 4.0
        assert base * 0.75 <= d <= base * 1.25
    assert retry_delay(None, 3, 1, 1.0) == 0.0
    assert retry_delay(5, 3, 1, None) == 5.0
    assert retry_delay([], 3, 1, None) == 0.0


def test_negative_jitter_is_refused():
    with pytest.raises(ValueError, match="retry_jitter_factor"):
        task(retry_jitter_factor=-1)(lambda: 1)


def test_retry_condition_false_means_no_retry(history, h, sleeps):
    fn, calls = flaky(5, exc=ValueError)
    seen = []

    def only_runtime_errors(task_, task_run, state):
        seen.append((task_.name, task_run.run_count, state.type))
        return isinstance(state.data, RuntimeError)

    t = task(retries=3, retry_condition_fn=only_runtime_errors)(fn)

    @flow
    def f():
        return t()

    with pytest.raises(ValueError):
        f()
    assert calls["n"] == 1
    assert seen == [("fn", 1, StateType.FAILED)]
    tr = h.task_runs(h.only_flow_run().id)[0]
    assert h.task_states(tr.id) == ["Pending", "Running", "Failed"]


def test_retry_condition_true_retries(history, sleeps):
    fn, calls = flaky(2)
    t = task(retries=3, retry_condition_fn=lambda *a: True)(fn)

    @flow
    def f():
        return t()

    assert f() == 3


def test_retry_condition_that_raises_means_no_retry_and_is_logged(history, h, sleeps):
    fn, calls = flaky(2)

    def broken(*a):
        raise LookupError("cond broke")

    t = task(retries=3, retry_condition_fn=broken)(fn)

    @flow
    def f():
        return t()

    with pytest.raises(RuntimeError):
        f()
    assert calls["n"] == 1
    tr = h.task_runs(h.only_flow_run().id)[0]
    assert "cond broke" in h.log_text(task_run_id=tr.id)


def test_submitted_task_retries(history, h, sleeps):
    fn, calls = flaky(1)
    t = task(retries=1)(fn)

    @flow
    def f():
        return t.submit().result()

    assert f() == 2
    tr = h.task_runs(h.only_flow_run().id)[0]
    assert tr.run_count == 2
    assert h.task_states(tr.id)[-1] == "Completed"


def test_async_task_retries(history, h):
    import asyncio

    calls = {"n": 0}

    @task(retries=2, retry_delay_seconds=0.001)
    async def at():
        calls["n"] += 1
        if calls["n"] < 3:
            raise RuntimeError("again")
        return "ok"

    @flow
    async def f():
        return await at()

    assert asyncio.run(f()) == "ok"
    tr = h.task_runs(h.only_flow_run().id)[0]
    assert tr.run_count == 3
    assert h.task_states(tr.id).count("Retrying") == 2


def test_flow_retries(history, h, monkeypatch):
    asked: list[float] = []
    monkeypatch.setattr(drivers_mod.time, "sleep", asked.append)
    calls = {"n": 0}

    @task
    def t():
        return calls["n"]

    @flow(retries=2, retry_delay_seconds=0.01)
    def f():
        calls["n"] += 1
        t()
        if calls["n"] < 3:
            raise RuntimeError(f"flow attempt {calls['n']}")
        return "done"

    assert f() == "done"
    assert asked == [0.01, 0.01]
    fr = h.only_flow_run()
    assert fr.state_name == "Completed"
    assert fr.run_count == 3
    assert h.flow_states(fr.id) == [
        "Pending", "Running", "AwaitingRetry", "Retrying", "AwaitingRetry", "Retrying",
        "Completed",
    ]
    # each attempt's task runs are recorded and final
    runs = h.task_runs(fr.id)
    assert len(runs) == 3
    assert {r.state_name for r in runs} == {"Completed"}
    assert "flow attempt 1" in h.log_text(flow_run_id=fr.id)


def test_flow_retries_exhausted(history, h):
    @flow(retries=1)
    def f():
        raise RuntimeError("always")

    with pytest.raises(RuntimeError, match="always"):
        f()
    fr = h.only_flow_run()
    assert fr.state_type is StateType.FAILED
    assert fr.run_count == 2


def test_async_flow_retries(history, h):
    import asyncio

    calls = {"n": 0}

    @flow(retries=1)
    async def f():
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("first")
        return "second"

    assert asyncio.run(f()) == "second"
    assert h.only_flow_run().run_count == 2


def test_default_task_retries_from_settings(history, monkeypatch, sleeps):
    from legato.settings import get_settings, reset_settings_cache

    monkeypatch.setenv("LEGATO_TASK_DEFAULT_RETRIES", "2")
    reset_settings_cache()
    get_settings()
    fn, calls = flaky(2)
    t = task(fn)

    @flow
    def f():
        return t()

    assert f() == 3


def test_flow_retry_is_not_failed_by_the_previous_attempts_futures(history, h):
    calls = {"n": 0}

    @task
    def bad():
        raise ValueError("from attempt 1")

    @flow(retries=1)
    def f():
        calls["n"] += 1
        if calls["n"] == 1:
            bad.submit()  # never observed
            raise RuntimeError("first attempt")
        return "second attempt ok"

    assert f() == "second attempt ok"
    fr = h.only_flow_run()
    assert fr.state_name == "Completed"
    assert [t.state_name for t in h.task_runs(fr.id)] == ["Failed"]


def test_default_retries_apply_to_tasks_and_flows_decorated_before_settings_load(
    history, monkeypatch, sleeps
):
    """A script decorates at import time, before anything reads the settings."""
    from legato import settings as settings_mod
    from legato.settings import reset_settings_cache

    monkeypatch.setenv("LEGATO_TASK_DEFAULT_RETRIES", "2")
    monkeypatch.setenv("LEGATO_FLOW_DEFAULT_RETRIES", "1")
    reset_settings_cache()
    assert settings_mod._cache is None
    tfn, tcalls = flaky(2)
    t = task(tfn)
    t_copy = t.with_options(name="copy")
    t_explicit = task(retries=0)(flaky(1)[0])
    fcalls = {"n": 0}

    @flow
    def f():
        fcalls["n"] += 1
        if fcalls["n"] == 1:
            raise RuntimeError("flow attempt 1")
        st = t_explicit(return_state=True)
        return t(), st.name

    assert f() == (3, "Failed")
    assert fcalls["n"] == 2
    assert t.retries == 2
    assert t_copy._options["retries"] is None  # copies keep following the setting
    assert t_copy.with_options().retries == 2
