"""Deployments in the store: apply, runs of deployments, claims as leases with fencing tokens,
queues' limits and pauses, cancellation, crash detection; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
import sqlalchemy as sa

from legato.core.deployments import DEFAULT_AGENT_POOL
from legato.core.run_control import Deployments, detect_crashed_runs
from legato.exceptions import ConflictError, ObjectNotFound
from legato.settings import get_settings
from legato.store import models
from legato.store.database import get_database

UTC = dt.timezone.utc


@pytest.fixture
def deps(history: str) -> Deployments:
    s = get_settings()
    db = get_database(s.resolved_database_url, s.database_busy_timeout)
    db.ensure_ready()
    return Deployments(db)


def _apply(deps: Deployments, **spec: Any) -> dict[str, Any]:
    return deps.apply_deployment({"flow_name": "etl", "name": "nightly", **spec})


def test_apply_is_an_upsert_by_flow_and_name(deps: Deployments) -> None:
    first = _apply(deps, parameters={"year": 2020}, tags=["a"], work_queue_name="q1")
    again = _apply(deps, parameters={"year": 2021}, description="d")
    assert again["id"] == first["id"]
    assert again["parameters"] == {"year": 2021} and again["description"] == "d"
    assert again["work_queue_name"] == "default" and again["work_pool_name"] == DEFAULT_AGENT_POOL
    assert deps.read_deployment_by_name("etl/nightly")["id"] == first["id"]
    with pytest.raises(ObjectNotFound, match="No deployment 'etl/other'. Deployments: etl/nightly"):
        deps.read_deployment_by_name("etl/other")
    assert [q["name"] for q in deps.read_work_queues()] == ["default", "q1"]


def test_runs_of_a_deployment_and_idempotency(deps: Deployments) -> None:
    dep = _apply(deps, parameters={"year": 2020, "color": "yellow"}, tags=["t"])
    run = deps.create_flow_run_from_deployment(dep["id"], parameters={"year": 2021})
    assert run["state_type"] == "SCHEDULED" and run["state_name"] == "Scheduled"
    assert run["parameters"] == {"year": 2021, "color": "yellow"}
    assert run["deployment_id"] == dep["id"] and run["work_queue_name"] == "default"
    assert run["tags"] == ["t"]
    key_run = deps.create_flow_run_from_deployment(dep["id"], idempotency_key="k")
    assert deps.create_flow_run_from_deployment(dep["id"], idempotency_key="k")["id"] == \
        key_run["id"]


def test_each_due_run_is_claimed_once_by_concurrent_workers(deps: Deployments) -> None:
    dep = _apply(deps)
    ids = {deps.create_flow_run_from_deployment(dep["id"])["id"] for _ in range(20)}
    got: list[list[str]] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        mine: list[str] = []
        for _ in range(10):
            mine += [r["id"] for r in deps.claim_flow_runs(name, queue_names=["default"],
                                                           limit=3)]
        with lock:
            got.append(mine)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [r for mine in got for r in mine]
    assert sorted(claimed) == sorted(ids)  # every run once, none twice


def test_a_claim_is_a_lease_and_a_stale_token_cannot_start_the_run(deps: Deployments) -> None:
    dep = _apply(deps)
    run = deps.create_flow_run_from_deployment(dep["id"])
    now = dt.datetime.now(UTC)
    [first] = deps.claim_flow_runs("w1", queue_names=["default"], lease_seconds=5, now=now)
    assert first["state_type"] == "PENDING" and first["claim_token"] == 1
    # not claimable while the lease holds
    assert deps.claim_flow_runs("w2", queue_names=["default"], now=now) == []
    # w1 died: the lease runs out, w2 claims it with a new token
    later = now + dt.timedelta(seconds=6)
    [second] = deps.claim_flow_runs("w2", queue_names=["default"], now=later)
    assert second["id"] == run["id"] and second["claim_token"] == 2
    stale = deps.start_flow_run(run["id"], 1)
    assert stale["status"] == "REJECT" and "stale" in stale["reason"]
    ok = deps.start_flow_run(run["id"], 2)
    assert ok["status"] == "ACCEPT" and ok["run"]["state_type"] == "RUNNING"
    # a started run is never claimed again, even after its lease time
    assert deps.claim_flow_runs("w3", queue_names=["default"],
                                now=later + dt.timedelta(minutes=5)) == []


def test_release_gives_a_claimed_run_back(deps: Deployments) -> None:
    dep = _apply(deps)
    run = deps.create_flow_run_from_deployment(dep["id"])
    [claim] = deps.claim_flow_runs("w1", queue_names=["default"])
    assert deps.release_claim(run["id"], claim["claim_token"])["status"] == "ACCEPT"
    [again] = deps.claim_flow_runs("w2", queue_names=["default"])
    assert again["id"] == run["id"] and again["claimed_by"] == "w2"


def test_queue_concurrency_priority_and_pause(deps: Deployments) -> None:
    deps.create_work_queue("high", priority=1)
    deps.create_work_queue("low", priority=5, concurrency_limit=1)
    low = _apply(deps, name="low", work_queue_name="low")
    high = _apply(deps, name="high", work_queue_name="high")
    for _ in range(3):
        deps.create_flow_run_from_deployment(low["id"])
    h = deps.create_flow_run_from_deployment(high["id"])
    claimed = deps.claim_flow_runs("w", queue_names=["low", "high"], limit=10)
    assert claimed[0]["id"] == h["id"]  # the higher-priority queue first
    assert [r["work_queue_name"] for r in claimed] == ["high", "low"]  # low: limit 1
    deps.update_work_queue("high", is_paused=True)
    deps.create_flow_run_from_deployment(high["id"])
    assert deps.claim_flow_runs("w", queue_names=["high"]) == []
    with pytest.raises(ConflictError, match="already exists"):
        deps.create_work_queue("high")


def test_scheduled_in_the_future_is_not_due(deps: Deployments) -> None:
    dep = _apply(deps)
    later = dt.datetime.now(UTC) + dt.timedelta(hours=1)
    deps.create_flow_run_from_deployment(dep["id"], scheduled_time=later)
    assert deps.claim_flow_runs("w", queue_names=["default"]) == []
    assert len(deps.claim_flow_runs("w", queue_names=["default"],
                                    now=later + dt.timedelta(seconds=1))) == 1


def test_cancel_before_start_means_it_never_starts(deps: Deployments) -> None:
    dep = _apply(deps)
    run = deps.create_flow_run_from_deployment(dep["id"])
    [claim] = deps.claim_flow_runs("w", queue_names=["default"])
    assert deps.cancel_flow_run(run["id"])["run"]["state_type"] == "CANCELLED"
    assert deps.start_flow_run(run["id"], claim["claim_token"])["status"] == "REJECT"


def test_cancel_a_running_run_then_confirm(deps: Deployments) -> None:
    dep = _apply(deps)
    run = deps.create_flow_run_from_deployment(dep["id"])
    [claim] = deps.claim_flow_runs("w", queue_names=["default"])
    deps.start_flow_run(run["id"], claim["claim_token"])
    assert deps.cancel_flow_run(run["id"])["run"]["state_type"] == "CANCELLING"
    deps.finish_cancellation(run["id"])
    assert deps.read_deployment(dep["id"])  # still there
    with deps.db.read() as conn:
        fr = models.flow_run
        assert conn.execute(sa.select(fr.c.state_type).where(fr.c.id == run["id"])).scalar() == \
            "CANCELLED"


def test_a_run_whose_heartbeats_stop_crashes_and_is_retried(deps: Deployments) -> None:
    dep = _apply(deps, retries=1)
    run = deps.create_flow_run_from_deployment(dep["id"])
    healthy = deps.create_flow_run_from_deployment(dep["id"])
    for _ in (run, healthy):
        [claim] = deps.claim_flow_runs("w", queue_names=["default"], limit=1)
        deps.start_flow_run(claim["id"], claim["claim_token"])
    now = dt.datetime.now(UTC)
    later = now + dt.timedelta(seconds=30)
    fr = models.flow_run
    with deps.db.write() as conn:  # only `healthy` kept beating
        conn.execute(fr.update().where(fr.c.id == healthy["id"]).values(heartbeat=later))
    crashed = detect_crashed_runs(deps.db, heartbeat_timeout=20, now=later)
    assert crashed == [run["id"]]
    with deps.db.read() as conn:
        states = dict(conn.execute(sa.select(fr.c.id, fr.c.state_name)).all())
    assert states[run["id"]] == "AwaitingRetry" and states[healthy["id"]] == "Running"
    [again] = deps.claim_flow_runs("w", queue_names=["default"], now=later)
    assert again["id"] == run["id"] and again["claim_token"] == 2


def _runs_by_time(deps: Deployments, dep_id: str) -> list[dt.datetime]:
    fr = models.flow_run
    with deps.db.read() as conn:
        return sorted(conn.execute(sa.select(fr.c.expected_start_time).where(
            fr.c.deployment_id == dep_id)).scalars())


def test_the_scheduler_makes_each_time_once(deps: Deployments) -> None:
    from legato.core.run_control import mark_late_runs, schedule_runs

    dep = _apply(deps, schedules=[{"schedule": {"interval": 3600}}])
    now = dt.datetime(2026, 11, 26, 10, 30, tzinfo=UTC)
    horizon = dt.timedelta(hours=5)
    assert schedule_runs(deps.db, now=now, horizon=horizon) == 5
    assert schedule_runs(deps.db, now=now, horizon=horizon) == 0  # again: nothing new
    times = _runs_by_time(deps, dep["id"])
    assert times[0] == dt.datetime(2026, 11, 26, 11, 0, tzinfo=UTC) and len(times) == 5
    # a second scheduler over an overlapping window: still each time once
    assert schedule_runs(deps.db, now=now + dt.timedelta(hours=2), horizon=horizon) == 2
    assert len(_runs_by_time(deps, dep["id"])) == len(set(_runs_by_time(deps, dep["id"]))) == 7
    # redeploying with the same schedule: future runs remade, none twice
    _apply(deps, schedules=[{"schedule": {"interval": 3600}}])
    schedule_runs(deps.db, now=now, horizon=horizon)
    times = _runs_by_time(deps, dep["id"])
    assert len(times) == len(set(times))
    # runs not started in time become Late, and stay runnable
    assert mark_late_runs(deps.db, grace=dt.timedelta(seconds=15),
                          now=dt.datetime(2026, 11, 26, 11, 1, tzinfo=UTC)) >= 1
    fr = models.flow_run
    with deps.db.read() as conn:
        late = conn.execute(sa.select(fr.c.state_name).where(
            fr.c.expected_start_time == dt.datetime(2026, 11, 26, 11, 0, tzinfo=UTC))).scalar()
    assert late == "Late"


def test_backfill_makes_missing_past_times_only(deps: Deployments) -> None:
    dep = _apply(deps, schedules=[{"schedule": {"cron": "0 * * * *"}}])
    start = dt.datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    end = dt.datetime(2026, 1, 1, 5, 0, tzinfo=UTC)
    assert deps.backfill(dep["id"], start, end) == {"made": 6, "existing": 0}
    assert deps.backfill(dep["id"], start, end + dt.timedelta(hours=1)) == {"made": 1,
                                                                           "existing": 6}
