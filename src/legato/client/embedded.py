"""The embedded client: the orchestration core and the history store in this process."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from ..core.orchestrator import Orchestrator
from ..core.rules import Decision
from ..states import State, StateType
from ..store.database import Database
from ..store.writer import HistoryWriter, WritePolicy

if TYPE_CHECKING:
    from ..schemas import FlowRun, FlowRunFilter, LogRecord, StateRecord, TaskRun, TaskRunFilter


def _queries():
    # lazy: the read side's pydantic schemas cost ~0.25 s of a script that only writes
    from ..store import queries

    return queries


class EmbeddedClient:
    def __init__(self, db: Database, policy: WritePolicy) -> None:
        self.db = db
        self.writer = HistoryWriter(db, policy)
        self.core = Orchestrator(db, self.writer)

    @property
    def description(self) -> str:
        return str(self.db.path) if self.db.path else self.db.display

    # writes
    def create_flow_run(self, **kw: Any) -> None:
        self.core.create_flow_run(**kw)

    def create_task_run(self, **kw: Any) -> None:
        self.core.create_task_run(**kw)

    def set_flow_run_state(self, run_id: str, state: State, **kw: Any) -> Decision:
        return self.core.set_state("flow_run", run_id, state, **kw)

    def set_task_run_state(self, run_id: str, state: State, **kw: Any) -> Decision:
        return self.core.set_state("task_run", run_id, state, **kw)

    def set_task_run_cache_key(
        self, run_id: str, cache_key: str | None, expiration: dt.datetime | None
    ) -> None:
        self.core.set_task_run_cache_key(run_id, cache_key, expiration)

    def write_log(self, row: dict[str, Any]) -> None:
        self.writer.add_log(row)

    def read_cache(self, key: str) -> dict[str, Any] | None:
        return self.core.read_cache(key)

    def write_cache(self, key: str, **kw: Any) -> None:
        self.core.write_cache(key, **kw)

    def flush(self) -> None:
        self.writer.flush()

    def abandon_flow_run(self, run_id: str, exc: BaseException) -> None:
        """A flow run that could not start (its opening flush failed: a locked or broken
        history): drop its buffered rows rather than write them later as a run stuck in
        Running; if an earlier flush already wrote it, end it Crashed."""
        if not self.writer.discard_flow_run(run_id):
            message = f"The flow run could not start: {type(exc).__name__}: {exc}"
            self.core.set_state("flow_run", run_id, State(StateType.CRASHED, message=message),
                                force=True)
        self.core.forget(run_id)

    def end_flow_run(self, run_id: str) -> None:
        self.writer.flush()
        self.core.forget(run_id)

    def close(self) -> None:
        self.writer.close()

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
        from ..core.server_core import ServerCore

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
