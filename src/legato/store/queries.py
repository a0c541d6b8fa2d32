"""Reading the run history back (the CLI, the server and tests use these)."""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa

from ..exceptions import ObjectNotFound
from ..schemas import FlowRun, FlowRunFilter, LogRecord, StateRecord, TaskRun, TaskRunFilter
from . import models
from .database import Database

_ID_CHARS = frozenset("0123456789abcdef-")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ZERO_ID, _LAST_ID = "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"
_flow_run_cols = [*models.flow_run.c, models.flow.c.name.label("flow_name")]


def _resolve_id(conn: sa.Connection, table: sa.Table, run_id: str, what: str) -> str:
    """Accept a full id or a unique prefix of one (as `git` does), else a clear error."""
    run_id = str(run_id).strip().lower()
    if not _ID_CHARS.issuperset(run_id) or len(run_id) > 36:
        # never a database error (PostgreSQL's uuid column) nor a LIKE wildcard
        raise ObjectNotFound(f"No {what} with id {run_id!r}: ids are UUIDs (hex digits, dashes).")
    if len(run_id) == 36:
        if not _UUID_RE.match(run_id):  # 36 characters that are no UUID: PostgreSQL refuses them
            raise ObjectNotFound(f"No {what} with id {run_id!r}: ids are UUIDs "
                                 "(8-4-4-4-12 hex digits).")
        return run_id
    if len(run_id) < 4:
        raise ObjectNotFound(f"{what} id {run_id!r} is too short; give at least 4 characters.")
    # a prefix is a range of the primary key (a LIKE on the id's text reads every row)
    n = len(run_id)
    if any((_ZERO_ID[i] == "-") != (c == "-") for i, c in enumerate(run_id)):
        raise ObjectNotFound(f"No {what} with an id starting {run_id!r} in the history.")
    lo, hi = run_id + _ZERO_ID[n:], run_id + _LAST_ID[n:]
    rows = conn.execute(
        sa.select(table.c.id).where(table.c.id >= lo, table.c.id <= hi).limit(2)).all()
    if not rows:
        raise ObjectNotFound(f"No {what} with an id starting {run_id!r} in the history.")
    if len(rows) > 1:
        raise ObjectNotFound(f"More than one {what} id starts with {run_id!r}; give more of it.")
    return str(rows[0][0])


def read_flow_runs(db: Database, flt: FlowRunFilter | None = None) -> list[FlowRun]:
    flt = flt or FlowRunFilter()
    q = _flow_run_query(db, flt, sa.select(*_flow_run_cols), ordered=True)
    q = q.limit(flt.limit).offset(flt.offset)
    return [FlowRun(**r) for r in _rows(db, q)]


def count_flow_runs(db: Database, flt: FlowRunFilter) -> int:
    q = _flow_run_query(db, flt, sa.select(sa.func.count()), ordered=False)
    with db.read() as conn:
        return int(conn.execute(q).scalar() or 0)


def _flow_run_query(db: Database, flt: FlowRunFilter, q: Any, *, ordered: bool) -> Any:
    fr, f = models.flow_run, models.flow
    # the flow is joined to list runs (for flow_name), not to count them
    q = q.select_from(fr.join(f, f.c.id == fr.c.flow_id) if ordered else fr)
    if flt.flow_name is not None:
        # a scalar subquery, so the planner walks (flow_id, created) in order rather than
        # fetching and sorting all of a busy flow's runs
        q = q.where(fr.c.flow_id == sa.select(f.c.id).where(f.c.name == flt.flow_name)
                    .scalar_subquery())
    if flt.flow_id is not None:
        q = q.where(fr.c.flow_id == flt.flow_id)
    if flt.name_like:
        q = q.where(fr.c.name.like(f"%{_escape_like(flt.name_like)}%", escape="\\"))
    if flt.ids is not None:
        q = q.where(fr.c.id.in_(flt.ids))
    if flt.parent_flow_run_id is not None:
        tr = models.task_run
        q = q.where(fr.c.parent_task_run_id.in_(
            sa.select(tr.c.id).where(tr.c.flow_run_id == flt.parent_flow_run_id)))
    if flt.state_types:
        q = q.where(fr.c.state_type.in_([s.value for s in flt.state_types]))
    if flt.state_names:
        q = q.where(fr.c.state_name.in_(flt.state_names))
    if flt.parent_task_run_id is not None:
        q = q.where(fr.c.parent_task_run_id == flt.parent_task_run_id)
    start = sa.func.coalesce(fr.c.start_time, fr.c.created)
    if flt.start_after is not None:
        q = q.where(start >= flt.start_after)
    if flt.start_before is not None:
        q = q.where(start <= flt.start_before)
    if ordered:
        created = (sa.func.coalesce(fr.c.created, fr.c.created)
                   if _window_sort(flt, flt.sort == "created_asc") else fr.c.created)
        order = {
            "created_desc": [created.desc(), fr.c.id],
            "created_asc": [created.asc(), fr.c.id],
            "start_time_desc": [fr.c.start_time.desc(), fr.c.id],
            "name_asc": [fr.c.name.asc(), fr.c.id],
        }[flt.sort]
        q = q.order_by(*order)
    if flt.tags_all:
        # in the database, so that limit/offset page through matches and nothing is over-read
        q = q.where(*_has_tags(db, flt.tags_all, "flow_run"))
    return q


def _window_sort(flt: Any, ascending: bool) -> bool:
    """Sort a start-time window by an expression of `created` (the same order)? It keeps the
    planner off the created index and on the window's own, so the cost follows the rows in the
    window: right for a closed window, or oldest-first after a start time, where walking the
    created index would cross all the history before the window. An open window walked from its
    own end (newest first after T, oldest first before T) finds its rows at once: left as is."""
    after, before = flt.start_after is not None, flt.start_before is not None
    return (after and before) or (after and ascending)


def _has_tags(db: Database, tags: list[str], table: str) -> list[Any]:
    """Conditions: the run's JSON tag list holds every one of ``tags``."""
    if db.is_sqlite:
        return [
            sa.text(
                f"EXISTS (SELECT 1 FROM json_each({table}.tags) WHERE json_each.value = :{table}_tag{i})"
            ).bindparams(**{f"{table}_tag{i}": tag})
            for i, tag in enumerate(tags)
        ]
    return [sa.text(f"{table}.tags @> CAST(:{table}_tags_all AS jsonb)").bindparams(
        **{f"{table}_tags_all": json.dumps(list(tags))})]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def read_flow_run(db: Database, run_id: str) -> FlowRun:
    fr, f = models.flow_run, models.flow
    with db.read() as conn:
        run_id = _resolve_id(conn, fr, run_id, "flow run")
        row = (
            conn.execute(
                sa.select(*_flow_run_cols)
                .select_from(fr.join(f, f.c.id == fr.c.flow_id))
                .where(fr.c.id == run_id)
            )
            .mappings()
            .first()
        )
    if row is None:
        raise ObjectNotFound(f"No flow run with id {run_id} in the history.")
    return FlowRun(**row)


def read_task_runs(db: Database, flt: TaskRunFilter | None = None) -> list[TaskRun]:
    flt = flt or TaskRunFilter()
    tr = models.task_run
    with db.read() as conn:
        q = _task_run_query(conn, db, flt, sa.select(tr))
        created = (sa.func.coalesce(tr.c.created, tr.c.created)  # (see _window_sort)
                   if _window_sort(flt, flt.sort == "created_asc") else tr.c.created)
        order = created.asc() if flt.sort == "created_asc" else created.desc()
        q = q.order_by(order, tr.c.id).limit(flt.limit).offset(flt.offset)
        rows = conn.execute(q).mappings().all()
    return [TaskRun(**r) for r in rows]


def count_task_runs(db: Database, flt: TaskRunFilter) -> int:
    with db.read() as conn:
        q = _task_run_query(conn, db, flt, sa.select(sa.func.count()).select_from(models.task_run))
        return int(conn.execute(q).scalar() or 0)


def _task_run_query(conn: sa.Connection, db: Database, flt: TaskRunFilter, q: Any) -> Any:
    tr = models.task_run
    if flt.flow_run_id is not None:
        q = q.where(tr.c.flow_run_id == _resolve_id(conn, models.flow_run, flt.flow_run_id, "flow run"))
    if flt.state_types:
        q = q.where(tr.c.state_type.in_([s.value for s in flt.state_types]))
    if flt.name_like:
        q = q.where(tr.c.name.like(f"%{_escape_like(flt.name_like)}%", escape="\\"))
    if flt.ids is not None:
        q = q.where(tr.c.id.in_(flt.ids))
    if flt.tags_all:
        q = q.where(*_has_tags(db, flt.tags_all, "task_run"))
    start = sa.func.coalesce(tr.c.start_time, tr.c.created)
    if flt.start_after is not None:
        q = q.where(start >= flt.start_after)
    if flt.start_before is not None:
        q = q.where(start <= flt.start_before)
    return q


def read_task_run(db: Database, run_id: str) -> TaskRun:
    tr = models.task_run
    with db.read() as conn:
        run_id = _resolve_id(conn, tr, run_id, "task run")
        row = conn.execute(sa.select(tr).where(tr.c.id == run_id)).mappings().first()
    if row is None:
        raise ObjectNotFound(f"No task run with id {run_id} in the history.")
    return TaskRun(**row)


def read_states(db: Database, kind: str, run_id: str) -> list[StateRecord]:
    table = models.flow_run_state if kind == "flow_run" else models.task_run_state
    owner = models.flow_run if kind == "flow_run" else models.task_run
    col = table.c[f"{kind}_id"]
    with db.read() as conn:
        run_id = _resolve_id(conn, owner, run_id, kind.replace("_", " "))
        rows = conn.execute(
            sa.select(table).where(col == run_id).order_by(table.c.timestamp, table.c.id)
        ).mappings().all()
        if not rows and conn.execute(
                sa.select(owner.c.id).where(owner.c.id == run_id)).first() is None:
            # a full id is not looked up by _resolve_id: no states may mean no such run
            raise ObjectNotFound(f"No {kind.replace('_', ' ')} with id {run_id} in the history.")
        return [StateRecord(**r) for r in rows]


def read_logs(
    db: Database,
    *,
    flow_run_id: str | None = None,
    task_run_id: str | None = None,
    min_level: int = 0,
    limit: int | None = None,
    include_task_logs: bool = True,
    offset: int = 0,
) -> list[LogRecord]:
    lg = models.log
    q = sa.select(lg)
    with db.read() as conn:
        if flow_run_id is not None:
            flow_run_id = _resolve_id(conn, models.flow_run, flow_run_id, "flow run")
            q = q.where(lg.c.flow_run_id == flow_run_id)
            if not include_task_logs:
                q = q.where(lg.c.task_run_id.is_(None))
        if task_run_id is not None:
            q = q.where(lg.c.task_run_id == task_run_id)
        if min_level:
            q = q.where(lg.c.level >= min_level)
        q = q.order_by(lg.c.timestamp, lg.c.id)
        if limit:
            q = q.limit(limit)
        if offset:
            q = q.offset(offset)
        return [LogRecord(**r) for r in conn.execute(q).mappings()]


def count(db: Database, table_name: str, **where: Any) -> int:
    table = models.metadata.tables[table_name]
    q = sa.select(sa.func.count()).select_from(table)
    for k, v in where.items():
        q = q.where(table.c[k] == v)
    with db.read() as conn:
        return int(conn.execute(q).scalar() or 0)


def _rows(db: Database, q: Any) -> list[dict[str, Any]]:
    with db.read() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]
