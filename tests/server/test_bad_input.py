"""Bad input, case by case, on SQLite and PostgreSQL: every case gets a 4xx whose detail names
the problem, and the history is exactly as it was before the call."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from legato.ids import new_id
from legato.store import models

UNKNOWN = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"  # a valid UUID no test creates


# -- helpers --------------------------------------------------------------------------------------
def db_of(api: Any) -> Any:
    return api.app.app.state.db  # the TestClient's app is the middleware around FastAPI


def snapshot(db: Any) -> dict[str, list[str]]:
    """Every row of every table of the history (sorted), to compare before and after a call."""
    out = {}
    with db.read() as conn:
        for table in models.metadata.sorted_tables:
            out[table.name] = sorted(repr(tuple(r)) for r in conn.execute(sa.select(table)))
    return out


def counts(snap: dict[str, list[str]]) -> dict[str, int]:
    return {name: len(rows) for name, rows in snap.items()}


class Unchanged:
    """``with unchanged(api):`` asserts the history holds the very same rows afterwards."""

    def __init__(self, api: Any) -> None:
        self.db = db_of(api)

    def __enter__(self) -> Unchanged:
        self.before = snapshot(self.db)
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            after = snapshot(self.db)
            assert counts(after) == counts(self.before)
            assert after == self.before


def make_flow_run(api: Any, **body: Any) -> dict[str, Any]:
    r = api.post("/flow_runs/", json={"flow_name": "bad-input", **body})
    assert r.status_code == 201, r.text
    return r.json()


def make_task_run(api: Any, flow_run_id: str, **body: Any) -> dict[str, Any]:
    r = api.post("/task_runs/", json={"flow_run_id": flow_run_id, "task_key": "t", "name": "t-0",
                                      **body})
    assert r.status_code == 201, r.text
    return r.json()


def set_state(api: Any, kind: str, run_id: str, type_: str, **body: Any) -> Any:
    return api.post(f"/{kind}/{run_id}/set_state", json={"state": {"type": type_}, **body})


def detail(r: Any) -> str:
    assert r.headers["content-type"].startswith("application/json"), r.text
    d = r.json()["detail"]
    assert isinstance(d, str) and d, r.text
    return d


@pytest.fixture
def seeded(api: Any) -> dict[str, Any]:
    """A flow run with a task run (both finished), a log line and a tag limit: so "unchanged"
    means something."""
    run = make_flow_run(api, tags=["seed"])
    task = make_task_run(api, run["id"])
    for kind, rid in (("flow_runs", run["id"]), ("task_runs", task["id"])):
        for type_ in ("RUNNING", "COMPLETED"):
            assert set_state(api, kind, rid, type_).status_code == 200
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    r = api.post("/logs/", json=[{"id": new_id(), "flow_run_id": run["id"], "name": "seed",
                                  "level": 20, "message": "hello", "timestamp": now}])
    assert r.status_code == 201, r.text
    assert api.post("/concurrency_limits/", json={"tag": "seed", "concurrency_limit": 2}
                    ).status_code == 200
    return {"flow_run": run, "task_run": task, "flow_id": run["flow_id"]}


# the routes that take a JSON body, with a valid body for each (ids made up on the spot)
def _bodies(seeded: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("/flows/", {"name": "x"}),
        ("/flows/filter", {}),
        ("/flow_runs/", {"flow_name": "x"}),
        ("/flow_runs/filter", {}),
        ("/flow_runs/count", {}),
        (f"/flow_runs/{seeded['flow_run']['id']}/set_state", {"state": {"type": "FAILED"}}),
        ("/task_runs/", {"task_key": "k", "name": "n"}),
        ("/task_runs/filter", {}),
        ("/task_runs/count", {}),
        (f"/task_runs/{seeded['task_run']['id']}/set_state", {"state": {"type": "FAILED"}}),
        ("/logs/", []),
        ("/logs/filter", {}),
        ("/history/batch", {}),
        ("/cache/read", {"key": "k"}),
        ("/concurrency_limits/", {"tag": "x", "concurrency_limit": 1}),
        ("/concurrency_limits/filter", {}),
    ]


# -- malformed JSON -------------------------------------------------------------------------------
MALFORMED = [
    pytest.param(b'{"name": ', "not valid JSON", id="truncated"),
    pytest.param(b"{'name': 'x'}", "not valid JSON", id="single-quotes"),
    pytest.param(b'{"name": "\xff\xfe"}', "not UTF-8", id="not-utf8"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "nested too deeply", id="nested-too-deep"),
]


@pytest.mark.parametrize(("raw", "why"), MALFORMED)
def test_malformed_json_gets_a_422_saying_so_on_every_route(
        api: Any, seeded: dict[str, Any], raw: bytes, why: str) -> None:
    with Unchanged(api):
        for path, _ in _bodies(seeded):
            r = api.post(path, content=raw, headers={"content-type": "application/json"})
            assert r.status_code == 422, (path, r.text)
            assert why in detail(r), (path, r.text)


def test_a_body_of_the_wrong_shape_gets_a_422_naming_the_field(
        api: Any, seeded: dict[str, Any]) -> None:
    with Unchanged(api):
        r = api.post("/flow_runs/", json=["not", "an", "object"])
        assert r.status_code == 422 and "body" in detail(r)
        r = api.post("/task_runs/", json={"name": "n"})  # no task_key
        assert r.status_code == 422 and "task_key" in detail(r) and "required" in detail(r)
        r = api.post("/concurrency_limits/", json={"tag": "t", "concurrency_limit": "many"})
        assert r.status_code == 422 and "concurrency_limit" in detail(r)
        r = api.post(f"/flow_runs/{seeded['flow_run']['id']}/set_state",
                     json={"state": {"type": "DONE"}})
        assert r.status_code == 422 and "state.type" in detail(r)
        # every invalid field is listed, with where it is
        r = api.post("/flow_runs/filter", json={"limit": 0, "offset": -1})
        assert {tuple(e["loc"]) for e in r.json()["errors"]} == {("body", "limit"),
                                                                 ("body", "offset")}


# -- unknown ids ----------------------------------------------------------------------------------
def _id_routes(api: Any) -> list[tuple[str, str, str]]:
    """(method, path, the value filled in) for every operation of the OpenAPI document that
    names a flow, run, tag or name in its path: GET, DELETE, set_state, reset..."""
    doc = api.get("/openapi.json").json()
    out = []
    for path, ops in doc["paths"].items():
        params = re.findall(r"{(\w+)}", path)
        if not params:
            continue
        value = "no-such-name" if params[0] in ("name", "tag") else UNKNOWN
        for method in ops:
            out.append((method.upper(), path.replace(f"{{{params[0]}}}", value), value))
    return out


def test_unknown_ids_get_a_404_naming_the_id_on_every_route(
        api: Any, seeded: dict[str, Any]) -> None:
    routes = _id_routes(api)
    # flows (by id, by name), flow runs and task runs (read, states, set_state, delete), tags
    assert len(routes) >= 14, routes
    bodies = {  # a valid body where the route needs one: the unknown id is the only problem
        "/set_state": {"state": {"type": "RUNNING"}}, "/schedules": [],
        "/schedules/active": {"active": True}, "/create_flow_run": {},
        "/backfill": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"},
        "/start": {"claim_token": 1}, "/release": {"claim_token": 1},
        "/infrastructure_pid": {"pid": "pid:1"}, "/heartbeat": {}, "/cancel": {},
        "/cancelled": {}, "/end": {"state_type": "CRASHED", "message": "gone"},
    }
    with Unchanged(api):
        for method, path, value in routes:
            body = next((b for suffix, b in bodies.items() if path.endswith(suffix)), None)
            if body is None and method in ("PATCH", "PUT"):
                body = {}
            r = api.request(method, path.removeprefix("/api"), json=body)
            assert r.status_code == 404, (method, path, r.text)
            assert value in detail(r), (method, path, r.text)


@pytest.mark.parametrize("run_id", ["-" * 36, "0123456789abcdef0123456789abcdef0123", "----"])
def test_ids_that_are_no_uuid_get_a_404_not_a_database_error(
        api: Any, seeded: dict[str, Any], run_id: str) -> None:
    with Unchanged(api):
        for path in (f"/flow_runs/{run_id}", f"/task_runs/{run_id}/states",
                     f"/flow_runs/{run_id}/states"):
            r = api.get(path)
            assert r.status_code == 404, (path, r.text)
            assert run_id in detail(r)
        r = api.post("/logs/filter", json={"flow_run_id": run_id})
        assert r.status_code in (404, 422), r.text


def test_creating_runs_of_unknown_flows_and_runs_gets_a_404_naming_them(
        api: Any, seeded: dict[str, Any]) -> None:
    with Unchanged(api):
        r = api.post("/flow_runs/", json={"flow_id": UNKNOWN})
        assert r.status_code == 404 and UNKNOWN in detail(r) and "flow" in detail(r)
        r = api.post("/flow_runs/", json={"flow_name": "x", "parent_task_run_id": UNKNOWN})
        assert r.status_code == 404 and UNKNOWN in detail(r)
        assert "parent_task_run_id" in detail(r)
        r = api.post("/task_runs/", json={"flow_run_id": UNKNOWN, "task_key": "k", "name": "n"})
        assert r.status_code == 404 and UNKNOWN in detail(r)
        r = api.post("/task_runs/filter", json={"flow_run_id": UNKNOWN[:8]})
        assert r.status_code == 404 and UNKNOWN[:8] in detail(r)


def test_a_duplicate_run_id_on_create_gets_a_409(api: Any, seeded: dict[str, Any]) -> None:
    run_id, task_id = seeded["flow_run"]["id"], seeded["task_run"]["id"]
    with Unchanged(api):
        r = api.post("/flow_runs/", json={"flow_name": "bad-input", "id": run_id.upper()})
        assert r.status_code == 409, r.text
        assert run_id in detail(r) and "exists already" in detail(r)
        r = api.post("/task_runs/", json={"id": task_id, "task_key": "k", "name": "n"})
        assert r.status_code == 409 and task_id in detail(r)


# -- invalid transitions --------------------------------------------------------------------------
def _history(api: Any, kind: str, run_id: str) -> tuple[Any, list[Any]]:
    run = api.get(f"/{kind}/{run_id}").json()
    states = api.get(f"/{kind}/{run_id}/states").json()
    return ({k: run[k] for k in ("state_type", "state_name", "run_count", "start_time",
                                 "end_time", "total_run_time")}, states)


@pytest.mark.parametrize("kind", ["flow_runs", "task_runs"])
def test_invalid_transitions_get_a_409_saying_why_and_change_nothing(
        api: Any, seeded: dict[str, Any], kind: str) -> None:
    finished = seeded["flow_run" if kind == "flow_runs" else "task_run"]["id"]
    before = _history(api, kind, finished)
    assert before[0]["state_type"] == "COMPLETED"
    with Unchanged(api):
        r = set_state(api, kind, finished, "RUNNING")  # no new_attempt
        assert r.status_code == 409, r.text
        assert "new attempt" in detail(r) and "Completed" in detail(r)
        assert r.json()["status"] == "REJECT" and r.json()["run"]["state_type"] == "COMPLETED"
        r = set_state(api, kind, finished, "PENDING")
        assert r.status_code == 409 and "new attempt" in detail(r)
    assert _history(api, kind, finished) == before

    if kind == "flow_runs":
        running = make_flow_run(api)["id"]
    else:
        running = make_task_run(api, seeded["flow_run"]["id"], name="t-1")["id"]
    assert set_state(api, kind, running, "RUNNING").status_code == 200
    before = _history(api, kind, running)
    with Unchanged(api):
        r = set_state(api, kind, running, "RUNNING")  # a second Running
        assert r.status_code == 409, r.text
        assert "Running twice" in detail(r)
    assert _history(api, kind, running) == before
    assert [s["type"] for s in before[1]] == ["PENDING", "RUNNING"]


# -- oversized payloads ---------------------------------------------------------------------------
MAX_BODY = 4096


@pytest.fixture
def small_api(history: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from legato.server.app import create_app
    from legato.settings import get_settings, reset_settings_cache

    monkeypatch.setenv("LEGATO_SERVER_MAX_BODY_BYTES", str(MAX_BODY))
    reset_settings_cache()
    with TestClient(create_app(get_settings(), services=False), base_url="http://t/api") as c:
        yield c


def test_oversized_bodies_get_a_413_with_or_without_a_content_length(small_api: Any) -> None:
    api = small_api
    fits = json.dumps({"flow_name": "big", "parameters": {"x": "y" * (MAX_BODY - 200)}}).encode()
    big = json.dumps({"flow_name": "big", "parameters": {"x": "y" * MAX_BODY}}).encode()
    assert len(fits) <= MAX_BODY < len(big)
    with Unchanged(api):
        r = api.post("/flow_runs/", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413, r.text
        assert str(MAX_BODY) in detail(r) and "LEGATO_SERVER_MAX_BODY_BYTES" in detail(r)

        def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
            for i in range(0, len(big), 1000):
                yield big[i:i + 1000]

        r = api.post("/flow_runs/", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413, r.text
        assert str(MAX_BODY) in detail(r)
        r = api.post("/history/batch", content=b"{}",
                     headers={"content-type": "application/json", "content-length": "lots"})
        assert r.status_code == 400 and "Content-Length" in detail(r)
    # a body within the limit goes through, chunked too
    r = api.post("/flow_runs/", content=iter([fits[:100], fits[100:]]),
                 headers={"content-type": "application/json"})
    assert r.status_code == 201, r.text


# -- bad filters ----------------------------------------------------------------------------------
BAD_FILTERS = [
    ({"limit": 0}, "limit"),
    ({"limit": 10**12}, "limit"),
    ({"offset": -1}, "offset"),
    ({"offset": 2**63}, "offset"),
    ({"state_types": ["FINISHED"]}, "state_types"),
    ({"start_after": "2024-05-01T12:00:00"}, "start_after"),  # naive: which timezone?
    ({"start_before": "yesterday"}, "start_before"),
    ({"start_after": "0001-01-01T00:00:00+05:00"}, "start_after"),  # before year 1 in UTC
    ({"ids": ["not-a-uuid"]}, "ids"),
    ({"ids": UNKNOWN}, "ids"),  # not a list
    ({"name_like": "a\x00b"}, "name_like"),
    ({"tags_all": ["x" * 256]}, "tags_all"),
    ({"sort": "random"}, "sort"),
]


def test_bad_filters_get_a_422_naming_the_field(api: Any, seeded: dict[str, Any]) -> None:
    with Unchanged(api):
        for route in ("/flow_runs/filter", "/flow_runs/count", "/task_runs/filter",
                      "/task_runs/count"):
            for body, field in BAD_FILTERS:
                r = api.post(route, json=body)
                assert r.status_code == 422, (route, body, r.text)
                assert field in detail(r), (route, body, r.text)
                assert any(e["loc"][:2] == ["body", field] for e in r.json()["errors"]), r.text
        for route, body, field in [
            ("/flows/filter", {"limit": 0}, "limit"),
            ("/flows/filter", {"name": "a\x00"}, "name"),
            ("/logs/filter", {"min_level": -1}, "min_level"),
            ("/logs/filter", {"task_run_id": "nope"}, "task_run_id"),
            ("/logs/filter", {"offset": -5}, "offset"),
            ("/concurrency_limits/filter", {"limit": 0}, "limit"),
        ]:
            r = api.post(route, json=body)
            assert r.status_code == 422 and field in detail(r), (route, body, r.text)


# -- values the database cannot hold --------------------------------------------------------------
def test_names_tags_and_times_the_database_cannot_hold_get_a_422(
        api: Any, seeded: dict[str, Any]) -> None:
    """PostgreSQL refuses NUL characters and SQLite cannot order times past year 9999: such a
    value is named in a 422 rather than becoming a database error (on either backend)."""
    run_id = seeded["flow_run"]["id"]
    with Unchanged(api):
        for path, body, field in [
            ("/flows/", {"name": "a\x00b"}, "name"),
            ("/flow_runs/", {"flow_name": "f", "tags": ["ok", "b\x00d"]}, "tags.1"),
            ("/task_runs/", {"task_key": "k\x00", "name": "n"}, "task_key"),
            ("/concurrency_limits/", {"tag": "\x00", "concurrency_limit": 1}, "tag"),
            (f"/flow_runs/{run_id}/set_state",
             {"state": {"type": "FAILED", "timestamp": "9999-12-31T23:00:00-05:00"}},
             "state.timestamp"),
            ("/flow_runs/", {"flow_name": "f", "state": {"type": "SCHEDULED",
                                                         "timestamp": "0001-01-01T01:00+02:00"}},
             "state.timestamp"),
            ("/history/batch", {"logs": [{"id": new_id(), "name": "x", "level": 1, "message": "m",
                                          "timestamp": "0001-01-01T00:00:00+00:01"}]},
             "logs.0.timestamp"),
        ]:
            r = api.post(path, json=body)
            assert r.status_code == 422, (path, r.text)
            assert field in detail(r), (path, r.text)
        for path in ("/flows/name/a%00b", "/concurrency_limits/tag/a%00b"):
            r = api.get(path)
            assert r.status_code == 422 and "NUL" in detail(r), r.text


def test_free_text_the_database_cannot_hold_is_stored_cleaned_as_embedded_does(
        api: Any, seeded: dict[str, Any]) -> None:
    """A state's message or a run's parameters come from user code (an exception's text, a
    float('nan')): they are kept, with NUL/NaN replaced as the embedded history does, on both
    backends, rather than refused."""
    r = api.post("/flow_runs/", content=b'{"flow_name": "f", "parameters": {"x": NaN, '
                                        b'"s": "a\\u0000b"}}',
                 headers={"content-type": "application/json"})
    assert r.status_code == 201, r.text
    assert r.json()["parameters"] == {"x": "NaN", "s": "a\ufffdb"}
    rid = r.json()["id"]
    r = api.post(f"/flow_runs/{rid}/set_state",
                 content=b'{"state": {"type": "FAILED", "message": "bad byte \\u0000 here", '
                         b'"details": {"k\\u0000": [Infinity]}}}',
                 headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    states = api.get(f"/flow_runs/{rid}/states").json()
    assert states[-1]["message"] == "bad byte \ufffd here"
    assert states[-1]["details"] == {"k\ufffd": ["Infinity"]}


# -- history batches ------------------------------------------------------------------------------
def test_a_batch_referring_to_a_missing_flow_run_gets_a_409_and_writes_nothing(
        api: Any, seeded: dict[str, Any]) -> None:
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    flow_id, new_run, task_id, missing = new_id(), new_id(), new_id(), new_id()
    batch = {
        # rows that are fine on their own...
        "flows": [{"id": flow_id, "name": "batched", "created": now, "updated": now}],
        "flow_run_inserts": [{"id": new_run, "flow_id": flow_id, "name": "r", "created": now,
                              "updated": now, "state_type": "RUNNING", "state_name": "Running"}],
        "flow_run_states": [{"id": new_id(), "flow_run_id": new_run, "type": "RUNNING",
                             "name": "Running", "timestamp": now}],
        "flow_run_updates": {seeded["flow_run"]["id"]: {"state_name": "Changed"}},
        "logs": [{"id": new_id(), "flow_run_id": new_run, "name": "x", "level": 20,
                  "message": "m", "timestamp": now}],
        "cache": [{"key": "batched-key", "result": {"v": 1}, "created": now}],
        # ...and a task run of a flow run the history does not hold
        "task_run_inserts": [{"id": task_id, "flow_run_id": missing, "task_key": "k",
                              "name": "k-0", "created": now, "updated": now}],
    }
    with Unchanged(api):
        r = api.post("/history/batch", json=batch)
        assert r.status_code == 409, r.text
        assert missing in detail(r) and "Nothing of the batch was written" in detail(r)
    with Unchanged(api):  # a state of a task run that exists nowhere
        r = api.post("/history/batch", json={
            "task_run_states": [{"id": new_id(), "task_run_id": missing, "type": "RUNNING",
                                 "name": "Running", "timestamp": now}]})
        assert r.status_code == 409 and missing in detail(r), r.text
    # the same batch without the stray task run is written whole
    del batch["task_run_inserts"]
    r = api.post("/history/batch", json=batch)
    assert r.status_code == 200, r.text
    assert api.get(f"/flow_runs/{new_run}").json()["flow_name"] == "batched"


def test_a_batch_update_that_sets_nothing_writes_nothing(api: Any, seeded: dict[str, Any]) -> None:
    """An update naming no known field (an empty one, or one from a newer client) used to become
    an UPDATE with nothing to set: a database error."""
    with Unchanged(api):
        r = api.post("/history/batch", json={
            "flow_run_updates": {seeded["flow_run"]["id"]: {}},
            "task_run_updates": {seeded["task_run"]["id"]: {"field_of_the_future": 1}}})
        assert r.status_code == 200 and r.json() == {"written": 0}, r.text


def test_text_from_user_code_with_lone_surrogates_is_recorded_escaped(
        api: Any, seeded: dict[str, Any]) -> None:
    """A file name that is not UTF-8 (decoded with surrogateescape) in a log line or an
    exception's message, as the SDK's HTTP client sends it: recorded escaped, as the embedded
    history records it, rather than failing the client's batch (again at every flush) or its
    state change."""
    from legato.client.transport import dumps

    now = dt.datetime.now(dt.timezone.utc)
    log_id = new_id()
    batch = {"logs": [{"id": log_id, "flow_run_id": seeded["flow_run"]["id"], "name": "user",
                       "level": 40, "message": "cannot open 'data-\udce9.csv'", "timestamp": now}]}
    r = api.post("/history/batch", content=dumps(batch),
                 headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json() == {"written": 1}, r.text
    logs = api.post("/logs/filter", json={"flow_run_id": seeded["flow_run"]["id"]}).json()
    assert [g["message"] for g in logs if g["id"] == log_id] == ["cannot open 'data-\\xe9.csv'"]

    rid = make_flow_run(api)["id"]
    r = api.post(f"/flow_runs/{rid}/set_state", content=dumps(
        {"state": {"type": "FAILED", "message": "No such file: 'data-\udce9.csv'"}}),
        headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["status"] == "ACCEPT", r.text
    assert api.get(f"/flow_runs/{rid}").json()["state_message"] == (
        "No such file: 'data-\\xe9.csv'")
    # a name is not free text: it is refused, naming the field
    with Unchanged(api):
        r = api.post("/flows/", content=dumps({"name": "flow-\udce9"}),
                     headers={"content-type": "application/json"})
        assert r.status_code == 422 and "name" in detail(r), r.text


def test_a_batch_with_text_the_database_cannot_hold_is_written_cleaned(
        api: Any, seeded: dict[str, Any]) -> None:
    """The SDK's batches are recorded as the embedded writer records them: a NUL in a log line,
    a run's name or a cache key never fails the batch (PostgreSQL refuses NUL in text)."""
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    log_id = new_id()
    r = api.post("/history/batch", json={
        "logs": [{"id": log_id, "name": "user", "level": 20, "message": "a\x00b",
                  "timestamp": now}],
        "flows": [{"id": new_id(), "name": "flow\x00", "created": now, "updated": now}],
        "cache": [{"key": "key\x00", "result": {"v": "\x00"}, "created": now}]})
    assert r.status_code == 200 and r.json() == {"written": 3}, r.text
    logs = [g for g in api.post("/logs/filter", json={}).json() if g["id"] == log_id]
    assert [g["message"] for g in logs] in (["a\x00b"], ["a\ufffdb"])  # SQLite keeps NUL
    entry = api.post("/cache/read", json={"key": "key\x00"}).json()
    assert entry is not None and entry["key"] == "key\ufffd"
