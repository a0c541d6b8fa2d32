"""Helpers for the engine's behaviour tests: reading back what the history recorded."""

from __future__ import annotations

from typing import Any

import pytest

from legato.client import get_client
from legato.schemas import FlowRunFilter, TaskRunFilter


class History:
    """Thin reads over ``get_client()`` so tests say what they check, not how to query."""

    @property
    def client(self) -> Any:
        return get_client()

    def flow_runs(self, flow_name: str | None = None) -> list[Any]:
        return self.client.read_flow_runs(FlowRunFilter(flow_name=flow_name, sort="created_asc"))

    def flow_run(self, run_id: str) -> Any:
        return self.client.read_flow_run(run_id)

    def only_flow_run(self, flow_name: str | None = None) -> Any:
        runs = self.flow_runs(flow_name)
        assert len(runs) == 1, [(r.flow_name, r.name) for r in runs]
        return runs[0]

    def task_runs(self, flow_run_id: str) -> list[Any]:
        return self.client.read_task_runs(TaskRunFilter(flow_run_id=flow_run_id))

    def task_runs_by_name(self, flow_run_id: str) -> dict[str, Any]:
        return {t.name: t for t in self.task_runs(flow_run_id)}

    def flow_states(self, run_id: str) -> list[str]:
        return [s.name for s in self.client.read_flow_run_states(run_id)]

    def task_states(self, run_id: str) -> list[str]:
        return [s.name for s in self.client.read_task_run_states(run_id)]

    def logs(self, flow_run_id: str | None = None, task_run_id: str | None = None) -> list[Any]:
        return self.client.read_logs(flow_run_id=flow_run_id, task_run_id=task_run_id)

    def log_text(self, flow_run_id: str | None = None, task_run_id: str | None = None) -> str:
        return "\n".join(r.message for r in self.logs(flow_run_id, task_run_id))


@pytest.fixture
def h() -> History:
    return History()


@pytest.fixture
def history(history_or_server: str) -> str:
    """The engine's tests run on SQLite, PostgreSQL, and through a server (the HTTP client)."""
    return history_or_server
