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
import random
import time
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

_RETRY_STATUS = frozenset({502, 503, 504})
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
    """One server: its URL, key, an httpx connection pool, and the retry policy."""

    def __init__(self, url: str, key: str | None = None, *, timeout: float = 30.0,
                 retries: int = 6) -> None:
        import httpx  # lazy: only a process that talks to a server pays for it

        self.url = url.rstrip("/")
        self.retries = retries
        headers = {API_VERSION_HEADER: API_VERSION, "Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._httpx = httpx
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self._async_client: Any = None
        self._headers = headers
        self._timeout = timeout

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

    def _unreachable(self, exc: BaseException | None, status: int | None) -> ServerUnreachableError:
        why = f"{type(exc).__name__}: {exc}" if exc is not None else f"HTTP {status}"
        return ServerUnreachableError(
            f"Could not reach the Legato server at {self.url} after {self.retries + 1} attempts "
            f"({why}). Is `legato server start` running there? Check LEGATO_API_URL, or unset it "
            "to use the embedded history."
        )

    def request(self, method: str, path: str, body: Any = None, *,
                ok: tuple[int, ...] = (200, 201, 204), passthrough: tuple[int, ...] = ()) -> Any:
        content = dumps(body) if body is not None else None
        exc: BaseException | None = None
        status: int | None = None
        for attempt in range(self.retries + 1):
            try:
                response = self._client.request(method, path, content=content)
            except self._httpx.TransportError as e:  # refused, reset, timed out
                exc, status = e, None
            else:
                if response.status_code in ok or response.status_code in passthrough:
                    return response
                if response.status_code not in _RETRY_STATUS:
                    self._raise_for(method, path, response)
                exc, status = None, response.status_code
            if attempt < self.retries:
                time.sleep(min(0.1 * 2**attempt, 5.0) * (0.5 + random.random() / 2))
        raise self._unreachable(exc, status)

    async def arequest(self, method: str, path: str, body: Any = None, *,
                       ok: tuple[int, ...] = (200, 201, 204),
                       passthrough: tuple[int, ...] = ()) -> Any:
        import asyncio

        if self._async_client is None:
            self._async_client = self._httpx.AsyncClient(
                base_url=self.url, headers=self._headers, timeout=self._timeout)
        content = dumps(body) if body is not None else None
        exc: BaseException | None = None
        status: int | None = None
        for attempt in range(self.retries + 1):
            try:
                response = await self._async_client.request(method, path, content=content)
            except self._httpx.TransportError as e:
                exc, status = e, None
            else:
                if response.status_code in ok or response.status_code in passthrough:
                    return response
                if response.status_code not in _RETRY_STATUS:
                    self._raise_for(method, path, response)
                exc, status = None, response.status_code
            if attempt < self.retries:
                await asyncio.sleep(min(0.1 * 2**attempt, 5.0) * (0.5 + random.random() / 2))
        raise self._unreachable(exc, status)

    def close(self) -> None:
        self._client.close()

    async def aclose(self) -> None:
        if self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None


class RemoteWriter(HistoryWriter):
    """The history writer whose flush is one POST of the batch (same buffering, coalescing and
    policies as the embedded writer; a failed POST keeps the rows for the next flush)."""

    def __init__(self, transport: Transport, policy: WritePolicy | None = None) -> None:
        super().__init__(None, policy)
        self.transport = transport

    def write_buffer(self, buf: Buffer) -> None:
        self.transport.request("POST", "/history/batch", buf.to_payload())


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
        row = self.transport.request("POST", "/cache/read", {"key": key}).json()
        if row is not None:
            row["expiration"] = parse_time(row.get("expiration"))
            row["created"] = parse_time(row.get("created"))
        return row

    def _fetch_limited_tags(self) -> frozenset[str]:
        rows = self.transport.request("POST", "/concurrency_limits/filter",
                                      {"limit": 10_000}).json()
        return frozenset(r["tag"] for r in rows)

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

    def __init__(self, transport: Transport, policy: WritePolicy, *, slot_wait: float = 0.5) -> None:
        self.transport = transport
        self.writer = RemoteWriter(transport, policy)
        self.core = RemoteOrchestrator(transport, self.writer)
        self.core.slot_wait = slot_wait
        from .api import SyncApi  # (api.py builds on this module: imported when used)

        self.api = SyncApi(transport)

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
