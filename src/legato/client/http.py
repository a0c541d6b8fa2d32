"""The HTTP client: the same client interface as the embedded one, over the server's API.

The hot path makes no round trip per task: the core runs here (the same rules and effects as in
embedded mode) for the task runs this process drives, and their rows, states and log lines go to
the server in batches (``POST /api/history/batch``), flushed in the background every
``LEGATO_HISTORY_FLUSH_INTERVAL`` seconds and before a flow call returns. What the server must
decide - a flow run's states (the server may have cancelled it), a task run's slot of a tag
concurrency limit, a cache lookup - is asked at once.

Calls the server does not answer (refused connection, timeout, 502/503/504) are retried with
exponential backoff; one that never gets through raises one ServerUnreachableError.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .. import exceptions
from ..core.rules import Decision, Verdict
from ..core.runs import CoreBase
from ..exceptions import (
    AuthenticationError,
    ConflictError,
    LegatoError,
    ObjectNotFound,
    ServerError,
    ServerUnreachableError,
)
from ..states import State, StateType
from ..store.writer import Buffer, HistoryWriter, WritePolicy
from ..version import API_VERSION, API_VERSION_HEADER
from .base import BLOCK_CALLS, DEPLOYMENT_CALLS
from .core_client import CoreClient
from .spool import Spool

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


class RemoteWriter(HistoryWriter):
    """The history writer whose flush is one POST of the batch (same buffering, coalescing and
    policies as the embedded writer; a failed POST keeps the rows for the next flush). Past an
    outage's window a batch goes to the spool instead, and so does every later one until the
    spool has been sent: the server gets them in order."""

    def __init__(self, transport: Transport, policy: WritePolicy | None = None,
                 spool: Spool | None = None) -> None:
        super().__init__(None, policy)
        self.transport = transport
        self.spool = spool

    def write_buffer(self, buf: Buffer) -> None:
        payload = buf.to_payload()
        spool = self.spool
        if spool is not None and spool.pending:
            spool.append(payload)
            try:
                spool.send_own(self.transport)
            except ServerUnreachableError:
                pass  # kept, in order, for the next flush
            return
        try:
            self.transport.request("POST", "/history/batch", payload)
        except ServerUnreachableError:
            if spool is None or not self.transport.gave_up:
                raise
            spool.append(payload)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.spool is not None and self.spool.pending:
                sys.stderr.write(
                    f"legato: the server at {self.transport.url} could not be reached; this "
                    f"process's run history is kept in {self.spool.path} and will be sent by "
                    "the next Legato process or agent that reaches it.\n")


def _state_body(state: State) -> dict[str, Any]:
    return {"type": state.type.value, "name": state.name, "message": state.message,
            "timestamp": state.timestamp, "details": state.details or {}}


class RemoteOrchestrator(CoreBase):
    """The core in a process that talks to a server: what it reads or must have decided by
    the store, it asks the server."""

    sync_flow_states = True

    def __init__(self, transport: Transport, writer: RemoteWriter) -> None:
        super().__init__(writer)
        self.transport = transport

    def _fetch_flow_id(self, name: str) -> str:
        return self.transport.request("POST", "/flows/", {"name": name}).json()["id"]

    def _fetch_run(self, kind: str, run_id: str) -> dict[str, Any] | None:
        try:
            row = self.transport.request("GET", f"/{kind}s/{run_id}").json()
        except ObjectNotFound:
            return None
        for k in ("start_time", "state_timestamp"):
            row[k] = parse_time(row.get(k))
        return row

    def _fetch_cache(self, key: str) -> dict[str, Any] | None:
        try:
            row = self.transport.request("POST", "/cache/read", {"key": key}).json()
        except ServerUnreachableError:
            if not self.transport.gave_up:
                raise
            return None  # past the outage window: a miss (the task runs)
        if row is not None:
            row["expiration"] = parse_time(row.get("expiration"))
            row["created"] = parse_time(row.get("created"))
        return row

    def _fetch_limited_tags(self) -> frozenset[str]:
        try:
            rows = self.transport.request("POST", "/concurrency_limits/filter",
                                          {"limit": 10_000}).json()
        except ServerUnreachableError:
            if not self.transport.gave_up:
                raise
            return self._limited  # past the outage window: the limits last read
        return frozenset(r["tag"] for r in rows)

    def _set_state_now(self, kind: str, run_id: str, run: Any, state: State, *,
                       new_attempt: bool, result: dict[str, Any] | None,
                       extra: dict[str, Any] | None, force: bool) -> Decision:
        try:
            return super()._set_state_now(kind, run_id, run, state, new_attempt=new_attempt,
                                          result=result, extra=extra, force=force)
        except ServerUnreachableError:
            if kind != "flow_run" or not self.transport.gave_up:
                raise
        # past the outage window: the flow run's state is decided here, by the same rules, and
        # travels with its history batches (the spool), which the server takes when it is back
        with self._state_locks[hash(run_id) & 63]:
            return self._record(kind, run_id, run, state, state.type, new_attempt, result,
                                extra, force, None)

    def _decide_now(self, kind: str, run_id: str, state: State, *, new_attempt: bool,
                    result: dict[str, Any] | None, extra: dict[str, Any] | None,
                    force: bool) -> tuple[Decision, dict[str, Any] | None]:
        response = self.transport.request(
            "POST", f"/{kind}s/{run_id}/set_state",
            {"state": _state_body(state), "new_attempt": new_attempt, "force": force,
             "result": result}, passthrough=(409,))
        body = response.json()
        if response.status_code == 409 and "status" not in body:
            raise ConflictError(_detail(response))
        verdict = Verdict(body["status"])
        decision = Decision(verdict, body.get("reason"), body.get("retry_after"))
        if verdict is Verdict.ACCEPT and body.get("state_id"):
            state.id = body["state_id"]
        run = body["run"]
        stype = StateType(run["state_type"]) if run.get("state_type") else None
        fields: dict[str, Any] = {
            "type": stype,
            "name": run.get("state_name"),
            "run_count": run.get("run_count") or 0,
            "start_time": parse_time(run.get("start_time")),
            "running_since": parse_time(run.get("state_timestamp"))
            if stype is StateType.RUNNING else None,
            "total": run.get("total_run_time") or 0.0,
        }
        if verdict is Verdict.ACCEPT and kind == "task_run":
            tags = run.get("tags") or ()
            fields["holds_slots"] = (stype is StateType.RUNNING
                                     and not self.limited_tags().isdisjoint(tags))
        return decision, fields


class HttpClient(CoreClient):
    """The engine's client when LEGATO_API_URL is set."""

    def __init__(self, transport: Transport, policy: WritePolicy, *, slot_wait: float = 0.5,
                 home: Path | None = None) -> None:
        self.transport = transport
        self.spool = Spool(home, transport.url, dumps) if home is not None else None
        self.writer = RemoteWriter(transport, policy, self.spool)
        self.core = RemoteOrchestrator(transport, self.writer)
        self.core.slot_wait = slot_wait
        from .api import SyncApi  # (api.py builds on this module: imported when used)

        self.api = SyncApi(transport)
        self.send_spooled()

    def send_spooled(self) -> int:
        """Send the run history that exited processes of this machine left in the spool for
        this server (cheap when there is none); how many batches were sent."""
        if self.spool is None:
            return 0
        try:
            return self.spool.send_left(self.transport)
        except LegatoError as exc:
            log.warning("Could not send the spooled run history: %s", exc)
            return 0

    @property
    def description(self) -> str:
        return self.transport.url

    def close(self) -> None:
        try:
            self.writer.close()
        finally:
            self.transport.close()

    def heartbeat_flow_runs(self, run_ids: list[str], interval: float) -> None:
        """The runs are alive (engine/heartbeat.py): the heartbeat call, one per run."""
        failed: Exception | None = None
        for run_id in run_ids:
            try:
                self.api.heartbeat(run_id)
            except Exception as exc:  # noqa: BLE001 - the other runs still beat
                failed = exc
        if failed is not None:
            raise failed

    # blocks: the server's block routes (client/api.py)
    def __getattr__(self, name: str) -> Any:
        if name in BLOCK_CALLS or name in DEPLOYMENT_CALLS:
            return getattr(self.api, name)
        raise AttributeError(name)

    # reads (what was written here is sent first, so a read sees it)
    def read_flow_runs(self, flt: Any = None) -> list[Any]:
        self.writer.flush()
        return self.api.read_flow_runs(flt)

    def read_flow_run(self, run_id: str) -> Any:
        self.writer.flush()
        return self.api.read_flow_run(run_id)

    def read_task_runs(self, flt: Any = None) -> list[Any]:
        self.writer.flush()
        return self.api.read_task_runs(flt)

    def read_task_run(self, run_id: str) -> Any:
        self.writer.flush()
        return self.api.read_task_run(run_id)

    def read_flow_run_states(self, run_id: str) -> list[Any]:
        self.writer.flush()
        return self.api.read_flow_run_states(run_id)

    def read_task_run_states(self, run_id: str) -> list[Any]:
        self.writer.flush()
        return self.api.read_task_run_states(run_id)

    def read_logs(self, **kw: Any) -> list[Any]:
        self.writer.flush()
        return self.api.read_logs(**kw)

    def delete_flow_run(self, run_id: str) -> None:
        self.writer.flush()
        self.api.delete_flow_run(run_id)

    # tag concurrency limits
    def set_concurrency_limit(self, tag: str, limit: int) -> dict[str, Any]:
        return self.api.create_concurrency_limit(tag, limit)

    def read_concurrency_limit(self, tag: str) -> dict[str, Any]:
        return self.api.read_concurrency_limit(tag)

    def read_concurrency_limits(self) -> list[dict[str, Any]]:
        return self.api.read_concurrency_limits()

    def reset_concurrency_limit(self, tag: str) -> dict[str, Any]:
        return self.api.reset_concurrency_limit(tag)

    def delete_concurrency_limit(self, tag: str) -> None:
        self.api.delete_concurrency_limit(tag)
