"""The HTTP client: the same client interface as the embedded one, over the server's API.

The hot path makes no round trip per task: the core runs here (the same rules and effects as in
embedded mode) for the task runs this process drives, and their rows, states and log lines go to
the server in batches (``POST /api/history/batch``), flushed in the background every
``LEGATO_HISTORY_FLUSH_INTERVAL`` seconds and before a flow call returns. What the server must
decide - a flow run's states (the server may have cancelled it), a task run's slot of a tag
concurrency limit, a cache lookup - is asked at once.

Calls go through the :class:`~legato.client.transport.Transport` (retries, outages); past an
outage's window the unsent history waits in the spool (client/spool.py).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from ..core.rules import Decision, Verdict
from ..core.runs import CoreBase
from ..exceptions import ConflictError, LegatoError, ObjectNotFound, ServerUnreachableError
from ..states import State, StateType
from ..store.writer import Buffer, HistoryWriter, WritePolicy
from .api import SyncApi
from .base import BLOCK_CALLS, DEPLOYMENT_CALLS
from .core_client import CoreClient
from .spool import Spool
from .transport import Transport, _detail, dumps, parse_time, state_body

log = logging.getLogger("legato.client")

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
            {"state": state_body(state), "new_attempt": new_attempt, "force": force,
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
