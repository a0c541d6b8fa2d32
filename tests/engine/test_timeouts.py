"""timeout_seconds: enforced for sync and async tasks and flows; the flow moves on."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from legato import flow, task
from legato.exceptions import FlowTimeoutError, TaskTimeoutError
from legato.runners import ThreadPoolTaskRunner
from legato.states import StateType


def test_busy_sync_task_times_out_and_the_flow_moves_on(history, h):
    stop = threading.Event()
    stopped = threading.Event()

    @task(timeout_seconds=0.3)
    def spin():
        try:
            while not stop.is_set():  # pure Python: interruptible
                pass
        finally:
            stopped.set()
        return "should not be seen"

    @task
    def after():
        return "after ran"

    @flow
    def f():
        st = spin(return_state=True)
        return st, after()

    t0 = time.monotonic()
    st, after_value = f()
    elapsed = time.monotonic() - t0
    assert after_value == "after ran"
    assert st.type is StateType.FAILED and st.name == "TimedOut"
    assert "0.3" in st.message and "timeout" in st.message
    assert isinstance(st.data, TaskTimeoutError)
    # the helper thread was interrupted, not left spinning
    assert stopped.wait(5), "the timed-out function kept running"
    stop.set()
    assert elapsed < 5
    fr = h.only_flow_run()
    assert fr.state_name == "Completed"
    runs = h.task_runs_by_name(fr.id)
    assert runs["spin-0"].state_type is StateType.FAILED
    assert runs["spin-0"].state_name == "TimedOut"
    assert "timeout of 0.3" in runs["spin-0"].state_message
    assert runs["after-0"].state_name == "Completed"


def test_while_true_pass_is_stopped(history, h):
    @task(timeout_seconds=0.2)
    def forever():
        while True:
            pass

    @flow
    def f():
        return [forever(return_state=True)]  # a flow returning a bare State adopts it

    (st,) = f()
    assert st.name == "TimedOut"


def test_unhandled_task_timeout_fails_the_flow_with_timeout_error(history, h):
    @task(timeout_seconds=0.2)
    def forever():
        while True:
            pass

    @flow
    def f():
        forever()

    with pytest.raises(TaskTimeoutError, match="timeout"):
        f()
    fr = h.only_flow_run()
    assert fr.state_type is StateType.FAILED
    assert h.task_runs(fr.id)[0].state_name == "TimedOut"


def test_timeout_error_is_a_builtin_timeout_error():
    assert issubclass(TaskTimeoutError, TimeoutError)
    assert issubclass(FlowTimeoutError, TimeoutError)


def test_sync_task_under_timeout_returns_normally(history, h):
    @task(timeout_seconds=5)
    def quick(x):
        return x * 2

    @flow
    def f():
        return quick(21)

    assert f() == 42


def test_sync_task_under_timeout_sees_its_run_context(history, h):
    from legato import get_run_logger
    from legato.context import task_run_ctx

    @task(timeout_seconds=5)
    def quick():
        get_run_logger().info("inside timed task")
        return task_run_ctx.get().task_run.id

    @flow
    def f():
        return quick()

    tr_id = f()
    assert tr_id == h.task_runs(h.only_flow_run().id)[0].id
    assert "inside timed task" in h.log_text(task_run_id=tr_id)


def test_sync_task_exception_under_timeout_is_reported(history, h):
    @task(timeout_seconds=5)
    def bad():
        raise KeyError("inner")

    @flow
    def f():
        bad()

    with pytest.raises(KeyError):
        f()
    tr = h.task_runs(h.only_flow_run().id)[0]
    assert tr.state_name == "Failed"


def test_timed_out_submitted_tasks_do_not_block_others(history, h):
    release = threading.Event()

    @task(timeout_seconds=0.3)
    def spin():
        while not release.is_set():
            pass

    @task
    def quick(i):
        return i

    @flow
    def f():
        slow = spin.submit()
        quick_results = [quick.submit(i).result() for i in range(5)]
        slow.wait()
        release.set()
        return slow.state, quick_results

    st, res = f()
    assert st.name == "TimedOut"
    assert res == [0, 1, 2, 3, 4]


def test_async_task_timeout(history, h):
    @task(timeout_seconds=0.2)
    async def sleepy():
        await asyncio.sleep(30)

    @task
    async def after():
        return "after"

    @flow
    async def f():
        st = await sleepy(return_state=True)
        return st, await after()

    t0 = time.monotonic()
    st, value = asyncio.run(f())
    assert time.monotonic() - t0 < 10
    assert st.name == "TimedOut" and st.type is StateType.FAILED
    assert "0.2" in st.message
    assert value == "after"
    fr = h.only_flow_run()
    assert fr.state_name == "Completed"
    assert h.task_runs_by_name(fr.id)["sleepy-0"].state_name == "TimedOut"


def test_timed_out_task_with_retries_retries(history, h):
    attempts = {"n": 0}

    @task(timeout_seconds=0.2, retries=2)
    def sometimes_stuck():
        attempts["n"] += 1
        if attempts["n"] < 3:
            while True:
                pass
        return "finally"

    @flow
    def f():
        return sometimes_stuck()

    assert f() == "finally"
    tr = h.task_runs(h.only_flow_run().id)[0]
    assert tr.run_count == 3
    assert h.task_states(tr.id) == [
        "Pending", "Running", "AwaitingRetry", "Retrying", "AwaitingRetry", "Retrying",
        "Completed",
    ]
    states = h.client.read_task_run_states(tr.id)
    assert "timeout" in states[2].message


def test_async_timed_out_task_with_retries(history, h):
    attempts = {"n": 0}

    @task(timeout_seconds=0.2, retries=1)
    async def sleepy():
        attempts["n"] += 1
        if attempts["n"] == 1:
            await asyncio.sleep(30)
        return attempts["n"]

    @flow
    async def f():
        return await sleepy()

    assert asyncio.run(f()) == 2


def test_sync_flow_timeout(history, h):
    @task
    def t():
        return 1

    @flow(timeout_seconds=0.3)
    def f():
        t()
        while True:
            pass

    with pytest.raises(FlowTimeoutError, match="0.3"):
        f()
    fr = h.only_flow_run()
    assert fr.state_type is StateType.FAILED
    assert fr.state_name == "TimedOut"
    assert "timeout of 0.3" in fr.state_message
    runs = h.task_runs(fr.id)
    assert [r.state_name for r in runs] == ["Completed"]


def test_sync_flow_timeout_settles_its_running_task(history, h):
    """A flow that times out while one of its tasks runs: that task run gets a final state."""
    started = threading.Event()

    @task
    def spin():
        started.set()
        while True:
            pass

    @flow(timeout_seconds=0.3)
    def f():
        spin()

    st = f(return_state=True)
    assert started.is_set()
    assert st.name == "TimedOut"
    fr = h.only_flow_run()
    (tr,) = h.task_runs(fr.id)
    assert tr.state_type in (StateType.CRASHED, StateType.FAILED, StateType.CANCELLED)


def test_async_flow_timeout(history, h):
    @flow(timeout_seconds=0.2)
    async def f():
        await asyncio.sleep(30)

    st = asyncio.run(f(return_state=True))
    assert st.name == "TimedOut"
    assert isinstance(st.data, FlowTimeoutError)
    assert h.only_flow_run().state_name == "TimedOut"


def test_flow_timeout_return_value_passes_through(history):
    @flow(timeout_seconds=5)
    def f(x: int):
        return x + 1

    assert f("1") == 2


def test_flow_timeout_with_retries(history, h):
    attempts = {"n": 0}

    @flow(timeout_seconds=0.2, retries=1)
    def f():
        attempts["n"] += 1
        if attempts["n"] == 1:
            while True:
                pass
        return "second"

    assert f() == "second"
    fr = h.only_flow_run()
    assert fr.run_count == 2
    assert fr.state_name == "Completed"


def test_users_own_timeout_error_in_async_task_is_not_a_run_timeout(history, h):
    @task(timeout_seconds=5)
    async def at():
        raise TimeoutError("the database timed out")

    @flow
    async def f():
        return [await at(return_state=True)]

    (st,) = asyncio.run(f())
    assert st.name == "Failed"
    assert "the database timed out" in st.message
    assert not isinstance(st.data, TaskTimeoutError)
    assert isinstance(st.data, TimeoutError)


def test_users_own_timeout_error_in_async_flow_is_not_a_run_timeout(history, h):
    @flow(timeout_seconds=5)
    async def f():
        raise TimeoutError("mine")

    with pytest.raises(TimeoutError, match="mine") as info:
        asyncio.run(f())
    assert not isinstance(info.value, FlowTimeoutError)
    assert h.only_flow_run().state_name == "Failed"


def test_users_own_timeout_error_in_sync_task_is_not_a_run_timeout(history, h):
    @task(timeout_seconds=5)
    def t():
        raise TimeoutError("socket")

    @flow
    def f():
        return [t(return_state=True)]

    (st,) = f()
    assert st.name == "Failed" and "socket" in st.message


def test_flow_timeout_does_not_wait_for_submitted_tasks(history, h):
    """At the flow's deadline the flow ends; submitted task runs still going are marked final
    (not waited for), and the call returns without waiting for them."""
    release = threading.Event()
    queued_ran = []

    @task
    def spin():
        while not release.is_set():
            pass
        return "spun"

    @task
    def queued():
        queued_ran.append(1)

    @flow(timeout_seconds=0.3, task_runner=ThreadPoolTaskRunner(max_workers=1))
    def f():
        fut = spin.submit()
        queued.submit()  # waits behind spin on the single worker
        return fut.result()

    try:
        t0 = time.monotonic()
        st = f(return_state=True)
        elapsed = time.monotonic() - t0
        assert st.name == "TimedOut"
        assert elapsed < 5, elapsed
        fr = h.only_flow_run()
        assert fr.state_name == "TimedOut"
        runs = h.task_runs_by_name(fr.id)
        assert runs["spin-0"].state_type is StateType.CRASHED
        assert "timed out" in runs["spin-0"].state_message
        assert runs["queued-0"].state_type is StateType.CRASHED
    finally:
        release.set()
    assert queued_ran == []


def test_abandoned_task_finishing_late_does_not_change_its_state(history, h):
    release = threading.Event()
    box = {}

    @task
    def spin():
        while not release.is_set():
            pass
        return "late"

    @flow(timeout_seconds=0.3)
    def f():
        box["fut"] = spin.submit()
        return box["fut"].result()

    st = f(return_state=True)
    assert st.name == "TimedOut"
    release.set()
    box["fut"].wait(10)  # the worker thread finished the task and tried to record it
    assert box["fut"].done()
    fr = h.only_flow_run()
    (tr,) = h.task_runs(fr.id)
    assert tr.state_type is StateType.CRASHED
    # Running unless the deadline came before the worker even started it
    assert h.task_states(tr.id) in (["Pending", "Running", "Crashed"], ["Pending", "Crashed"])
    text = h.log_text(task_run_id=tr.id)
    assert "discarded" in text or "not started" in text
