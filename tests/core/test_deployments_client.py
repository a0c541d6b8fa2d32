"""Deployments through both doors (embedded on SQLite and PostgreSQL, and a real server): the
client calls the CLI, agents and workers make, with the same answers; bad input refused."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from legato.client.factory import get_client
from legato.exceptions import ConflictError, LegatoError, ObjectNotFound, ParameterTypeError

UTC = dt.timezone.utc
SCHEMA = {
    "title": "Parameters", "type": "object", "additionalProperties": False,
    "properties": {"color": {"type": "string", "title": "color", "position": 0},
                   "year": {"type": "integer", "title": "year", "position": 1},
                   "months": {"type": "array", "items": {"type": "integer"}, "title": "months",
                              "position": 2}},
    "required": ["color", "year", "months"],
}


def _apply(**spec: Any) -> dict[str, Any]:
    return get_client().apply_deployment({
        "flow_name": "Parent GCP flow", "name": "GCP-to-BQ-flow", "entrypoint": "f.py:gather",
        "parameters": {"year": 2020, "color": "yellow", "months": [1, 2]},
        "parameter_openapi_schema": SCHEMA, **spec})


def test_apply_run_claim_start(history_or_server: str) -> None:
    c = get_client()
    dep = _apply()
    assert c.read_deployment_by_name("Parent GCP flow/GCP-to-BQ-flow")["id"] == dep["id"]
    run = c.create_flow_run_from_deployment(str(dep["id"]), parameters={"months": [3]})
    assert run["parameters"] == {"year": 2020, "color": "yellow", "months": [3]}
    [claim] = c.claim_flow_runs("w1", queue_names=["default"])
    assert claim["id"] == run["id"] and claim["claim_token"] == 1
    assert c.start_flow_run(str(run["id"]), 7)["status"] == "REJECT"
    assert c.start_flow_run(str(run["id"]), 1)["status"] == "ACCEPT"
    assert c.heartbeat(str(run["id"])) == "RUNNING"
    assert c.read_flow_run(str(run["id"])).deployment_id == str(dep["id"])
    assert [d["name"] for d in c.read_deployments()] == ["GCP-to-BQ-flow"]


def test_bad_parameters_are_refused_before_anything_is_queued(history_or_server: str) -> None:
    c = get_client()
    dep = _apply()
    with pytest.raises(ParameterTypeError, match="'year' must be an integer"):
        c.create_flow_run_from_deployment(str(dep["id"]), parameters={"year": "twenty"})
    with pytest.raises(ParameterTypeError, match="Unknown parameter 'colour'"):
        c.create_flow_run_from_deployment(str(dep["id"]), parameters={"colour": "green"})
    assert c.claim_flow_runs("w", queue_names=["default"]) == []


def test_schedules_stored_paused_and_resumed(history_or_server: str) -> None:
    c = get_client()
    dep = _apply(schedules=[{"schedule": {"cron": "0 9 * * *", "timezone": "Europe/Berlin"}}])
    [s] = dep["schedules"]
    assert s["schedule"]["cron"] == "0 9 * * *" and s["schedule"]["timezone"] == "Europe/Berlin"
    assert s["active"] is True
    paused = c.set_schedules_active(str(dep["id"]), False)
    assert [x["active"] for x in paused["schedules"]] == [False]
    resumed = c.set_schedules_active(str(dep["id"]), True)
    assert [x["active"] for x in resumed["schedules"]] == [True]
    replaced = c.replace_schedules(str(dep["id"]), [{"schedule": {"interval": 3600}}])
    assert replaced["schedules"][0]["schedule"]["interval"] == 3600


def test_bad_schedule_and_missing_things(history_or_server: str) -> None:
    c = get_client()
    with pytest.raises(LegatoError, match="cron"):
        _apply(schedules=[{"schedule": {"cron": "not a cron"}}])
    with pytest.raises(ObjectNotFound, match="No deployment 'Parent GCP flow/nope'"):
        c.read_deployment_by_name("Parent GCP flow/nope")
    with pytest.raises(ObjectNotFound, match="No work pool named 'missing'"):
        c.claim_flow_runs("w", pool_name="missing")
    c.create_work_pool("pool-a", "process")
    with pytest.raises(ConflictError, match="already exists"):
        c.create_work_pool("pool-a", "process")
    with pytest.raises(ObjectNotFound, match="No work queue named 'q' in pool 'pool-a'"):
        c.read_work_queue("q", "pool-a")


def test_work_pool_queues_and_cancel(history_or_server: str) -> None:
    c = get_client()
    c.create_work_pool("pool-b", "process", concurrency_limit=1)
    dep = _apply(work_pool_name="pool-b", work_queue_name="etl")
    assert dep["work_pool_name"] == "pool-b" and dep["work_queue_name"] == "etl"
    first = c.create_flow_run_from_deployment(str(dep["id"]))
    c.create_flow_run_from_deployment(str(dep["id"]))
    got = c.claim_flow_runs("w", pool_name="pool-b", limit=5)
    assert [r["id"] for r in got] == [first["id"]]  # the pool's limit: one at a time
    answer = c.cancel_flow_run(str(first["id"]))
    assert answer["run"]["state_type"] == "CANCELLED"  # claimed, never started
    assert c.start_flow_run(str(first["id"]), got[0]["claim_token"])["status"] == "REJECT"
    [q] = c.read_work_queues("pool-b")
    assert q["name"] == "etl" and q["last_polled"] is not None
