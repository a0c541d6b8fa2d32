"""The orchestration core over the history database (embedded mode, and the server).

:class:`Orchestrator` answers :class:`~legato.core.runs.CoreBase`'s hooks from the database;
:func:`transition_in_db` decides one state change against the stored state in one transaction
(the server's path for every change, and embedded mode's for task runs holding tag concurrency
slots).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ..exceptions import ObjectNotFound
from ..ids import new_id
from ..states import State, StateType
from ..store import models
from ..store.database import Database
from ..store.writer import HistoryWriter
from .rules import ACCEPTED, Decision, Verdict, decide
from .runs import (  # noqa: F401 - re-exported: the core's one import path
    CoreBase,
    _json_safe,
    _Run,
    _run_fields,
    apply_transition,
    run_from_row,
)

_UTC = dt.timezone.utc


def _now() -> dt.datetime:
    return dt.datetime.now(_UTC)


def _insert_for(dialect_name: str):
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert



class Orchestrator(CoreBase):
    def __init__(self, db: Database, writer: HistoryWriter) -> None:
        super().__init__(writer)
        self.db = db

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


def _table(kind: str) -> sa.Table:
    return models.flow_run if kind == "flow_run" else models.task_run


def _run_select(kind: str) -> Any:
    t = _table(kind)
    cols = [t.c.state_type, t.c.state_name, t.c.run_count, t.c.start_time, t.c.total_run_time,
            t.c.state_timestamp, t.c.tags]
    return sa.select(*cols)


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
    with db.write() as conn:
        return transition_in_conn(conn, db, kind, run_id, state, new_attempt=new_attempt,
                                  force=force, result=result, extra=extra, slot_wait=slot_wait)


def transition_in_conn(
    conn: sa.Connection,
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
    also: dict[str, Any] | None = None,
    guard: Callable[[dict[str, Any]], Decision | None] | None = None,
) -> tuple[Decision, _Run]:
    """:func:`transition_in_db` inside the caller's transaction. ``guard`` sees the locked row
    first and may refuse (a stale claim token); ``also`` are more columns to set with the
    state (a claim, a lease)."""
    table = _table(kind)
    stype = state.type
    q = sa.select(table).where(table.c.id == run_id)
    if not db.is_sqlite:
        q = q.with_for_update()
    found = conn.execute(q).mappings().first()
    if found is None:
        raise ObjectNotFound(f"No {kind.replace('_', ' ')} with id {run_id} in the history.")
    row = dict(found)
    run = run_from_row(kind, row)
    run.row = row  # the stored row after the decision (the server answers with it)
    refused = guard(row) if guard is not None else None
    if refused is not None:
        return refused, run
    if (kind == "flow_run" and run.type is StateType.CANCELLING
            and stype in (StateType.CRASHED, StateType.FAILED)):
        # a run asked to cancel that then dies (its worker's SIGTERM) ends Cancelled
        state = State(StateType.CANCELLED, message=f"Cancelled ({state.name.lower()} while "
                      f"cancelling: {state.message or 'no message'})")
        stype = state.type
    decision = ACCEPTED if force else decide(run.type, run.name, stype, state.name,
                                             new_attempt=new_attempt)
    if decision.verdict is not Verdict.ACCEPT:
        return decision, run
    if run.tags:
        refused = _concurrency_slots(conn, db, run_id, run, stype, slot_wait)
        if refused is not None:
            return refused, run
    fields, srow = apply_transition(kind, run_id, run, state, stype, result, extra)
    if also:
        fields.update(also)
    conn.execute(table.update().where(table.c.id == run_id).values(**fields))
    state_table = models.flow_run_state if kind == "flow_run" else models.task_run_state
    conn.execute(state_table.insert().values(**srow))
    row.update(fields)
    return decision, run


def _live_holders(conn: sa.Connection, slots: list[str]) -> list[str]:
    """The slot holders still alive: a task run that is no longer Running (its flow run crashed
    or was cancelled and ended it, or it was deleted) holds nothing; its slot's lease is over."""
    tr = models.task_run
    running = set(conn.execute(sa.select(tr.c.id).where(
        tr.c.id.in_(slots), tr.c.state_type == StateType.RUNNING.value)).scalars())
    return [s for s in slots if s in running]


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
                slots = _live_holders(conn, slots)
                if len(slots) < lim.concurrency_limit:  # a holder had died: its lease is over
                    conn.execute(cl.update().where(cl.c.id == lim.id).values(
                        active_slots=slots, updated=now))
                    continue
                return Decision(
                    Verdict.WAIT,
                    f"All {lim.concurrency_limit} slot(s) of tag {lim.tag!r} are taken.",
                    retry_after=slot_wait,
                )
        for lim in conn.execute(q).all():  # re-read: a dead holder's slot may have been freed
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
