"""The UI in a real browser (Debian's Chromium): the dashboard, a failed run's traceback, a
deployment run from the generated form to Completed, and pausing a schedule."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from tests.integration.deploy_helpers import Stack, wait_for
from tests.ui.conftest import base_url

from legato.schedules import CronSchedule
from legato.states import StateType

FLOWS = Path(__file__).parent / "flows"


def _add_flows(stack: Stack) -> None:
    (stack.project / "flows").mkdir(exist_ok=True)
    shutil.copy(FLOWS / "taxi_ui.py", stack.project / "flows" / "taxi_ui.py")


def _run_parent(stack: Stack) -> None:
    """The seed's parent flow as a plain script recording to the server."""
    _add_flows(stack)
    stack.python("flows/taxi_ui.py", timeout=120)


def test_dashboard_then_a_failed_runs_traceback(stack: Stack, page: Any, shoot: Any) -> None:
    stack.start_server()
    _run_parent(stack)
    url = base_url(stack)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))

    page.goto(url + "/")
    assert page.locator("h1").inner_text() == "Dashboard"
    failed_total = page.locator("a.total.s-failed b").inner_text()
    assert failed_total == "1", failed_total
    assert page.locator("a.total.s-completed b").inner_text() == "3"
    # the one failure of the day is listed, by flow and run name
    failures = page.locator("section:has(h2:text('Failures and crashes')) table tr")
    assert failures.count() == 1
    assert "GCP flow" in failures.first.inner_text()
    shoot(page, "dashboard")
    # one page view: the page itself, its stylesheet and its script
    assert len([u for u in requests if u.startswith(url)]) <= 5, requests

    failures.first.locator("a[href^='/runs/']").last.click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"))
    assert "Failed" in page.locator("#run-state").inner_text()
    # the parent is linked, the tasks are drawn
    assert page.locator("a:text('Parent GCP flow /')").count() == 1
    assert page.locator("svg.timeline g.bar").count() == 3
    # the traceback: the user's frame (the divide task's line) and the error, not Legato's own
    tb = page.locator(".log pre.traceback").first
    text = tb.inner_text()
    assert "ZeroDivisionError: division by zero" in text
    assert "taxi_ui.py" in tb.locator(".user-frame").first.inner_text()
    assert "return 1 / n" in text
    assert "legato/engine" not in text.replace("\\", "/")
    shoot(page, "run-traceback")

    # filters narrow the logs: errors only
    page.select_option("form.log-filter select[name=level]", "error")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#logs .log .lv')].every(e => e.textContent.trim() === 'ERROR')")
    assert page.locator("#logs .log").count() >= 2

    # the runs list, filtered by state through the form
    page.goto(url + "/runs")
    assert page.locator("table.runs tbody tr").count() == 4
    page.check("input[name=state][value=Failed]")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r"state=Failed"))
    rows = page.locator("table.runs tbody tr")
    assert rows.count() == 1 and "Failed" in rows.first.inner_text()
    shoot(page, "runs")


def test_run_a_deployment_from_its_form_to_completed(stack: Stack, page: Any,
                                                    shoot: Any) -> None:
    stack.start_server()
    _add_flows(stack)
    dep_id = stack.deploy("report", "from-ui", fixture="taxi_ui.py",
                          parameters={"month": 1},
                          schedule=CronSchedule(cron="0 6 1 * *", timezone="Europe/Berlin"))
    stack.agent()
    url = base_url(stack)

    page.goto(f"{url}/deployments/{dep_id}")
    shoot(page, "deployment")
    page.click("#run-button")
    page.wait_for_url(f"{url}/deployments/{dep_id}/run")
    # the form is made from the parameter schema, the deployment's defaults filled in
    assert page.input_value("#f-month") == "1"
    assert page.get_attribute("#f-month", "type") == "number"
    assert page.input_value("#f-city") == "NYC"
    assert '"color": "yellow"' in page.input_value("#f-options")

    # a bad value is caught before anything is sent
    page.fill("#f-options", "{not json")
    page.click("#submit-run")
    assert page.url.endswith(f"/deployments/{dep_id}/run")
    assert "not valid JSON" in page.eval_on_selector("#f-options", "e => e.validationMessage")
    assert [r for r in stack.client.read_flow_runs() if not r.auto_scheduled] == []

    page.fill("#f-month", "7")
    page.fill("#f-city", "Boston")
    page.fill("#f-options", '{"color": "green", "limit": 5}')
    shoot(page, "deployment-run-form")
    page.click("#submit-run")
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"))
    run_id = page.url.rsplit("/", 1)[-1].split("?")[0]
    # the page follows the run live and shows Completed when it ends
    page.locator("#run-state .s-completed").wait_for(timeout=60_000)
    run = stack.client.read_flow_run(run_id)
    assert run.state_type is StateType.COMPLETED
    assert run.parameters == {"month": 7, "city": "Boston",
                              "options": {"color": "green", "limit": 5}}
    assert "report for Boston, month 7" in page.locator("#logs").inner_text()


def test_a_bad_parameter_gets_a_clear_message_from_the_server(stack: Stack, page: Any) -> None:
    """What the browser cannot check (the schema's rules) the server does, naming the field."""
    stack.start_server()
    _add_flows(stack)
    dep_id = stack.deploy("report", "strict", fixture="taxi_ui.py", parameters={"month": 1})
    url = base_url(stack)
    page.goto(f"{url}/deployments/{dep_id}/run")
    page.fill("#f-options", '["a", "list"]')  # valid JSON, but the flow wants an object
    page.click("#submit-run")
    page.wait_for_load_state()
    assert page.url.endswith(f"/deployments/{dep_id}/run")
    alert = page.locator(".notice.bad").inner_text()
    assert "options" in alert, alert
    assert stack.client.read_flow_runs() == []


def test_pause_and_resume_a_schedule(stack: Stack, page: Any) -> None:
    stack.start_server()
    _add_flows(stack)
    dep_id = stack.deploy("report", "scheduled", fixture="taxi_ui.py", parameters={"month": 1},
                          schedule=CronSchedule(cron="0 6 * * *", timezone="America/New_York"))
    url = base_url(stack)

    def upcoming() -> int:
        return len([r for r in stack.client.read_flow_runs()
                    if r.deployment_id == dep_id and r.state_type is StateType.SCHEDULED])

    wait_for(lambda: upcoming() >= 3, 30, "the scheduler to make the upcoming runs")
    page.goto(f"{url}/deployments/{dep_id}")
    row = page.locator("#schedules tr[data-schedule]")
    assert "cron 0 6 * * * (America/New_York)" in row.inner_text()
    row.locator("button:text('Pause')").click()
    page.wait_for_load_state()
    assert "Schedule paused" in page.locator(".notice.ok").inner_text()
    assert "paused" in page.locator("#schedules tr[data-schedule]").inner_text()
    dep = stack.client.read_deployment(dep_id)
    assert [s["active"] for s in dep["schedules"]] == [False]
    assert upcoming() == 0  # its runs not yet picked up are gone

    page.locator("#schedules tr[data-schedule] button:text('Resume')").click()
    page.wait_for_load_state()
    assert [s["active"] for s in stack.client.read_deployment(dep_id)["schedules"]] == [True]


def test_with_api_keys_the_browser_signs_in_once(stack: Stack, page: Any, shoot: Any) -> None:
    key = "ui-browser-key-7c1f"
    stack.settings["LEGATO_SERVER_API_KEYS"] = key
    stack.settings["LEGATO_API_KEY"] = key
    stack.start_server()
    url = base_url(stack)
    page.goto(f"{url}/runs?state=Failed")
    assert page.url.startswith(f"{url}/login?next=")
    shoot(page, "sign-in")
    page.fill("input[name=key]", "not-the-key")
    page.click("button[type=submit]")
    assert "not accepted" in page.locator(".notice.bad").inner_text()
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/runs?state=Failed")
    assert page.locator("h1").inner_text() == "Flow runs"
    page.goto(f"{url}/deployments")  # the session holds across pages
    assert page.locator("h1").inner_text() == "Deployments"
    assert key not in page.content()
