"""Subflows: a flow called inside a flow is a child run, linked through a task run."""

from __future__ import annotations

import asyncio

import pytest

from legato import flow, get_run_logger, task
from legato.context import flow_run_ctx
from legato.states import StateType


@task
def inc(x):
    return x + 1


def test_subflow_is_linked_to_a_task_run_in_the_parent(history, h):
    @flow
    def child(x: int):
        return inc(x)

    @flow(name="Parent flow")
    def parent():
        a = child(1)
        b = child(a)
        return b

    assert parent() == 3
    p = h.only_flow_run("Parent flow")
    children = h.flow_runs("child")
    assert len(children) == 2
    parent_task_runs = h.task_runs_by_name(p.id)
    assert set(parent_task_runs) == {"child-0", "child-1"}
    for c in children:
        assert c.parent_task_run_id in {t.id for t in parent_task_runs.values()}
        assert c.state_name == "Completed"
        assert len(h.task_runs(c.id)) == 1  # the child's own task runs belong to it
    assert {c.parent_task_run_id for c in children} == {t.id for t in parent_task_runs.values()}
    assert p.state_name == "Completed"
    for t in parent_task_runs.values():
        assert t.state_name == "Completed"
        assert h.task_states(t.id) == ["Pending", "Running", "Completed"]
    # parameters were coerced for the child too
    assert sorted(c.parameters["x"] for c in children) == [1, 2]


def test_subflow_context_knows_its_parent(history, h):
    seen = {}

    @flow
    def child():
        seen["child"] = flow_run_ctx.get().flow_run

    @flow
    def parent():
        seen["parent"] = flow_run_ctx.get().flow_run
        child()
        seen["after"] = flow_run_ctx.get().flow_run

    parent()
    assert seen["child"].parent_flow_run_id == seen["parent"].id
    assert seen["after"] is seen["parent"]  # context restored after the subflow


def test_failing_subflow_fails_the_parent_when_unhandled(history, h):
    @flow
    def child():
        raise ValueError("child broke")

    @flow
    def parent():
        child()

    with pytest.raises(ValueError, match="child broke"):
        parent()
    p = h.only_flow_run("parent")
    c = h.only_flow_run("child")
    assert p.state_type is StateType.FAILED
    assert c.state_type is StateType.FAILED
    (link,) = h.task_runs(p.id)
    assert c.parent_task_run_id == link.id
    assert link.state_type is StateType.FAILED


def test_failing_subflow_handled_by_the_parent(history, h):
    @flow
    def child():
        raise ValueError("child broke")

    @flow
    def parent():
        st = child(return_state=True)
        return st.name

    assert parent() == "Failed"
    assert h.only_flow_run("parent").state_name == "Completed"
    assert h.only_flow_run("child").state_name == "Failed"


def test_subflow_logs_go_to_the_child_run(history, h):
    @flow
    def child():
        get_run_logger().info("child says hi")

    @flow
    def parent():
        get_run_logger().info("parent says hi")
        child()

    parent()
    p = h.only_flow_run("parent")
    c = h.only_flow_run("child")
    assert "child says hi" in h.log_text(flow_run_id=c.id)
    assert "child says hi" not in h.log_text(flow_run_id=p.id)
    assert "parent says hi" in h.log_text(flow_run_id=p.id)


def test_nested_three_levels(history, h):
    @flow
    def leaf():
        return inc(0)

    @flow
    def middle():
        return leaf() + 1

    @flow
    def top():
        return middle() + 1

    assert top() == 3
    t = h.only_flow_run("top")
    m = h.only_flow_run("middle")
    lf = h.only_flow_run("leaf")
    assert h.client.read_task_run(m.parent_task_run_id).flow_run_id == t.id
    assert h.client.read_task_run(lf.parent_task_run_id).flow_run_id == m.id


def test_async_subflows_run_concurrently(history, h):
    started = []
    both = asyncio.Event()

    @flow
    async def child(i: int):
        started.append(i)
        if len(started) == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 5)  # needs the other child running at once
        return i

    @flow
    async def parent():
        return await asyncio.gather(child(1), child(2))

    assert asyncio.run(parent()) == [1, 2]
    assert len(h.flow_runs("child")) == 2
    p = h.only_flow_run("parent")
    assert len(h.task_runs(p.id)) == 2
    assert all(c.state_name == "Completed" for c in h.flow_runs("child"))


def test_subflow_inherits_tags(history, h):
    @flow
    def child():
        return 1

    @flow(tags=["outer"])
    def parent():
        return child()

    parent()
    # tags from the parent's decorator are not pushed into the child (as in Prefect); tags
    # from a `with tags()` block are
    import legato

    @flow
    def parent2():
        with legato.tags("blk"):
            return child()

    parent2()
    assert any("blk" in c.tags for c in h.flow_runs("child"))


def test_subflow_with_retries_in_parent(history, h):
    calls = {"n": 0}

    @flow
    def child():
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("first child fails")
        return "ok"

    @flow(retries=1)
    def parent():
        return child()

    assert parent() == "ok"
    children = h.flow_runs("child")
    assert [c.state_name for c in children] == ["Failed", "Completed"]
    p = h.only_flow_run("parent")
    assert p.state_name == "Completed"
    assert p.run_count == 2


def test_subflow_timeout_does_not_hang_the_parent(history, h):
    @flow(timeout_seconds=0.2)
    def child():
        while True:
            pass

    @flow
    def parent():
        return child(return_state=True).name

    assert parent() == "TimedOut"
    assert h.only_flow_run("parent").state_name == "Completed"
    c = h.only_flow_run("child")
    assert c.state_name == "TimedOut"
    assert h.client.read_task_run(c.parent_task_run_id).state_type is StateType.FAILED


def test_parameter_error_in_subflow(history, h):
    @flow
    def child(n: int):
        return n

    @flow
    def parent():
        return child("x", return_state=True)

    st = parent(return_state=True)
    # a State returned from a flow is adopted: the parent ends in the child's Failed state
    assert st.is_failed()
    c = h.only_flow_run("child")
    assert c.state_type is StateType.FAILED
    assert "'n'" in c.state_message
    link = h.client.read_task_run(c.parent_task_run_id)
    assert link.state_type is StateType.FAILED


def test_parent_timeout_settles_a_running_subflow(history, h):
    import threading

    release = threading.Event()

    @flow
    def child():
        release.wait(10)  # blocked in C: the interruption lands only when it returns
        return 1

    @flow(timeout_seconds=0.3)
    def parent():
        child()

    st = parent(return_state=True)
    assert st.name == "TimedOut"
    p = h.only_flow_run("parent")
    (link,) = h.task_runs(p.id)
    assert link.state_type is StateType.CRASHED  # settled when the parent ended
    c = h.only_flow_run("child")
    assert c.state_type is StateType.CRASHED
    assert "timed out" in c.state_message
    # let the abandoned child finish; its late outcome does not change the history
    release.set()
    for t in threading.enumerate():
        if t.name == "legato-timeout":
            t.join(10)
    assert h.only_flow_run("child").state_type is StateType.CRASHED
    assert h.task_runs(p.id)[0].state_type is StateType.CRASHED
    assert "discarded" in h.log_text(flow_run_id=c.id)


def test_an_async_subflow_called_from_a_sync_flow_runs_to_completion(history) -> None:
    from legato import flow, task
    from legato.client import get_client
    from legato.schemas import FlowRunFilter

    @task
    async def add(a: int, b: int) -> int:
        return a + b

    @flow(name="async-child")
    async def child(x: int) -> int:
        return await add(x, 1)

    @flow(name="sync-parent")
    def parent() -> int:
        return child(41) * 1

    assert parent() == 42
    runs = get_client().read_flow_runs(FlowRunFilter(flow_name="async-child"))
    assert [r.state_name for r in runs] == ["Completed"]
    assert runs[0].parent_task_run_id is not None
