"""The orchestration core's use cases: create runs, move them through states, keep the cache.

Every state change goes through :func:`legato.core.rules.decide`; accepted changes become rows for
the :class:`~legato.store.writer.HistoryWriter`. The core remembers the current state of the runs
it drives, so a transition costs no database round trip; a run it has not seen is read from the
store first.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import sqlalchemy as sa

from ..exceptions import InvalidStateTransition, ObjectNotFound
from ..ids import new_id
from ..states import TERMINAL_TYPES, State, StateType
from ..store import models
from ..store.database import Database
from ..store.writer import HistoryWriter
from .rules import ACCEPTED, Decision, Verdict, decide

_UTC = dt.timezone.utc


def _now() -> dt.datetime:
    return dt.datetime.now(_UTC)


class _Run:
    """What the core keeps in memory about a run it drives."""

    __slots__ = ("kind", "type", "name", "run_count", "start_time", "running_since", "total",
                 "tags", "holds_slots")

    def __init__(self, kind: str, tags: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.tags = tags  # a task run's tags: consulted for tag concurrency limits
        self.holds_slots = False
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


def _insert_for(dialect_name: str):
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


class Orchestrator:
    def __init__(self, db: Database, writer: HistoryWriter) -> None:
        self.db = db
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

    # -- what the core reads from the store (the HTTP client's core reads them from the server) --
    def _fetch_flow_id(self, name: str) -> str:
        f = models.flow
        with self.db.write() as conn:
            flow_id = conn.execute(sa.select(f.c.id).where(f.c.name == name)).scalar()
            if flow_id is None:
                now = _now()
                # another process may add the same flow at the same moment (PostgreSQL has
                # no BEGIN IMMEDIATE): insert-if-absent, then read whichever row won
                insert = _insert_for(conn.dialect.name)(f).values(
                    id=new_id(), name=name, created=now, updated=now
                )
                conn.execute(insert.on_conflict_do_nothing(index_elements=["name"]))
                flow_id = conn.execute(sa.select(f.c.id).where(f.c.name == name)).scalar()
        return str(flow_id)

    def _fetch_run(self, kind: str, run_id: str) -> dict[str, Any] | None:
        with self.db.read() as conn:
            row = conn.execute(_run_select(kind).where(_table(kind).c.id == run_id)).mappings().first()
        return dict(row) if row is not None else None

    def _fetch_cache(self, key: str) -> dict[str, Any] | None:
        c = models.cache_entry
        with self.db.read() as conn:
            row = conn.execute(sa.select(c).where(c.c.key == key)).mappings().first()
        return dict(row) if row is not None else None

    def _fetch_limited_tags(self) -> frozenset[str]:
        with self.db.read() as conn:
            return frozenset(conn.execute(sa.select(models.concurrency_limit.c.tag)).scalars())

    def _decide_now(self, kind: str, run_id: str, state: State, *, new_attempt: bool,
                    result: dict[str, Any] | None, extra: dict[str, Any] | None,
                    force: bool) -> tuple[Decision, dict[str, Any] | None]:
        """Decide and record in one store transaction (tag concurrency slots need it)."""
        decision, run = transition_in_db(self.db, kind, run_id, state, new_attempt=new_attempt,
                                         force=force, result=result, extra=extra,
                                         slot_wait=self.slot_wait)
        return decision, _run_fields(run) if run is not None else None

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


def _table(kind: str) -> sa.Table:
    return models.flow_run if kind == "flow_run" else models.task_run


def _run_select(kind: str) -> Any:
    t = _table(kind)
    cols = [t.c.state_type, t.c.state_name, t.c.run_count, t.c.start_time, t.c.total_run_time,
            t.c.state_timestamp, t.c.tags]
    return sa.select(*cols)


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


def transition_in_db(
    db: Database,
    kind: str,
    run_id: str,
    state: State,
    *,
    new_attempt: bool = False,
    force: bool = False,
    result: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    slot_wait: float = 0.5,
) -> tuple[Decision, _Run]:
    """Decide a proposed state against the run's stored state and record it, in one write
    transaction holding the run's row (``FOR UPDATE`` on PostgreSQL; SQLite's write lock), so
    two processes or server replicas proposing states for one run at once are decided one after
    the other. A task run going Running also takes a slot of each concurrency-limited tag it
    carries, or gets WAIT; leaving Running gives the slots back. Raises ObjectNotFound."""
    table = _table(kind)
    stype = state.type
    with db.write() as conn:
        q = _run_select(kind).where(table.c.id == run_id)
        if not db.is_sqlite:
            q = q.with_for_update()
        row = conn.execute(q).mappings().first()
        if row is None:
            raise ObjectNotFound(f"No {kind.replace('_', ' ')} with id {run_id} in the history.")
        run = run_from_row(kind, dict(row))
        decision = ACCEPTED if force else decide(run.type, run.name, stype, state.name,
                                                 new_attempt=new_attempt)
        if decision.verdict is not Verdict.ACCEPT:
            return decision, run
        if run.tags:
            refused = _concurrency_slots(conn, db, run_id, run, stype, slot_wait)
            if refused is not None:
                return refused, run
        fields, srow = apply_transition(kind, run_id, run, state, stype, result, extra)
        conn.execute(table.update().where(table.c.id == run_id).values(**fields))
        state_table = models.flow_run_state if kind == "flow_run" else models.task_run_state
        conn.execute(state_table.insert().values(**srow))
    return decision, run


def _concurrency_slots(conn: sa.Connection, db: Database, run_id: str, run: _Run,
                       stype: StateType, slot_wait: float) -> Decision | None:
    cl = models.concurrency_limit
    q = sa.select(cl.c.id, cl.c.tag, cl.c.concurrency_limit, cl.c.active_slots).where(
        cl.c.tag.in_(list(run.tags))).order_by(cl.c.tag)  # one lock order: no deadlock
    if not db.is_sqlite:
        q = q.with_for_update()
    limits = conn.execute(q).all()
    if not limits:
        run.holds_slots = False
        return None
    now = _now()
    if stype is StateType.RUNNING:
        for lim in limits:
            slots = lim.active_slots or []
            if lim.concurrency_limit <= 0:
                return Decision(
                    Verdict.REJECT,
                    f"The concurrency limit of tag {lim.tag!r} is 0: task runs with this tag "
                    "may not run. Raise it with `legato concurrency-limit create TAG N`.",
                )
            if run_id not in slots and len(slots) >= lim.concurrency_limit:
                return Decision(
                    Verdict.WAIT,
                    f"All {lim.concurrency_limit} slot(s) of tag {lim.tag!r} are taken.",
                    retry_after=slot_wait,
                )
        for lim in limits:
            slots = list(lim.active_slots or [])
            if run_id not in slots:
                conn.execute(cl.update().where(cl.c.id == lim.id).values(
                    active_slots=[*slots, run_id], updated=now))
        run.holds_slots = True
    else:
        for lim in limits:
            slots = list(lim.active_slots or [])
            if run_id in slots:
                conn.execute(cl.update().where(cl.c.id == lim.id).values(
                    active_slots=[s for s in slots if s != run_id], updated=now))
        run.holds_slots = False
    return None
