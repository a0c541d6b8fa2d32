"""History retention: deleting finished runs, their states and logs, and old log lines.

:func:`prune` is what ``legato history prune`` and the server's retention service call. What it
deletes:

* **flow runs** that are finished (COMPLETED, FAILED, CRASHED, CANCELLED) and ended before the
  cutoff (``end_time``; ``created`` when a run has no end time), with all their task runs (whatever
  state those are in: their flow run is over), the states of both, and the log lines of both.
  A subflow run is a flow run of its own: it goes when it is itself finished and old.
* **task runs** that are finished and old, with their states, when their flow run is finished
  too (or they have none). Their log lines stay (they are part of the flow run's log and have
  their own retention), and a task run that stands for a subflow run still in the history stays,
  so the subflow keeps its link to its parent.
* **log lines** older than the cutoff (by their timestamp), whatever their run.
* **expired cache entries** (past their expiration: the cache no longer serves them). Entries
  whose task run was deleted stay: they are keyed by the cache key and their results live on
  disk.

Deletes go child-first (states and logs, then task runs, then flow runs) and never rely on
``ON DELETE CASCADE`` (SQLite's foreign keys may be off in other tools). Everything is done in
batches of at most ``batch_size`` ids, each batch its own short write transaction, so a prune of
millions of rows never holds the database for long; each transaction checks again that the rows
it deletes are still finished and old. An interrupted prune leaves a consistent history (a flow
run may have lost some of its task runs, never the other way round) and the next one finishes it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import sqlalchemy as sa

from ..states import TERMINAL_TYPES
from . import models
from .database import Database

_FINISHED = sorted(t.value for t in TERMINAL_TYPES)
_fr, _tr = models.flow_run, models.task_run
_frs, _trs = models.flow_run_state, models.task_run_state
_log, _cache = models.log, models.cache_entry
# a subflow run, seen from the task run that stands for it in its parent
_sub = models.flow_run.alias("subflow_run")
_parent = models.flow_run.alias("parent_flow_run")


@dataclasses.dataclass
class PruneResult:
    """How many rows a prune deleted (or, for a dry run, would delete)."""

    flow_runs: int = 0
    task_runs: int = 0
    states: int = 0  # flow run states and task run states
    logs: int = 0
    cache_entries: int = 0  # expired ones
    dry_run: bool = False

    @property
    def total(self) -> int:
        return self.flow_runs + self.task_runs + self.states + self.logs + self.cache_entries

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _finished_before(table: Any, cutoff: dt.datetime) -> Any:
    """A run that is finished and ended (or, without an end time, was created) before cutoff.

    Written as an OR rather than ``coalesce(end_time, created)`` so that an index on end_time
    (and the one on created) can serve it."""
    return sa.and_(
        table.c.state_type.in_(_FINISHED),
        sa.or_(
            table.c.end_time < cutoff,
            sa.and_(table.c.end_time.is_(None), table.c.created < cutoff),
        ),
    )


def _task_run_condition(
    cutoff: dt.datetime, flow_cutoff: dt.datetime | None, dry_run: bool
) -> Any:
    """Task runs that task-run retention deletes on their own."""
    unfinished_flow_run = (
        sa.select(sa.literal(1))
        .where(
            _parent.c.id == _tr.c.flow_run_id,
            sa.or_(_parent.c.state_type.is_(None), _parent.c.state_type.not_in(_FINISHED)),
        )
        .exists()
    )
    subflow = sa.select(sa.literal(1)).where(_sub.c.parent_task_run_id == _tr.c.id)
    if dry_run and flow_cutoff is not None:
        # subflow runs flow-run retention would delete first do not hold their task run back
        subflow = subflow.where(sa.not_(_finished_before(_sub, flow_cutoff)))
    cond = sa.and_(_finished_before(_tr, cutoff), ~unfinished_flow_run, ~subflow.exists())
    if dry_run and flow_cutoff is not None:
        # counted with their flow run already
        in_deleted_flow_run = (
            sa.select(sa.literal(1))
            .where(_parent.c.id == _tr.c.flow_run_id, _finished_before(_parent, flow_cutoff))
            .exists()
        )
        cond = sa.and_(cond, ~in_deleted_flow_run)
    return cond


def prune(
    db: Database,
    *,
    flow_runs_older_than: dt.timedelta | None,
    task_runs_older_than: dt.timedelta | None,
    logs_older_than: dt.timedelta | None,
    batch_size: int = 5000,
    expired_cache_entries: bool = True,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> PruneResult:
    """Delete what is older than the given ages (None: keep that kind forever); see the module
    docstring for exactly what goes. ``dry_run`` counts what would go and deletes nothing."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    for label, age in (
        ("flow_runs_older_than", flow_runs_older_than),
        ("task_runs_older_than", task_runs_older_than),
        ("logs_older_than", logs_older_than),
    ):
        if age is not None and age < dt.timedelta(0):
            raise ValueError(f"{label} must not be negative, not {age}")
    now = now or dt.datetime.now(dt.timezone.utc)
    flow_cutoff = now - flow_runs_older_than if flow_runs_older_than is not None else None
    task_cutoff = now - task_runs_older_than if task_runs_older_than is not None else None
    log_cutoff = now - logs_older_than if logs_older_than is not None else None
    if dry_run:
        return _count(db, flow_cutoff, task_cutoff, log_cutoff, expired_cache_entries, now)
    result = PruneResult()
    if flow_cutoff is not None:
        _prune_flow_runs(db, flow_cutoff, batch_size, result)
    if task_cutoff is not None:
        _prune_task_runs(db, task_cutoff, batch_size, result)
    if log_cutoff is not None:
        _prune_logs(db, log_cutoff, batch_size, result)
    if expired_cache_entries:
        _prune_cache(db, now, batch_size, result)
    return result


# -- deleting ------------------------------------------------------------------------------------
def _candidates(db: Database, table: Any, cond: Any, after: str | None, limit: int) -> list[str]:
    """The next ids (in id order, after ``after``) that meet ``cond``, read outside any write
    transaction: the scan never holds SQLite's write lock. Paging by id (keyset) keeps a prune
    linear in the table's size whatever indexes the planner has to work with."""
    q = sa.select(table.c.id).where(cond)
    if after is not None:
        q = q.where(table.c.id > after)
    with db.read() as conn:
        return [str(i) for i in conn.scalars(q.order_by(table.c.id).limit(limit))]


def _delete_task_runs(conn: sa.Connection, ids: list[str], with_logs: bool) -> tuple[int, int, int]:
    """Delete these task runs with their states (and log lines): (task runs, states, logs)."""
    logs = 0
    if with_logs:
        logs = conn.execute(sa.delete(_log).where(_log.c.task_run_id.in_(ids))).rowcount
    states = conn.execute(sa.delete(_trs).where(_trs.c.task_run_id.in_(ids))).rowcount
    runs = conn.execute(sa.delete(_tr).where(_tr.c.id.in_(ids))).rowcount
    return runs, states, logs


def _in_range(table: Any, after: str | None, last: str) -> Any:
    """Ids in (after, last]: a batch found by :func:`_candidates`, checked again inside a write
    transaction. A range of the primary key, not a list of ids: the planner reads it from the
    index whatever it thinks of a long IN list."""
    upto = table.c.id <= last
    return upto if after is None else sa.and_(table.c.id > after, upto)


def _prune_flow_runs(db: Database, cutoff: dt.datetime, n: int, result: PruneResult) -> None:
    cond = _finished_before(_fr, cutoff)
    after: str | None = None
    while True:
        ids = _candidates(db, _fr, cond, after, n)
        if not ids:
            return
        # checked again in every transaction: a run that was rerun meanwhile is left alone
        batch = sa.and_(_in_range(_fr, after, ids[-1]), cond)
        still = sa.select(_fr.c.id).where(batch)
        # 1. log lines of the flow runs (and of their task runs: they carry the flow run id)
        while True:
            with db.write() as conn:
                lids = list(
                    conn.scalars(sa.select(_log.c.id).where(_log.c.flow_run_id.in_(still)).limit(n))
                )
                if lids:
                    result.logs += conn.execute(sa.delete(_log).where(_log.c.id.in_(lids))).rowcount
            if len(lids) < n:
                break
        # 2. their task runs, with states and any log line that names only the task run
        while True:
            with db.write() as conn:
                tids = list(
                    conn.scalars(sa.select(_tr.c.id).where(_tr.c.flow_run_id.in_(still)).limit(n))
                )
                if tids:
                    runs, states, logs = _delete_task_runs(conn, tids, with_logs=True)
                    result.task_runs += runs
                    result.states += states
                    result.logs += logs
            if len(tids) < n:
                break
        # 3. the flow runs' states, then the flow runs
        with db.write() as conn:
            fids = [str(i) for i in conn.scalars(still.order_by(_fr.c.id).limit(n))]
            if fids:
                result.states += conn.execute(
                    sa.delete(_frs).where(_frs.c.flow_run_id.in_(fids))
                ).rowcount
                result.flow_runs += conn.execute(sa.delete(_fr).where(_fr.c.id.in_(fids))).rowcount
        if len(fids) == n and fids[-1] < ids[-1]:
            after = fids[-1]  # (only if runs became old meanwhile: the rest comes next round)
            continue
        if len(ids) < n:
            return
        after = ids[-1]


def _prune_task_runs(db: Database, cutoff: dt.datetime, n: int, result: PruneResult) -> None:
    cond = _task_run_condition(cutoff, None, dry_run=False)
    after: str | None = None
    while True:
        ids = _candidates(db, _tr, cond, after, n)
        if not ids:
            return
        with db.write() as conn:
            q = sa.select(_tr.c.id).where(_in_range(_tr, after, ids[-1]), cond)
            tids = [str(i) for i in conn.scalars(q.order_by(_tr.c.id).limit(n))]
            if tids:
                runs, states, _ = _delete_task_runs(conn, tids, with_logs=False)
                result.task_runs += runs
                result.states += states
        if len(tids) == n and tids[-1] < ids[-1]:
            after = tids[-1]
            continue
        if len(ids) < n:
            return
        after = ids[-1]


def _prune_logs(db: Database, cutoff: dt.datetime, n: int, result: PruneResult) -> None:
    while True:
        with db.write() as conn:
            # the oldest first, through the index on timestamp
            ids = list(
                conn.scalars(
                    sa.select(_log.c.id)
                    .where(_log.c.timestamp < cutoff)
                    .order_by(_log.c.timestamp)
                    .limit(n)
                )
            )
            if ids:
                result.logs += conn.execute(sa.delete(_log).where(_log.c.id.in_(ids))).rowcount
        if len(ids) < n:
            return


def _prune_cache(db: Database, now: dt.datetime, n: int, result: PruneResult) -> None:
    expired = sa.and_(_cache.c.expiration.is_not(None), _cache.c.expiration < now)
    while True:
        with db.write() as conn:
            keys = list(conn.scalars(sa.select(_cache.c.key).where(expired).limit(n)))
            if keys:
                result.cache_entries += conn.execute(
                    sa.delete(_cache).where(_cache.c.key.in_(keys), expired)
                ).rowcount
        if len(keys) < n:
            return


# -- counting (dry run) --------------------------------------------------------------------------
def _count(
    db: Database,
    flow_cutoff: dt.datetime | None,
    task_cutoff: dt.datetime | None,
    log_cutoff: dt.datetime | None,
    cache: bool,
    now: dt.datetime,
) -> PruneResult:
    """What :func:`prune` would delete with these cutoffs, each row counted once."""
    result = PruneResult(dry_run=True)

    def count(table: Any, cond: Any) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(cond)).scalar())

    with db.read() as conn:
        if flow_cutoff is not None:
            gone_fr = sa.select(_fr.c.id).where(_finished_before(_fr, flow_cutoff))
            gone_tr = sa.select(_tr.c.id).where(_tr.c.flow_run_id.in_(gone_fr))
            result.flow_runs = count(_fr, _finished_before(_fr, flow_cutoff))
            result.task_runs = count(_tr, _tr.c.flow_run_id.in_(gone_fr))
            result.states = count(_frs, _frs.c.flow_run_id.in_(gone_fr)) + count(
                _trs, _trs.c.task_run_id.in_(gone_tr)
            )
            result.logs = count(
                _log, sa.or_(_log.c.flow_run_id.in_(gone_fr), _log.c.task_run_id.in_(gone_tr))
            )
        if task_cutoff is not None:
            cond = _task_run_condition(task_cutoff, flow_cutoff, dry_run=True)
            result.task_runs += count(_tr, cond)
            result.states += count(_trs, _trs.c.task_run_id.in_(sa.select(_tr.c.id).where(cond)))
        if log_cutoff is not None:
            cond = _log.c.timestamp < log_cutoff
            if flow_cutoff is not None:
                # not those already counted with their flow run
                of_gone_flow_run = (
                    sa.select(sa.literal(1))
                    .where(_fr.c.id == _log.c.flow_run_id, _finished_before(_fr, flow_cutoff))
                    .exists()
                )
                of_gone_task_run = (
                    sa.select(sa.literal(1))
                    .select_from(_tr.join(_fr, _fr.c.id == _tr.c.flow_run_id))
                    .where(_tr.c.id == _log.c.task_run_id, _finished_before(_fr, flow_cutoff))
                    .exists()
                )
                cond = sa.and_(cond, ~of_gone_flow_run, ~of_gone_task_run)
            result.logs += count(_log, cond)
        if cache:
            result.cache_entries = count(
                _cache, sa.and_(_cache.c.expiration.is_not(None), _cache.c.expiration < now)
            )
    return result
