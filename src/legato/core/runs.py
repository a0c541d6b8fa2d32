"""The orchestration core's in-memory half: the runs a process drives, decided by the rules.

:class:`CoreBase` keeps the current state of the runs it drives, so a transition costs no round
trip; every change goes through :func:`legato.core.rules.decide`, and accepted changes become rows
for a writer. What it must read from, or have decided by, the store are hooks: the embedded
:class:`~legato.core.orchestrator.Orchestrator` answers them from the database, the HTTP client's
core from the server. This module imports no database code.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from typing import Any

from ..exceptions import InvalidStateTransition, ObjectNotFound
from ..ids import new_id
from ..processes import host
from ..redaction import redact
from ..states import TERMINAL_TYPES, State, StateType
from .rules import Decision, Verdict, decide

_UTC = dt.timezone.utc


def _now() -> dt.datetime:
    return dt.datetime.now(_UTC)


class _Run:
    """What the core keeps in memory about a run it drives."""

    __slots__ = ("kind", "type", "name", "run_count", "start_time", "running_since", "total",
                 "tags", "holds_slots", "row")

    def __init__(self, kind: str, tags: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.tags = tags  # a task run's tags: consulted for tag concurrency limits
        self.holds_slots = False
        self.row: dict[str, Any] | None = None  # the stored row, when read from the store
        self.type: StateType | None = None
        self.name: str | None = None
        self.run_count = 0
        self.start_time: dt.datetime | None = None
        self.running_since: dt.datetime | None = None
        self.total = 0.0


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return repr(value)



class CoreBase:
    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self._runs: dict[str, _Run] = {}
        self._flows: dict[str, str] = {}
        self._flow_lock = threading.Lock()
        # striped by run id: two threads on one run serialise; runs in parallel do not contend
        self._state_locks = tuple(threading.Lock() for _ in range(64))
        self._children: dict[str, list[str]] = {}  # flow run id -> its task run ids
        self._limited: frozenset[str] = frozenset()
        self._limited_read_at = -1e9
        self.slot_wait = 0.5

    #: whether every flow run transition is decided by the store at once (the HTTP client: the
    #: server may have cancelled the run); embedded, this process is the only one driving it
    sync_flow_states = False

    # -- what the core reads from the store, or has it decide (implemented by subclasses) ------
    def _fetch_flow_id(self, name: str) -> str:
        raise NotImplementedError

    def _fetch_run(self, kind: str, run_id: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def _fetch_cache(self, key: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def _fetch_limited_tags(self) -> frozenset[str]:
        raise NotImplementedError

    def _decide_now(self, kind: str, run_id: str, state: State, *, new_attempt: bool,
                    result: dict[str, Any] | None, extra: dict[str, Any] | None,
                    force: bool) -> tuple[Decision, dict[str, Any] | None]:
        """Decide and record in one step of the store (tag concurrency slots need it); returns
        the decision and the run's fields after it."""
        raise NotImplementedError

    def limited_tags(self) -> frozenset[str]:
        """Tags that have a concurrency limit (re-read every 2 s: limits change rarely)."""
        now = time.monotonic()
        if now - self._limited_read_at > 2.0:
            self._limited = self._fetch_limited_tags()
            self._limited_read_at = now
        return self._limited

    # -- flows -----------------------------------------------------------------------------------
    def ensure_flow(self, name: str) -> str:
        flow_id = self._flows.get(name)
        if flow_id is not None:
            return flow_id
        with self._flow_lock:
            flow_id = self._flows.get(name)
            if flow_id is not None:
                return flow_id
            flow_id = self._fetch_flow_id(name)
            self._flows[name] = flow_id
            return flow_id

    # -- runs ------------------------------------------------------------------------------------
    def create_flow_run(
        self,
        *,
        id: str,
        flow_name: str,
        name: str,
        state: State,
        parameters: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        parent_task_run_id: str | None = None,
        version: str | None = None,
        empirical_policy: dict[str, Any] | None = None,
    ) -> None:
        flow_id = self.ensure_flow(flow_name)
        now = _now()
        row = {
            "id": id,
            "flow_id": flow_id,
            "name": name,
            "state_type": None,
            "state_name": None,
            "state_message": None,
            "state_timestamp": None,
            "parameters": parameters or {},
            "tags": list(tags or ()),
            "parent_task_run_id": parent_task_run_id,
            "run_count": 0,
            "expected_start_time": state.timestamp,
            "start_time": None,
            "end_time": None,
            "total_run_time": 0.0,
            "version": version,
            "empirical_policy": empirical_policy or {},
            "created": now,
            "updated": now,
            # the process running it, alive as of now: its heartbeats follow (engine/heartbeat.py)
            "host": host(),
            "pid": os.getpid(),
            "heartbeat": now,
        }
        self._runs[id] = _Run("flow_run")
        # the row and its first state go to the writer together: no flush can split them
        self.set_state("flow_run", id, state, _insert=row)

    def create_task_run(
        self,
        *,
        id: str,
        flow_run_id: str | None,
        task_key: str,
        name: str,
        dynamic_key: str,
        state: State,
        tags: list[str] | None = None,
        task_inputs: dict[str, list[dict[str, Any]]] | None = None,
        empirical_policy: dict[str, Any] | None = None,
    ) -> None:
        now = state.timestamp
        row = {
            "id": id,
            "flow_run_id": flow_run_id,
            "task_key": task_key,
            "name": name,
            "dynamic_key": dynamic_key,
            "cache_key": None,
            "cache_expiration": None,
            "state_type": None,
            "state_name": None,
            "state_message": None,
            "state_timestamp": None,
            "task_inputs": task_inputs or {},
            "tags": list(tags or ()),
            "run_count": 0,
            "expected_start_time": now,
            "start_time": None,
            "end_time": None,
            "total_run_time": 0.0,
            "empirical_policy": empirical_policy or {},
            "created": now,
            "updated": now,
        }
        self._runs[id] = _Run("task_run", tuple(tags) if tags else ())
        if flow_run_id is not None:
            # forgotten with their flow run (end_flow_run), so memory does not grow without end
            # in a long-lived process, while the flow still answers for them without the store
            self._children.setdefault(flow_run_id, []).append(id)  # (atomic under the GIL)
        self.set_state("task_run", id, state, _insert=row)

    def set_state(
        self,
        kind: str,
        run_id: str,
        state: State,
        *,
        new_attempt: bool = False,
        result: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        force: bool = False,
        _insert: dict[str, Any] | None = None,
    ) -> Decision:
        """Propose ``state`` for a run. Returns the decision; an accepted state is recorded."""
        if state.message:  # a message quoting an exception that quotes a block's secret
            state.message = redact(state.message)
        run = self._runs.get(run_id) or self._load(kind, run_id)
        stype = state.type
        if _insert is None and (
            (kind == "flow_run" and self.sync_flow_states)
            or (run.tags and (run.holds_slots or (
                stype is StateType.RUNNING and not self.limited_tags().isdisjoint(run.tags))))
        ):
            return self._set_state_now(kind, run_id, run, state, new_attempt=new_attempt,
                                       result=result, extra=extra, force=force)
        # deciding and recording is one step: two threads proposing a final state for one run
        # at once (a task finishing while its flow settles it) must not both be accepted
        with self._state_locks[hash(run_id) & 63]:
            decision = self._record(kind, run_id, run, state, stype, new_attempt, result, extra,
                                    force, _insert)
        if decision.verdict is Verdict.ACCEPT and kind == "task_run":
            if stype in TERMINAL_TYPES:
                self.writer.after_terminal_state()  # durable mode writes here, not locked
            elif run_id not in self._runs:  # a new attempt of a run read from the store
                self._runs[run_id] = run
        return decision

    def _set_state_now(self, kind: str, run_id: str, run: _Run, state: State, *,
                       new_attempt: bool, result: dict[str, Any] | None,
                       extra: dict[str, Any] | None, force: bool) -> Decision:
        self.writer.flush()  # the run and its earlier states must be in the store first
        with self._state_locks[hash(run_id) & 63]:
            decision, fields = self._decide_now(kind, run_id, state, new_attempt=new_attempt,
                                                result=result, extra=extra, force=force)
            if fields is not None:
                for name, value in fields.items():
                    setattr(run, name, value)
        if decision.verdict is Verdict.ACCEPT and state.type in TERMINAL_TYPES and kind == "task_run":
            self.writer.after_terminal_state()
        return decision

    def _record(self, kind: str, run_id: str, run: _Run, state: State, stype: StateType,
                new_attempt: bool, result: dict[str, Any] | None,
                extra: dict[str, Any] | None, force: bool,
                insert: dict[str, Any] | None) -> Decision:
        if force:
            decision = Decision(Verdict.ACCEPT)
        else:
            decision = decide(run.type, run.name, stype, state.name, new_attempt=new_attempt)
        if decision.verdict is not Verdict.ACCEPT:
            if insert is not None:  # (a new run accepts any first state; kept for safety)
                (self.writer.insert_task_run if kind == "task_run"
                 else self.writer.insert_flow_run)(insert)
            return decision
        fields, srow = apply_transition(kind, run_id, run, state, stype, result, extra)
        # the run's new fields and its state row in one step: never in two different flushes
        if kind == "task_run":
            self.writer.task_run_transition(run_id, fields, srow, insert)
        else:
            self.writer.flow_run_transition(run_id, fields, srow, insert)
        return decision

    def require_state(self, kind: str, run_id: str, state: State, **kw: Any) -> Decision:
        """Like set_state, but a refusal raises InvalidStateTransition (NOOP is fine)."""
        decision = self.set_state(kind, run_id, state, **kw)
        if decision.verdict is Verdict.REJECT:
            raise InvalidStateTransition(decision.reason or "transition refused")
        return decision

    def current_state_type(self, run_id: str) -> StateType | None:
        run = self._runs.get(run_id)
        return run.type if run else None

    def forget(self, run_id: str) -> None:
        """Drop what is kept in memory about a flow run and its task runs (it has ended)."""
        self._runs.pop(run_id, None)
        for child in self._children.pop(run_id, ()):
            self._runs.pop(child, None)

    def _load(self, kind: str, run_id: str) -> _Run:
        self.writer.flush()
        row = self._fetch_run(kind, run_id)
        if row is None:
            raise ObjectNotFound(f"No {kind.replace('_', ' ')} with id {run_id} in the history.")
        run = run_from_row(kind, row)
        if run.type not in TERMINAL_TYPES or kind == "flow_run":
            self._runs[run_id] = run
        return run

    def set_task_run_cache_key(
        self, run_id: str, cache_key: str | None, expiration: dt.datetime | None
    ) -> None:
        self.writer.update_task_run(run_id, {"cache_key": cache_key, "cache_expiration": expiration})

    # -- logs ------------------------------------------------------------------------------------
    def write_log(self, row: dict[str, Any]) -> None:
        self.writer.add_log(row)

    # -- cache -----------------------------------------------------------------------------------
    def read_cache(self, key: str) -> dict[str, Any] | None:
        """The live cache entry for ``key`` (expired entries count as missing)."""
        self.writer.flush()  # entries written earlier in this process must be visible
        row = self._fetch_cache(key)
        if row is None:
            return None
        if row["expiration"] is not None and row["expiration"] <= _now():
            return None
        return row

    def write_cache(
        self,
        key: str,
        *,
        task_run_id: str,
        result: dict[str, Any],
        expiration: dt.datetime | None,
    ) -> None:
        self.writer.put_cache(
            {
                "key": key,
                "task_run_id": task_run_id,
                "result": result,
                "expiration": expiration,
                "created": _now(),
            }
        )

    def flush(self) -> None:
        self.writer.flush()


# -- a transition, computed once for both paths (in memory, and in one store transaction) --------
def apply_transition(kind: str, run_id: str, run: _Run, state: State, stype: StateType,
                     result: dict[str, Any] | None,
                     extra: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """An accepted state's effect: the run's changed fields and the new state row. Updates
    ``run`` (its current state, run count and run time) to match."""
    ts = state.timestamp
    fields: dict[str, Any] = {
        "state_type": stype.value,
        "state_name": state.name,
        "state_message": state.message,
        "state_timestamp": ts,
        "updated": ts,
    }
    if run.running_since is not None and stype is not StateType.RUNNING:
        run.total += (ts - run.running_since).total_seconds()
        run.running_since = None
        fields["total_run_time"] = run.total
    if stype is StateType.RUNNING:
        run.run_count += 1
        run.running_since = ts
        fields["run_count"] = run.run_count
        if run.start_time is None:
            run.start_time = ts
            fields["start_time"] = ts
    elif stype in TERMINAL_TYPES:
        fields["end_time"] = ts
    if extra:
        fields.update(extra)
    run.type = stype
    run.name = state.name
    state_id = new_id()
    state.id = state_id
    srow = {
        "id": state_id,
        f"{kind}_id": run_id,
        "type": stype.value,
        "name": state.name,
        "message": state.message,
        "timestamp": ts,
        "result": result,
        "details": _json_safe(state.details) if state.details else {},
    }
    return fields, srow


def run_from_row(kind: str, row: dict[str, Any]) -> _Run:
    """The core's view of a run, from its stored row."""
    run = _Run(kind, tuple(row.get("tags") or ()) if kind == "task_run" else ())
    run.type = StateType(row["state_type"]) if row.get("state_type") else None
    run.name = row.get("state_name")
    run.run_count = row.get("run_count") or 0
    run.start_time = row.get("start_time")
    run.total = row.get("total_run_time") or 0.0
    if run.type is StateType.RUNNING:
        run.running_since = row.get("state_timestamp")  # so its run time keeps counting
    return run


def _run_fields(run: _Run) -> dict[str, Any]:
    return {name: getattr(run, name) for name in
            ("type", "name", "run_count", "start_time", "running_since", "total", "holds_slots")}
