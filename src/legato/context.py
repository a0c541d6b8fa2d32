"""What is running right now: the flow run and task run contexts, kept in context variables.

``legato.runtime`` and ``get_run_logger()`` read these; the engine sets them.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .exceptions import MissingContextError


class FlowRunInfo:
    """The public view of a flow run while it runs (``legato.runtime.flow_run``)."""

    __slots__ = ("id", "name", "flow_name", "parameters", "tags", "run_count",
                 "parent_task_run_id", "parent_flow_run_id")

    def __init__(self, id: str, name: str, flow_name: str, parameters: dict[str, Any],
                 tags: list[str], parent_task_run_id: str | None,
                 parent_flow_run_id: str | None) -> None:
        self.id = id
        self.name = name
        self.flow_name = flow_name
        self.parameters = parameters
        self.tags = tags
        self.run_count = 0
        self.parent_task_run_id = parent_task_run_id
        self.parent_flow_run_id = parent_flow_run_id

    def __repr__(self) -> str:
        return f"FlowRun(id={self.id!r}, name={self.name!r}, flow_name={self.flow_name!r})"


class TaskRunInfo:
    """The public view of a task run while it runs (``legato.runtime.task_run``)."""

    __slots__ = ("id", "name", "task_key", "flow_run_id", "tags", "run_count", "task_inputs",
                 "parameters")

    def __init__(self, id: str, name: str, task_key: str, flow_run_id: str | None,
                 tags: list[str], task_inputs: dict[str, Any]) -> None:
        self.id = id
        self.name = name
        self.task_key = task_key
        self.flow_run_id = flow_run_id
        self.tags = tags
        self.run_count = 0
        self.task_inputs = task_inputs
        self.parameters: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"TaskRun(id={self.id!r}, name={self.name!r})"


class FlowRunContext:
    """Everything tasks inside a flow run need: the client, the runner, bookkeeping."""

    def __init__(self, flow: Any, flow_run: FlowRunInfo, client: Any, task_runner: Any,
                 settings: Any, log_prints: bool) -> None:
        self.flow = flow
        self.flow_run = flow_run
        self.client = client
        self.task_runner = task_runner
        self.settings = settings
        self.log_prints = log_prints
        self.parameters = flow_run.parameters
        # per task key: how many runs of it this flow run has made (the dynamic key)
        self._counters: dict[str, int] = {}
        self._counter_lock = threading.Lock()
        # futures submitted and not yet observed; waited for when the flow ends
        self.futures: list[Any] = []
        # id(result object) -> (object, task run id): links plain task calls to their consumers
        self.results_by_id: dict[int, tuple[Any, str]] = {}
        # task runs started and not yet final, so the flow can settle them when it ends
        self.live_task_runs: dict[str, Any] = {}
        self.logger: Any = None

    def next_dynamic_key(self, task_key: str) -> int:
        with self._counter_lock:
            n = self._counters.get(task_key, 0)
            self._counters[task_key] = n + 1
            return n


class TaskRunContext:
    def __init__(self, task: Any, task_run: TaskRunInfo, parameters: dict[str, Any],
                 flow_run_context: FlowRunContext | None, log_prints: bool) -> None:
        self.task = task
        self.task_run = task_run
        self.parameters = parameters
        self.flow_run_context = flow_run_context
        self.log_prints = log_prints
        self.client = flow_run_context.client if flow_run_context else None
        self.logger: Any = None


flow_run_ctx: contextvars.ContextVar[FlowRunContext | None] = contextvars.ContextVar(
    "legato_flow_run", default=None
)
task_run_ctx: contextvars.ContextVar[TaskRunContext | None] = contextvars.ContextVar(
    "legato_task_run", default=None
)
tags_ctx: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "legato_tags", default=frozenset()
)


def get_run_context() -> FlowRunContext | TaskRunContext:
    """The innermost run context (a task run's inside a task, else the flow run's)."""
    ctx = task_run_ctx.get() or flow_run_ctx.get()
    if ctx is None:
        raise MissingContextError(
            "There is no active flow or task run. Call this from inside a function decorated "
            "with @flow or @task."
        )
    return ctx


@contextmanager
def tags(*names: str) -> Iterator[frozenset[str]]:
    """Add tags to every flow and task run created inside the block."""
    new = tags_ctx.get() | frozenset(names)
    token = tags_ctx.set(new)
    try:
        yield new
    finally:
        tags_ctx.reset(token)
