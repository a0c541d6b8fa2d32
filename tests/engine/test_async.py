"""Async flows and tasks: awaiting, gathering, mixing with sync code, cancellation."""

from __future__ import annotations

import asyncio
import warnings

import pytest

from legato import flow, get_run_logger, task
from legato.context import flow_run_ctx, task_run_ctx
from legato.states import StateType


@task
async def aincr(x):
    await asyncio.sleep(0)
    return x + 1


def test_gathered_async_tasks_run_concurrently(history, h):
    started = []
    all_started = asyncio.Event()

    @task
    async def meet(i):
        started.append(i)
        if len(started) == 3:
            all_started.set()
        await asyncio.wait_for(all_started.wait(), 5)  # only if all three run at once
        return i

    @flow
    async def f():
        return await asyncio.gather(meet(1), meet(2), meet(3))

    assert asyncio.run(f()) == [1, 2, 3]
    runs = h.task_runs(h.only_flow_run().id)
    assert sorted(r.name for r in runs) == ["meet-0", "meet-1", "meet-2"]
    assert {r.state_name for r in runs} == {"Completed"}


def test_async_task_context_and_logger(history, h):
    seen = {}

    @task
    async def t():
        seen["task_run"] = task_run_ctx.get().task_run.id
        seen["flow_run"] = flow_run_ctx.get().flow_run.id
        get_run_logger().info("from async task")

    @flow
    async def f():
        await t()
        assert task_run_ctx.get() is None  # restored after the await

    asyncio.run(f())
    fr = h.only_flow_run()
    (tr,) = h.task_runs(fr.id)
    assert seen == {"task_run": tr.id, "flow_run": fr.id}
    assert "from async task" in h.log_text(task_run_id=tr.id)


def test_async_task_failure_in_async_flow(history, h):
    @task
    async def bad():
        raise LookupError("async broke")

    @flow
    async def f():
        await bad()

    with pytest.raises(LookupError, match="async broke"):
        asyncio.run(f())
    fr = h.only_flow_run()
    assert fr.state_type is StateType.FAILED
    assert h.task_runs(fr.id)[0].state_type is StateType.FAILED
    assert "async broke" in h.log_text(flow_run_id=fr.id)


def test_async_task_return_state(history):
    @task
    async def bad():
        raise LookupError("x")

    @flow
    async def f():
        st = await bad(return_state=True)
        return st.name

    assert asyncio.run(f()) == "Failed"


def test_async_task_never_awaited_still_gets_a_final_state(history, h):
    @flow
    async def f():
        aincr(1)  # forgotten await
        return "done"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert asyncio.run(f()) == "done"
    fr = h.only_flow_run()
    (tr,) = h.task_runs(fr.id)
    assert tr.state_type in (StateType.CRASHED, StateType.FAILED, StateType.CANCELLED)


def test_sync_subflow_in_async_flow_and_async_subflow_in_async_flow(history, h):
    @flow
    def sync_child(x: int):
        return x * 10

    @flow
    async def async_child(x: int):
        return await aincr(x)

    @flow
    async def parent():
        return sync_child(1), await async_child(1)

    assert asyncio.run(parent()) == (10, 2)
    p = h.only_flow_run("parent")
    assert len(h.task_runs(p.id)) == 2
    for name in ("sync-child", "async-child"):
        c = h.only_flow_run(name)
        assert c.state_name == "Completed"
        assert h.client.read_task_run(c.parent_task_run_id).flow_run_id == p.id


def test_async_flow_cancelled_from_outside_ends_crashed(history, h):
    entered = asyncio.Event()

    @flow
    async def f():
        entered.set()
        await asyncio.sleep(30)

    async def main():
        t = asyncio.ensure_future(f())
        await asyncio.wait_for(entered.wait(), 10)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t

    asyncio.run(main())
    fr = h.only_flow_run()
    assert fr.state_type in (StateType.CRASHED, StateType.CANCELLED)
    assert fr.end_time is not None


def test_async_task_mapped_from_async_flow(history, h):
    @flow
    async def f():
        futs = aincr.map([1, 2, 3])
        futs.wait()
        return futs.result()

    assert asyncio.run(f()) == [2, 3, 4]


def test_async_task_called_outside_a_flow_is_a_plain_coroutine(history, h):
    assert asyncio.run(aincr(1)) == 2
    assert h.flow_runs() == []


def test_async_flow_with_retries_on_async_task_timeout(history, h):
    attempts = {"n": 0}

    @task(timeout_seconds=0.2)
    async def slow():
        attempts["n"] += 1
        if attempts["n"] == 1:
            await asyncio.sleep(30)
        return "fast"

    @flow(retries=1)
    async def f():
        return await slow()

    assert asyncio.run(f()) == "fast"
    fr = h.only_flow_run()
    assert fr.run_count == 2
    assert [r.state_name for r in h.task_runs(fr.id)] == ["TimedOut", "Completed"]
