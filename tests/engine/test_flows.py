"""@flow and @task: decorating, naming, tags, run-name templates, sync and async."""

from __future__ import annotations

import asyncio

import pytest

import legato
from legato import flow, task
from legato.context import flow_run_ctx, task_run_ctx
from legato.exceptions import MissingContextError, ParameterBindError
from legato.states import State, StateType


def test_bare_flow_and_task_run_and_are_recorded(history, h):
    @task
    def double(x):
        return x * 2

    @flow
    def my_flow(x):
        return double(x) + 1

    assert my_flow(5) == 11
    fr = h.only_flow_run()
    assert fr.flow_name == "my-flow"  # Prefect's default: underscores become dashes
    assert fr.state_type is StateType.COMPLETED
    assert fr.state_name == "Completed"
    assert fr.parameters == {"x": 5}
    assert fr.start_time is not None and fr.end_time is not None
    assert fr.run_count == 1
    (tr,) = h.task_runs(fr.id)
    assert tr.name == "double-0"
    assert tr.state_name == "Completed"
    assert tr.flow_run_id == fr.id
    assert tr.run_count == 1
    assert tr.task_key.endswith("double")
    assert h.flow_states(fr.id) == ["Pending", "Running", "Completed"]
    assert h.task_states(tr.id) == ["Pending", "Running", "Completed"]


def test_flow_and_task_with_arguments(history, h):
    @task(name="Adder", description="adds", version="3", tags=["t1"])
    def add(x, y):
        return x + y

    @flow(name="GCP flow", description="my description", version="1.2")
    def f():
        return add(1, 2)

    assert f.name == "GCP flow"
    assert f.description == "my description"
    assert f.version == "1.2"
    assert add.name == "Adder" and add.description == "adds" and add.version == "3"
    assert f() == 3
    fr = h.only_flow_run("GCP flow")
    assert fr.version == "1.2"
    (tr,) = h.task_runs(fr.id)
    assert tr.name == "Adder-0"
    assert tr.tags == ["t1"]


def test_description_defaults_to_docstring():
    @flow
    def documented():
        """Does a thing."""

    @task
    def tdoc():
        """Task doc."""

    assert documented.description == "Does a thing."
    assert tdoc.description == "Task doc."


def test_decorated_objects_keep_the_function_identity():
    @flow
    def named_flow(a: int) -> int:
        """Doc."""
        return a

    assert named_flow.__name__ == "named_flow"
    assert named_flow.__doc__ == "Doc."
    assert named_flow.fn(3) == 3


def test_same_task_called_repeatedly_gets_increasing_names(history, h):
    @task
    def t(i):
        return i

    @flow
    def f():
        return [t(i) for i in range(3)]

    assert f() == [0, 1, 2]
    fr = h.only_flow_run()
    assert sorted(tr.name for tr in h.task_runs(fr.id)) == ["t-0", "t-1", "t-2"]
    assert sorted(tr.dynamic_key for tr in h.task_runs(fr.id)) == ["0", "1", "2"]


def test_tags_from_decorator_and_context_manager(history, h):
    @task(tags=["from-task"])
    def t():
        return 1

    @flow(tags=["from-flow"])
    def f():
        with legato.tags("inner"):
            t()
        t()

    with legato.tags("a", "b"):
        f()
    fr = h.only_flow_run()
    assert sorted(fr.tags) == ["a", "b", "from-flow"]
    runs = h.task_runs_by_name(fr.id)
    assert sorted(runs["t-0"].tags) == ["a", "b", "from-task", "inner"]
    assert sorted(runs["t-1"].tags) == ["a", "b", "from-task"]


def test_tags_context_is_restored():
    with legato.tags("x") as current:
        assert current == frozenset({"x"})
        with legato.tags("y") as inner:
            assert inner == frozenset({"x", "y"})
    from legato.context import tags_ctx

    assert tags_ctx.get() == frozenset()


def test_flow_run_name_and_task_run_name_templates(history, h):
    @task(task_run_name="fetch-{city}-{n}")
    def fetch(city, n):
        return city

    @flow(flow_run_name="run-for-{city}")
    def f(city: str):
        fetch(city, 1)
        return city

    f("paris")
    fr = h.only_flow_run()
    assert fr.name == "run-for-paris"
    (tr,) = h.task_runs(fr.id)
    assert tr.name == "fetch-paris-1"


def test_run_name_template_callables(history, h):
    @task(task_run_name=lambda: "custom-task")
    def t():
        return 1

    @flow(flow_run_name=lambda: "custom-flow")
    def f():
        t()

    f()
    fr = h.only_flow_run()
    assert fr.name == "custom-flow"
    assert h.task_runs(fr.id)[0].name == "custom-task"


def test_flow_run_name_template_with_missing_parameter_is_a_clear_error(history, h):
    @flow(flow_run_name="run-{nope}")
    def f(city: str):
        return city

    with pytest.raises(ParameterBindError) as info:
        f("x")
    msg = str(info.value)
    assert "nope" in msg and "city" in msg
    # no half-written run: nothing, or a run that is Failed
    for fr in h.flow_runs():
        assert fr.state_type is StateType.FAILED


def test_task_run_name_template_with_missing_parameter_is_a_clear_error(history, h):
    @task(task_run_name="t-{missing}")
    def t(x):
        return x

    @flow
    def f():
        return t(1)

    with pytest.raises(ParameterBindError) as info:
        f()
    assert "missing" in str(info.value)
    assert "x" in str(info.value)
    fr = h.only_flow_run()
    assert fr.state_type is StateType.FAILED


def test_generated_flow_run_names_look_like_prefects(history, h):
    @flow
    def f():
        return flow_run_ctx.get().flow_run.name

    name = f()
    adjective, animal = name.split("-")
    assert adjective and animal
    assert h.only_flow_run().name == name


def test_run_context_inside_flow_and_task(history, h):
    seen = {}

    @task
    def t():
        seen["task"] = task_run_ctx.get().task_run
        seen["task_flow"] = flow_run_ctx.get().flow_run
        seen["ctx"] = legato.get_run_context()

    @flow
    def f(a: int):
        seen["flow"] = flow_run_ctx.get().flow_run
        t()

    f(1)
    fr = h.only_flow_run()
    assert seen["flow"].id == fr.id
    assert seen["flow"].parameters == {"a": 1}
    assert seen["task_flow"].id == fr.id
    assert seen["task"].id == h.task_runs(fr.id)[0].id
    assert seen["task"].flow_run_id == fr.id
    assert seen["ctx"].task_run.id == seen["task"].id
    assert flow_run_ctx.get() is None and task_run_ctx.get() is None
    with pytest.raises(MissingContextError):
        legato.get_run_context()


# -- plain calls outside a flow -------------------------------------------------------------------
def test_task_called_outside_a_flow_runs_plainly(history, h):
    calls = []

    @task(retries=3)
    def t(x):
        calls.append(x)
        return x + 1

    assert t(1) == 2
    assert calls == [1]
    assert h.flow_runs() == []
    assert h.client.read_task_runs() == []


def test_task_outside_a_flow_raises_plainly_without_retries():
    calls = []

    @task(retries=3)
    def t():
        calls.append(1)
        raise KeyError("k")

    with pytest.raises(KeyError):
        t()
    assert calls == [1]


def test_submit_and_map_outside_a_flow_raise_missing_context():
    @task
    def t(x):
        return x

    with pytest.raises(MissingContextError, match=r"submit\(\).*outside a flow"):
        t.submit(1)
    with pytest.raises(MissingContextError, match=r"map\(\).*outside a flow"):
        t.map([1, 2])


# -- async ----------------------------------------------------------------------------------------
def test_async_flow_with_async_tasks(history, h):
    @task
    async def slow_double(x):
        await asyncio.sleep(0)
        return x * 2

    @flow
    async def af(n: int):
        a = await slow_double(n)
        b, c = await asyncio.gather(slow_double(a), slow_double(a + 1))
        return a, b, c

    coro = af(2)
    assert asyncio.iscoroutine(coro)
    assert asyncio.run(coro) == (4, 8, 10)
    fr = h.only_flow_run()
    assert fr.state_name == "Completed"
    trs = h.task_runs(fr.id)
    assert len(trs) == 3
    assert all(t.state_name == "Completed" for t in trs)


def test_async_task_called_from_a_sync_flow(history, h):
    @task
    async def at(x):
        await asyncio.sleep(0)
        return x + 1

    @flow
    def f():
        return at(1)

    assert f() == 2
    fr = h.only_flow_run()
    assert [t.state_name for t in h.task_runs(fr.id)] == ["Completed"]


def test_async_task_submitted_from_a_sync_flow(history, h):
    @task
    async def at(x):
        await asyncio.sleep(0)
        return x * 3

    @flow
    def f():
        return [fut.result() for fut in at.map([1, 2, 3])]

    assert f() == [3, 6, 9]


def test_sync_task_in_async_flow(history, h):
    @task
    def st(x):
        return x - 1

    @flow
    async def af():
        return st(10), st.submit(5).result()

    assert asyncio.run(af()) == (9, 4)
    fr = h.only_flow_run()
    assert len(h.task_runs(fr.id)) == 2


def test_async_flow_failure_reraises(history, h):
    @flow
    async def af():
        raise ZeroDivisionError("nope")

    with pytest.raises(ZeroDivisionError, match="nope"):
        asyncio.run(af())
    assert h.only_flow_run().state_type is StateType.FAILED
    state = asyncio.run(af(return_state=True))
    assert isinstance(state, State) and state.is_failed()


def test_async_flow_return_state(history, h):
    @flow
    async def af():
        return 42

    state = asyncio.run(af(return_state=True))
    assert state.is_completed()
    assert state.result() == 42


def test_task_with_options_makes_a_copy(history, h):
    @task(retries=0, name="orig")
    def t():
        return 1

    t2 = t.with_options(name="renamed", retries=2)
    assert t.name == "orig" and t.retries == 0
    assert t2.name == "renamed" and t2.retries == 2

    @flow
    def f():
        t2()

    f()
    assert h.task_runs(h.only_flow_run().id)[0].name == "renamed-0"


def test_flow_with_options_makes_a_copy(history, h):
    @flow(name="orig")
    def f():
        return 1

    f2 = f.with_options(name="other", version="9")
    assert f2() == 1
    fr = h.only_flow_run()
    assert fr.flow_name == "other" and fr.version == "9"


def test_bad_decorator_arguments_are_refused():
    with pytest.raises(ValueError, match="retries"):
        task(retries=-1)(lambda: None)
    with pytest.raises(ValueError, match="timeout_seconds"):
        task(timeout_seconds=0)(lambda: None)
    with pytest.raises(ValueError, match="timeout_seconds"):
        flow(timeout_seconds=-1)(lambda: None)
    with pytest.raises(TypeError):
        flow(42)  # type: ignore[arg-type]


def test_history_is_complete_right_after_the_flow_returns(history, h):
    """No flush, no sleep: every row is readable as soon as the call returns."""

    @task
    def t(i):
        return i

    @flow
    def f():
        for i in range(20):
            t(i)
        futs = [t.submit(i) for i in range(20)]
        return len(futs)

    assert f() == 20
    fr = h.only_flow_run()
    runs = h.task_runs(fr.id)
    assert len(runs) == 40
    assert {r.state_name for r in runs} == {"Completed"}
    assert fr.state_name == "Completed"


def test_history_is_written_without_reads_flushing(history):
    """The flow call itself makes rows durable: a fresh connection sees them."""
    import sqlalchemy as sa

    from legato.settings import get_settings

    @task
    def t():
        return 1

    @flow
    def f():
        t()
        t.submit()

    f()
    url = get_settings().resolved_database_url
    eng = sa.create_engine(url.replace("+asyncpg", "+psycopg"))
    try:
        with eng.connect() as conn:
            n_flow = conn.execute(sa.text("select count(*) from flow_run")).scalar()
            n_task = conn.execute(
                sa.text("select count(*) from task_run where state_type = 'COMPLETED'")
            ).scalar()
            n_states = conn.execute(sa.text("select count(*) from task_run_state")).scalar()
    finally:
        eng.dispose()
    assert n_flow == 1
    assert n_task == 2
    assert n_states == 6
