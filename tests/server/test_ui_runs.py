"""The UI's dashboard, flow-run list and run pages in-process (FastAPI's test client over the
whole app, on SQLite and PostgreSQL), over runs recorded by real flows: what each page shows,
its filters and paging, the log fragment behind the live tail, and the Retry / Cancel actions."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from tests.ui.flows import taxi_ui

from legato.deployments import Deployment
from legato.states import Completed, Failed, StateType

ORIGIN = {"Origin": "http://testserver"}


@pytest.fixture
def ui(history: str) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from legato.server.app import create_app
    from legato.settings import get_settings

    app = create_app(get_settings(), services=False)
    with TestClient(app, base_url="http://testserver") as client:
        client.state = app.app.state
        yield client


def text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def run_ids(page: str) -> list[str]:
    ids = re.findall(r'<a href="/runs/([0-9a-f-]{36})">', page)
    return list(dict.fromkeys(ids))


def test_dashboard_counts_the_days_runs_and_lists_the_failure(ui: Any) -> None:
    taxi_ui.parent()
    page = ui.get("/").text
    totals = dict(re.findall(r'class="total s-(\w+)">\s*<b>(\d+)</b>', page))
    assert totals["completed"] == "3" and totals["failed"] == "1", totals
    failures = page.split("Failures and crashes")[1].split("</section>")[0]
    assert "GCP flow" in failures and "Failed" in failures
    assert ui.get("/?window=7d").status_code == 200
    assert ui.get("/?window=nonsense").status_code == 200  # falls back to the day


def test_a_runs_page_shows_its_tasks_lineage_subflows_and_logs(ui: Any) -> None:
    taxi_ui.parent()
    runs = _runs(ui)
    parent = next(r for r in runs if r.flow_name == "Parent GCP flow")
    failed = next(r for r in runs if r.state_type is StateType.FAILED)

    page = ui.get(f"/runs/{parent.id}").text
    assert page.count('href="/runs/') >= 3  # its three subflow runs are linked
    assert "Subflow runs (3)" in page

    page = ui.get(f"/runs/{failed.id}").text
    assert f'href="/runs/{parent.id}"' in page  # the parent run
    assert page.count('<g class="bar') == 3  # ingest, clean, divide on the timeline
    assert '<path class="edge"' in page  # clean waited on ingest: an arrow
    assert re.search(r"clean-0</td>.*?<td>ingest-0</td>", page, re.S)  # "waited on"
    assert "ZeroDivisionError: division by zero" in text(page)
    assert '"month": 3' in html.unescape(page)  # its parameters

    # the log fragment: by level, by text, and after a cursor (the live tail)
    r = ui.get(f"/runs/{failed.id}/logs", params={"level": "error"})
    levels = re.findall(r'<span class="lv">(\w+)</span>', r.text)
    assert levels and set(levels) == {"ERROR"}
    assert r.headers["X-Run-State"] == "FAILED"
    r = ui.get(f"/runs/{failed.id}/logs", params={"search": "downloading month"})
    assert re.findall(r'<span class="lv">', r.text) and "downloading month 3" in r.text
    everything = ui.get(f"/runs/{failed.id}/logs")
    cursor = everything.headers["X-Log-Cursor"]
    assert ui.get(f"/runs/{failed.id}/logs", params={"after": cursor}).text.strip() == ""
    bad = ui.get(f"/runs/{failed.id}/logs", params={"after": "not-a-cursor"})
    assert bad.status_code == 422 and "cursor" in bad.text

    missing = ui.get(f"/runs/{'0' * 8}-0000-0000-0000-{'0' * 12}")
    assert missing.status_code == 404 and "No flow run" in missing.text


def _runs(ui: Any) -> list[Any]:
    from legato.schemas import FlowRunFilter
    from legato.store import queries

    return queries.read_flow_runs(ui.state.db, FlowRunFilter(limit=1000))


def test_the_list_filters_and_pages_back_without_gaps_or_repeats(ui: Any) -> None:
    core = ui.state.core
    made = []
    for i in range(120):
        state = Failed() if i % 10 == 0 else Completed()
        made.append(core.create_flow_run(
            flow_id=None, flow_name="paged" if i % 2 else "other", name=f"run-{i:03d}",
            state=state, run_id=None, parameters={}, tags=["nightly"] if i % 3 == 0 else [],
            parent_task_run_id=None, version=None))
    first = ui.get("/runs").text
    assert "120 runs" in text(first)
    seen = run_ids(first)
    assert len(seen) == 50
    url = html.unescape(re.search(r'href="([^"]+)" rel="next"', first).group(1))
    while url:
        page = ui.get(url).text
        seen += run_ids(page)
        m = re.search(r'href="([^"]+)" rel="next"', page)
        url = html.unescape(m.group(1)) if m else None
    assert sorted(seen) == sorted(made) and len(seen) == 120  # every run once, newest first

    failed = ui.get("/runs", params={"state": "Failed"}).text
    assert len(run_ids(failed)) == 12
    both = ui.get("/runs", params=[("state", "Failed"), ("flow", "other"), ("tags", "nightly")])
    # i % 10 == 0 (Failed), even (other), i % 3 == 0 (nightly): 0, 30, 60, 90
    assert sorted(re.findall(r"run-(\d{3})", both.text)) == ["000", "030", "060", "090"]
    assert len(run_ids(ui.get("/runs", params={"search": "run-11"}).text)) == 10
    bad = ui.get("/runs", params={"before": "garbage"})
    assert bad.status_code == 422 and "cursor" in bad.text


def test_cancel_and_retry_from_a_runs_page(ui: Any) -> None:
    dep_id = Deployment.build_from_flow(taxi_ui.report, "ui-actions").apply()
    deps = ui.state.deployments
    waiting = deps.create_flow_run_from_deployment(dep_id, parameters={"month": 2})["id"]
    page = ui.get(f"/runs/{waiting}").text
    assert "/cancel" in page and "/retry" not in page

    r = ui.post(f"/runs/{waiting}/cancel", headers=ORIGIN)
    assert "Cancellation requested" in html.unescape(r.text)
    assert _state(ui, waiting) == ("CANCELLED", "Cancelled")

    # a finished run of a deployment gets a new attempt, waiting for its agents
    assert "/retry" in ui.get(f"/runs/{waiting}").text
    r = ui.post(f"/runs/{waiting}/retry", headers=ORIGIN)
    assert "A new attempt is scheduled" in html.unescape(r.text)
    assert _state(ui, waiting) == ("SCHEDULED", "AwaitingRetry")
    # retrying it again while it waits is refused with the reason
    r = ui.post(f"/runs/{waiting}/retry", headers=ORIGIN)
    assert "only a finished run can be retried" in html.unescape(r.text)

    # a script's run has no code the server could start
    taxi_ui.report(1)
    script_run = next(r for r in _runs(ui) if r.deployment_id is None)
    r = ui.post(f"/runs/{script_run.id}/retry", headers=ORIGIN)
    assert "not started from a deployment" in html.unescape(r.text)
    assert _state(ui, script_run.id) == ("COMPLETED", "Completed")


def _state(ui: Any, run_id: str) -> tuple[str, str]:
    r = ui.get(f"/runs/{run_id}/state").json()
    return r["state_type"], r["state_name"]
