"""The embedded client: the orchestration core and the history store in this process."""

from __future__ import annotations

import datetime as dt
import functools
import os
from typing import TYPE_CHECKING, Any

from ..core.liveness import check_on_open
from ..core.orchestrator import Orchestrator
from ..core.server_core import ServerCore
from ..processes import host
from ..store.database import Database
from ..store.writer import HistoryWriter, WritePolicy
from .base import BLOCK_CALLS, DEPLOYMENT_CALLS
from .core_client import CoreClient

if TYPE_CHECKING:
    from ..schemas import FlowRun, FlowRunFilter, LogRecord, StateRecord, TaskRun, TaskRunFilter


def _queries():
    # lazy: the read side's pydantic schemas cost ~0.25 s of a script that only writes
    from ..store import queries

    return queries


class EmbeddedClient(CoreClient):
    def __init__(self, db: Database, policy: WritePolicy, *,
                 heartbeat_seconds: float = 10.0) -> None:
        self.db = db
        self.writer = HistoryWriter(db, policy)
        self.core = Orchestrator(db, self.writer)
        # no server watches this history's heartbeats: runs whose process died are ended when
        # this process first uses it (core/liveness.py)
        db.on_open("liveness", functools.partial(check_on_open, db, heartbeat_seconds))

    @property
    def description(self) -> str:
        return str(self.db.path) if self.db.path else self.db.display

    def close(self) -> None:
        self.writer.close()

    def heartbeat_flow_runs(self, run_ids: list[str], interval: float) -> None:
        """The runs are alive (engine/heartbeat.py): an update of their heartbeat (and of the
        process running them: a deployment's run was made by another) that goes out with the
        writer's next flush, well within the interval."""
        beat = {"heartbeat": dt.datetime.now(dt.timezone.utc), "host": host(),
                "pid": os.getpid()}
        for run_id in run_ids:
            self.writer.update_flow_run(run_id, dict(beat))
        self.writer.flush_within(interval / 4)

    # reads
    def read_flow_runs(self, flt: FlowRunFilter | None = None) -> list[FlowRun]:
        self.writer.flush()
        return _queries().read_flow_runs(self.db, flt)

    def read_flow_run(self, run_id: str) -> FlowRun:
        self.writer.flush()
        return _queries().read_flow_run(self.db, run_id)

    def read_task_runs(self, flt: TaskRunFilter | None = None) -> list[TaskRun]:
        self.writer.flush()
        return _queries().read_task_runs(self.db, flt)

    def read_task_run(self, run_id: str) -> TaskRun:
        self.writer.flush()
        return _queries().read_task_run(self.db, run_id)

    def read_flow_run_states(self, run_id: str) -> list[StateRecord]:
        self.writer.flush()
        return _queries().read_states(self.db, "flow_run", run_id)

    def read_task_run_states(self, run_id: str) -> list[StateRecord]:
        self.writer.flush()
        return _queries().read_states(self.db, "task_run", run_id)

    def read_logs(self, **kw: Any) -> list[LogRecord]:
        self.writer.flush()
        return _queries().read_logs(self.db, **kw)

    def delete_flow_run(self, run_id: str) -> None:
        self.writer.flush()
        self._server_core().delete_flow_run(run_id)

    # tag concurrency limits (the server's core does the same against the same tables)
    def _server_core(self) -> Any:
        return ServerCore(self.db, slot_wait=self.core.slot_wait)

    def set_concurrency_limit(self, tag: str, limit: int) -> dict[str, Any]:
        return self._server_core().set_concurrency_limit(tag, limit)

    def read_concurrency_limit(self, tag: str) -> dict[str, Any]:
        return self._server_core().read_concurrency_limit(tag)

    def read_concurrency_limits(self) -> list[dict[str, Any]]:
        return self._server_core().read_concurrency_limits(limit=10_000)

    def reset_concurrency_limit(self, tag: str) -> dict[str, Any]:
        return self._server_core().reset_concurrency_limit(tag)

    def delete_concurrency_limit(self, tag: str) -> None:
        self._server_core().delete_concurrency_limit(tag)

    # blocks: legato.core.blocks against this database, encrypted with this process's key
    def __getattr__(self, name: str) -> Any:
        if name in BLOCK_CALLS:
            return getattr(self._block_core(), name)
        if name in DEPLOYMENT_CALLS:
            return getattr(self._deployments(), name)
        raise AttributeError(name)

    def _deployments(self) -> Any:
        # lazy: deployments' use cases load only when used
        from ..core.run_control import Deployments

        self.writer.flush()  # runs this process wrote are visible to them
        return Deployments(self.db, slot_wait=self.core.slot_wait)

    def _block_core(self) -> Any:
        # lazy: the block store (and cryptography) load only when blocks are used
        from ..core.blocks import BlockCore
        from ..settings import get_settings
        from ..store.encryption import get_cipher

        return BlockCore(self.db, get_cipher(get_settings()))
