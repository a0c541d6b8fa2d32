"""Notification blocks: send a message to Slack, Microsoft Teams, any web hook, any apprise
service, or by email, with ``block.notify(body, subject)``.

Every block raises :class:`~legato.exceptions.BlockError` when the message was not delivered,
naming the block type and the receiving host (never the secret URL, token or password).

```python
from legato.blocks.notifications import SlackWebhook

SlackWebhook(url="https://hooks.slack.com/services/T000/B000/XXXX").save("alerts")
SlackWebhook.load("alerts").notify("The nightly load finished", subject="ETL")
```
"""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import ssl
from email.message import EmailMessage
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator

from ..exceptions import BlockError
from .core import Block
from .fields import SecretDict

__all__ = [
    "AppriseNotification", "CustomWebhookNotificationBlock", "EmailNotification",
    "EmailServerCredentials", "MicrosoftTeamsWebhook", "SlackWebhook",
]

_TIMEOUT = 10.0  # seconds a Slack/Teams web hook may take to answer
_MASK = "****"
_SNIPPET = 200  # characters of a refusing server's answer quoted in the error


# -- helpers ---------------------------------------------------------------------------------------
def _host(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or "(no host)"
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "(unparseable URL)"


def _url_secrets(url: str) -> list[str]:
    """The parts of a URL that may be secret: the whole URL, the password, the path (a web hook's
    token is its path), its longer segments and the query values."""
    out = [url]
    try:
        parts = urlsplit(url)
    except ValueError:
        return out
    out += [parts.password or "", parts.username or "", parts.fragment]
    if len(parts.path) > 1:
        out.append(parts.path)
        out += [seg for seg in parts.path.split("/") if len(seg) >= 6]
    out += [value for _, value in parse_qsl(parts.query) if len(value) >= 4]
    return out


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


def _check_web_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "the web hook URL must be an http(s) URL with a host, like "
            "https://hooks.example.com/services/...")


def _send(block: str, method: str, url: str, secrets: list[str], timeout: float,
          **request: Any) -> httpx.Response:
    """One HTTP request; a failure or a 4xx/5xx answer is a BlockError that names the host."""
    host = _host(url)
    cookies = request.pop("cookies", None)
    try:
        with httpx.Client(timeout=timeout, cookies=cookies) as client:
            response = client.request(method, url, **request)
    except httpx.TimeoutException:
        raise BlockError(
            f"{block}: {host} did not answer within {timeout:g} s, so the notification was "
            "not sent.") from None
    except httpx.HTTPError as exc:
        reason = _scrub(str(exc) or type(exc).__name__, secrets)
        raise BlockError(
            f"{block}: could not reach {host} ({reason}), so the notification was not sent. "
            "Check the URL and that the receiver is up.") from None
    if response.status_code >= 400:
        answer = _scrub(response.text[:_SNIPPET].strip(), secrets)
        raise BlockError(
            f"{block}: {host} refused the notification with HTTP {response.status_code} "
            f"{response.reason_phrase}" + (f": {answer}" if answer else "") + ".")
    return response


class _SecretUrlBlock(Block):
    """A block whose URL is its secret: errors never show the input."""



# -- Slack and Teams ---------------------------------------------------------------------------------
class SlackWebhook(_SecretUrlBlock):
    """Send a message to a Slack channel through an incoming web hook.

    The message is Slack ``mrkdwn`` text; a subject is shown in bold on the first line.
    """

    _block_type_name = "Slack Webhook"
    _documentation_url = "https://api.slack.com/messaging/webhooks"
    _code_example = (
        "from legato.blocks.notifications import SlackWebhook\n\n"
        'slack_webhook_block = SlackWebhook.load("BLOCK_NAME")\n'
        'slack_webhook_block.notify("Hello from Legato!")'
    )

    url: SecretStr = Field(
        description="The Slack incoming web hook URL (https://hooks.slack.com/services/...).",
        title="Webhook URL")

    @field_validator("url")
    @classmethod
    def _web_url(cls, value: SecretStr) -> SecretStr:
        _check_web_url(value.get_secret_value())
        return value

    def notify(self, body: str, subject: str | None = None) -> None:
        """Post ``body`` (and ``subject``, in bold above it) to the channel."""
        url = self.url.get_secret_value()
        text = f"*{subject}*\n{body}" if subject else body
        _send("SlackWebhook", "POST", url, _url_secrets(url), _TIMEOUT, json={"text": text})


class MicrosoftTeamsWebhook(_SecretUrlBlock):
    """Send a message to a Microsoft Teams channel through a web hook (a Teams Workflows
    "post to a channel when a webhook request is received" URL) as an Adaptive Card."""

    _block_type_name = "Microsoft Teams Webhook"
    _documentation_url = (
        "https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/"
        "how-to/add-incoming-webhook")
    _code_example = (
        "from legato.blocks.notifications import MicrosoftTeamsWebhook\n\n"
        'teams_webhook_block = MicrosoftTeamsWebhook.load("BLOCK_NAME")\n'
        'teams_webhook_block.notify("Hello from Legato!")'
    )

    url: SecretStr = Field(description="The Teams web hook URL.", title="Webhook URL")
    wrap: bool = Field(default=True, description="Wrap long lines of the message in the card.")

    @field_validator("url")
    @classmethod
    def _web_url(cls, value: SecretStr) -> SecretStr:
        _check_web_url(value.get_secret_value())
        return value

    def card(self, body: str, subject: str | None = None) -> dict[str, Any]:
        """The JSON posted to Teams: a message holding one Adaptive Card (title, then text)."""
        blocks: list[dict[str, Any]] = []
        if subject:
            blocks.append({"type": "TextBlock", "text": subject, "weight": "Bolder",
                           "size": "Medium", "wrap": True})
        blocks.append({"type": "TextBlock", "text": body, "wrap": self.wrap})
        return {"type": "message", "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
            "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard", "version": "1.4", "body": blocks}}]}

    def notify(self, body: str, subject: str | None = None) -> None:
        """Post ``body`` under the title ``subject`` to the channel."""
        url = self.url.get_secret_value()
        _send("MicrosoftTeamsWebhook", "POST", url, _url_secrets(url), _TIMEOUT,
              json=self.card(body, subject))


# -- any web hook ----------------------------------------------------------------------------------
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_BUILTIN_KEYS = ("subject", "body", "name")
_TEMPLATED = ("url", "params", "json_data", "form_data", "headers", "cookies")


def _placeholders(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return set().union(*(_placeholders(k) | _placeholders(v) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return set().union(*(_placeholders(v) for v in value))
    return set()


def _render(value: Any, values: dict[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole:  # "{{x}}" alone keeps the value's own JSON type
            return values[whole.group(1)]
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), value)
    if isinstance(value, dict):
        return {_render(k, values): _render(v, values) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_render(v, values) for v in value]
    return value


class CustomWebhookNotificationBlock(Block):
    """Send a notification as an HTTP request of your own design to any web hook.

    The URL, params, JSON body, form body, headers and cookies are templates: ``{{subject}}``,
    ``{{body}}`` and ``{{name}}`` are replaced by the message, and ``{{KEY}}`` by the secret
    ``KEY`` of ``secrets``.
    """

    _block_type_name = "Custom Webhook"
    _code_example = (
        "from legato.blocks.notifications import CustomWebhookNotificationBlock\n\n"
        'custom_webhook_block = CustomWebhookNotificationBlock.load("BLOCK_NAME")\n'
        'custom_webhook_block.notify("Hello from Legato!")'
    )


    name: str = Field(description="The name of this web hook; ``{{name}}`` in the templates.")
    url: str = Field(description="The URL to call (a template).", title="Webhook URL")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(
        default="POST", description="The HTTP method.")
    params: dict[str, Any] | None = Field(default=None, description="Query parameters.")
    json_data: dict[str, Any] | None = Field(
        default=None, description="A JSON body, e.g. {\"text\": \"{{subject}}: {{body}}\"}.")
    form_data: dict[str, Any] | None = Field(
        default=None, description="A form body (application/x-www-form-urlencoded).")
    headers: dict[str, str] | None = Field(default=None, description="Request headers.")
    cookies: dict[str, str] | None = Field(default=None, description="Request cookies.")
    timeout: float = Field(default=10, gt=0, description="Seconds to wait for the answer.")
    secrets: SecretDict = Field(
        default_factory=SecretDict,
        description="Secret values for the templates: {{KEY}} is replaced by secret KEY.")

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_templates(self) -> CustomWebhookNotificationBlock:
        if self.json_data is not None and self.form_data is not None:
            raise ValueError("give json_data or form_data, not both: a request has one body")
        known = set(_BUILTIN_KEYS) | set(self.secrets.get_secret_value())
        used = set().union(*(_placeholders(getattr(self, f)) for f in _TEMPLATED))
        unknown = sorted(used - known)
        if unknown:
            raise ValueError(
                f"the templates use {', '.join('{{' + u + '}}' for u in unknown)}, which is "
                f"neither {{{{subject}}}}, {{{{body}}}} nor {{{{name}}}} nor a key of secrets "
                f"(keys: {sorted(self.secrets.get_secret_value()) or 'none'})")
        if not self.url.lstrip().startswith("{{"):  # a URL all from a secret is checked on use
            _check_web_url(_PLACEHOLDER.sub("x", self.url))
        return self

    def request_args(self, body: str, subject: str | None = None) -> dict[str, Any]:
        """The rendered request (method, url and the httpx keyword arguments)."""
        values = {**self.secrets.get_secret_value(), "subject": subject or "", "body": body,
                  "name": self.name}
        args: dict[str, Any] = {"method": self.method, "url": _render(self.url, values)}
        for field, key in (("params", "params"), ("json_data", "json"), ("form_data", "data"),
                           ("headers", "headers"), ("cookies", "cookies")):
            value = getattr(self, field)
            if value is not None:
                args[key] = _render(value, values)
        return args

    def notify(self, body: str, subject: str | None = None) -> None:
        """Call the web hook with the templates filled in."""
        args = self.request_args(body, subject)
        secrets = [str(v) for v in self.secrets.get_secret_value().values() if len(str(v)) >= 4]
        _send("CustomWebhookNotificationBlock", args.pop("method"), args.pop("url"), secrets,
              self.timeout, **args)


# -- any apprise service ---------------------------------------------------------------------------
_WEB_SCHEMES = {"json", "jsons", "xml", "xmls", "form", "forms"}


class AppriseNotification(_SecretUrlBlock):
    """Send a notification to any service apprise knows (Discord, Telegram, PagerDuty, ntfy,
    Matrix, generic JSON/form web hooks, ...) given its apprise URL."""

    _block_type_name = "Apprise Notification"
    _documentation_url = "https://github.com/caronc/apprise/wiki"
    _code_example = (
        "from legato.blocks.notifications import AppriseNotification\n\n"
        'AppriseNotification.load("BLOCK_NAME").notify("Hello from Legato!")'
    )

    url: SecretStr = Field(description="The apprise URL, e.g. discord://webhook_id/token.",
                           title="Apprise URL")
    notify_type: Literal["info", "success", "warning", "failure"] = Field(
        default="info", description="The kind of message (services may colour it).")

    def notify(self, body: str, subject: str | None = None) -> None:
        """Send ``body`` titled ``subject`` through apprise."""
        import apprise  # lazy: apprise loads ~190 plugins (0.2 s) on first use

        url = self.url.get_secret_value()
        scheme = url.split("://", 1)[0] if "://" in url else "(none)"
        client = apprise.Apprise()
        if not client.add(url):
            raise BlockError(
                f"AppriseNotification: the URL (scheme {scheme!r}) is not one the installed "
                "apprise understands; see https://github.com/caronc/apprise/wiki for the forms.")
        service = getattr(client[0], "service_name", None) or scheme
        where = f" at {_host(url.replace(scheme + '://', 'http://', 1))}" if (
            scheme.lower() in _WEB_SCHEMES) else ""
        with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as logs:
            ok = client.notify(body=body, title=subject or "", notify_type=self.notify_type)
            captured = logs.getvalue()
        if not ok:
            reason = _scrub(" ".join(captured.split()), _url_secrets(url))
            raise BlockError(
                f"AppriseNotification: the {service} service{where} did not take the "
                f"notification" + (f" ({reason[:400]})" if reason else "") + ".")


# -- email -------------------------------------------------------------------------------------------
_SMTP_PORTS = {"SSL": 465, "STARTTLS": 587, "INSECURE": 25}


class EmailServerCredentials(Block):
    """An SMTP server and the login to send mail through it."""

    _block_type_name = "Email Server Credentials"
    _code_example = (
        "from legato.blocks.notifications import EmailServerCredentials\n\n"
        'server = EmailServerCredentials.load("BLOCK_NAME").get_server()'
    )


    username: str | None = Field(default=None, description="The login (often the address).")
    password: SecretStr | None = Field(default=None, description="The password or app token.")
    smtp_server: str = Field(default="smtp.gmail.com", description="The SMTP server's host.")
    smtp_type: Literal["SSL", "STARTTLS", "INSECURE"] = Field(
        default="SSL", description="SSL: TLS from the first byte (port 465); STARTTLS: plain, "
        "then upgraded (port 587); INSECURE: never encrypted (port 25).")
    smtp_port: int | None = Field(
        default=None, description="The port; 465, 587 or 25 by smtp_type when empty.")
    verify: bool = Field(default=True, description="Verify the server's TLS certificate.")

    @field_validator("smtp_type", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def port(self) -> int:
        return self.smtp_port or _SMTP_PORTS[self.smtp_type]

    def _where(self) -> str:
        return f"the SMTP server {self.smtp_server}:{self.port}"

    def get_server(self, timeout: float = 30) -> smtplib.SMTP:
        """A connected SMTP session (TLS per ``smtp_type``, logged in when a username and a
        password are set); use it as a context manager so it is closed."""
        context = ssl.create_default_context()
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        server: smtplib.SMTP | None = None
        try:
            if self.smtp_type == "SSL":
                server = smtplib.SMTP_SSL(self.smtp_server, self.port, timeout=timeout,
                                          context=context)
            else:
                server = smtplib.SMTP(self.smtp_server, self.port, timeout=timeout)
                if self.smtp_type == "STARTTLS":
                    server.starttls(context=context)
            if self.username and self.password is not None:
                server.login(self.username, self.password.get_secret_value())
            return server
        except Exception as exc:
            if server is not None:
                server.close()
            raise self._error(exc) from None

    def _error(self, exc: Exception) -> BlockError:
        where = self._where()
        if isinstance(exc, ssl.SSLCertVerificationError):
            return BlockError(
                f"EmailServerCredentials: the TLS certificate of {where} could not be verified "
                f"({exc.verify_message}). Trust its CA (SSL_CERT_FILE), or set verify=False for "
                "a server you trust.")
        if isinstance(exc, ssl.SSLError):
            return BlockError(
                f"EmailServerCredentials: TLS with {where} failed ({exc.reason}). smtp_type "
                "'SSL' speaks TLS from the first byte (usually port 465); a server that upgrades "
                "a plain connection (port 587) needs smtp_type 'STARTTLS'.")
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return BlockError(f"EmailServerCredentials: {where} does not offer STARTTLS or "
                              f"login ({exc}); check smtp_type.")
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return BlockError(
                f"EmailServerCredentials: {where} refused the login of {self.username!r} "
                f"({exc.smtp_code} {_text(exc.smtp_error)}). Check the username and password.")
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return BlockError(f"EmailServerCredentials: {where} did not answer in time.")
        if isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException):
            return BlockError(
                f"EmailServerCredentials: could not connect to {where} "
                f"({exc.strerror or exc}). Check smtp_server, smtp_port and smtp_type.")
        return BlockError(f"EmailServerCredentials: {where} failed: {exc}")


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class EmailNotification(Block):
    """Send a notification by email through an SMTP server."""

    _block_type_name = "Email Notification"
    _code_example = (
        "from legato.blocks.notifications import EmailNotification\n\n"
        'EmailNotification.load("BLOCK_NAME").notify("The load finished", subject="ETL")'
    )


    email_server_credentials: EmailServerCredentials = Field(
        description="The SMTP server and login to send through.")
    email_to: list[str] = Field(min_length=1, description="The recipients' addresses.")
    email_from: str | None = Field(
        default=None, description="The sender's address; the username when empty.")
    subject_prefix: str = Field(default="", description="Put before every subject.")

    @field_validator("email_to", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_addresses(self) -> EmailNotification:
        bad = [a for a in self.email_to if "@" not in a]
        if bad:
            raise ValueError(f"email_to holds {bad}, which are not email addresses")
        if not (self.email_from or self.email_server_credentials.username):
            raise ValueError("set email_from (or a username on the email server credentials): "
                             "an email needs a sender")
        return self

    def message(self, body: str, subject: str | None = None) -> EmailMessage:
        """The email ``notify`` sends."""
        msg = EmailMessage()
        msg["From"] = self.email_from or self.email_server_credentials.username
        msg["To"] = ", ".join(self.email_to)
        msg["Subject"] = f"{self.subject_prefix}{subject or 'Legato notification'}"
        msg.set_content(body)
        return msg

    def notify(self, body: str, subject: str | None = None) -> None:
        """Email ``body`` with ``subject`` to every address of ``email_to``."""
        creds = self.email_server_credentials
        msg = self.message(body, subject)
        try:
            with creds.get_server() as server:
                refused = server.send_message(msg)
        except BlockError:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            raise BlockError(
                f"EmailNotification: {creds._where()} refused every recipient: "
                f"{_refusals(exc.recipients)}.") from None
        except smtplib.SMTPSenderRefused as exc:
            raise BlockError(
                f"EmailNotification: {creds._where()} refused the sender {exc.sender!r} "
                f"({exc.smtp_code} {_text(exc.smtp_error)}).") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise creds._error(exc) from None
        if refused:
            raise BlockError(
                f"EmailNotification: {creds._where()} delivered to some recipients but refused "
                f"{_refusals(refused)}.")


def _refusals(refused: dict[str, tuple[int, Any]]) -> str:
    return "; ".join(f"{addr} ({code} {_text(msg)})" for addr, (code, msg) in refused.items())
