"""The HTTP transport to a Legato server: its URL and key, an httpx connection pool, JSON in and
out, the server's errors as Legato's, and the retry policy: a server never reached fails fast,
an outage of a server that answered before is waited out (``LEGATO_API_OUTAGE_WINDOW_SECONDS``).

Both the engine's HTTP client (client/http.py) and the API calls (client/api.py) go through it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import threading
import time
from typing import Any

from .. import exceptions
from ..exceptions import (
    AuthenticationError,
    ConflictError,
    LegatoError,
    ObjectNotFound,
    ServerError,
    ServerUnreachableError,
)
from ..states import State
from ..version import API_VERSION, API_VERSION_HEADER

_RETRY_STATUS = frozenset({502, 503, 504})
_OUTAGE_BACKOFF = 2.0  # seconds between attempts at most, while waiting out an outage
log = logging.getLogger("legato.client")
_UTC = dt.timezone.utc


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_UTC)
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, default=_default, ensure_ascii=False).encode("utf-8", "surrogatepass")


def parse_time(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _detail(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        return detail if isinstance(detail, str) else json.dumps(detail)[:1000]
    return str(body)[:500]


def _error_class(response: Any) -> type[LegatoError] | None:
    """The Legato error the server raised (its answer names the class), when it is one a
    caller can meet: bad parameters, blocks, schedules."""
    try:
        name = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    cls = getattr(exceptions, str(name), None) if name else None
    if cls is None and name == "InvalidScheduleError":
        cls = LegatoError
    return cls if isinstance(cls, type) and issubclass(cls, LegatoError) else None


class Transport:
    """One server: its URL, key, an httpx connection pool, and the retry policy.

    Until the server has answered this process once, a call that gets no answer is retried
    ``retries`` times (a wrong URL fails fast, with one clear error). Once it has answered, a
    server that stops answering is an *outage*: every call waits it out, retried with backoff
    (at most ``_OUTAGE_BACKOFF`` seconds apart, so a restarted server hears from its clients at
    once), for ``outage_window`` seconds from the first failed call of the outage. Past the
    window the outage is given up (:attr:`gave_up`): calls get one attempt each, the callers
    keep what they could not send (the spool), and the next answer ends the outage.
    """

    def __init__(self, url: str, key: str | None = None, *, timeout: float = 30.0,
                 retries: int = 6, outage_window: float = 600.0, known_up: bool = False) -> None:
        import httpx  # lazy: only a process that talks to a server pays for it

        self.url = url.rstrip("/")
        self.retries = retries
        self.outage_window = outage_window
        headers = {API_VERSION_HEADER: API_VERSION, "Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._httpx = httpx
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self._async_client: Any = None
        self._headers = headers
        self._timeout = timeout
        # ``known_up``: a process started for a run the server just handed out (a worker's
        # flow run) treats the server as reached: an outage at its start is waited out too
        self._reached = known_up
        self._down_since: float | None = None  # monotonic time of the outage's first failure
        self._gave_up = False
        self._outage_lock = threading.Lock()

    @property
    def gave_up(self) -> bool:
        """The server has been away longer than the outage window (until it answers again)."""
        return self._gave_up

    def _answered(self) -> None:
        self._reached = True
        if self._down_since is not None:
            with self._outage_lock:
                if self._down_since is not None:
                    log.warning("The Legato server at %s answers again (after %.0f s).",
                                self.url, time.monotonic() - self._down_since)
                self._down_since = None
                self._gave_up = False

    def _retry_delay(self, attempt: int) -> float | None:
        """Seconds to wait before attempt ``attempt + 1`` of a call that got no answer, or
        None: no more attempts."""
        jitter = 0.5 + random.random() / 2
        if not self._reached:
            return min(0.1 * 2**attempt, 5.0) * jitter if attempt < self.retries else None
        now = time.monotonic()
        with self._outage_lock:
            if self._down_since is None:
                self._down_since = now
                log.warning(
                    "The Legato server at %s does not answer: waiting up to %g s for it "
                    "(LEGATO_API_OUTAGE_WINDOW_SECONDS); the runs' states and logs are kept "
                    "meanwhile.", self.url, self.outage_window)
            if self._gave_up:
                return None
            left = self.outage_window - (now - self._down_since)
            if left <= 0:
                self._gave_up = True
                log.warning("The Legato server at %s has not answered for %g s: giving up "
                            "waiting; what cannot be sent is kept in the spool.",
                            self.url, self.outage_window)
                return None
        return min(0.1 * 2**attempt * jitter, _OUTAGE_BACKOFF, left)

    def _raise_for(self, method: str, path: str, response: Any) -> None:
        status = response.status_code
        detail = _detail(response)
        if status == 401:
            raise AuthenticationError(
                f"The Legato server at {self.url} refused the call: {detail}", status)
        if status == 404:
            raise ObjectNotFound(detail)
        if status == 409:
            raise ConflictError(detail)
        if status in (400, 422):
            named = _error_class(response)
            if named is not None:
                raise named(detail)
        raise ServerError(f"The Legato server at {self.url} answered {method} {path} with "
                          f"{status}: {detail}", status)

    def _unreachable(self, exc: BaseException | None, status: int | None,
                     attempts: int) -> ServerUnreachableError:
        why = f"{type(exc).__name__}: {exc}" if exc is not None else f"HTTP {status}"
        if self._reached:
            return ServerUnreachableError(
                f"The Legato server at {self.url} has not answered for {self.outage_window:g} s "
                f"({why}): past the outage window (LEGATO_API_OUTAGE_WINDOW_SECONDS).")
        return ServerUnreachableError(
            f"Could not reach the Legato server at {self.url} after {attempts} attempts "
            f"({why}). Is `legato server start` running there? Check LEGATO_API_URL, or unset it "
            "to use the embedded history."
        )

    def _outcome(self, method: str, path: str, response: Any,
                 ok: tuple[int, ...], passthrough: tuple[int, ...]) -> bool:
        """True if ``response`` is the call's answer; False if the call is to be retried."""
        status = response.status_code
        if status in _RETRY_STATUS:
            return False
        self._answered()
        if status in ok or status in passthrough:
            return True
        self._raise_for(method, path, response)
        return False  # (not reached: _raise_for raises)

    def request(self, method: str, path: str, body: Any = None, *,
                ok: tuple[int, ...] = (200, 201, 204), passthrough: tuple[int, ...] = ()) -> Any:
        content = dumps(body) if body is not None else None
        attempt = 0
        while True:
            exc: BaseException | None = None
            status: int | None = None
            try:
                response = self._client.request(method, path, content=content)
            except self._httpx.TransportError as e:  # refused, reset, timed out
                exc = e
            else:
                if self._outcome(method, path, response, ok, passthrough):
                    return response
                status = response.status_code
            delay = self._retry_delay(attempt)
            if delay is None:
                raise self._unreachable(exc, status, attempt + 1)
            time.sleep(delay)
            attempt += 1

    async def arequest(self, method: str, path: str, body: Any = None, *,
                       ok: tuple[int, ...] = (200, 201, 204),
                       passthrough: tuple[int, ...] = ()) -> Any:
        import asyncio  # lazy: only async callers

        if self._async_client is None:
            self._async_client = self._httpx.AsyncClient(
                base_url=self.url, headers=self._headers, timeout=self._timeout)
        content = dumps(body) if body is not None else None
        attempt = 0
        while True:
            exc: BaseException | None = None
            status: int | None = None
            try:
                response = await self._async_client.request(method, path, content=content)
            except self._httpx.TransportError as e:
                exc = e
            else:
                if self._outcome(method, path, response, ok, passthrough):
                    return response
                status = response.status_code
            delay = self._retry_delay(attempt)
            if delay is None:
                raise self._unreachable(exc, status, attempt + 1)
            await asyncio.sleep(delay)
            attempt += 1

    def close(self) -> None:
        self._client.close()

    async def aclose(self) -> None:
        if self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None


def state_body(state: State) -> dict[str, Any]:
    return {"type": state.type.value, "name": state.name, "message": state.message,
            "timestamp": state.timestamp, "details": state.details or {}}
