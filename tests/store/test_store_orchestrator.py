"""The orchestration core against a real history: rules enforced, runs loaded from the store,
state bookkeeping (run_count, start/end times, total run time), concurrent proposals."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from legato import states as S
from legato.client import get_client
from legato.client.factory import close_clients
from legato.core.rules import Verdict
from legato.exceptions import InvalidStateTransition, ObjectNotFound
from legato.ids import new_id
from legato.states import State, StateType

UTC = dt.timezone.utc


def at(seconds: float) -> dt.datetime:
    return dt.datetime(2030, 1, 1, tzinfo=UTC) + dt.timedelta(seconds=seconds)


def st(factory, t: float, **kw) -> State:
    s = factory(**kw)
    s.timestamp = at(t)
    return s


@pytest.fixture
def client(history: str):
    return get_client()


@pytest.fixture
def task_run(client) -> str:
    """A flow run with one task run in it, both Pending; returns the task run's id."""
    fr, tr = new_id(), new_id()
    client.create_flow_run(id=fr, flow_name="orch-flow", name="orch", state=st(S.Pending, 0))
    client.create_task_run(id=tr, flow_run_id=fr, task_key="k", name="t-0", dynamic_key="0",
                           state=st(S.Pending, 0))
    return tr


def test_state_bookkeeping(client, task_run: str, raw) -> None:
    c, tr = client, task_run
    assert c.set_task_run_state(tr, st(S.Running, 10)).accepted
    assert c.set_task_run_state(tr, st(S.AwaitingRetry, 13)).accepted
    assert c.set_task_run_state(tr, st(S.Retrying, 20)).accepted
    assert c.set_task_run_state(tr, st(S.Completed, 24)).accepted
    c.flush()
    row = raw.rows("SELECT * FROM task_run")[0]
    assert row["run_count"] == 2
    assert row["total_run_time"] == pytest.approx(7.0)  # 3 s + 4 s of Running
    assert raw.count("task_run_state", "task_run_id = :i", i=tr) == 5
    run = c.read_task_run(tr)
    assert run.start_time == at(10) and run.end_time == at(24)
    assert run.state_timestamp == at(24) and run.expected_start_time == at(0)


def test_refused_and_repeated_states_record_nothing(client, task_run: str, raw) -> None:
    c, tr = client, task_run
    assert c.set_task_run_state(tr, st(S.Running, 1)).accepted
    assert c.set_task_run_state(tr, st(S.Running, 2)).verdict is Verdict.REJECT
    assert c.set_task_run_state(tr, st(S.Pending, 3)).verdict is Verdict.REJECT
    assert c.set_task_run_state(tr, st(S.Completed, 4)).accepted
    assert c.set_task_run_state(tr, st(S.Completed, 5)).verdict is Verdict.NOOP
    assert c.set_task_run_state(tr, st(S.Failed, 6)).verdict is Verdict.REJECT
    assert c.set_task_run_state(tr, st(S.Crashed, 7)).verdict is Verdict.REJECT
    c.flush()
    names = [r["name"] for r in raw.rows(
        "SELECT name FROM task_run_state WHERE task_run_id = :i ORDER BY timestamp", i=tr)]
    assert names == ["Pending", "Running", "Completed"]
    row = raw.rows("SELECT state_type, end_time, run_count FROM task_run")[0]
    assert row["state_type"] == "COMPLETED" and row["run_count"] == 1


def test_require_state_raises_on_refusal(client, task_run: str) -> None:
    core = client.core
    core.require_state("task_run", task_run, st(S.Running, 1))
    core.require_state("task_run", task_run, st(S.Completed, 2))
    core.require_state("task_run", task_run, st(S.Completed, 3))  # NOOP is fine
    with pytest.raises(InvalidStateTransition, match="new attempt"):
        core.require_state("task_run", task_run, st(S.Running, 4))


def test_a_run_from_another_process_is_loaded_from_the_store(client, task_run: str,
                                                             raw) -> None:
    """A fresh client (as in a new process, or the server) knows nothing in memory: it reads
    the run's current state from the history before deciding."""
    client.set_task_run_state(task_run, st(S.Running, 1))
    client.set_task_run_state(task_run, st(S.Failed, 3))
    close_clients()  # flushes, and forgets everything in memory
    fresh = get_client()
    assert fresh is not client
    d = fresh.set_task_run_state(task_run, st(S.Running, 5))
    assert d.verdict is Verdict.REJECT and "Failed" in d.reason
    # a new attempt may leave the final state; its run count and run time continue
    assert fresh.set_task_run_state(task_run, st(S.Retrying, 10), new_attempt=True).accepted
    assert fresh.set_task_run_state(task_run, st(S.Completed, 11)).accepted
    fresh.flush()
    row = raw.rows("SELECT run_count, total_run_time, state_type FROM task_run")[0]
    assert row == {"run_count": 2, "total_run_time": pytest.approx(3.0),
                   "state_type": "COMPLETED"}


def test_an_unknown_run_is_not_found(client) -> None:
    with pytest.raises(ObjectNotFound, match="No task run"):
        client.set_task_run_state(new_id(), S.Running())
    with pytest.raises(ObjectNotFound, match="No flow run"):
        client.set_flow_run_state(new_id(), S.Running())


def test_force_records_whatever_is_proposed(client, task_run: str) -> None:
    client.set_task_run_state(task_run, st(S.Completed, 1))
    assert client.set_task_run_state(task_run, st(S.Crashed, 2), force=True).accepted
    assert client.read_task_run(task_run).state_type is StateType.CRASHED


@pytest.mark.parametrize("rounds", [200])
def test_concurrent_final_states_for_one_run_yield_exactly_one(client, raw, rounds: int) -> None:
    """The engine's thread finishing a task and the flow settling it (Crashed) can propose at
    the same moment: exactly one final state is recorded, and the row agrees with it."""
    import sys

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: provoke the race
    try:
        _race(client, raw, rounds)
    finally:
        sys.setswitchinterval(old)


def _race(client, raw, rounds: int) -> None:
    fr = new_id()
    client.create_flow_run(id=fr, flow_name="race", name="race", state=S.Pending())
    ids = []
    for _ in range(rounds):
        tr = new_id()
        client.create_task_run(id=tr, flow_run_id=fr, task_key="k", name="t", dynamic_key="0",
                               state=S.Pending())
        client.set_task_run_state(tr, S.Running())
        ids.append(tr)
    for tr in ids:
        barrier = threading.Barrier(2)

        def propose(state: State, tr: str = tr, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            client.set_task_run_state(tr, state)

        a = threading.Thread(target=propose, args=(S.Completed(),))
        b = threading.Thread(target=propose, args=(S.Crashed(),))
        a.start(), b.start()
        a.join(), b.join()
    client.flush()
    finals = raw.rows(
        "SELECT task_run_id, count(*) AS n FROM task_run_state WHERE type IN "
        "('COMPLETED', 'CRASHED') GROUP BY task_run_id"
    )
    assert len(finals) == rounds
    assert {r["n"] for r in finals} == {1}
    mismatched = raw.rows(
        "SELECT tr.id FROM task_run tr JOIN task_run_state s ON s.task_run_id = tr.id "
        "WHERE s.type IN ('COMPLETED', 'CRASHED') AND s.type <> tr.state_type"
    )
    assert mismatched == []


def test_nothing_is_kept_in_memory_after_flows_end(history: str) -> None:
    """A long-lived process (a worker, a served flow) runs flow after flow: the core's memory
    of runs must not grow with them."""
    from legato import flow, task

    @task(retries=1)
    def flaky(i: int) -> int:
        if i == 3 and not flaky_calls:
            flaky_calls.append(1)
            raise RuntimeError("once")
        return i

    flaky_calls: list[int] = []

    @flow
    def child() -> int:
        return flaky(0)

    @flow
    def parent() -> int:
        return sum(f.result() for f in flaky.map(range(20))) + child()

    for _ in range(3):
        assert parent() == sum(range(20))
    core = get_client().core
    assert core._runs == {}
    assert core._children == {}
