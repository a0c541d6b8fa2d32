"""Flow-run notifications in the store (legato.core.notifications): policies and their checks,
the scan of flow-run states into deliveries, sending through real notification blocks to a real
HTTP receiver on 127.0.0.1, retries and failures; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import legato
from legato import flow
from legato.blocks.core import block_from_document
from legato.blocks.notifications import CustomWebhookNotificationBlock
from legato.blocks.system import Secret
from legato.client import get_client
from legato.core.blocks import BlockCore
from legato.core.notifications import STATE_NAMES, Notifications
from legato.core.run_control import Deployments
from legato.core.server_core import ServerCore
from legato.exceptions import BlockError, ObjectNotFound, ParameterError
from legato.runtime import flow_run as current_flow_run
from legato.settings import get_settings
from legato.states import Failed
from legato.store.database import get_database
from legato.store.encryption import get_cipher

UI = "http://ui.example:4200"
TOKEN = "tok-SECRET-4411"


class Receiver:
    """A real HTTP server on a free loopback port recording each request's JSON body, answering
    ``status``."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                size = int(self.headers.get("Content-Length") or 0)
                receiver.paths.append(self.path)
                receiver.bodies.append(json.loads(self.rfile.read(size) or b"{}"))
                answer = b"ok" if receiver.status < 400 else b"receiver is down"
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def notes(history: str) -> Notifications:
    s = get_settings()
    db = get_database(s.resolved_database_url, s.database_busy_timeout)
    db.ensure_ready()
    return Notifications(db, BlockCore(db, get_cipher(s)), retry_delay=10.0,
                         build_block=block_from_document)


def hook(receiver: Receiver, name: str = "hook") -> str:
    """A saved custom web hook posting {subject, text} to the receiver (a secret token in its
    path); its document id."""
    return CustomWebhookNotificationBlock(
        name=name, url=receiver.base + "/hooks/{{token}}",
        json_data={"subject": "{{subject}}", "text": "{{body}}"},
        secrets={"token": TOKEN}).save(name)


@flow(name="nightly-load")
def nightly_load(fail: bool = True) -> str:
    ids.append(current_flow_run.id)
    if fail:
        raise ValueError("disk full on /data")
    return "ok"


ids: list[str] = []


def failed_run(**options: Any) -> str:
    """Run nightly-load embedded into the test's history so that it fails; its run id."""
    with pytest.raises(ValueError, match="disk full"):
        nightly_load()
    return ids[-1]


def run_name(run_id: str) -> str:
    return get_client().read_flow_run(run_id).name


def test_bad_policies_are_refused_and_nothing_is_stored(notes: Notifications,
                                                        receiver: Receiver) -> None:
    block = hook(receiver)
    with pytest.raises(ParameterError, match="state_names is empty") as err:
        notes.create_policy(state_names=[], block_document_id=block)
    assert "Failed" in str(err.value)
    with pytest.raises(ParameterError, match="Unknown state name.*'Faild'") as err:
        notes.create_policy(state_names=["Failed", "Faild"], block_document_id=block)
    for name in ("Scheduled", "Late", "Pending", "Running", "Completed", "Failed", "Crashed",
                 "Cancelled", "Cancelling", "Paused", "Retrying", "AwaitingRetry"):
        assert name in STATE_NAMES and name in str(err.value)
    with pytest.raises(ObjectNotFound, match="No block with id 0190a1b2-.*save the notif"):
        notes.create_policy(state_names=["Failed"],
                            block_document_id="0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
    secret = Secret(value="not-a-notifier").save("plain-secret")
    with pytest.raises(BlockError, match="secret/plain-secret cannot send notifications"):
        notes.create_policy(state_names=["Failed"], block_document_id=secret)
    with pytest.raises(ParameterError, match=r"uses \{flow\}, which is not a placeholder"):
        notes.create_policy(state_names=["Failed"], block_document_id=block,
                            message_template="{flow} failed")
    with pytest.raises(ParameterError, match="not a valid template"):
        notes.create_policy(state_names=["Failed"], block_document_id=block,
                            message_template="{flow_name")
    with pytest.raises(ObjectNotFound, match="No deployment with id"):
        notes.create_policy(state_names=["Failed"], block_document_id=block,
                            deployment_ids=["0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"])
    assert notes.read_policies() == []

    policy = notes.create_policy(state_names=["Failed"], block_document_id=block, name="ops")
    with pytest.raises(ParameterError, match="Unknown state name"):
        notes.update_policy(policy["id"], name="renamed", state_names=["Nope"])
    with pytest.raises(ParameterError, match="Unknown field.*colour"):
        notes.update_policy(policy["id"], colour="red")
    assert notes.read_policy(policy["id"]) == policy  # unchanged
    with pytest.raises(ObjectNotFound, match="No notification policy"):
        notes.read_policy("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")


def test_a_failed_run_notifies_once_per_matching_policy(notes: Notifications,
                                                        receiver: Receiver) -> None:
    block = hook(receiver)
    failed = notes.create_policy(state_names=["Failed"], block_document_id=block, name="a")
    both = notes.create_policy(state_names=["Failed", "Crashed"], block_document_id=block)
    done = notes.create_policy(state_names=["Completed"], block_document_id=block)
    assert failed["block_document_name"] == "hook"
    assert failed["block_type_slug"] == "custom-webhook"
    run_id = failed_run()

    assert notes.process(UI) == {"queued": 2, "sent": 2, "retrying": 0, "failed": 0}
    assert notes.process(UI)["queued"] == 0  # scanned again: nothing new, nothing resent
    assert len(receiver.bodies) == 2
    assert receiver.paths == [f"/hooks/{TOKEN}"] * 2
    name = run_name(run_id)
    for body in receiver.bodies:
        assert body["subject"] == f"Legato: flow run nightly-load/{name} is Failed"
        text = body["text"]
        assert f"nightly-load/{name} entered state Failed" in text
        assert "disk full on /data" in text
        assert f"{UI}/runs/{run_id}" in text
    deliveries = notes.read_deliveries()
    assert {d["policy_id"] for d in deliveries} == {failed["id"], both["id"]}
    for d in deliveries:
        assert (d["status"], d["attempts"], d["state_name"]) == ("sent", 1, "Failed")
        assert d["flow_run_id"] == run_id and d["flow_run_name"] == name
        assert d["flow_name"] == "nightly-load" and d["sent_at"] is not None
    assert notes.read_deliveries(policy_id=done["id"]) == []


def test_only_states_after_the_policy_was_made_notify(notes: Notifications,
                                                      receiver: Receiver) -> None:
    failed_run()
    policy = notes.create_policy(state_names=["Failed"], block_document_id=hook(receiver))
    assert notes.process(UI)["queued"] == 0
    assert receiver.bodies == []
    later = failed_run()
    assert notes.process(UI)["sent"] == 1
    assert [d["flow_run_id"] for d in notes.read_deliveries(policy["id"])] == [later]
    # switched off, a failure passes unannounced; switched on again, only what follows counts
    notes.update_policy(policy["id"], is_active=False)
    failed_run()
    assert notes.process(UI)["queued"] == 0
    notes.update_policy(policy["id"], is_active=True)
    assert notes.process(UI)["queued"] == 0
    assert len(receiver.bodies) == 1


def test_tag_and_deployment_filters(notes: Notifications, receiver: Receiver) -> None:
    block = hook(receiver)
    deps = Deployments(notes.db)
    dep = deps.apply_deployment({"flow_name": "nightly-load", "name": "prod"})
    other = deps.apply_deployment({"flow_name": "nightly-load", "name": "dev"})
    by_tag = notes.create_policy(state_names=["Failed"], block_document_id=block,
                                 tags=["prod", "critical"])
    by_dep = notes.create_policy(state_names=["Failed"], block_document_id=block,
                                 deployment_ids=[dep["id"]])
    failed_run()  # no tags, no deployment
    with legato.tags("critical"):
        tagged = failed_run()
    core = ServerCore(notes.db)
    runs = {}
    for d in (dep, other):
        run = deps.create_flow_run_from_deployment(d["id"])
        core.set_state("flow_run", run["id"], Failed(message="worker gone"), force=True)
        runs[d["name"]] = run["id"]

    assert notes.process(UI)["sent"] == 2
    assert [d["flow_run_id"] for d in notes.read_deliveries(by_tag["id"])] == [tagged]
    assert [d["flow_run_id"] for d in notes.read_deliveries(by_dep["id"])] == [runs["prod"]]
    assert any("worker gone" in b["text"] for b in receiver.bodies)


def test_a_refused_notification_is_retried_with_backoff_then_sent(
        notes: Notifications, receiver: Receiver) -> None:
    policy = notes.create_policy(
        state_names=["Failed"], block_document_id=hook(receiver),
        message_template="{flow_name} {{run}} {flow_run_name}: {state_name} - {state_message} "
                         "<{flow_run_url}> ({flow_run_id})")
    run_id = failed_run()
    receiver.status = 500
    t0 = dt.datetime.now(dt.timezone.utc)
    assert notes.process(UI, now=t0) == {"queued": 1, "sent": 0, "retrying": 1, "failed": 0}
    (d,) = notes.read_deliveries(policy["id"])
    assert (d["status"], d["attempts"]) == ("pending", 1)
    assert "refused the notification with HTTP 500" in d["last_error"]
    assert "receiver is down" in d["last_error"]
    assert TOKEN not in d["last_error"]
    assert d["next_attempt"] == t0 + dt.timedelta(seconds=10)
    assert notes.process(UI, now=t0 + dt.timedelta(seconds=5))["retrying"] == 0  # not yet due
    assert len(receiver.bodies) == 1

    receiver.status = 200
    assert notes.process(UI, now=t0 + dt.timedelta(seconds=10))["sent"] == 1
    (d,) = notes.read_deliveries(policy["id"])
    assert (d["status"], d["attempts"], d["next_attempt"]) == ("sent", 2, None)
    assert d["sent_at"] == t0 + dt.timedelta(seconds=10)
    assert notes.process(UI, now=t0 + dt.timedelta(hours=1))["sent"] == 0
    assert len(receiver.bodies) == 2
    name = run_name(run_id)
    assert receiver.bodies[-1]["text"] == (
        f"nightly-load {{run}} {name}: Failed - Flow run encountered an exception ValueError: "
        f"disk full on /data "
        f"<{UI}/runs/{run_id}> ({run_id})")


def test_after_the_last_attempt_a_delivery_is_failed_and_visible(
        notes: Notifications, receiver: Receiver) -> None:
    notes.max_attempts = 3
    policy = notes.create_policy(state_names=["Failed"], block_document_id=hook(receiver))
    failed_run()
    receiver.status = 503
    t = dt.datetime.now(dt.timezone.utc)
    outcomes = []
    for _ in range(3):
        outcomes.append(notes.process(UI, now=t))
        t += dt.timedelta(hours=1)  # past any backoff
    assert [o["retrying"] for o in outcomes] == [1, 1, 0] and outcomes[-1]["failed"] == 1
    (d,) = notes.read_deliveries(status="failed")
    assert d["policy_id"] == policy["id"]
    assert (d["attempts"], d["next_attempt"], d["sent_at"]) == (3, None, None)
    assert "HTTP 503" in d["last_error"] and TOKEN not in d["last_error"]
    receiver.status = 200
    assert notes.process(UI, now=t)["sent"] == 0  # failed is final
    assert len(receiver.bodies) == 3
    assert notes.read_deliveries(status="pending") == []


def test_deleting_a_policy_deletes_its_deliveries(notes: Notifications,
                                                  receiver: Receiver) -> None:
    policy = notes.create_policy(state_names=["Failed"], block_document_id=hook(receiver))
    failed_run()
    notes.process(UI)
    assert len(notes.read_deliveries()) == 1
    notes.delete_policy(policy["id"])
    assert notes.read_policies() == [] and notes.read_deliveries() == []
    with pytest.raises(ObjectNotFound):
        notes.delete_policy(policy["id"])
