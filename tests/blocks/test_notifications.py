"""Notification blocks against real receivers on 127.0.0.1: an HTTP server that records every
request (Slack, Teams, custom web hooks, apprise's json://) and aiosmtpd SMTP servers (plain,
STARTTLS and TLS, with a login) for email."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from legato.blocks.core import Block
from legato.blocks.notifications import (
    AppriseNotification,
    CustomWebhookNotificationBlock,
    EmailNotification,
    EmailServerCredentials,
    MicrosoftTeamsWebhook,
    SlackWebhook,
)
from legato.exceptions import BlockError

TOKEN = "T0SECRET/B0SECRET/xoxSECRETtoken"


# -- an HTTP receiver ------------------------------------------------------------------------------
class Receiver:
    """A real HTTP server on a free loopback port that records each request and answers with
    ``status`` and ``answer`` (or holds the answer until ``release`` is set)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.answer = b"ok"
        self.hold = False
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                receiver.requests.append({
                    "method": self.command, "path": parts.path, "query": parse_qs(parts.query),
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": self.rfile.read(size) if size else b""})
                if receiver.hold:
                    receiver.release.wait(30)
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(receiver.answer)))
                self.end_headers()
                self.wfile.write(receiver.answer)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _record

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def only(self) -> dict[str, Any]:
        assert len(self.requests) == 1, self.requests
        return self.requests[0]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- Slack -----------------------------------------------------------------------------------------
def test_slack_posts_the_webhook_json(receiver: Receiver) -> None:
    block = SlackWebhook(url=f"{receiver.base}/services/{TOKEN}")
    block.notify("The nightly load finished: 1,050 rows.", subject="ETL")
    block.notify("No subject")
    first, second = receiver.requests
    assert first["method"] == "POST" and first["path"] == f"/services/{TOKEN}"
    assert first["headers"]["content-type"] == "application/json"
    assert json.loads(first["body"]) == {"text": "*ETL*\nThe nightly load finished: 1,050 rows."}
    assert json.loads(second["body"]) == {"text": "No subject"}


def test_slack_refusal_names_the_host_not_the_url(receiver: Receiver) -> None:
    receiver.status, receiver.answer = 500, f"boom for {TOKEN}".encode()
    block = SlackWebhook(url=f"{receiver.base}/services/{TOKEN}")
    with pytest.raises(BlockError) as info:
        block.notify("hi")
    message = str(info.value)
    assert message.startswith("SlackWebhook: ")
    assert f"127.0.0.1:{receiver.port} refused the notification with HTTP 500" in message
    assert "SECRET" not in message


def test_slack_unreachable() -> None:
    port = closed_port()
    block = SlackWebhook(url=f"http://127.0.0.1:{port}/services/{TOKEN}")
    with pytest.raises(BlockError, match=f"could not reach 127.0.0.1:{port}") as info:
        block.notify("hi")
    assert "SECRET" not in str(info.value)


def test_webhook_url_checked_without_echoing_it() -> None:
    with pytest.raises(ValidationError, match="must be an http") as info:
        SlackWebhook(url=f"ftp://example.com/{TOKEN}")
    assert "SECRET" not in str(info.value)
    block = SlackWebhook(url=f"https://hooks.slack.com/services/{TOKEN}")
    assert "SECRET" not in repr(block) and "SECRET" not in json.dumps(block.model_dump(mode="json"))
    assert SlackWebhook.get_block_schema()["secret_fields"] == ["url"]
    assert SlackWebhook.get_block_capabilities() == ["notify"]


# -- Microsoft Teams -------------------------------------------------------------------------------
def test_teams_posts_an_adaptive_card(receiver: Receiver) -> None:
    MicrosoftTeamsWebhook(url=f"{receiver.base}/workflows/{TOKEN}").notify(
        "Flow 'etl' failed.", subject="Legato alert")
    request = receiver.only()
    assert request["headers"]["content-type"] == "application/json"
    payload = json.loads(request["body"])
    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert [(b["type"], b["text"]) for b in card["body"]] == [
        ("TextBlock", "Legato alert"), ("TextBlock", "Flow 'etl' failed.")]
    assert card["body"][0]["weight"] == "Bolder"


def test_teams_refusal_quotes_the_answer(receiver: Receiver) -> None:
    receiver.status, receiver.answer = 400, b"Bad payload received by generic incoming webhook."
    with pytest.raises(BlockError, match="HTTP 400 Bad Request: Bad payload received") as info:
        MicrosoftTeamsWebhook(url=f"{receiver.base}/workflows/{TOKEN}").notify("hi")
    assert str(info.value).startswith("MicrosoftTeamsWebhook: ") and "SECRET" not in str(info.value)


# -- custom web hooks ------------------------------------------------------------------------------
def custom(receiver: Receiver, **fields: Any) -> CustomWebhookNotificationBlock:
    defaults: dict[str, Any] = {
        "name": "ops-hook",
        "url": receiver.base + "/hooks/{{token}}",
        "secrets": {"token": "tok-SECRET-1", "cookie": "cookie-SECRET-2"},
    }
    return CustomWebhookNotificationBlock(**{**defaults, **fields})


def test_custom_webhook_fills_every_template(receiver: Receiver) -> None:
    block = custom(
        receiver,
        params={"source": "{{name}}", "channel": "alerts"},
        json_data={"title": "{{subject}}", "text": "{{ body }}", "from": "Legato {{name}}",
                   "nested": [{"auth": "{{token}}"}], "count": 3},
        headers={"Authorization": "Bearer {{token}}", "X-Subject": "{{subject}}"},
        cookies={"session": "{{cookie}}"},
    )
    block.notify("1,050 rows loaded", subject="ETL done")
    request = receiver.only()
    assert request["method"] == "POST" and request["path"] == "/hooks/tok-SECRET-1"
    assert request["query"] == {"source": ["ops-hook"], "channel": ["alerts"]}
    assert request["headers"]["authorization"] == "Bearer tok-SECRET-1"
    assert request["headers"]["x-subject"] == "ETL done"
    assert request["headers"]["cookie"] == "session=cookie-SECRET-2"
    assert json.loads(request["body"]) == {
        "title": "ETL done", "text": "1,050 rows loaded", "from": "Legato ops-hook",
        "nested": [{"auth": "tok-SECRET-1"}], "count": 3}


def test_custom_webhook_form_body_and_other_methods(receiver: Receiver) -> None:
    custom(receiver, form_data={"msg": "{{subject}}: {{body}}"}, method="put").notify(
        "body text", subject="subj")
    custom(receiver, method="GET", params={"q": "{{body}}"}).notify("ping")
    put, get = receiver.requests
    assert put["method"] == "PUT"
    assert put["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(put["body"].decode()) == {"msg": ["subj: body text"]}
    assert get["method"] == "GET" and get["query"] == {"q": ["ping"]} and get["body"] == b""


def test_custom_webhook_unknown_placeholder_is_refused_at_construction(
        receiver: Receiver) -> None:
    with pytest.raises(ValidationError, match=r"\{\{tokn\}\}.*keys: \['cookie', 'token'\]") as info:
        custom(receiver, headers={"Authorization": "Bearer {{tokn}}"})
    assert "SECRET" not in str(info.value)
    with pytest.raises(ValidationError, match="json_data or form_data, not both"):
        custom(receiver, json_data={"a": "{{body}}"}, form_data={"b": "{{body}}"})
    with pytest.raises(ValidationError, match="must be an http"):
        custom(receiver, url="mailto:someone@example.com")


def test_custom_webhook_refusal_hides_the_secrets(receiver: Receiver) -> None:
    receiver.status, receiver.answer = 503, b"token tok-SECRET-1 is over quota"
    with pytest.raises(BlockError) as info:
        custom(receiver, json_data={"text": "{{body}}"}).notify("hi")
    message = str(info.value)
    assert message.startswith("CustomWebhookNotificationBlock: ")
    assert f"127.0.0.1:{receiver.port} refused the notification with HTTP 503" in message
    assert "over quota" in message and "SECRET" not in message


def test_custom_webhook_timeout(receiver: Receiver) -> None:
    receiver.hold = True  # answers only once released
    with pytest.raises(BlockError, match=f"127.0.0.1:{receiver.port} did not answer within 0.3 s"):
        custom(receiver, timeout=0.3).notify("hi")
    receiver.release.set()


# -- apprise -----------------------------------------------------------------------------------------
def test_apprise_json_reaches_the_receiver(receiver: Receiver) -> None:
    url = f"json://bot:pw-SECRET@127.0.0.1:{receiver.port}/apprise/in"
    AppriseNotification(url=url, notify_type="failure").notify("Flow failed", subject="Alert")
    request = receiver.only()
    assert request["method"] == "POST" and request["path"] == "/apprise/in"
    assert request["headers"]["content-type"] == "application/json"
    assert request["headers"]["authorization"].startswith("Basic ")
    payload = json.loads(request["body"])
    assert (payload["title"], payload["message"], payload["type"]) == (
        "Alert", "Flow failed", "failure")


def test_apprise_refusal_and_unreachable(receiver: Receiver) -> None:
    receiver.status = 500
    url = f"json://bot:pw-SECRET@127.0.0.1:{receiver.port}/apprise/in-SECRET"
    with pytest.raises(BlockError) as info:
        AppriseNotification(url=url).notify("hi")
    message = str(info.value)
    assert f"the JSON service at 127.0.0.1:{receiver.port} did not take the notification" in message
    assert "500" in message and "SECRET" not in message
    port = closed_port()
    with pytest.raises(BlockError, match="did not take the notification") as info:
        AppriseNotification(url=f"json://127.0.0.1:{port}/x-SECRET").notify("hi")
    assert "SECRET" not in str(info.value)


def test_apprise_unknown_url_is_not_echoed() -> None:
    with pytest.raises(BlockError, match="scheme 'nosuchservice'.*not one the installed apprise") as info:
        AppriseNotification(url="nosuchservice://user:pw-SECRET@host/path").notify("hi")
    assert "SECRET" not in str(info.value)


# -- email ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "legato test SMTP")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class Mailbox:
    """An aiosmtpd handler keeping every message (and refusing recipients named nobody@)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802
                          rcpt_options: Any) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append({
            "mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
            "message": message_from_bytes(envelope.content, policy=policy.default),
            "login": session.auth_data,
            "tls": server.transport.get_extra_info("ssl_object") is not None})
        return "250 Message accepted"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                  auth_data: Any) -> Any:
    from aiosmtpd.smtp import AuthResult

    ok = (auth_data.login, auth_data.password) == (b"robot", b"pw-SECRET")
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


@pytest.fixture
def smtp(tls_files: tuple[Path, Path]) -> Iterator[Any]:
    """Start aiosmtpd servers on free loopback ports: ``smtp(mode)`` with mode 'plain',
    'starttls' (STARTTLS required before login) or 'ssl' (TLS from the first byte)."""
    import ssl

    from aiosmtpd.controller import Controller

    class FreePortController(Controller):
        def _trigger_server(self) -> None:
            self.port = self.server.sockets[0].getsockname()[1]  # bound to port 0
            super()._trigger_server()

    started: list[Any] = []

    def start(mode: str) -> tuple[Mailbox, int]:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls_files)
        kwargs: dict[str, Any] = {}
        if mode == "starttls":
            kwargs = {"tls_context": context, "require_starttls": True,
                      "authenticator": _authenticate, "auth_require_tls": True}
        elif mode == "ssl":
            # aiosmtpd offers AUTH on implicit TLS only when not told to wait for STARTTLS
            kwargs = {"ssl_context": context, "authenticator": _authenticate,
                      "auth_require_tls": False}
        mailbox = Mailbox()
        controller = FreePortController(mailbox, hostname="127.0.0.1", port=0, **kwargs)
        controller.start()
        started.append(controller)
        return mailbox, controller.port

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture
def trust_test_cert(tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))


def creds(port: int, smtp_type: str, **fields: Any) -> EmailServerCredentials:
    return EmailServerCredentials(smtp_server="127.0.0.1", smtp_port=port, smtp_type=smtp_type,
                                  **fields)


def test_email_over_a_plain_server(smtp: Any) -> None:
    mailbox, port = smtp("plain")
    EmailNotification(
        email_server_credentials=creds(port, "INSECURE"),
        email_to=["ops@example.com", "data@example.com"], email_from="legato@example.com",
        subject_prefix="[legato] ",
    ).notify("1,050 rows loaded.\nAll good.", subject="ETL done")
    (got,) = mailbox.messages
    assert got["mail_from"] == "legato@example.com"
    assert got["rcpt_tos"] == ["ops@example.com", "data@example.com"]
    msg = got["message"]
    assert msg["Subject"] == "[legato] ETL done"
    assert msg["From"] == "legato@example.com"
    assert msg["To"] == "ops@example.com, data@example.com"
    assert msg.get_content().replace("\r\n", "\n") == "1,050 rows loaded.\nAll good.\n"
    assert not got["tls"]


@pytest.mark.usefixtures("trust_test_cert")
@pytest.mark.parametrize("mode,smtp_type", [("starttls", "STARTTLS"), ("ssl", "SSL")])
def test_email_with_tls_and_login(smtp: Any, mode: str, smtp_type: str) -> None:
    mailbox, port = smtp(mode)
    server = creds(port, smtp_type.lower(), username="robot", password="pw-SECRET")
    EmailNotification(email_server_credentials=server, email_to="ops@example.com").notify("hi")
    (got,) = mailbox.messages
    assert got["tls"] and got["login"].login == b"robot"
    assert got["mail_from"] == "robot"  # the username is the sender when email_from is empty
    assert got["message"]["Subject"] == "Legato notification"


@pytest.mark.usefixtures("trust_test_cert")
def test_email_wrong_password(smtp: Any) -> None:
    _, port = smtp("starttls")
    server = creds(port, "STARTTLS", username="robot", password="wrong-SECRET")
    with pytest.raises(BlockError, match=r"refused the login of 'robot' \(535") as info:
        EmailNotification(email_server_credentials=server, email_to=["a@example.com"]).notify("x")
    assert f"127.0.0.1:{port}" in str(info.value) and "SECRET" not in str(info.value)


def test_email_untrusted_certificate_then_verify_off(smtp: Any) -> None:
    mailbox, port = smtp("ssl")
    fields = {"username": "robot", "password": "pw-SECRET"}
    note = EmailNotification(email_server_credentials=creds(port, "SSL", **fields),
                             email_to=["a@example.com"])
    with pytest.raises(BlockError, match="certificate of the SMTP server 127.0.0.1.*could not be "
                                         "verified"):
        note.notify("x")
    EmailNotification(email_server_credentials=creds(port, "SSL", verify=False, **fields),
                      email_to=["a@example.com"]).notify("x")
    assert len(mailbox.messages) == 1


def test_email_ssl_against_a_plain_server_says_which_type(smtp: Any) -> None:
    _, port = smtp("plain")
    with pytest.raises(BlockError, match="needs smtp_type 'STARTTLS'"):
        EmailNotification(email_server_credentials=creds(port, "SSL"),
                          email_to=["a@example.com"], email_from="me@example.com").notify("x")


def test_email_server_unreachable() -> None:
    port = closed_port()
    with pytest.raises(BlockError, match=f"could not connect to the SMTP server 127.0.0.1:{port}"):
        EmailNotification(email_server_credentials=creds(port, "INSECURE"),
                          email_to=["a@example.com"], email_from="me@example.com").notify("x")


def test_email_refused_recipients(smtp: Any) -> None:
    mailbox, port = smtp("plain")
    server = creds(port, "INSECURE")
    with pytest.raises(BlockError, match=r"refused every recipient: nobody@example.com \(550"):
        EmailNotification(email_server_credentials=server, email_to=["nobody@example.com"],
                          email_from="me@example.com").notify("x")
    with pytest.raises(BlockError, match="delivered to some recipients but refused "
                                         "nobody@example.com"):
        EmailNotification(email_server_credentials=server,
                          email_to=["ops@example.com", "nobody@example.com"],
                          email_from="me@example.com").notify("x")
    assert [m["rcpt_tos"] for m in mailbox.messages] == [["ops@example.com"]]


def test_email_fields_are_checked() -> None:
    assert EmailServerCredentials(smtp_type="starttls").port == 587
    assert EmailServerCredentials().port == 465 and EmailServerCredentials().smtp_server == (
        "smtp.gmail.com")
    assert EmailServerCredentials(smtp_type="INSECURE", smtp_port=2525).port == 2525
    server = EmailServerCredentials(username="me@example.com", password="pw-SECRET")
    assert "SECRET" not in repr(server)
    with pytest.raises(ValidationError, match="not email addresses"):
        EmailNotification(email_server_credentials=server, email_to=["ops"])
    with pytest.raises(ValidationError, match="an email needs a sender") as info:
        EmailNotification(email_server_credentials={"password": "pw-SECRET"},
                          email_to=["a@example.com"])
    assert "SECRET" not in str(info.value)
    with pytest.raises(ValidationError) as info:
        EmailServerCredentials(smtp_type="SMOKE", password="pw-SECRET")
    assert "SECRET" not in str(info.value)


# -- saved and loaded ----------------------------------------------------------------------------------
def test_saved_slack_webhook_notifies(receiver: Receiver) -> None:
    SlackWebhook(url=f"{receiver.base}/services/{TOKEN}").save("alerts")
    SlackWebhook.load("alerts").notify("hi")
    Block.load("slack-webhook/alerts").notify("again", subject="S")
    assert [json.loads(r["body"]) for r in receiver.requests] == [
        {"text": "hi"}, {"text": "*S*\nagain"}]


def test_saved_custom_webhook_keeps_its_secrets(receiver: Receiver) -> None:
    custom(receiver, headers={"Authorization": "Bearer {{token}}"}).save("hook")
    CustomWebhookNotificationBlock.load("hook").notify("hi")
    assert receiver.only()["headers"]["authorization"] == "Bearer tok-SECRET-1"


def test_saved_email_notification_with_saved_server(smtp: Any) -> None:
    mailbox, port = smtp("plain")
    server = creds(port, "INSECURE")
    server.save("smtp")
    EmailNotification(email_server_credentials=server, email_to=["ops@example.com"],
                      email_from="me@example.com").save("mail")
    # the server is stored by reference: changing it changes what the notification uses
    mailbox2, port2 = smtp("plain")
    creds(port2, "INSECURE").save("smtp", overwrite=True)
    EmailNotification.load("mail").notify("hi", subject="saved")
    assert mailbox.messages == []
    assert [m["message"]["Subject"] for m in mailbox2.messages] == ["saved"]


def test_saved_apprise_notification(receiver: Receiver) -> None:
    AppriseNotification(url=f"json://127.0.0.1:{receiver.port}/in").save("any")
    AppriseNotification.load("any").notify("hello", subject="t")
    assert json.loads(receiver.only()["body"])["message"] == "hello"


def test_the_private_base_of_the_url_blocks_is_no_block_type() -> None:
    from legato.blocks.builtin import builtin_block_classes

    slugs = {cls.get_block_type_slug() for cls in builtin_block_classes()}
    assert {"slack-webhook", "microsoft-teams-webhook", "apprise-notification"} <= slugs
    assert "secret-url-block" not in slugs  # `legato block type ls` listed it once
