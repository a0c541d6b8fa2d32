"""What a flow run leaves in the history, on SQLite and PostgreSQL, read back two ways: from a
separate connection right after the flow returns, and through legato.store.queries."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest

from legato import flow, get_run_logger, tags, task
from legato.exceptions import ObjectNotFound
from legato.schemas import FlowRunFilter, TaskRunFilter
from legato.states import StateType
from legato.store import queries

UTC = dt.timezone.utc
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def as_json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


def as_time(v: Any) -> dt.datetime:
    """A timestamp column read with plain SQL: aware on PostgreSQL, naive UTC text on SQLite."""
    if isinstance(v, str):
        v = dt.datetime.fromisoformat(v)
    return v if v.tzinfo else v.replace(tzinfo=UTC)


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@task(tags=["work"])
def produce(n: int) -> list[int]:
    get_run_logger().info("producing %d items", n)
    busy(0.02)
    return list(range(n))


@task
def total(items: list[int]) -> int:
    return sum(items)


@flow(name="history-flow", tags=["nightly"], version="1.2")
def history_flow(n: int, options: dict[str, Any], label: str = "x") -> int:
    get_run_logger().warning("flow says %s", label)
    with tags("inner"):
        items = produce(n)
    return total(items)


def test_a_flow_run_leaves_every_row_with_the_right_fields(history: str, raw) -> None:
    started = dt.datetime.now(UTC)
    with tags("outer"):
        assert history_flow("4", {"a": [1, 2], "b": {"c": None}}) == 6
    finished = dt.datetime.now(UTC)

    # -- read with a separate connection, no flush on our side: all there when the call returns
    [fr] = raw.rows("SELECT * FROM flow_run")
    assert raw.scalar("SELECT name FROM flow WHERE id = :i", i=fr["flow_id"]) == "history-flow"
    assert (fr["state_type"], fr["state_name"]) == ("COMPLETED", "Completed")
    assert fr["run_count"] == 1
    assert fr["version"] == "1.2"
    assert fr["parent_task_run_id"] is None
    assert as_json(fr["parameters"]) == {"n": 4, "options": {"a": [1, 2], "b": {"c": None}},
                                         "label": "x"}  # "4" coerced to the int it stood for
    assert sorted(as_json(fr["tags"])) == ["nightly", "outer"]
    start, end = as_time(fr["start_time"]), as_time(fr["end_time"])
    assert started <= start <= end <= finished
    assert as_time(fr["state_timestamp"]) == end
    assert as_time(fr["expected_start_time"]) <= start
    assert fr["total_run_time"] >= 0.02
    assert fr["total_run_time"] <= (end - start).total_seconds() + 1e-6
    assert as_time(fr["created"]) <= as_time(fr["updated"])

    states = raw.rows("SELECT * FROM flow_run_state ORDER BY timestamp, id")
    assert [(s["type"], s["name"]) for s in states] == [
        ("PENDING", "Pending"), ("RUNNING", "Running"), ("COMPLETED", "Completed")
    ]
    assert all(s["flow_run_id"] == fr["id"] for s in states)
    times = [as_time(s["timestamp"]) for s in states]
    assert times == sorted(times)

    trs = {r["name"]: r for r in raw.rows("SELECT * FROM task_run")}
    assert set(trs) == {"produce-0", "total-0"}
    p, t = trs["produce-0"], trs["total-0"]
    for tr in (p, t):
        assert tr["flow_run_id"] == fr["id"]
        assert (tr["state_type"], tr["run_count"], tr["dynamic_key"]) == ("COMPLETED", 1, "0")
        assert as_time(tr["start_time"]) <= as_time(tr["end_time"])
        assert start <= as_time(tr["start_time"]) and as_time(tr["end_time"]) <= end
        assert as_time(tr["state_timestamp"]) == as_time(tr["end_time"])
    assert p["total_run_time"] >= 0.02
    assert sorted(as_json(p["tags"])) == ["inner", "outer", "work"]
    assert sorted(as_json(t["tags"])) == ["outer"]
    # which upstream run fed which parameter
    assert as_json(t["task_inputs"]) == {"items": [{"input_type": "task_run", "id": p["id"]}]}
    assert as_json(p["task_inputs"]) == {}
    assert p["task_key"] != t["task_key"]

    for tr in (p, t):
        sts = raw.rows(
            "SELECT type, name FROM task_run_state WHERE task_run_id = :i ORDER BY timestamp, id",
            i=tr["id"],
        )
        assert [(s["type"], s["name"]) for s in sts] == [
            ("PENDING", "Pending"), ("RUNNING", "Running"), ("COMPLETED", "Completed")
        ]

    logs = raw.rows("SELECT * FROM log ORDER BY timestamp, id")
    msgs = [(lg["level"], lg["message"], lg["task_run_id"]) for lg in logs]
    assert (30, "flow says x", None) in msgs
    assert (20, "producing 4 items", p["id"]) in msgs
    assert all(lg["flow_run_id"] == fr["id"] for lg in logs)
    assert all(started <= as_time(lg["timestamp"]) <= finished for lg in logs)


def test_retries_are_recorded_attempt_by_attempt(history: str, raw) -> None:
    calls = []

    @task(retries=3)
    def flaky() -> str:
        calls.append(1)
        busy(0.01)
        if len(calls) < 3:
            raise RuntimeError(f"attempt {len(calls)} failed")
        return "ok"

    @flow
    def retrying_flow() -> str:
        return flaky()

    assert retrying_flow() == "ok"
    [tr] = raw.rows("SELECT * FROM task_run")
    assert (tr["state_type"], tr["run_count"]) == ("COMPLETED", 3)
    assert tr["total_run_time"] >= 0.03
    sts = raw.rows("SELECT name, message FROM task_run_state ORDER BY timestamp, id")
    assert [s["name"] for s in sts] == [
        "Pending", "Running", "AwaitingRetry", "Retrying", "AwaitingRetry", "Retrying",
        "Completed",
    ]
    assert "attempt 1 failed" in sts[2]["message"]
    errors = raw.rows("SELECT message FROM log WHERE level >= 40 ORDER BY timestamp, id")
    assert len([e for e in errors if "Retry" in e["message"]]) == 2


def test_a_failed_flow_is_recorded_failed_with_its_message(history: str, raw) -> None:
    @task
    def breaks() -> None:
        raise ValueError("bad input 42")

    @flow
    def failing_flow() -> None:
        breaks()

    with pytest.raises(ValueError, match="bad input 42"):
        failing_flow()
    [fr] = raw.rows("SELECT * FROM flow_run")
    assert fr["state_type"] == "FAILED"
    assert "bad input 42" in fr["state_message"]
    [tr] = raw.rows("SELECT * FROM task_run")
    assert tr["state_type"] == "FAILED" and "bad input 42" in tr["state_message"]
    tb = raw.rows("SELECT message FROM log WHERE level >= 40 AND task_run_id IS NULL")
    assert any("bad input 42" in r["message"] for r in tb)


def test_a_subflow_is_linked_to_its_parent(history: str, raw) -> None:
    @flow
    def child(x: int) -> int:
        return x * 2

    @flow
    def parent() -> int:
        return child(5) + child(6)

    assert parent() == 22
    frs = {r["id"]: r for r in raw.rows("SELECT * FROM flow_run")}
    assert len(frs) == 3
    [top] = [r for r in frs.values() if r["parent_task_run_id"] is None]
    subs = [r for r in frs.values() if r["parent_task_run_id"] is not None]
    assert len(subs) == 2
    for sub in subs:
        link = raw.rows("SELECT * FROM task_run WHERE id = :i", i=sub["parent_task_run_id"])[0]
        assert link["flow_run_id"] == top["id"]
        assert link["state_type"] == sub["state_type"] == "COMPLETED"
    assert all(r["state_type"] == "COMPLETED" for r in frs.values())


def test_odd_values_do_not_break_the_history(history: str, raw) -> None:
    """Values a database refuses (NaN and Infinity in JSON; NUL characters on PostgreSQL) are
    stored cleaned, and they do not block the rows after them. (Lone surrogates are covered in
    test_store_writer: pytest-xdist cannot ship a captured log line holding one.)"""

    @task
    def odd(x: float) -> float:
        get_run_logger().info("name: a\x00b")
        return x

    @flow
    def odd_flow(x: float, extra: dict[str, Any]) -> float:
        return odd(x)

    assert odd_flow(float("inf"), {"k\x00": [float("nan")]}) == float("inf")

    @flow
    def plain_flow() -> int:
        return 1

    assert plain_flow() == 1
    runs = {r["state_type"] for r in raw.rows("SELECT state_type FROM flow_run")}
    assert runs == {"COMPLETED"}
    assert raw.count("flow_run") == 2
    params = as_json(raw.scalar("SELECT parameters FROM flow_run WHERE parameters IS NOT NULL "
                                "AND run_count = 1 ORDER BY created LIMIT 1"))
    assert params["x"] == "Infinity"
    assert list(params["extra"].values()) == [["NaN"]]
    [msg] = [r["message"] for r in raw.rows("SELECT message FROM log")
             if r["message"].startswith("name: ")]
    assert msg in ("name: a\ufffdb", "name: a\x00b")  # SQLite keeps a NUL as it is


# -- queries ----------------------------------------------------------------------------------


@pytest.fixture
def runs(history: str) -> dict[str, Any]:
    """Six flow runs of three flows, with different states, tags and start times."""

    @task
    def step(i: int) -> int:
        return i

    @flow(name="alpha", flow_run_name="alpha-{i}")
    def alpha(i: int) -> int:
        return step(i)

    @flow(name="beta", flow_run_name="beta-{i}", tags=["team-b"])
    def beta(i: int) -> int:
        if i == 1:
            raise RuntimeError("beta 1 fails")
        return step(i) + step(i)

    @flow(name="gamma", flow_run_name="gamma-{i}")
    def gamma(i: int) -> int:
        return i

    marks = []
    for call, i in [(alpha, 0), (beta, 0), (alpha, 1), (beta, 1), (gamma, 0), (alpha, 2)]:
        marks.append(dt.datetime.now(UTC))
        with tags("even" if i % 2 == 0 else "odd"):
            call(i, return_state=True)
    marks.append(dt.datetime.now(UTC))
    from legato.settings import get_settings
    from legato.store.database import get_database

    s = get_settings()
    db = get_database(s.resolved_database_url, s.database_busy_timeout)
    return {"db": db, "marks": marks}


def names(frs: list[Any]) -> list[str]:
    return [r.name for r in frs]


def test_read_flow_runs_default_newest_first(runs: dict[str, Any]) -> None:
    got = queries.read_flow_runs(runs["db"])
    assert names(got) == ["alpha-2", "gamma-0", "beta-1", "alpha-1", "beta-0", "alpha-0"]
    assert {r.flow_name for r in got} == {"alpha", "beta", "gamma"}


def test_read_flow_runs_filters(runs: dict[str, Any]) -> None:
    db = runs["db"]
    F = FlowRunFilter
    assert names(queries.read_flow_runs(db, F(flow_name="alpha"))) == [
        "alpha-2", "alpha-1", "alpha-0"
    ]
    assert names(queries.read_flow_runs(db, F(flow_name="nope"))) == []
    assert names(queries.read_flow_runs(db, F(state_types=[StateType.FAILED]))) == ["beta-1"]
    assert names(
        queries.read_flow_runs(db, F(state_types=[StateType.FAILED, StateType.COMPLETED]))
    ) == ["alpha-2", "gamma-0", "beta-1", "alpha-1", "beta-0", "alpha-0"]
    assert names(queries.read_flow_runs(db, F(state_names=["Failed"]))) == ["beta-1"]
    assert names(queries.read_flow_runs(db, F(state_names=["Completed"], flow_name="beta"))) == [
        "beta-0"
    ]
    assert names(queries.read_flow_runs(db, F(tags_all=["team-b"]))) == ["beta-1", "beta-0"]
    assert names(queries.read_flow_runs(db, F(tags_all=["team-b", "even"]))) == ["beta-0"]
    assert names(queries.read_flow_runs(db, F(tags_all=["odd"]))) == ["beta-1", "alpha-1"]
    assert names(queries.read_flow_runs(db, F(tags_all=["missing"]))) == []


def test_read_flow_runs_time_range(runs: dict[str, Any]) -> None:
    db, m = runs["db"], runs["marks"]
    # marks[k] was taken just before the k-th run started
    got = queries.read_flow_runs(db, FlowRunFilter(start_after=m[2], start_before=m[4]))
    assert names(got) == ["beta-1", "alpha-1"]
    got = queries.read_flow_runs(db, FlowRunFilter(start_after=m[5]))
    assert names(got) == ["alpha-2"]
    got = queries.read_flow_runs(db, FlowRunFilter(start_before=m[1]))
    assert names(got) == ["alpha-0"]
    later = m[-1] + dt.timedelta(hours=1)
    assert queries.read_flow_runs(db, FlowRunFilter(start_after=later)) == []
    # a time given in another zone means the same instant
    other = m[2].astimezone(dt.timezone(dt.timedelta(hours=-7)))
    assert len(queries.read_flow_runs(db, FlowRunFilter(start_after=other))) == 4


def test_read_flow_runs_limit_offset_and_sort(runs: dict[str, Any]) -> None:
    db = runs["db"]
    F = FlowRunFilter
    assert names(queries.read_flow_runs(db, F(limit=2))) == ["alpha-2", "gamma-0"]
    assert names(queries.read_flow_runs(db, F(limit=2, offset=2))) == ["beta-1", "alpha-1"]
    assert names(queries.read_flow_runs(db, F(limit=10, offset=5))) == ["alpha-0"]
    assert names(queries.read_flow_runs(db, F(offset=6))) == []
    assert names(queries.read_flow_runs(db, F(sort="created_asc", limit=3))) == [
        "alpha-0", "beta-0", "alpha-1"
    ]
    assert names(queries.read_flow_runs(db, F(sort="name_asc"))) == [
        "alpha-0", "alpha-1", "alpha-2", "beta-0", "beta-1", "gamma-0"
    ]
    assert names(queries.read_flow_runs(db, F(sort="start_time_desc", limit=2))) == [
        "alpha-2", "gamma-0"
    ]
    assert names(queries.read_flow_runs(db, F(tags_all=["even"], limit=2, offset=1))) == [
        "gamma-0", "beta-0"
    ]


def test_read_task_runs(runs: dict[str, Any]) -> None:
    db = runs["db"]
    [beta0] = queries.read_flow_runs(db, FlowRunFilter(flow_name="beta", state_names=["Completed"]))
    trs = queries.read_task_runs(db, TaskRunFilter(flow_run_id=beta0.id))
    assert [t.name for t in trs] == ["step-0", "step-1"]
    assert [t.dynamic_key for t in trs] == ["0", "1"]
    assert all(t.flow_run_id == beta0.id and t.state_type is StateType.COMPLETED for t in trs)
    # by id prefix, sorted newest first, paged
    got = queries.read_task_runs(
        db, TaskRunFilter(flow_run_id=beta0.id[:13], sort="created_desc", limit=1)
    )
    assert [t.name for t in got] == ["step-1"]
    got = queries.read_task_runs(db, TaskRunFilter(flow_run_id=beta0.id, offset=1))
    assert [t.name for t in got] == ["step-1"]
    assert len(queries.read_task_runs(db)) == 5  # alpha x3 + beta-0 x2 (beta-1 failed first)
    assert len(queries.read_task_runs(db, TaskRunFilter(name_like="step"))) == 5
    assert queries.read_task_runs(db, TaskRunFilter(state_types=[StateType.FAILED])) == []


def test_read_one_run_states_and_logs(runs: dict[str, Any]) -> None:
    db = runs["db"]
    [b1] = queries.read_flow_runs(db, FlowRunFilter(state_types=[StateType.FAILED]))
    fr = queries.read_flow_run(db, b1.id)
    assert fr.name == "beta-1" and fr.flow_name == "beta"
    assert "beta 1 fails" in (fr.state_message or "")
    states = queries.read_states(db, "flow_run", b1.id)
    assert [s.name for s in states] == ["Pending", "Running", "Failed"]
    logs = queries.read_logs(db, flow_run_id=b1.id)
    assert logs and all(lg.flow_run_id == b1.id for lg in logs)
    errors = queries.read_logs(db, flow_run_id=b1.id, min_level=40)
    assert errors and all(lg.level >= 40 for lg in errors)
    assert len(queries.read_logs(db, flow_run_id=b1.id, limit=1)) == 1
    [a0] = queries.read_flow_runs(db, FlowRunFilter(flow_name="alpha", sort="created_asc",
                                                    limit=1))
    [t] = queries.read_task_runs(db, TaskRunFilter(flow_run_id=a0.id))
    assert queries.read_task_run(db, t.id).name == "step-0"
    assert [s.name for s in queries.read_states(db, "task_run", t.id)] == [
        "Pending", "Running", "Completed"
    ]
    flow_only = queries.read_logs(db, flow_run_id=a0.id, include_task_logs=False)
    assert flow_only and all(lg.task_run_id is None for lg in flow_only)
    task_logs = queries.read_logs(db, task_run_id=t.id)
    assert task_logs and all(lg.task_run_id == t.id for lg in task_logs)
    assert queries.count(runs["db"], "flow_run") == 6
    assert queries.count(runs["db"], "flow_run", state_type="FAILED") == 1


# -- id prefixes ------------------------------------------------------------------------------


def _make_runs_with_ids(ids: list[str]) -> Any:
    """Flow runs with chosen ids, made through the orchestration core."""
    from legato import states as S
    from legato.client import get_client

    client = get_client()
    for i, run_id in enumerate(ids):
        client.create_flow_run(id=run_id, flow_name="prefix-flow", name=f"p-{i}",
                               state=S.Pending())
    client.flush()
    return client


def test_id_prefix_resolution(history: str, store_db) -> None:
    a = "abcd1234-0000-7000-8000-000000000001"
    b = "abcd1234-1111-7000-8000-000000000002"
    c = "0123ffff-0000-7000-8000-000000000003"
    _make_runs_with_ids([a, b, c])
    db = store_db
    assert queries.read_flow_run(db, a).name == "p-0"
    assert queries.read_flow_run(db, "0123").id == c  # a unique prefix
    assert queries.read_flow_run(db, "ABCD1234-1").id == b  # any case, with the dash
    assert queries.read_flow_run(db, f"  {c[:10]} ").id == c
    with pytest.raises(ObjectNotFound, match="More than one flow run id starts with 'abcd1234'"):
        queries.read_flow_run(db, "abcd1234")
    with pytest.raises(ObjectNotFound, match="No flow run with an id starting 'ffff'"):
        queries.read_flow_run(db, "ffff")
    with pytest.raises(ObjectNotFound, match="too short"):
        queries.read_flow_run(db, "abc")
    with pytest.raises(ObjectNotFound, match="No flow run"):
        queries.read_flow_run(db, "ffffffff-0000-7000-8000-000000000009")
    with pytest.raises(ObjectNotFound, match="No task run"):
        queries.read_task_run(db, "abcd")
    with pytest.raises(ObjectNotFound):
        queries.read_task_runs(db, TaskRunFilter(flow_run_id="abcd1234"))


@pytest.mark.parametrize("bad", ["____", "%%%%", "abcd%", "zzzz-not-an-id",
                                 "not-a-uuid-at-all-but-36-characters!"])
def test_an_id_that_cannot_be_one_is_not_found(history: str, store_db, bad: str) -> None:
    """LIKE wildcards match nothing special, and a 36-character non-UUID is not a database
    error on PostgreSQL's uuid column: every bad id is a clear ObjectNotFound."""
    _make_runs_with_ids(["abcd1234-0000-7000-8000-000000000001"])
    with pytest.raises(ObjectNotFound) as info:
        queries.read_flow_run(store_db, bad)
    assert bad.strip().lower() in str(info.value)
