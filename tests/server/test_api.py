"""The REST API's behaviour, in-process, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from legato.ids import new_id
from legato.schemas.api import API_VERSION, API_VERSION_HEADER


def make_flow_run(api: Any, flow: str = "etl", **body: Any) -> dict[str, Any]:
    r = api.post("/flow_runs/", json={"flow_name": flow, **body})
    assert r.status_code == 201, r.text
    return r.json()


def set_state(api: Any, kind: str, run_id: str, type_: str, **body: Any) -> Any:
    return api.post(f"/{kind}/{run_id}/set_state", json={"state": {"type": type_}, **body})


def states_of(api: Any, kind: str, run_id: str) -> list[str]:
    r = api.get(f"/{kind}/{run_id}/states")
    assert r.status_code == 200, r.text
    return [s["type"] for s in r.json()]


def test_health_version_and_the_version_header(api: Any) -> None:
    r = api.get("/health")
    assert r.status_code == 200 and r.json() is True
    assert r.headers[API_VERSION_HEADER] == API_VERSION
    assert api.get("/version").json()["api_version"] == API_VERSION
    docs = api.get("/openapi.json").json()
    assert "/api/flow_runs/filter" in docs["paths"]
    assert api.get("/docs").status_code == 200


def test_flow_run_lifecycle_is_decided_by_the_core_rules(api: Any) -> None:
    run = make_flow_run(api, parameters={"n": 3}, tags=["nightly"])
    assert run["state_type"] == "PENDING" and run["flow_name"] == "etl"
    rid = run["id"]
    r = set_state(api, "flow_runs", rid, "RUNNING")
    assert r.status_code == 200 and r.json()["status"] == "ACCEPT"
    assert r.json()["run"]["run_count"] == 1
    # no two Running states for one run
    r = set_state(api, "flow_runs", rid, "RUNNING")
    assert r.status_code == 409 and "Running twice" in r.json()["detail"]
    r = set_state(api, "flow_runs", rid, "COMPLETED")
    assert r.json()["status"] == "ACCEPT"
    # the same transition again is an idempotent no-op, not a second state
    r = set_state(api, "flow_runs", rid, "COMPLETED")
    assert r.status_code == 200 and r.json()["status"] == "NOOP"
    before = states_of(api, "flow_runs", rid)
    assert before == ["PENDING", "RUNNING", "COMPLETED"]
    # a terminal state is final, but for an explicit new attempt
    r = set_state(api, "flow_runs", rid, "RUNNING")
    assert r.status_code == 409 and "new attempt" in r.json()["detail"]
    assert states_of(api, "flow_runs", rid) == before
    assert api.get(f"/flow_runs/{rid}").json()["state_type"] == "COMPLETED"
    r = set_state(api, "flow_runs", rid, "RUNNING", new_attempt=True)
    assert r.json()["status"] == "ACCEPT" and r.json()["run"]["run_count"] == 2


def test_task_runs_states_and_logs(api: Any) -> None:
    fr = make_flow_run(api)
    r = api.post("/task_runs/", json={"flow_run_id": fr["id"], "task_key": "m.inc", "name": "inc-0",
                                      "tags": ["db"]})
    assert r.status_code == 201, r.text
    tr = r.json()
    assert set_state(api, "task_runs", tr["id"], "RUNNING").json()["status"] == "ACCEPT"
    assert set_state(api, "task_runs", tr["id"], "COMPLETED").json()["status"] == "ACCEPT"
    now = dt.datetime.now(dt.timezone.utc)
    logs = [{"id": new_id(), "flow_run_id": fr["id"], "task_run_id": tr["id"], "name": "x",
             "level": 20, "message": f"line {i}",
             "timestamp": (now + dt.timedelta(milliseconds=i)).isoformat()} for i in range(3)]
    assert api.post("/logs/", json=logs).json()["written"] == 3
    got = api.post("/logs/filter", json={"flow_run_id": fr["id"]}).json()
    assert [g["message"] for g in got] == ["line 0", "line 1", "line 2"]
    assert api.post("/logs/filter", json={"flow_run_id": fr["id"], "min_level": 30}).json() == []
    listed = api.post("/task_runs/filter", json={"flow_run_id": fr["id"]}).json()
    assert [t["state_type"] for t in listed] == ["COMPLETED"]
    assert api.post("/task_runs/count", json={"tags_all": ["db"]}).json()["count"] == 1
    assert states_of(api, "task_runs", tr["id"]) == ["PENDING", "RUNNING", "COMPLETED"]


def test_filters_sort_and_pages(api: Any) -> None:
    runs = [make_flow_run(api, "a" if i % 2 else "b", name=f"run-{i}",
                          tags=["even"] if i % 2 == 0 else ["odd"]) for i in range(6)]
    set_state(api, "flow_runs", runs[0]["id"], "RUNNING")
    flt = api.post("/flow_runs/filter", json={"flow_name": "a"}).json()
    assert {r["name"] for r in flt} == {"run-1", "run-3", "run-5"}
    assert {r["name"] for r in api.post("/flow_runs/filter", json={"tags_all": ["even"]}).json()} \
        == {"run-0", "run-2", "run-4"}
    assert [r["name"] for r in api.post(
        "/flow_runs/filter", json={"state_types": ["RUNNING"]}).json()] == ["run-0"]
    assert [r["name"] for r in api.post("/flow_runs/filter", json={"name_like": "n-3"}).json()] \
        == ["run-3"]
    # a LIKE wildcard in the text is matched literally
    assert api.post("/flow_runs/filter", json={"name_like": "%"}).json() == []
    page1 = api.post("/flow_runs/filter", json={"sort": "name_asc", "limit": 4}).json()
    page2 = api.post("/flow_runs/filter", json={"sort": "name_asc", "limit": 4, "offset": 4}).json()
    assert [r["name"] for r in page1 + page2] == [f"run-{i}" for i in range(6)]
    newest = api.post("/flow_runs/filter", json={"sort": "created_desc", "limit": 1}).json()
    assert newest[0]["name"] == "run-5"
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).isoformat()
    assert api.post("/flow_runs/filter", json={"start_after": future}).json() == []
    assert api.post("/flow_runs/count", json={"start_before": future}).json()["count"] == 6
    flows = api.post("/flows/filter", json={}).json()
    assert [f["name"] for f in flows] == ["a", "b"]


def test_subflow_runs_are_found_by_parent(api: Any) -> None:
    parent = make_flow_run(api, "parent")
    link = api.post("/task_runs/", json={"flow_run_id": parent["id"], "task_key": "subflow:child",
                                         "name": "child-0"}).json()
    child = make_flow_run(api, "child", parent_task_run_id=link["id"])
    make_flow_run(api, "child")
    by_task = api.post("/flow_runs/filter", json={"parent_task_run_id": link["id"]}).json()
    by_parent = api.post("/flow_runs/filter", json={"parent_flow_run_id": parent["id"]}).json()
    assert [r["id"] for r in by_task] == [r["id"] for r in by_parent] == [child["id"]]


def test_delete_flow_run_takes_its_task_runs_states_logs_and_subflows(api: Any) -> None:
    parent = make_flow_run(api, "parent")
    link = api.post("/task_runs/", json={"flow_run_id": parent["id"], "task_key": "subflow:child",
                                         "name": "child-0"}).json()
    child = make_flow_run(api, "child", parent_task_run_id=link["id"])
    keep = make_flow_run(api, "parent")
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    api.post("/logs/", json=[{"id": new_id(), "flow_run_id": parent["id"], "name": "x",
                              "level": 20, "message": "m", "timestamp": now}])
    assert api.delete(f"/flow_runs/{parent['id']}").status_code == 204
    assert api.get(f"/flow_runs/{parent['id']}").status_code == 404
    assert api.get(f"/flow_runs/{child['id']}").status_code == 404
    assert api.get(f"/task_runs/{link['id']}").status_code == 404
    assert api.post("/logs/filter", json={"flow_run_id": keep["id"]}).json() == []
    assert api.get(f"/flow_runs/{keep['id']}").status_code == 200
    assert api.delete(f"/flow_runs/{parent['id']}").status_code == 404


def test_tag_concurrency_limit_holds_a_second_task_run_until_a_slot_frees(api: Any) -> None:
    r = api.post("/concurrency_limits/", json={"tag": "db", "concurrency_limit": 1})
    assert r.status_code == 200 and r.json()["active_slots"] == []
    fr = make_flow_run(api)
    a, b = (api.post("/task_runs/", json={"flow_run_id": fr["id"], "task_key": "q", "name": f"q-{i}",
                                          "tags": ["db", "other"]}).json() for i in range(2))
    assert set_state(api, "task_runs", a["id"], "RUNNING").json()["status"] == "ACCEPT"
    r = set_state(api, "task_runs", b["id"], "RUNNING")
    assert r.status_code == 200 and r.json()["status"] == "WAIT"
    assert float(r.headers["Retry-After"]) > 0 and "'db'" in r.json()["reason"]
    assert api.get(f"/task_runs/{b['id']}").json()["state_type"] == "PENDING"
    assert api.get("/concurrency_limits/tag/db").json()["active_slots"] == [a["id"]]
    assert set_state(api, "task_runs", a["id"], "COMPLETED").json()["status"] == "ACCEPT"
    assert api.get("/concurrency_limits/tag/db").json()["active_slots"] == []
    assert set_state(api, "task_runs", b["id"], "RUNNING").json()["status"] == "ACCEPT"
    # reset frees slots of runs that died holding them
    assert api.post("/concurrency_limits/tag/db/reset").json()["active_slots"] == []
    assert api.delete("/concurrency_limits/tag/db").status_code == 204
    assert api.get("/concurrency_limits/tag/db").status_code == 404


def test_zero_limit_refuses_the_tag(api: Any) -> None:
    api.post("/concurrency_limits/", json={"tag": "off", "concurrency_limit": 0})
    fr = make_flow_run(api)
    tr = api.post("/task_runs/", json={"flow_run_id": fr["id"], "task_key": "q", "name": "q-0",
                                       "tags": ["off"]}).json()
    r = set_state(api, "task_runs", tr["id"], "RUNNING")
    assert r.status_code == 409 and "is 0" in r.json()["detail"]


def test_a_batch_sent_twice_is_written_once(api: Any) -> None:
    fr = make_flow_run(api)
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    tid = new_id()
    batch = {
        "task_run_inserts": [{"id": tid, "flow_run_id": fr["id"], "task_key": "k", "name": "k-0",
                              "state_type": "COMPLETED", "state_name": "Completed",
                              "created": now, "updated": now}],
        "task_run_states": [{"id": new_id(), "task_run_id": tid, "type": "COMPLETED",
                             "name": "Completed", "timestamp": now}],
        "logs": [{"id": new_id(), "flow_run_id": fr["id"], "task_run_id": tid, "name": "x",
                  "level": 20, "message": "once", "timestamp": now}],
        "a_field_from_a_newer_client": {"ignored": True},
    }
    assert api.post("/history/batch", json=batch).status_code == 200
    assert api.post("/history/batch", json=batch).status_code == 200  # a retry after a timeout
    assert api.post("/task_runs/count", json={"flow_run_id": fr["id"]}).json()["count"] == 1
    assert len(api.post("/logs/filter", json={"flow_run_id": fr["id"]}).json()) == 1
    assert states_of(api, "task_runs", tid) == ["COMPLETED"]


@pytest.mark.parametrize("prefix_len", [30, 36])
def test_runs_are_read_by_id_or_unique_prefix(api: Any, prefix_len: int) -> None:
    run = make_flow_run(api)
    assert api.get(f"/flow_runs/{run['id'][:prefix_len]}").json()["id"] == run["id"]
