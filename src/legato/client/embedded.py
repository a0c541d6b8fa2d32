"""The embedded client: the orchestration core and the history store in this process."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..core.orchestrator import Orchestrator
from ..core.rules import Decision
from ..schemas import FlowRun, FlowRunFilter, LogRecord, StateRecord, TaskRun, TaskRunFilter
from ..states import State
from ..store import queries
from ..store.database import Database
from ..store.writer import HistoryWriter, WritePolicy


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

    def end_flow_run(self, run_id: str) -> None:
        self.writer.flush()
        self.core.forget(run_id)

    def close(self) -> None:
        self.writer.close()

    # reads
    def read_flow_runs(self, flt: FlowRunFilter | None = None) -> list[FlowRun]:
        self.writer.flush()
        return queries.read_flow_runs(self.db, flt)

    def read_flow_run(self, run_id: str) -> FlowRun:
        self.writer.flush()
        return queries.read_flow_run(self.db, run_id)

    def read_task_runs(self, flt: TaskRunFilter | None = None) -> list[TaskRun]:
        self.writer.flush()
        return queries.read_task_runs(self.db, flt)

    def read_task_run(self, run_id: str) -> TaskRun:
        self.writer.flush()
        return queries.read_task_run(self.db, run_id)

    def read_flow_run_states(self, run_id: str) -> list[StateRecord]:
        self.writer.flush()
        return queries.read_states(self.db, "flow_run", run_id)

    def read_task_run_states(self, run_id: str) -> list[StateRecord]:
        self.writer.flush()
        return queries.read_states(self.db, "task_run", run_id)

    def read_logs(self, **kw: Any) -> list[LogRecord]:
        self.writer.flush()
        return queries.read_logs(self.db, **kw)
