"""Flow-run notifications through the server: the API routes in-process, and end to end with
real processes: `legato server start` subprocesses whose notification service announces failed
runs (one through the HTTP client, one recorded embedded into the same database) to a real HTTP
receiver and a real SMTP server (aiosmtpd), once each, also across a server restart."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx
import pytest

from legato import flow
from legato.blocks.notifications import (
    CustomWebhookNotificationBlock,
    EmailNotification,
    EmailServerCredentials,
)
from legato.blocks.system import Secret
from legato.client.factory import close_clients
from legato.runtime import flow_run as current_flow_run
from legato.settings import build_settings, get_settings

T = TypeVar("T")
UI = "http://ui.legato.test:8080"


def wait_for(check: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Receiver:
    """A real HTTP server on a free loopback port recording each POSTed JSON body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                size = int(self.headers.get("Content-Length") or 0)
                receiver.bodies.append(json.loads(self.rfile.read(size) or b"{}"))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """An aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    """A plain aiosmtpd server on a free loopback port."""
    from aiosmtpd.controller import Controller

    class FreePortController(Controller):
        def _trigger_server(self) -> None:
            self.port = self.server.sockets[0].getsockname()[1]  # bound to port 0
            super()._trigger_server()

    mailbox = Mailbox()
    controller = FreePortController(mailbox, hostname="127.0.0.1", port=0)
    controller.start()
    yield mailbox, controller.port
    controller.stop()


def webhook(receiver: Receiver) -> str:
    return CustomWebhookNotificationBlock(
        name="ops-hook", url=receiver.base + "/hook",
        json_data={"subject": "{{subject}}", "text": "{{body}}"}).save("ops-hook")


def email(port: int) -> str:
    return EmailNotification(
        email_server_credentials=EmailServerCredentials(
            smtp_server="127.0.0.1", smtp_port=port, smtp_type="INSECURE"),
        email_to=["oncall@example.com"], email_from="legato@example.com",
        subject_prefix="[legato] ").save("oncall-mail")


# -- the API, in-process -------------------------------------------------------------------------
def test_policy_routes(api: Any, receiver: Receiver) -> None:
    block = webhook(receiver)
    base = "/flow_run_notification_policies"
    made = api.post(f"{base}/", json={"state_names": ["Failed", "Crashed"], "name": "ops",
                                      "block_document_id": block, "tags": ["prod"]})
    assert made.status_code == 201, made.text
    pol = made.json()
    assert pol["state_names"] == ["Failed", "Crashed"] and pol["tags"] == ["prod"]
    assert pol["is_active"] is True and pol["deployment_ids"] == []
    assert (pol["block_document_name"], pol["block_type_slug"]) == ("ops-hook", "custom-webhook")
    assert api.get(f"{base}/{pol['id']}").json() == pol
    assert [p["id"] for p in api.post(f"{base}/filter").json()] == [pol["id"]]

    changed = api.patch(f"{base}/{pol['id']}", json={"is_active": False, "tags": []})
    assert changed.status_code == 200, changed.text
    assert changed.json()["is_active"] is False and changed.json()["tags"] == []
    assert changed.json()["name"] == "ops"  # fields not sent stay

    assert api.post("/notification_deliveries/filter", json={"policy_id": pol["id"]}).json() == []
    assert api.delete(f"{base}/{pol['id']}").status_code == 204
    gone = api.get(f"{base}/{pol['id']}")
    assert gone.status_code == 404 and "No notification policy" in gone.json()["detail"]
    assert api.post(f"{base}/filter").json() == []


def test_bad_policies_are_answered_with_what_is_wrong(api: Any, receiver: Receiver) -> None:
    block = webhook(receiver)
    base = "/flow_run_notification_policies"
    bad = api.post(f"{base}/", json={"state_names": ["Faild"], "block_document_id": block})
    assert bad.status_code == 422
    assert "Unknown state name(s) in state_names: 'Faild'" in bad.json()["detail"]
    assert "Crashed" in bad.json()["detail"]
    empty = api.post(f"{base}/", json={"state_names": [], "block_document_id": block})
    assert empty.status_code == 422 and "state_names is empty" in empty.json()["detail"]
    missing = api.post(f"{base}/", json={"state_names": ["Failed"],
                                         "block_document_id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"})
    assert missing.status_code == 404 and "No block with id" in missing.json()["detail"]
    secret = Secret(value="x").save("a-secret")
    wrong = api.post(f"{base}/", json={"state_names": ["Failed"], "block_document_id": secret})
    assert wrong.status_code == 422 and "cannot send notifications" in wrong.json()["detail"]
    template = api.post(f"{base}/", json={"state_names": ["Failed"], "block_document_id": block,
                                          "message_template": "{run} failed"})
    assert template.status_code == 422 and "{run}" in template.json()["detail"]
    not_an_id = api.post(f"{base}/", json={"state_names": ["Failed"], "block_document_id": "x"})
    assert not_an_id.status_code == 422 and "block_document_id" in not_an_id.json()["detail"]
    assert api.post(f"{base}/filter").json() == []
    status = api.post("/notification_deliveries/filter", json={"status": "lost"})
    assert status.status_code == 422 and "status" in status.json()["detail"]


# -- end to end: real servers, a real web hook receiver and SMTP server ---------------------------
@flow(name="embedded-etl")
def embedded_etl() -> None:
    ran.append(current_flow_run.id)
    raise RuntimeError("embedded source is empty")


ran: list[str] = []

CLIENT_SCRIPT = textwrap.dedent("""
    from legato import flow
    from legato.runtime import flow_run

    @flow(name="http-etl")
    def http_etl():
        print(flow_run.id, flush=True)
        raise RuntimeError("upstream API answered 502")

    try:
        http_etl()
    except RuntimeError:
        pass
""")


def run_embedded_failure() -> str:
    with pytest.raises(RuntimeError, match="embedded source is empty"):
        embedded_etl()
    return ran[-1]


def run_failure_through(api_url: str) -> str:
    env = {**os.environ, "LEGATO_API_URL": api_url}
    done = subprocess.run([sys.executable, "-c", CLIENT_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[0]


def test_failed_runs_are_announced_once_by_web_hook_and_email_across_restarts(
        history: str, start_server: Any, receiver: Receiver,
        smtp: tuple[Mailbox, int]) -> None:
    mailbox, smtp_port = smtp
    hook_id, mail_id = webhook(receiver), email(smtp_port)
    settings = {"LEGATO_NOTIFICATIONS_INTERVAL_SECONDS": "0.2", "LEGATO_UI_URL": UI}
    server = start_server(**settings)
    for block in (hook_id, mail_id):
        made = httpx.post(f"{server.api_url}/flow_run_notification_policies/",
                          json={"state_names": ["Failed"], "block_document_id": block})
        assert made.status_code == 201, made.text

    remote = run_failure_through(server.api_url)
    local = run_embedded_failure()  # recorded into the database by this process, not the server
    close_clients()

    def runs_announced() -> bool:
        return len(receiver.bodies) >= 2 and len(mailbox.messages) >= 2

    wait_for(runs_announced, 30, "both failed runs announced by web hook and e-mail")
    names = {}
    for run_id, flow_name, message in (
            (remote, "http-etl", "upstream API answered 502"),
            (local, "embedded-etl", "embedded source is empty")):
        run = httpx.get(f"{server.api_url}/flow_runs/{run_id}").json()
        names[run_id] = run["name"]
        hooks = [b for b in receiver.bodies if run_id in b["text"]]
        mails = [m for m in mailbox.messages if run_id in m.get_content()]
        assert len(hooks) == 1 and len(mails) == 1, (receiver.bodies, mailbox.messages)
        for subject, text in ((hooks[0]["subject"], hooks[0]["text"]),
                              (mails[0]["Subject"], mails[0].get_content())):
            assert f"{flow_name}/{run['name']}" in subject and "Failed" in subject
            assert f"{flow_name}/{run['name']} entered state Failed" in text
            assert message in text
            assert f"{UI}/runs/{run_id}" in text
        assert mails[0]["To"] == "oncall@example.com"
        assert mails[0]["Subject"].startswith("[legato] ")
    sent = httpx.post(f"{server.api_url}/notification_deliveries/filter", json={}).json()
    assert sorted((d["flow_run_id"], d["status"], d["attempts"]) for d in sent) == sorted(
        (r, "sent", 1) for r in (remote, local) for _ in range(2))
    assert {d["flow_run_name"] for d in sent} == set(names.values())

    # a new server on the same database: the first runs are not announced again
    server.stop()
    second = start_server(**settings)
    third = run_failure_through(second.api_url)
    wait_for(lambda: any(third in b["text"] for b in receiver.bodies)
             and any(third in m.get_content() for m in mailbox.messages), 30,
             "the new server's service to announce a new failed run")
    policies = httpx.post(f"{second.api_url}/flow_run_notification_policies/filter").json()
    announced = max(p["scanned_until"] for p in policies)
    wait_for(lambda: all(p["scanned_until"] > announced for p in httpx.post(
        f"{second.api_url}/flow_run_notification_policies/filter").json()), 30,
        "more scans by the new server")
    for run_id in (remote, local, third):
        assert sum(run_id in b["text"] for b in receiver.bodies) == 1
        assert sum(run_id in m.get_content() for m in mailbox.messages) == 1
    assert len(receiver.bodies) == 3 and len(mailbox.messages) == 3


def test_the_service_links_to_the_server_when_no_ui_url_is_set() -> None:
    from legato.server.services.notifications import NotificationService, ui_url_for

    s = build_settings({"server_api_host": "127.0.0.1", "server_api_port": 4300})
    assert ui_url_for(s) == "http://127.0.0.1:4300"
    everywhere = build_settings({"server_api_host": "0.0.0.0", "server_api_port": 4300})
    assert ui_url_for(everywhere) == f"http://{socket.getfqdn()}:4300"  # not 0.0.0.0
    assert ui_url_for(build_settings({"ui_url": "https://legato.example.com/"})) == \
        "https://legato.example.com"
    assert NotificationService(get_settings()).interval == 2.0
