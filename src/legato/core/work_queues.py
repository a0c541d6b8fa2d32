"""Work pools and queues in the store: looking them up (with errors that list what exists),
the agents' default pool and queues made on first use, and the room a concurrency limit leaves."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from ..exceptions import ObjectNotFound
from ..ids import new_id
from ..store import models
from .orchestrator import _insert_for

DEFAULT_AGENT_POOL = "default-agent-pool"
ACTIVE_TYPES = ("PENDING", "RUNNING", "CANCELLING")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _room(conn: sa.Connection, limit: int | None, where: Any) -> int:
    if limit is None:
        return 1 << 30
    fr = models.flow_run
    busy = conn.execute(sa.select(sa.func.count()).select_from(fr).where(
        where, fr.c.state_type.in_(ACTIVE_TYPES))).scalar() or 0
    return limit - busy


def _touch_worker(conn: sa.Connection, pool_id: str, name: str, queues: list[str],
                  now: dt.datetime) -> None:
    w = models.worker
    conn.execute(_insert_for(conn.dialect.name)(w).values(
        id=new_id(), work_pool_id=pool_id, name=name, queues=queues, last_heartbeat=now,
        created=now, updated=now,
    ).on_conflict_do_update(index_elements=["work_pool_id", "name"],
                            set_={"last_heartbeat": now, "queues": queues, "updated": now}))


def _pool(conn: sa.Connection, name: str) -> dict[str, Any]:
    wp = models.work_pool
    row = conn.execute(sa.select(wp).where(wp.c.name == name)).mappings().first()
    if row is None:
        known = conn.execute(sa.select(wp.c.name).order_by(wp.c.name)).scalars().all()
        raise ObjectNotFound(f"No work pool named {name!r}. Work pools: "
                             f"{', '.join(known) or 'none yet'}.")
    return dict(row)


def _pool_or_default(conn: sa.Connection, name: str | None, create: bool = True
                     ) -> dict[str, Any]:
    """The named pool, or the agents' default pool (made on first use)."""
    if name is not None:
        return _pool(conn, name)
    wp = models.work_pool
    now = _now()
    conn.execute(_insert_for(conn.dialect.name)(wp).values(
        id=new_id(), name=DEFAULT_AGENT_POOL, type="agent", description="Queues of agents",
        base_job_template={}, is_paused=False, created=now, updated=now,
    ).on_conflict_do_nothing(index_elements=["name"]))
    return _pool(conn, DEFAULT_AGENT_POOL)


def _queue_row(conn: sa.Connection, pool_id: str, name: str) -> dict[str, Any] | None:
    wq = models.work_queue
    row = conn.execute(sa.select(wq).where(wq.c.work_pool_id == pool_id, wq.c.name == name)
                       ).mappings().first()
    return dict(row) if row is not None else None


def _insert_queue(conn: sa.Connection, pool: dict[str, Any], name: str, **fields: Any
                  ) -> dict[str, Any]:
    wq = models.work_queue
    now = _now()
    conn.execute(_insert_for(conn.dialect.name)(wq).values(
        id=new_id(), work_pool_id=pool["id"], name=name,
        priority=fields.get("priority", 1), concurrency_limit=fields.get("concurrency_limit"),
        description=fields.get("description"), is_paused=fields.get("paused", False),
        created=now, updated=now,
    ).on_conflict_do_nothing(index_elements=["work_pool_id", "name"]))
    row = _queue_row(conn, pool["id"], name)
    assert row is not None
    return {**row, "work_pool_name": pool["name"]}


def _queue(conn: sa.Connection, name: str, pool_name: str | None) -> dict[str, Any]:
    pool = _pool_or_default(conn, pool_name)
    row = _queue_row(conn, pool["id"], name)
    if row is None:
        wq = models.work_queue
        known = conn.execute(sa.select(wq.c.name).where(wq.c.work_pool_id == pool["id"])
                             .order_by(wq.c.name)).scalars().all()
        raise ObjectNotFound(f"No work queue named {name!r} in pool {pool['name']!r}. Its "
                             f"queues: {', '.join(known) or 'none yet'}.")
    return {**row, "work_pool_name": pool["name"]}


def _ensure_queue(conn: sa.Connection, name: str, pool_name: str | None) -> dict[str, Any]:
    pool = _pool_or_default(conn, pool_name)
    row = _queue_row(conn, pool["id"], name)
    return {**row, "work_pool_name": pool["name"]} if row else _insert_queue(conn, pool, name)
