"""Run states: what a flow or task run is doing, with a type, a name, a message and a time.

A state's *type* drives orchestration (is it final? may it run?); its *name* is what users see
("Cached" is a COMPLETED state, "AwaitingRetry" a SCHEDULED one, "Retrying" a RUNNING one).
States are plain objects (not pydantic models): the engine makes three or more per task and the
hot path must stay cheap.
"""

from __future__ import annotations

import datetime as _dt
import enum
from typing import Any

from .exceptions import CancelledRun, LegatoError, UnfinishedRun

__all__ = [
    "StateType",
    "State",
    "Scheduled",
    "Late",
    "AwaitingRetry",
    "Pending",
    "Running",
    "Retrying",
    "Completed",
    "Cached",
    "Failed",
    "TimedOut",
    "Crashed",
    "Cancelling",
    "Cancelled",
    "Paused",
    "TERMINAL_TYPES",
]


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


class StateType(str, enum.Enum):
    SCHEDULED = "SCHEDULED"  # waiting for a time to come (also Late, AwaitingRetry)
    PENDING = "PENDING"  # accepted, about to start
    RUNNING = "RUNNING"  # user code is executing (also Retrying)
    COMPLETED = "COMPLETED"  # finished with a result (also Cached)
    FAILED = "FAILED"  # user code raised, or a timeout / bad parameter stopped it
    CRASHED = "CRASHED"  # the infrastructure or process died under it
    CANCELLING = "CANCELLING"  # cancellation asked for, not yet confirmed
    CANCELLED = "CANCELLED"  # stopped on request
    PAUSED = "PAUSED"  # waiting for input or a resume

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


TERMINAL_TYPES = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
)


class State:
    """One state of a run. ``data`` holds the result (or the exception) in memory."""

    __slots__ = ("type", "name", "message", "timestamp", "data", "details", "id")

    def __init__(
        self,
        type: StateType,
        name: str | None = None,
        message: str | None = None,
        timestamp: _dt.datetime | None = None,
        data: Any = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.type = type if type.__class__ is StateType else StateType(type)
        self.name = name or self.type.value.capitalize()
        self.message = message
        self.timestamp = timestamp or _now()
        self.data = data
        self.details = details if details is not None else {}
        self.id: str | None = None

    # -- predicates -------------------------------------------------------------------------
    def is_scheduled(self) -> bool:
        return self.type is StateType.SCHEDULED

    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_completed(self) -> bool:
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type is StateType.CRASHED

    def is_cancelled(self) -> bool:
        return self.type is StateType.CANCELLED

    def is_cancelling(self) -> bool:
        return self.type is StateType.CANCELLING

    def is_paused(self) -> bool:
        return self.type is StateType.PAUSED

    def is_final(self) -> bool:
        return self.type in TERMINAL_TYPES

    # -- result -----------------------------------------------------------------------------
    def result(self, raise_on_failure: bool = True) -> Any:
        """The run's return value; for a failed/crashed/cancelled run, raise its exception."""
        if self.type is StateType.COMPLETED:
            return self.data
        if self.type in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED):
            exc = self.data if isinstance(self.data, BaseException) else None
            if exc is None:
                cls = CancelledRun if self.type is StateType.CANCELLED else LegatoError
                exc = cls(self.message or f"The run ended in state {self.name}.")
            if raise_on_failure:
                raise exc
            return exc
        raise UnfinishedRun(
            f"The run is in state {self.name!r} ({self.type.value}) and has no result yet. "
            "Wait for it to finish first (future.wait() or future.result())."
        )

    def copy(self, **changes: Any) -> State:
        s = State(self.type, self.name, self.message, self.timestamp, self.data, dict(self.details))
        for k, v in changes.items():
            setattr(s, k, v)
        return s

    def __repr__(self) -> str:
        msg = f", message={self.message!r}" if self.message else ""
        return f"{self.name}(type={self.type.value}{msg})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        return (self.type, self.name, self.message, self.timestamp) == (
            other.type,
            other.name,
            other.message,
            other.timestamp,
        )

    __hash__ = object.__hash__


def _mk(type_: StateType, default_name: str):
    def make(
        message: str | None = None,
        data: Any = None,
        name: str | None = None,
        **details: Any,
    ) -> State:
        return State(type_, name or default_name, message, None, data, details or None)

    make.__name__ = default_name
    make.__doc__ = f"A {type_.value} state named {default_name!r}."
    return make


Scheduled = _mk(StateType.SCHEDULED, "Scheduled")
Late = _mk(StateType.SCHEDULED, "Late")
AwaitingRetry = _mk(StateType.SCHEDULED, "AwaitingRetry")
Pending = _mk(StateType.PENDING, "Pending")
Running = _mk(StateType.RUNNING, "Running")
Retrying = _mk(StateType.RUNNING, "Retrying")
Completed = _mk(StateType.COMPLETED, "Completed")
Cached = _mk(StateType.COMPLETED, "Cached")
Failed = _mk(StateType.FAILED, "Failed")
TimedOut = _mk(StateType.FAILED, "TimedOut")
Crashed = _mk(StateType.CRASHED, "Crashed")
Cancelling = _mk(StateType.CANCELLING, "Cancelling")
Cancelled = _mk(StateType.CANCELLED, "Cancelled")
Paused = _mk(StateType.PAUSED, "Paused")
