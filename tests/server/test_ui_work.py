"""The web UI's work pools & queues, concurrency limits and notification rules pages, in-process
(FastAPI's test client over the whole app, on SQLite and PostgreSQL): each page shows what is
stored, each form changes it, and bad input is refused with a line saying what is wrong while
the store stays as it was."""

from __future__ import annotations

import datetime as dt
import html
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from legato import states
from legato.blocks.core import block_from_document
from legato.blocks.notifications import CustomWebhookNotificationBlock
from legato.blocks.system import Secret
from legato.core.notifications import Notifications
from legato.core.run_control import mark_late_runs

ORIGIN = {"Origin": "http://testserver"}


class UI:
    """The test client and the app's own cores (what the pages read and the forms change)."""

    def __init__(self, client: Any, app: Any) -> None:
        self.client = client
        self.state = app.app.state  # the FastAPI app inside the middleware

    def get(self, path: str) -> str:
        r = self.client.get(path)
        assert r.status_code == 200, r.text
        return r.text

    def post(self, path: str, data: dict[str, Any]) -> Any:
        """POST a form the way a page does; follow the redirect back to the page."""
        return self.client.post(path, data=data, headers=ORIGIN)

    def said(self, path: str, data: dict[str, Any]) -> tuple[str, str]:
        """POST, and the page's notice and problem lines after it (empty when absent)."""
        r = self.post(path, data)
        assert r.status_code in (200, 422), r.text
        return _line(r.text, "notice ok"), _line(r.text, "notice bad")


def _line(page: str, css: str) -> str:
    m = re.search(rf'<div class="{css}"[^>]*>(.*?)</div>', page, re.S)
    return html.unescape(m.group(1)) if m else ""


def row(page: str, attr: str, value: str) -> str:
    """The table row ``<tr data-{attr}="{value}">``'s HTML."""
    m = re.search(rf'<tr data-{attr}="{re.escape(value)}".*?</tr>', page, re.S)
    assert m, f"no row {attr}={value} on the page"
    return m.group(0)


def text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


@pytest.fixture
def ui(history: str) -> Iterator[UI]:
    from fastapi.testclient import TestClient

    from legato.server.app import create_app
    from legato.settings import get_settings

    app = create_app(get_settings(), services=False)
    with TestClient(app, base_url="http://testserver") as client:
        yield UI(client, app)


class Receiver:
    """A real HTTP server on a free loopback port, counting the POSTs it answers."""

    def __init__(self) -> None:
        self.posts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/hook"


# -- work pools and queues --------------------------------------------------------------------------
def test_work_pools_page_shows_pools_queues_workers_and_waiting_runs(ui: UI) -> None:
    d = ui.state.deployments
    d.create_work_pool("nightly", "docker", concurrency_limit=4,
                       base_job_template={"job_configuration": {"image": "etl:1"}})
    d.create_work_queue("high", "nightly", priority=1, concurrency_limit=2)
    d.create_work_queue("bulk", "nightly", priority=5)
    d.create_work_pool("k8s", "kubernetes", paused=True)
    dep = d.apply_deployment({"flow_name": "etl", "name": "daily", "work_pool_name": "nightly",
                              "work_queue_name": "high"})
    now = dt.datetime.now(dt.timezone.utc)
    for minutes in (10, 5, 0):
        d.create_flow_run_from_deployment(dep["id"],
                                          scheduled_time=now - dt.timedelta(minutes=minutes))
    d.create_flow_run_from_deployment(dep["id"], scheduled_time=now + dt.timedelta(hours=1))
    assert mark_late_runs(ui.state.db, now=now) == 2
    d.claim_flow_runs("worker-a", pool_name="nightly", queue_names=["bulk"], limit=0)

    page = ui.get("/work-pools")
    assert 'class="active"' in page and "/work-pools" in page
    nightly = page[page.index('data-pool="nightly"'):]
    assert "docker" in nightly[:400] and "active" in nightly[:400]
    assert re.search(r'<details class="template">.*?etl:1.*?</details>', nightly, re.S)
    high = text(row(nightly, "queue", "high"))
    assert "3 due" in high and "2 late" in high and "1 scheduled later" in high
    assert 'value="2"' in row(nightly, "queue", "high")  # its limit, in the limit form
    bulk = text(row(nightly, "queue", "bulk"))
    assert "0 due" in bulk and "worker-a" in bulk and "never" not in bulk
    assert "worker-a" in nightly and "ago" in text(nightly[nightly.index("Workers and agents"):])
    k8s = page[page.index('data-pool="k8s"'):page.index('data-pool="nightly"')]
    assert "paused" in k8s and "Resume" in k8s and "No queues in this pool yet" in k8s


def test_pool_and_queue_forms_change_the_store(ui: UI) -> None:
    d = ui.state.deployments
    assert ui.said("/work-pools/new", {"name": "gpu", "type": "kubernetes",
                                       "concurrency_limit": "3"})[0] == "Work pool gpu created."
    pool = d.read_work_pool("gpu")
    assert (pool["type"], pool["concurrency_limit"], pool["is_paused"]) == ("kubernetes", 3, False)
    notice, _ = ui.said("/work-pools/queues/new", {"name": "fast", "pool": "gpu",
                                                   "priority": "2", "concurrency_limit": ""})
    assert notice == "Work queue gpu/fast created."
    queue = d.read_work_queue("fast", "gpu")
    assert (queue["priority"], queue["concurrency_limit"], queue["is_paused"]) == (2, None, False)

    assert ui.said("/work-pools/pause", {"pool": "gpu", "queue": "fast", "paused": "true"})[0] \
        == "Work queue gpu/fast paused."
    assert d.read_work_queue("fast", "gpu")["is_paused"] is True
    assert "Resume" in row(ui.get("/work-pools"), "queue", "fast")
    ui.said("/work-pools/pause", {"pool": "gpu", "queue": "fast", "paused": "false"})
    assert d.read_work_queue("fast", "gpu")["is_paused"] is False
    ui.said("/work-pools/pause", {"pool": "gpu", "paused": "true"})
    assert d.read_work_pool("gpu")["is_paused"] is True

    notice, _ = ui.said("/work-pools/limit", {"pool": "gpu", "queue": "fast",
                                              "concurrency_limit": "5", "action": "set"})
    assert notice == "Work queue gpu/fast now has a concurrency limit of 5."
    assert d.read_work_queue("fast", "gpu")["concurrency_limit"] == 5
    ui.said("/work-pools/limit", {"pool": "gpu", "concurrency_limit": "3", "action": "clear"})
    assert d.read_work_pool("gpu")["concurrency_limit"] is None

    ui.said("/work-pools/delete", {"pool": "gpu", "queue": "fast"})
    assert d.read_work_queues("gpu") == []
    ui.said("/work-pools/delete", {"pool": "gpu"})
    assert d.read_work_pools() == []


@pytest.mark.parametrize(("path", "form", "problem"), [
    ("/work-pools/new", {"name": "p2", "type": "process", "concurrency_limit": "-1"},
     "The pool's concurrency limit must be between 0 and 1,000,000; -1 is not."),
    ("/work-pools/new", {"name": "p2", "type": "ecs"},
     "Unknown pool type 'ecs': choose process, docker, kubernetes."),
    ("/work-pools/new", {"name": "  ", "type": "process"}, "The pool's name is empty"),
    ("/work-pools/new", {"name": "p", "type": "process"}, "A work pool named 'p' already exists."),
    ("/work-pools/queues/new", {"name": "q2", "pool": "nope"}, "No work pool named 'nope'."),
    ("/work-pools/queues/new", {"name": "q", "pool": "p"}, "already exists in pool 'p'"),
    ("/work-pools/queues/new", {"name": "q2", "pool": "p", "priority": "0"},
     "The queue's priority must be between 1 and 1,000,000; 0 is not."),
    ("/work-pools/limit", {"pool": "p", "concurrency_limit": "two", "action": "set"},
     "The concurrency limit must be a whole number, not 'two'."),
    ("/work-pools/limit", {"pool": "p", "queue": "q", "concurrency_limit": "", "action": "set"},
     "The concurrency limit is empty"),
    ("/work-pools/pause", {"pool": "p", "queue": "nope", "paused": "true"}, "nope"),
])
def test_bad_pool_and_queue_input_is_refused_and_changes_nothing(
        ui: UI, path: str, form: dict[str, str], problem: str) -> None:
    d = ui.state.deployments
    d.create_work_pool("p", "process", concurrency_limit=2)
    d.create_work_queue("q", "p", concurrency_limit=1)
    before = (d.read_work_pools(), d.read_work_queues())
    notice, said = ui.said(path, form)
    assert problem in said and not notice
    assert (d.read_work_pools(), d.read_work_queues()) == before


# -- concurrency limits ----------------------------------------------------------------------------
def _running_task(ui: UI, flow_run: str, name: str, tags: list[str]) -> str:
    core = ui.state.core
    task = core.create_task_run(flow_run_id=flow_run, task_key="load", name=name, dynamic_key=name,
                                state=states.Pending(), run_id=None, tags=tags, task_inputs={})
    assert core.set_state("task_run", task, states.Running())[0].verdict.value == "ACCEPT"
    return task


def test_concurrency_page_shows_slots_and_the_runs_holding_them(ui: UI) -> None:
    core = ui.state.core
    core.set_concurrency_limit("database", 2)
    core.set_concurrency_limit("api", 10)
    run = core.create_flow_run(flow_id=None, flow_name="etl", name="brave-otter",
                               state=states.Running(), run_id=None, parameters={}, tags=[],
                               parent_task_run_id=None, version=None)
    _running_task(ui, run, "load-0", ["database"])
    _running_task(ui, run, "load-1", ["database"])

    page = ui.get("/concurrency")
    db_row = row(page, "tag", "database")
    assert "2 / 2" in text(db_row) and 'class="meter full"' in db_row
    assert db_row.count(f'href="/runs/{run}"') == 2
    assert "load-0" in text(db_row) and "load-1" in text(db_row)
    api_row = row(page, "tag", "api")
    assert "0 / 10" in text(api_row) and "free" in text(api_row)


def test_concurrency_forms_set_reset_and_delete_limits(ui: UI) -> None:
    core = ui.state.core
    notice, _ = ui.said("/concurrency", {"tag": "database", "concurrency_limit": "3"})
    assert notice == "Tag database: at most 3 task runs Running at once."
    assert core.read_concurrency_limit("database")["concurrency_limit"] == 3
    ui.said("/concurrency", {"tag": "database", "concurrency_limit": "1"})
    assert core.read_concurrency_limit("database")["concurrency_limit"] == 1

    run = core.create_flow_run(flow_id=None, flow_name="etl", name="r", state=states.Running(),
                               run_id=None, parameters={}, tags=[], parent_task_run_id=None,
                               version=None)
    task = _running_task(ui, run, "t", ["database"])
    assert core.read_concurrency_limit("database")["active_slots"] == [task]
    assert ui.said("/concurrency/reset", {"tag": "database"})[0] == \
        "Every slot of tag database was freed."
    assert core.read_concurrency_limit("database")["active_slots"] == []
    ui.said("/concurrency/delete", {"tag": "database"})
    assert core.read_concurrency_limits() == []
    _, problem = ui.said("/concurrency/delete", {"tag": "database"})
    assert problem == "No concurrency limit for tag 'database'."


@pytest.mark.parametrize(("form", "problem"), [
    ({"tag": "db", "concurrency_limit": "-1"}, "The limit must be between 0 and 1,000,000; -1 is not."),
    ({"tag": "db", "concurrency_limit": "1.5"}, "The limit must be a whole number, not '1.5'."),
    ({"tag": "", "concurrency_limit": "1"}, "The tag is empty: give it a value."),
    ({"tag": "x" * 256, "concurrency_limit": "1"}, "at most 255 are allowed"),
])
def test_bad_concurrency_input_is_refused_and_changes_nothing(
        ui: UI, form: dict[str, str], problem: str) -> None:
    ui.state.core.set_concurrency_limit("db", 4)
    notice, said = ui.said("/concurrency", form)
    assert problem in said and not notice
    assert [(r["tag"], r["concurrency_limit"]) for r in ui.state.core.read_concurrency_limits()] \
        == [("db", 4)]


# -- notification rules ----------------------------------------------------------------------------
def test_notifications_page_shows_rules_and_recent_deliveries(ui: UI, receiver: Receiver) -> None:
    good = CustomWebhookNotificationBlock(name="ops", url=receiver.url, json_data={"t": "{{body}}"}).save("ops")
    dead = CustomWebhookNotificationBlock(name="dead", url=closed_port_url()).save("dead-hook")
    d = ui.state.deployments
    dep = d.apply_deployment({"flow_name": "etl", "name": "daily"})
    n = Notifications(ui.state.db, ui.state.blocks, max_attempts=1,
                      build_block=block_from_document)
    n.create_policy(state_names=["Scheduled"], block_document_id=good, name="to ops")
    n.create_policy(state_names=["Scheduled"], block_document_id=dead, name="to nowhere",
                    tags=["prod"], deployment_ids=[dep["id"]], is_active=True)
    n.create_policy(state_names=["Failed", "Crashed"], block_document_id=good, is_active=False)
    run = d.create_flow_run_from_deployment(dep["id"], tags=["prod"])
    assert n.scan() == 2
    assert n.send_due("http://ui.test") == {"sent": 1, "retrying": 0, "failed": 1}
    assert receiver.posts == 1

    page = ui.get("/notifications")
    rules = {p["name"]: p["id"] for p in n.read_policies()}
    ops = text(row(page, "rule", rules["to ops"]))
    assert "Scheduled" in ops and "any run" in ops and "ops" in ops and "on" in ops
    assert f'href="/blocks/{good}"' in row(page, "rule", rules["to ops"])
    nowhere = text(row(page, "rule", rules["to nowhere"]))
    assert "tagged prod" in nowhere and "of etl/daily" in nowhere
    off = row(page, "rule", rules[None])
    assert "Turn on" in off and "Failed" in text(off) and "Crashed" in text(off)

    deliveries = {x["status"]: x for x in n.read_deliveries()}
    sent = text(row(page, "delivery", deliveries["sent"]["id"]))
    assert sent.startswith("sent") and "to ops" in sent and "sent" in sent
    failed_row = row(page, "delivery", deliveries["failed"]["id"])
    assert f'href="/runs/{run["id"]}"' in failed_row
    assert "failed" in text(failed_row) and "could not reach" in text(failed_row)
    assert "No notification block is saved yet" not in page


def test_notifications_page_without_a_block_says_how_to_make_one(ui: UI) -> None:
    page = ui.get("/notifications")
    assert "No notification block is saved yet" in page and 'href="/blocks/catalog"' in page
    assert "No rules yet" in page and "Nothing sent yet" in page


def test_rule_forms_create_switch_and_delete_rules(ui: UI) -> None:
    block = CustomWebhookNotificationBlock(name="hook", url=closed_port_url()).save("hook")
    Secret(value="s3cr3t-value").save("not-a-notifier")
    dep = ui.state.deployments.apply_deployment({"flow_name": "etl", "name": "daily"})
    form_page = ui.get("/notifications")
    assert f'<option value="{block}"' in form_page and "not-a-notifier" not in form_page
    assert f'<option value="{dep["id"]}"' in form_page and "etl/daily" in form_page

    r = ui.post("/notifications", {"state": ["Failed", "Crashed"], "block": block,
                                   "tags": "prod, billing ,", "deployment": [dep["id"]],
                                   "name": "prod failures",
                                   "template": "{flow_name} is {state_name}: {flow_run_url}"})
    assert r.status_code == 200 and "Notification rule created" in _line(r.text, "notice ok")
    n = Notifications(ui.state.db, ui.state.blocks, build_block=block_from_document)
    (rule,) = n.read_policies()
    assert (rule["state_names"], rule["tags"], rule["deployment_ids"], rule["name"],
            rule["block_document_id"], rule["is_active"]) == (
        ["Failed", "Crashed"], ["prod", "billing"], [dep["id"]], "prod failures", block, True)
    assert rule["message_template"] == "{flow_name} is {state_name}: {flow_run_url}"

    assert ui.said(f"/notifications/{rule['id']}/disable", {})[0] == "Rule turned off."
    assert n.read_policy(rule["id"])["is_active"] is False
    ui.said(f"/notifications/{rule['id']}/enable", {})
    assert n.read_policy(rule["id"])["is_active"] is True
    ui.said(f"/notifications/{rule['id']}/delete", {})
    assert n.read_policies() == []
    _, problem = ui.said(f"/notifications/{rule['id']}/delete", {})
    assert problem == f"No notification policy with id {rule['id']}."


@pytest.mark.parametrize(("form", "problem"), [
    ({"state": [], "block": "BLOCK"}, "Choose at least one state"),
    ({"state": ["Failed"], "block": ""}, "Choose the notification block"),
    ({"state": ["Failed"], "block": "01a21748-18b3-72d6-bd6c-61bba67ae7f4"},
     "No block with id 01a21748-18b3-72d6-bd6c-61bba67ae7f4"),
    ({"state": ["Failed"], "block": "SECRET"}, "cannot send notifications"),
    ({"state": ["Faild"], "block": "BLOCK"}, "Unknown state name(s) in state_names: 'Faild'"),
    ({"state": ["Failed"], "block": "BLOCK", "template": "{flow} failed"},
     "message_template uses {flow}, which is not a placeholder"),
])
def test_bad_rule_input_is_refused_keeps_the_form_and_stores_nothing(
        ui: UI, form: dict[str, Any], problem: str) -> None:
    block = CustomWebhookNotificationBlock(name="hook", url=closed_port_url()).save("hook")
    secret = Secret(value="s3cr3t-value").save("a-secret")
    form = {**form, "block": {"BLOCK": block, "SECRET": secret}.get(form["block"], form["block"]),
            "tags": "kept-tag", "name": "kept name"}
    r = ui.post("/notifications", form)
    assert r.status_code == 422
    assert problem in _line(r.text, "notice bad")
    assert 'value="kept-tag"' in r.text and 'value="kept name"' in r.text
    assert Notifications(ui.state.db, ui.state.blocks, build_block=block_from_document).read_policies() == []
