"""State hooks: on_completion, on_failure, on_crashed for flows and tasks."""

from __future__ import annotations

import pytest

from legato import flow, task
from legato.states import StateType


def test_flow_on_completion_hook(history, h):
    calls = []

    def hook(fl, flow_run, state):
        calls.append((fl.name, flow_run.id, state.name, state.result()))

    @flow(on_completion=[hook])
    def f():
        return 5

    assert f() == 5
    fr = h.only_flow_run()
    assert calls == [("f", fr.id, "Completed", 5)]


def test_flow_on_failure_hook(history, h):
    calls = []

    @flow(on_failure=[lambda fl, run, st: calls.append(st.message)],
          on_completion=[lambda *a: calls.append("completion?")])
    def f():
        raise ValueError("bad")

    with pytest.raises(ValueError):
        f()
    assert len(calls) == 1 and "bad" in calls[0]


def test_flow_on_failure_hook_runs_once_after_retries(history):
    calls = []

    @flow(retries=2, on_failure=[lambda *a: calls.append("failure")])
    def f():
        raise ValueError("bad")

    with pytest.raises(ValueError):
        f()
    assert calls == ["failure"]


def test_flow_on_crashed_hook(history, h):
    calls = []

    @flow(on_crashed=[lambda fl, run, st: calls.append(st.type)],
          on_failure=[lambda *a: calls.append("failure?")])
    def f():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        f()
    assert calls == [StateType.CRASHED]
    assert h.only_flow_run().state_type is StateType.CRASHED


def test_task_hooks(history, h):
    calls = []

    def on_ok(tk, task_run, state):
        calls.append(("ok", tk.name, task_run.name, state.result()))

    def on_bad(tk, task_run, state):
        calls.append(("bad", tk.name, task_run.name, state.type))

    @task(on_completion=[on_ok], on_failure=[on_bad])
    def t(x):
        if x < 0:
            raise ValueError("negative")
        return x

    @flow
    def f():
        t(1)
        t.submit(-1).wait()

    f()
    assert sorted(calls) == sorted([("ok", "t", "t-0", 1), ("bad", "t", "t-1", StateType.FAILED)])


def test_task_failure_hook_not_called_between_retries(history):
    calls = []
    attempts = {"n": 0}

    @task(retries=2, on_failure=[lambda *a: calls.append("failure")],
          on_completion=[lambda *a: calls.append("completion")])
    def t():
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise ValueError("again")
        return "ok"

    @flow
    def f():
        return t()

    assert f() == "ok"
    assert calls == ["completion"]


def test_task_hook_decorator_style(history):
    calls = []

    @task
    def t():
        return 1

    @t.on_completion_hook
    def done(tk, run, state):
        calls.append(run.name)

    @flow
    def f():
        t()

    f()
    assert calls == ["t-0"]


def test_a_hook_that_raises_is_logged_and_does_not_change_the_state(history, h):
    after = []

    def broken(*args):
        raise RuntimeError("hook exploded")

    @task(on_completion=[broken, lambda *a: after.append("second task hook ran")])
    def t():
        return 1

    @flow(on_completion=[broken, lambda *a: after.append("second flow hook ran")])
    def f():
        return t()

    assert f() == 1
    fr = h.only_flow_run()
    assert fr.state_name == "Completed"
    tr = h.task_runs(fr.id)[0]
    assert tr.state_name == "Completed"
    assert "hook exploded" in h.log_text(task_run_id=tr.id)
    flow_lines = [r for r in h.logs(flow_run_id=fr.id) if r.task_run_id is None]
    assert any("hook exploded" in r.message and r.level >= 40 for r in flow_lines)
    assert after == ["second task hook ran", "second flow hook ran"]


def test_failure_hook_that_raises_keeps_failed(history, h):
    @flow(on_failure=[lambda *a: 1 / 0])
    def f():
        raise ValueError("original")

    with pytest.raises(ValueError, match="original"):
        f()
    fr = h.only_flow_run()
    assert fr.state_name == "Failed"
    assert "ZeroDivisionError" in h.log_text(flow_run_id=fr.id)


def test_async_hooks_are_awaited(history):
    calls = []

    async def ahook(fl, run, state):
        calls.append(state.name)

    @flow(on_completion=[ahook])
    def f():
        return 1

    f()
    assert calls == ["Completed"]


def test_async_hook_on_async_flow(history):
    import asyncio

    calls = []

    async def ahook(fl, run, state):
        await asyncio.sleep(0)
        calls.append(state.name)

    @task(on_completion=[ahook])
    async def t():
        return 1

    @flow(on_completion=[ahook])
    async def f():
        return await t()

    assert asyncio.run(f()) == 1
    assert calls == ["Completed", "Completed"]


def test_hooks_see_the_history_already_final(history, h):
    seen = []

    def hook(fl, run, state):
        seen.append(h.flow_run(run.id).state_name)

    @flow(on_completion=[hook])
    def f():
        return 1

    f()
    assert seen == ["Completed"]


def test_hooks_can_use_get_run_logger(history, h):
    from legato import get_run_logger

    def flow_hook(fl, run, state):
        get_run_logger().info("flow hook logged")

    def task_hook(tk, run, state):
        get_run_logger().info("task hook logged")

    @task(on_completion=[task_hook])
    def t():
        return 1

    @flow(on_completion=[flow_hook])
    def f():
        t()

    f()
    fr = h.only_flow_run()
    tr = h.task_runs(fr.id)[0]
    assert "task hook logged" in h.log_text(task_run_id=tr.id)
    flow_lines = [r.message for r in h.logs(flow_run_id=fr.id) if r.task_run_id is None]
    assert "flow hook logged" in flow_lines
