"""The API fuzzed from its own OpenAPI document (schemathesis), in-process, on SQLite and on
PostgreSQL (where odd text, times and ids used to become database errors).

Every operation gets valid and invalid requests (bounded, derandomized: CI sees the same cases
every run), against a history seeded with real runs, and with real ids filled in so reads,
state changes and deletes hit real rows. Every answer must be:

- no 5xx;
- a status code the document declares for the operation, with its content type and a body that
  matches the declared schema (errors: ``{"detail": "..."}``);
- for a 4xx, the history has the same number of rows in every table as before the call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from legato.ids import new_id  # noqa: E402
from legato.store import models  # noqa: E402

MAX_EXAMPLES = 25  # per operation, per mode (valid / invalid input)
MAX_FAILURES_SHOWN = 3  # per operation


@pytest.fixture
def fuzz_app(history: str) -> Iterator[Any]:
    """The server's ASGI app on a fresh history, seeded with a few real runs."""
    from fastapi.testclient import TestClient

    from legato.server.app import create_app
    from legato.settings import get_settings

    app = create_app(get_settings(), services=False)
    app.app.state.long_poll_cap = 0.05  # a claim's long poll: fuzzed, but not waited out
    with TestClient(app, base_url="http://t/api") as client:
        app.seed = _seed(client)  # type: ignore[attr-defined]
        yield app
    try:  # schemathesis keeps each app's lifespan running until told otherwise
        from schemathesis.python.asgi import shutdown_lifespans
    except ImportError:  # pragma: no cover - an older or newer schemathesis
        return
    shutdown_lifespans()


def _seed(api: Any) -> dict[str, str]:
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    runs = []
    for i in range(3):
        r = api.post("/flow_runs/", json={"flow_name": "fuzzed", "tags": ["fuzz"],
                                          "parameters": {"i": i}})
        assert r.status_code == 201, r.text
        runs.append(r.json())
    tasks = []
    for i, run in enumerate(runs):
        r = api.post("/task_runs/", json={"flow_run_id": run["id"], "task_key": "t",
                                          "name": f"t-{i}", "dynamic_key": str(i),
                                          "tags": ["fuzz"]})
        assert r.status_code == 201, r.text
        tasks.append(r.json())
    # one of each: pending, running, completed
    for kind, rows in (("flow_runs", runs), ("task_runs", tasks)):
        for row, states in zip(rows, ([], ["RUNNING"], ["RUNNING", "COMPLETED"]), strict=True):
            for type_ in states:
                r = api.post(f"/{kind}/{row['id']}/set_state", json={"state": {"type": type_}})
                assert r.status_code == 200, r.text
    r = api.post("/logs/", json=[{"id": new_id(), "flow_run_id": runs[1]["id"], "name": "seed",
                                  "level": 20, "message": "seeded", "timestamp": now}])
    assert r.status_code == 201, r.text
    assert api.post("/concurrency_limits/", json={"tag": "fuzz", "concurrency_limit": 5}
                    ).status_code == 200
    return {"flow_run": runs[1]["id"], "task_run": tasks[1]["id"], "flow": runs[0]["flow_id"],
            "flow_name": "fuzzed", "tag": "fuzz"}


def _real_path_parameters(path: str, seed: dict[str, str]) -> dict[str, str] | None:
    """Ids of seeded rows for an operation's path, so the fuzzer reaches past the 404."""
    if "{run_id}" in path:
        return {"run_id": seed["flow_run" if path.startswith("/api/flow_runs") else "task_run"]}
    if "{flow_id}" in path:
        return {"flow_id": seed["flow"]}
    if "{name}" in path:
        return {"name": seed["flow_name"]}
    if "{tag}" in path:
        return {"tag": seed["tag"]}
    return None


def _row_counts(db: Any) -> tuple[int, ...]:
    tables = models.metadata.sorted_tables
    q = sa.select(*[sa.select(sa.func.count()).select_from(t).scalar_subquery() for t in tables])
    with db.read() as conn:
        return tuple(conn.execute(q).one())


def _fuzz_operation(op: Any, mode: Any, seed: dict[str, str], db: Any,
                    failures: list[str]) -> None:
    strategy = op.as_strategy(generation_mode=mode)
    real = _real_path_parameters(op.path, seed)
    if real is not None:
        strategy = st.one_of(strategy, op.as_strategy(generation_mode=mode, path_parameters=real))
    checks = [status_code_conformance, content_type_conformance, response_schema_conformance]
    mine: list[str] = []

    @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        if len(mine) >= MAX_FAILURES_SHOWN:
            return
        before = _row_counts(db)
        response = case.call()
        problem = None
        if response.status_code >= 500:
            problem = f"{response.status_code}: {response.text[:500]}"
        else:
            try:
                case.validate_response(response, checks=checks)
            except BaseException as exc:  # schemathesis reports failures as an exception group
                problem = str(exc).split("Reproduce with:")[0].strip()[:800]
            if problem is None and 400 <= response.status_code < 500:
                after = _row_counts(db)
                if after != before:
                    problem = (f"{response.status_code} but the history changed: rows per table "
                               f"{before} -> {after}")
        if problem is not None:
            mine.append(f"{op.label} [{mode.value}] {problem}\n    {case.as_curl_command()}")

    run()
    failures.extend(mine)


def test_every_operation_survives_fuzzing(fuzz_app: Any, history: str) -> None:
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    # deletes last: the seeded rows should live while the other operations run
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    assert len(operations) >= 25, [op.label for op in operations]
    db = fuzz_app.app.state.db
    failures: list[str] = []
    for op in operations:
        takes_input = bool(op.path_parameters or op.query or op.body)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode is GenerationMode.NEGATIVE and not takes_input:
                continue  # nothing to get wrong
            _fuzz_operation(op, mode, fuzz_app.seed, db, failures)
    assert not failures, f"{len(failures)} failing case(s) on {history}:\n" + "\n".join(failures)
