"""submit(), map(), futures, wait_for, allow_failure, upstream links, task runners."""

from __future__ import annotations

import threading

import pytest

import legato
from legato import allow_failure, flow, task, unmapped
from legato.exceptions import MappingError, UnfinishedRun
from legato.futures import LegatoFuture, LegatoFutureList
from legato.runners import ConcurrentTaskRunner, SequentialTaskRunner, ThreadPoolTaskRunner
from legato.states import StateType


@task
def add(x, y=0):
    return x + y


@task
def make_list(n):
    return list(range(n))


@task
def total(values):
    return sum(values)


@task
def fail(msg="upstream broke"):
    raise RuntimeError(msg)


def test_submit_returns_a_future_with_result_wait_and_state(history, h):
    @flow
    def f():
        fut = add.submit(1, 2)
        assert isinstance(fut, LegatoFuture)
        fut.wait()
        st = fut.state
        return fut.result(), st, fut.task_run_id

    value, st, tr_id = f()
    assert value == 3
    assert st.is_completed() and st.name == "Completed"
    fr = h.only_flow_run()
    (tr,) = h.task_runs(fr.id)
    assert tr.id == tr_id
    assert tr.state_name == "Completed"


def test_future_result_reraises_the_task_exception(history, h):
    @flow
    def f():
        fut = fail.submit("nope")
        with pytest.raises(RuntimeError, match="nope"):
            fut.result()
        exc = fut.result(raise_on_failure=False)
        return type(exc).__name__, fut.state.name

    assert f() == ("RuntimeError", "Failed")
    assert h.only_flow_run().state_name == "Completed"


def test_future_result_timeout(history):
    release = threading.Event()

    @task
    def blocked():
        release.wait(10)
        return 1

    @flow
    def f():
        fut = blocked.submit()
        with pytest.raises(UnfinishedRun):
            fut.result(timeout=0.05)
        running_state = fut.state
        fut.wait(timeout=0.01)  # returns without raising
        release.set()
        return running_state.type, fut.result()

    stype, value = f()
    assert stype in (StateType.RUNNING, StateType.PENDING)
    assert value == 1


def test_map_and_unmapped(history, h):
    @flow
    def f():
        futs = add.map([1, 2, 3], unmapped(10))
        assert isinstance(futs, LegatoFutureList)
        futs.wait()
        return futs.result(), add.map([1, 2], y=[10, 20]).result()

    assert f() == ([11, 12, 13], [11, 22])
    fr = h.only_flow_run()
    runs = h.task_runs(fr.id)
    assert len(runs) == 5
    assert sorted(r.name for r in runs) == ["add-0", "add-1", "add-2", "add-3", "add-4"]
    assert {r.state_name for r in runs} == {"Completed"}


def test_map_unmapped_list_is_passed_whole(history):
    @task
    def pair(x, lst):
        return (x, len(lst))

    @flow
    def f():
        return pair.map([1, 2], unmapped([7, 8, 9])).result()

    assert f() == [(1, 3), (2, 3)]


def test_map_strings_and_dicts_are_not_iterated(history):
    @task
    def pair(x, s, d):
        return (x, s, d)

    @flow
    def f():
        return pair.map([1, 2], "ab", {"k": 1}).result()

    assert f() == [(1, "ab", {"k": 1}), (2, "ab", {"k": 1})]


def test_map_with_mismatched_lengths_is_a_mapping_error(history, h):
    @flow
    def f():
        add.map([1, 2, 3], [1, 2])

    with pytest.raises(MappingError) as info:
        f()
    assert "x=3" in str(info.value) and "y=2" in str(info.value)
    assert h.only_flow_run().state_type is StateType.FAILED
    assert h.task_runs(h.only_flow_run().id) == []


def test_map_with_nothing_to_map_is_a_mapping_error(history):
    @flow
    def f():
        add.map(1, 2)

    with pytest.raises(MappingError, match="iterable"):
        f()


def test_map_over_a_future(history, h):
    @flow
    def f():
        lst = make_list.submit(4)
        return add.map(lst, unmapped(1)).result()

    assert f() == [1, 2, 3, 4]


def test_map_empty_list_gives_no_runs(history, h):
    @flow
    def f():
        return add.map([], unmapped(1)).result()

    assert f() == []


def test_futures_as_arguments_are_resolved_and_linked(history, h):
    @flow
    def f():
        a = make_list.submit(3)
        b = total.submit(a)
        return b.result()

    assert f() == 3
    fr = h.only_flow_run()
    runs = h.task_runs_by_name(fr.id)
    assert runs["total-0"].task_inputs == {
        "values": [{"input_type": "task_run", "id": runs["make_list-0"].id}]
    }
    assert runs["make_list-0"].task_inputs == {}


def test_plain_task_results_passed_on_are_linked(history, h):
    @flow
    def f():
        lst = make_list(3)
        return total(lst)

    assert f() == 3
    fr = h.only_flow_run()
    runs = h.task_runs_by_name(fr.id)
    assert runs["total-0"].task_inputs == {
        "values": [{"input_type": "task_run", "id": runs["make_list-0"].id}]
    }


def test_futures_inside_lists_and_dicts_are_resolved_and_linked(history, h):
    @task
    def combine(items, mapping):
        return sum(items) + sum(mapping.values())

    @flow
    def f():
        a = add.submit(1)
        b = add.submit(2)
        c = add.submit(3)
        return combine([a, b], {"c": c})

    assert f() == 6
    fr = h.only_flow_run()
    runs = h.task_runs_by_name(fr.id)
    inputs = runs["combine-0"].task_inputs
    assert sorted(i["id"] for i in inputs["items"]) == sorted(
        [runs["add-0"].id, runs["add-1"].id]
    )
    assert inputs["mapping"] == [{"input_type": "task_run", "id": runs["add-2"].id}]


def test_wait_for_orders_runs_and_is_recorded(history, h):
    order = []
    gate = threading.Event()

    @task
    def first():
        gate.wait(5)
        order.append("first")

    @task
    def second():
        order.append("second")

    @flow
    def f():
        a = first.submit()
        b = second.submit(wait_for=[a])
        gate.set()
        b.wait()

    f()
    assert order == ["first", "second"]
    fr = h.only_flow_run()
    runs = h.task_runs_by_name(fr.id)
    assert runs["second-0"].task_inputs.get("wait_for") == [
        {"input_type": "task_run", "id": runs["first-0"].id}
    ]


def test_wait_for_on_a_direct_call(history, h):
    @flow
    def f():
        a = add.submit(1)
        return add(2, wait_for=[a])

    assert f() == 2


def test_downstream_of_a_failed_future_does_not_run(history, h):
    ran = []

    @task
    def downstream(x):
        ran.append(x)

    @flow
    def f():
        up = fail.submit()
        down = downstream.submit(up)
        down.wait()
        return down.state

    with pytest.raises(RuntimeError, match="upstream broke"):
        f()
    assert ran == []
    fr = h.only_flow_run()
    assert fr.state_type is StateType.FAILED
    runs = h.task_runs_by_name(fr.id)
    assert runs["fail-0"].state_type is StateType.FAILED
    d = runs["downstream-0"]
    assert d.state_type is StateType.FAILED
    assert d.state_name == "NotReady"
    assert "fail-0" in d.state_message
    assert d.run_count == 0
    assert "Running" not in h.task_states(d.id)


def test_downstream_of_a_failed_wait_for_does_not_run(history, h):
    ran = []

    @task
    def downstream():
        ran.append(1)

    @flow
    def f():
        up = fail.submit()
        down = downstream.submit(wait_for=[up])
        down.wait()
        return [down.state]

    (down_state,) = f()
    assert down_state.name == "NotReady" and down_state.type is StateType.FAILED
    assert ran == []
    runs = h.task_runs_by_name(h.only_flow_run().id)
    assert runs["downstream-0"].state_name == "NotReady"


def test_allow_failure_runs_downstream_with_the_exception(history, h):
    @task
    def downstream(x):
        return f"got {type(x).__name__}"

    @flow
    def f():
        up = fail.submit()
        return downstream.submit(allow_failure(up)).result(), downstream(
            2, wait_for=[allow_failure(up)]
        )

    first, second = f()
    assert first == "got RuntimeError"
    assert second == "got int"
    runs = h.task_runs_by_name(h.only_flow_run().id)
    assert runs["downstream-0"].state_name == "Completed"
    assert runs["downstream-0"].task_inputs["x"] == [
        {"input_type": "task_run", "id": runs["fail-0"].id}
    ]


def test_quote_passes_value_as_is(history):
    from legato import quote

    @task
    def ident(x):
        return x

    @flow
    def f():
        fut = add.submit(1)
        return ident(quote([fut]))

    (value,) = f()
    assert isinstance(value, LegatoFuture)


def test_wait_and_as_completed_helpers(history):
    @flow
    def f():
        futs = [add.submit(i) for i in range(5)]
        done, not_done = legato.wait(futs)
        assert len(done) == 5 and not not_done
        return sorted(fut.result() for fut in legato.as_completed(futs))

    assert f() == [0, 1, 2, 3, 4]


def test_submitted_but_never_awaited_tasks_are_final_when_the_flow_returns(history, h):
    gate = threading.Event()

    @task
    def slow(i):
        gate.wait(5)
        return i

    @flow
    def f():
        for i in range(5):
            slow.submit(i)
        gate.set()
        return "returned before the tasks finished"

    assert f() == "returned before the tasks finished"
    fr = h.only_flow_run()
    runs = h.task_runs(fr.id)
    assert len(runs) == 5
    assert {r.state_name for r in runs} == {"Completed"}
    assert all(r.end_time is not None for r in runs)


def test_fifty_submitted_tasks_on_default_sqlite_all_recorded(h, caplog):
    """A long-open Prefect complaint: no 'database is locked' with 50 concurrent tasks."""
    barrier = threading.Barrier(10, timeout=10)

    @task
    def work(i):
        if i < 10:
            barrier.wait()  # at least ten run truly at once
        return i * i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=16))
    def f():
        futs = [work.submit(i) for i in range(50)]
        return [fut.result() for fut in futs]

    assert f() == [i * i for i in range(50)]
    fr = h.only_flow_run()
    runs = h.task_runs(fr.id)
    assert len(runs) == 50
    assert {r.state_name for r in runs} == {"Completed"}
    assert "locked" not in caplog.text.lower()
    assert "locked" not in h.log_text(flow_run_id=fr.id).lower()


def test_many_flows_in_threads_on_sqlite(h):
    @task
    def work(i):
        return i

    @flow
    def f(n: int):
        return sum(fut.result() for fut in work.map(list(range(n))))

    results = {}
    errors = []

    def run(k):
        try:
            results[k] = f(10)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == {k: 45 for k in range(6)}
    runs = h.flow_runs()
    assert len(runs) == 6
    assert all(r.state_name == "Completed" for r in runs)
    for r in runs:
        assert len(h.task_runs(r.id)) == 10


def test_sequential_runner_runs_in_the_flow_thread_in_order(history, h):
    threads = []
    order = []

    @task
    def t(i):
        threads.append(threading.get_ident())
        order.append(i)
        return i

    @flow(task_runner=SequentialTaskRunner())
    def f():
        futs = [t.submit(i) for i in range(5)]
        assert all(fut.done() for fut in futs)  # ran at submission
        return [fut.result() for fut in futs]

    main = threading.get_ident()
    assert f() == [0, 1, 2, 3, 4]
    assert order == [0, 1, 2, 3, 4]
    assert set(threads) == {main}


def test_sequential_runner_class_is_accepted(history):
    @flow(task_runner=SequentialTaskRunner)
    def f():
        return add.submit(1, 1).result()

    assert f() == 2


def test_thread_pool_runner_runs_concurrently(history, h):
    barrier = threading.Barrier(3, timeout=10)

    @task
    def meet(i):
        barrier.wait()  # would deadlock if tasks ran one at a time
        return threading.get_ident()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    def f():
        return [fut.result() for fut in meet.map([1, 2, 3])]

    idents = f()
    assert len(set(idents)) == 3
    assert ConcurrentTaskRunner is ThreadPoolTaskRunner


def test_sequential_failure_keeps_going(history, h):
    @flow(task_runner=SequentialTaskRunner())
    def f():
        a = fail.submit()
        b = add.submit(1)
        return a.state.name, b.result()

    assert f() == ("Failed", 1)


def test_each_flow_run_gets_its_own_runner(history):
    runner = ThreadPoolTaskRunner(max_workers=2)

    @flow(task_runner=runner)
    def f():
        return add.submit(1).result()

    assert f() == 1
    assert f() == 1  # the first run's shutdown did not break the second


def test_async_flow_submits(history, h):
    import asyncio

    @task
    async def at(x):
        await asyncio.sleep(0)
        return x + 1

    @flow
    async def f():
        futs = at.map([1, 2, 3])
        return [fut.result() for fut in futs]

    assert asyncio.run(f()) == [2, 3, 4]
    assert len(h.task_runs(h.only_flow_run().id)) == 3


def test_submitting_from_inside_a_task_is_refused_or_works(history, h):
    """Nested task calls inside a task: Prefect 3 allows them; either way no hang and a clear
    outcome."""

    @task
    def inner(x):
        return x * 2

    @task
    def outer(x):
        return inner(x) + 1

    @flow
    def f():
        return outer(2)

    assert f() == 5


def test_sequential_runner_keyboard_interrupt_stops_the_flow_at_once(history, h):
    ran = []

    @task
    def interrupted():
        raise KeyboardInterrupt

    @task
    def after():
        ran.append(1)

    @flow(task_runner=SequentialTaskRunner())
    def f():
        interrupted.submit()
        after()

    with pytest.raises(KeyboardInterrupt):
        f()
    assert ran == []
    fr = h.only_flow_run()
    assert fr.state_type is StateType.CRASHED
    assert [r.state_name for r in h.task_runs(fr.id)] == ["Crashed"]


def test_fifty_tasks_submitted_at_once_on_the_default_runner(h):
    @task
    def work(i):
        return i + 1

    @flow
    def f():
        futs = [work.submit(i) for i in range(50)]
        return sum(fut.result() for fut in futs)

    assert f() == sum(range(1, 51))
    fr = h.only_flow_run()
    runs = h.task_runs(fr.id)
    assert len(runs) == 50
    assert {r.state_name for r in runs} == {"Completed"}
    assert all(h.task_states(r.id) == ["Pending", "Running", "Completed"] for r in runs[:5])


def test_wait_for_accepts_a_single_future(history, h):
    @flow
    def f():
        a = add.submit(1)
        return add.submit(2, wait_for=a).result()

    assert f() == 2
    runs = h.task_runs_by_name(h.only_flow_run().id)
    assert runs["add-1"].task_inputs["wait_for"][0]["id"] == runs["add-0"].id


def test_a_mapped_future_list_passed_to_a_task_arrives_as_results() -> None:
    from legato import flow, task

    @task
    def double(x: int) -> int:
        return 2 * x

    @task
    def total(xs: list) -> int:
        return sum(xs)

    @flow
    def f() -> int:
        return total.submit(double.map([1, 2, 3])).result()

    assert f() == 12


def test_a_mapped_future_list_passed_to_a_task_is_recorded_as_its_upstream() -> None:
    from legato import flow, task
    from legato.client import get_client
    from legato.schemas import TaskRunFilter

    @task
    def double(x: int) -> int:
        return 2 * x

    @task
    def total(xs: list) -> int:
        return sum(xs)

    @flow
    def f() -> int:
        return total.submit(double.map([1, 2])).result()

    state = f(return_state=True)
    assert state.result() == 6
    runs = get_client().read_task_runs(TaskRunFilter(flow_run_id=_last_flow_run_id()))
    doubles = {r.id for r in runs if r.name.startswith("double")}
    (tot,) = [r for r in runs if r.name.startswith("total")]
    assert {i["id"] for i in tot.task_inputs["xs"]} == doubles


def _last_flow_run_id() -> str:
    from legato.client import get_client

    return get_client().read_flow_runs()[0].id
