"""What both clients share: the engine's writes go to an in-process core and its writer.

The embedded client's core answers from the database, the HTTP client's from the server; the
calls the engine makes, and what they do with the core and the writer, are the same.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..core.rules import Decision
from ..states import State, StateType


class CoreClient:
    """The write half of the client interface, over ``self.core`` and ``self.writer``."""

    core: Any
    writer: Any

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
        history, an unreachable server): drop its buffered rows rather than write them later
        as a run stuck in Running; if an earlier flush already wrote it, end it Crashed."""
        if not self.writer.discard_flow_run(run_id):
            message = f"The flow run could not start: {type(exc).__name__}: {exc}"
            self.core.set_state("flow_run", run_id, State(StateType.CRASHED, message=message),
                                force=True)
        self.core.forget(run_id)

    def end_flow_run(self, run_id: str) -> None:
        self.writer.flush()
        self.core.forget(run_id)
