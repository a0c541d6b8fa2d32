"""What the UI's pages read: one function per page, each a handful of indexed queries (the
pages must stay fast on a history of a million runs: no unbounded counts, no offset paging)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ...exceptions import ObjectNotFound
from ...store import models
from ...store.queries import _escape_like, _has_tags

FLOW_RUN_PAGE = 50
TASK_RUN_CAP = 1000  # task runs drawn on a run's page (the list says how many more there are)
LOG_PAGE = 500
SUBFLOW_CAP = 200
COUNT_CAP = 10_000  # "10,000+" rather than counting a million rows

fr, f, tr = models.flow_run, models.flow, models.task_run


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _rows(conn: sa.Connection, q: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(q).mappings()]


_RUN_COLS = (fr.c.id, fr.c.name, fr.c.state_type, fr.c.state_name, fr.c.state_message,
             fr.c.start_time, fr.c.end_time, fr.c.expected_start_time, fr.c.created,
             fr.c.total_run_time, fr.c.tags, fr.c.deployment_id, fr.c.flow_id,
             f.c.name.label("flow_name"))


def _runs_select() -> Any:
    return sa.select(*_RUN_COLS).select_from(fr.join(f, f.c.id == fr.c.flow_id))


# -- the dashboard ----------------------------------------------------------------------------------
def _epoch(db: Any, column: Any) -> Any:
    if db.is_sqlite:
        return sa.cast(sa.func.strftime("%s", column), sa.Integer)
    return sa.cast(sa.func.extract("epoch", column), sa.BigInteger)


def dashboard(db: Any, hours: int = 24, buckets: int = 48) -> dict[str, Any]:
    now = _now()
    since = now - dt.timedelta(hours=hours)
    width = max(int(hours * 3600 / buckets), 60)
    start = sa.func.coalesce(fr.c.start_time, fr.c.created)
    first = int(since.timestamp()) // width
    bucket = (_epoch(db, start) // width).label("bucket")
    with db.read() as conn:
        counts = conn.execute(
            sa.select(bucket, fr.c.state_type, sa.func.count())
            .where(start >= since).group_by(bucket, fr.c.state_type)).all()
        failures = _rows(conn, _runs_select().where(
            fr.c.state_type.in_(["FAILED", "CRASHED"]), start >= since)
            .order_by(start.desc()).limit(10))
        upcoming = _rows(conn, _runs_select().where(
            fr.c.state_type == "SCHEDULED", fr.c.state_name != "Late",
            fr.c.expected_start_time >= now - dt.timedelta(minutes=1))
            .order_by(fr.c.expected_start_time).limit(8))
        late = _rows(conn, _runs_select().where(
            fr.c.state_type == "SCHEDULED", fr.c.state_name == "Late")
            .order_by(fr.c.expected_start_time).limit(8))
        queues = work_queues(conn)
    series: dict[int, dict[str, int]] = {}
    totals: dict[str, int] = {}
    for b, state_type, n in counts:
        idx = int(b) - first
        if 0 <= idx < buckets + 1:
            series.setdefault(idx, {})[state_type or "UNKNOWN"] = n
        totals[state_type or "UNKNOWN"] = totals.get(state_type or "UNKNOWN", 0) + n
    chart = [{"start": dt.datetime.fromtimestamp((first + i) * width, dt.timezone.utc),
              "counts": series.get(i, {})} for i in range(buckets + 1)]
    return {"hours": hours, "chart": chart, "totals": totals, "total": sum(totals.values()),
            "failures": failures, "upcoming": upcoming, "late": late, "queues": queues,
            "bucket_seconds": width}


def work_queues(conn: sa.Connection) -> list[dict[str, Any]]:
    """Pools with their queues and their workers' last heartbeats."""
    wp, wq, w = models.work_pool, models.work_queue, models.worker
    pools = _rows(conn, sa.select(wp).order_by(wp.c.name))
    queues = _rows(conn, sa.select(wq).order_by(wq.c.priority, wq.c.name))
    workers = _rows(conn, sa.select(w).order_by(w.c.last_heartbeat.desc()))
    for pool in pools:
        pool["queues"] = [q for q in queues if q["work_pool_id"] == pool["id"]]
        pool["workers"] = [x for x in workers if x["work_pool_id"] == pool["id"]]
        pool["last_heartbeat"] = max((x["last_heartbeat"] for x in pool["workers"]), default=None)
        for q in pool["queues"]:  # a worker with no queue list serves the whole pool
            q["workers"] = [x for x in pool["workers"]
                            if not x["queues"] or q["name"] in x["queues"]]
    return pools


# -- flow runs --------------------------------------------------------------------------------------
@dataclass
class RunFilter:
    flow: str | None = None
    deployment: str | None = None
    states: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    search: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    before: str | None = None  # keyset cursor "created-iso|id"

    def where(self, db: Any) -> list[Any]:
        conds: list[Any] = []
        if self.flow:
            conds.append(fr.c.flow_id == sa.select(f.c.id).where(f.c.name == self.flow)
                         .scalar_subquery())
        if self.deployment:
            conds.append(fr.c.deployment_id == self.deployment)
        if self.states:
            conds.append(fr.c.state_name.in_(self.states))
        if self.tags:
            conds.extend(_has_tags(db, self.tags, "flow_run"))
        if self.search:
            conds.append(fr.c.name.like(f"%{_escape_like(self.search)}%", escape="\\"))
        if self.since:
            conds.append(fr.c.created >= self.since)
        if self.until:
            conds.append(fr.c.created <= self.until)
        return conds


def _cursor(row: dict[str, Any]) -> str:
    return f"{row['created'].isoformat()}|{row['id']}"


def _parse_cursor(text: str) -> tuple[dt.datetime, str]:
    when, _, run_id = text.partition("|")
    try:
        at = dt.datetime.fromisoformat(when)
    except ValueError:
        raise ValueError(f"The page cursor {text!r} is not one this page made; go back to the "
                         "first page.") from None
    return at, run_id


def flow_runs(db: Any, flt: RunFilter, limit: int = FLOW_RUN_PAGE) -> dict[str, Any]:
    """A page of runs, newest first, with a cursor to the next (older) page and a count capped
    at COUNT_CAP."""
    conds = flt.where(db)
    q = _runs_select().where(*conds)
    if flt.before:
        at, run_id = _parse_cursor(flt.before)
        q = q.where(sa.or_(fr.c.created < at, sa.and_(fr.c.created == at, fr.c.id > run_id)))
    q = q.order_by(fr.c.created.desc(), fr.c.id).limit(limit + 1)
    with db.read() as conn:
        rows = _rows(conn, q)
        capped = sa.select(fr.c.id).where(*conds).limit(COUNT_CAP + 1).subquery()
        total = int(conn.execute(sa.select(sa.func.count()).select_from(capped)).scalar() or 0)
        flows = [r[0] for r in conn.execute(sa.select(f.c.name).order_by(f.c.name).limit(500))]
    more = len(rows) > limit
    rows = rows[:limit]
    return {"runs": rows, "next": _cursor(rows[-1]) if more and rows else None,
            "total": total, "total_capped": total > COUNT_CAP, "flows": flows}


def run_page(db: Any, run_id: str) -> dict[str, Any]:
    """Everything a run's page shows, in one read transaction."""
    fs = models.flow_run_state
    with db.read() as conn:
        run = conn.execute(sa.select(fr, f.c.name.label("flow_name"))
                           .select_from(fr.join(f, f.c.id == fr.c.flow_id))
                           .where(fr.c.id == run_id)).mappings().first()
        if run is None:
            raise ObjectNotFound(f"No flow run with id {run_id} in the history.")
        run = dict(run)
        states = _rows(conn, sa.select(fs.c.type, fs.c.name, fs.c.message, fs.c.timestamp)
                       .where(fs.c.flow_run_id == run_id).order_by(fs.c.timestamp, fs.c.id))
        tasks = _rows(conn, sa.select(
            tr.c.id, tr.c.name, tr.c.task_key, tr.c.state_type, tr.c.state_name,
            tr.c.state_message, tr.c.start_time, tr.c.end_time, tr.c.created,
            tr.c.total_run_time, tr.c.run_count, tr.c.task_inputs, tr.c.tags)
            .where(tr.c.flow_run_id == run_id).order_by(tr.c.created, tr.c.id)
            .limit(TASK_RUN_CAP + 1))
        task_count = len(tasks)
        if task_count > TASK_RUN_CAP:
            task_count = int(conn.execute(sa.select(sa.func.count()).select_from(tr)
                                          .where(tr.c.flow_run_id == run_id)).scalar() or 0)
            tasks = tasks[:TASK_RUN_CAP]
        # a subflow stands in its parent as a task run keyed "subflow:<flow name>" (the
        # engine's convention): find those first, then their runs by the indexed link
        holders = [r[0] for r in conn.execute(sa.select(tr.c.id).where(
            tr.c.flow_run_id == run_id, tr.c.task_key.like("subflow:%"))
            .order_by(tr.c.created).limit(SUBFLOW_CAP))]
        subflows = _rows(conn, _runs_select().add_columns(fr.c.parent_task_run_id).where(
            fr.c.parent_task_run_id.in_(holders)).order_by(fr.c.created)) if holders else []
        parent = None
        if run.get("parent_task_run_id"):
            parent = conn.execute(
                sa.select(fr.c.id, fr.c.name, f.c.name.label("flow_name"))
                .select_from(tr.join(fr, fr.c.id == tr.c.flow_run_id)
                             .join(f, f.c.id == fr.c.flow_id))
                .where(tr.c.id == run["parent_task_run_id"])).mappings().first()
        deployment = None
        if run.get("deployment_id"):
            d = models.deployment
            deployment = conn.execute(sa.select(d.c.id, d.c.name).where(
                d.c.id == run["deployment_id"])).mappings().first()
    return {"run": run, "states": states, "tasks": tasks, "task_count": task_count,
            "subflows": subflows, "parent": dict(parent) if parent else None,
            "deployment": dict(deployment) if deployment else None}


def run_logs(db: Any, run_id: str, *, min_level: int = 0, search: str | None = None,
             after: str | None = None, limit: int = LOG_PAGE) -> dict[str, Any]:
    """A run's log lines (its tasks' too), oldest first, after the cursor ``after`` (for the
    live tail and "more"), with the task run names."""
    lg = models.log
    q = (sa.select(lg.c.id, lg.c.level, lg.c.message, lg.c.timestamp, lg.c.name,
                   lg.c.task_run_id, tr.c.name.label("task_name"))
         .select_from(lg.outerjoin(tr, tr.c.id == lg.c.task_run_id))
         .where(lg.c.flow_run_id == run_id))
    if min_level:
        q = q.where(lg.c.level >= min_level)
    if search:
        q = q.where(lg.c.message.like(f"%{_escape_like(search)}%", escape="\\"))
    if after:
        at, log_id = _parse_cursor(after)
        q = q.where(sa.or_(lg.c.timestamp > at, sa.and_(lg.c.timestamp == at, lg.c.id > log_id)))
    q = q.order_by(lg.c.timestamp, lg.c.id).limit(limit + 1)
    with db.read() as conn:
        rows = _rows(conn, q)
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = f"{rows[-1]['timestamp'].isoformat()}|{rows[-1]['id']}" if rows else after
    return {"logs": rows, "more": more, "cursor": cursor}
