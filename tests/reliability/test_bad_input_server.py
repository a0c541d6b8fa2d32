"""Malformed input sent to a real `legato server start` (SQLite and PostgreSQL): bad JSON, bad
parameters, unknown ids, an invalid state transition and an oversized body each get a 4xx whose
message names the problem, and the history holds exactly the rows it held before.

(tests/server/test_bad_input.py covers every route case by case in-process; this is the same
promise over real HTTP, against the server's own process.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from tests.integration.deploy_helpers import Stack, database_url, open_stack

from legato.store import models

UNKNOWN = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


@pytest.fixture
def stack(history: str, tmp_path: Path, legato_home: Path) -> Iterator[Stack]:
    with open_stack(tmp_path, legato_home) as s:
        s.settings["LEGATO_SERVER_MAX_BODY_BYTES"] = "100000"
        yield s


def snapshot(url: str) -> dict[str, list[str]]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return {t.name: sorted(repr(tuple(r)) for r in conn.execute(sa.select(t)))
                    for t in models.metadata.sorted_tables}
    finally:
        engine.dispose()


def test_bad_input_gets_a_4xx_naming_it_and_changes_nothing(stack: Stack) -> None:
    stack.start_server()
    dep = stack.deploy("append_id", "bad-input")
    api = httpx.Client(base_url=stack.api_url, timeout=30)
    run = api.post("/flow_runs/", json={"flow_name": "seeded"}).json()
    for state in ("RUNNING", "COMPLETED"):
        assert api.post(f"/flow_runs/{run['id']}/set_state",
                        json={"state": {"type": state}}).status_code == 200
    before = snapshot(database_url(stack.home))

    cases = [
        # (request, expected status, words the message must hold)
        (api.build_request("POST", "/flow_runs/filter", content=b'{"limit": ',
                           headers={"content-type": "application/json"}), 422, "JSON"),
        (api.build_request("POST", f"/deployments/{dep}/create_flow_run",
                           json={"parameters": {"log_path": ["not", "a", "path"]}}),
         422, "log_path"),
        (api.build_request("POST", f"/deployments/{dep}/create_flow_run",
                           json={"parameters": {"no_such_parameter": 1}}),
         422, "no_such_parameter"),
        (api.build_request("GET", f"/flow_runs/{UNKNOWN}"), 404, UNKNOWN),
        (api.build_request("POST", f"/flow_runs/{UNKNOWN}/set_state",
                           json={"state": {"type": "RUNNING"}}), 404, UNKNOWN),
        (api.build_request("POST", f"/flow_runs/{run['id']}/set_state",
                           json={"state": {"type": "RUNNING"}}), 409, "Completed"),
        (api.build_request("POST", "/flow_runs/", json={"flow_name": "x" * 200_000}),
         413, "100000"),
    ]
    for request, status, words in cases:
        answer = api.send(request)
        assert answer.status_code == status, (request.url, answer.text)
        detail = answer.json()["detail"]
        assert words in (detail if isinstance(detail, str) else str(detail)), (request.url,
                                                                                answer.text)
    assert snapshot(database_url(stack.home)) == before
