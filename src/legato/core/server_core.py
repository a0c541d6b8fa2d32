"""The orchestration core as the server uses it: every decision against the stored state.

The embedded client's :class:`~legato.core.orchestrator.Orchestrator` keeps the runs it drives in
memory, because it is their only driver. A server replica is not: other replicas and clients act
on the same runs. So here each call reads, decides and writes in one database transaction, with
the same rules (:mod:`legato.core.rules`) and the same effects
(:func:`~legato.core.orchestrator.apply_transition`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from ..exceptions import ConflictError, ObjectNotFound
from ..ids import new_id
from ..states import State, StateType
from ..store import models
from ..store.database import Database
from ..store.writer import Buffer, HistoryWriter, WritePolicy
from .orchestrator import _insert_for, _Run, apply_transition, run_from_row, transition_in_db
from .rules import Decision

_UTC = dt.timezone.utc


def _now() -> dt.datetime:
    return dt.datetime.now(_UTC)


def make_state(type_: StateType, name: str | None, message: str | None,
               timestamp: dt.datetime | None, details: dict[str, Any] | None) -> State:
    return State(type_, name, message, timestamp, None, details or {})


class ServerCore:
    def __init__(self, db: Database, *, slot_wait: float = 0.5) -> None:
        self.db = db
        self.slot_wait = slot_wait
        self._writer = HistoryWriter(db, WritePolicy())  # only its write_buffer() is used

    # -- flows -----------------------------------------------------------------------------------
    def ensure_flow(self, name: str) -> dict[str, Any]:
        f = models.flow
        with self.db.write() as conn:
            row = conn.execute(sa.select(f).where(f.c.name == name)).mappings().first()
            if row is None:
                now = _now()
                insert = _insert_for(conn.dialect.name)(f).values(
                    id=new_id(), name=name, created=now, updated=now)
                conn.execute(insert.on_conflict_do_nothing(index_elements=["name"]))
                row = conn.execute(sa.select(f).where(f.c.name == name)).mappings().first()
        return dict(row)

    # -- runs ------------------------------------------------------------------------------------
    def create_flow_run(self, *, flow_id: str, name: str, state: State, run_id: str | None,
                        parameters: dict[str, Any], tags: list[str],
                        parent_task_run_id: str | None, version: str | None) -> str:
        now = _now()
        run_id = run_id or new_id()
        row = {
            "id": run_id, "flow_id": flow_id, "name": name, "parameters": parameters,
            "tags": tags, "parent_task_run_id": parent_task_run_id, "run_count": 0,
            "expected_start_time": state.timestamp, "total_run_time": 0.0, "version": version,
            "empirical_policy": {}, "created": now, "updated": now,
        }
        with self.db.write() as conn:
            if conn.execute(sa.select(models.flow.c.id).where(models.flow.c.id == flow_id)).first() is None:
                raise ObjectNotFound(f"No flow with id {flow_id}.")
            self._insert_run(conn, "flow_run", run_id, row, state)
        return run_id

    def create_task_run(self, *, flow_run_id: str | None, task_key: str, name: str,
                        dynamic_key: str, state: State, run_id: str | None, tags: list[str],
                        task_inputs: dict[str, Any]) -> str:
        run_id = run_id or new_id()
        now = _now()
        row = {
            "id": run_id, "flow_run_id": flow_run_id, "task_key": task_key, "name": name,
            "dynamic_key": dynamic_key, "task_inputs": task_inputs, "tags": tags, "run_count": 0,
            "expected_start_time": state.timestamp, "total_run_time": 0.0,
            "empirical_policy": {}, "created": now, "updated": now,
        }
        with self.db.write() as conn:
            if flow_run_id is not None and conn.execute(
                    sa.select(models.flow_run.c.id).where(models.flow_run.c.id == flow_run_id)
            ).first() is None:
                raise ObjectNotFound(f"No flow run with id {flow_run_id}.")
            self._insert_run(conn, "task_run", run_id, row, state)
        return run_id

    def _insert_run(self, conn: sa.Connection, kind: str, run_id: str, row: dict[str, Any],
                    state: State) -> None:
        table = models.flow_run if kind == "flow_run" else models.task_run
        if conn.execute(sa.select(table.c.id).where(table.c.id == run_id)).first() is not None:
            raise ConflictError(f"A {kind.replace('_', ' ')} with id {run_id} exists already.")
        fields, srow = apply_transition(kind, run_id, _Run(kind), state, state.type, None, None)
        row.update(fields)
        conn.execute(table.insert().values(**row))
        states = models.flow_run_state if kind == "flow_run" else models.task_run_state
        conn.execute(states.insert().values(**srow))

    def set_state(self, kind: str, run_id: str, state: State, *, new_attempt: bool = False,
                  force: bool = False, result: dict[str, Any] | None = None
                  ) -> tuple[Decision, _Run]:
        return transition_in_db(self.db, kind, run_id, state, new_attempt=new_attempt,
                                force=force, result=result, slot_wait=self.slot_wait)

    def read_run_core(self, kind: str, run_id: str) -> _Run:
        table = models.flow_run if kind == "flow_run" else models.task_run
        with self.db.read() as conn:
            row = conn.execute(sa.select(table).where(table.c.id == run_id)).mappings().first()
        if row is None:
            raise ObjectNotFound(f"No {kind.replace('_', ' ')} with id {run_id} in the history.")
        return run_from_row(kind, dict(row))

    def delete_flow_run(self, run_id: str) -> None:
        """A flow run, with its task runs, their states, its logs (and its subflow runs)."""
        fr, tr = models.flow_run, models.task_run
        with self.db.write() as conn:
            if conn.execute(sa.select(fr.c.id).where(fr.c.id == run_id)).first() is None:
                raise ObjectNotFound(f"No flow run with id {run_id} in the history.")
            pending = [run_id]
            doomed: list[str] = []
            while pending:  # the flow run and its subflow runs, however deep
                doomed.extend(pending)
                tasks = sa.select(tr.c.id).where(tr.c.flow_run_id.in_(pending))
                pending = list(conn.execute(
                    sa.select(fr.c.id).where(fr.c.parent_task_run_id.in_(tasks))).scalars())
            for chunk in _chunks(doomed):
                task_ids = sa.select(tr.c.id).where(tr.c.flow_run_id.in_(chunk))
                conn.execute(models.task_run_state.delete().where(
                    models.task_run_state.c.task_run_id.in_(task_ids)))
                conn.execute(models.log.delete().where(models.log.c.flow_run_id.in_(chunk)))
                conn.execute(tr.delete().where(tr.c.flow_run_id.in_(chunk)))
                conn.execute(models.flow_run_state.delete().where(
                    models.flow_run_state.c.flow_run_id.in_(chunk)))
                conn.execute(fr.delete().where(fr.c.id.in_(chunk)))

    def delete_task_run(self, run_id: str) -> None:
        tr = models.task_run
        with self.db.write() as conn:
            if conn.execute(sa.select(tr.c.id).where(tr.c.id == run_id)).first() is None:
                raise ObjectNotFound(f"No task run with id {run_id} in the history.")
            conn.execute(models.task_run_state.delete().where(
                models.task_run_state.c.task_run_id == run_id))
            conn.execute(models.log.delete().where(models.log.c.task_run_id == run_id))
            conn.execute(tr.delete().where(tr.c.id == run_id))

    def delete_flow(self, flow_id: str) -> None:
        f, fr = models.flow, models.flow_run
        with self.db.read() as conn:
            if conn.execute(sa.select(f.c.id).where(f.c.id == flow_id)).first() is None:
                raise ObjectNotFound(f"No flow with id {flow_id}.")
            runs = list(conn.execute(sa.select(fr.c.id).where(fr.c.flow_id == flow_id)).scalars())
        for run_id in runs:
            try:
                self.delete_flow_run(run_id)
            except ObjectNotFound:  # a subflow run deleted with its parent
                pass
        with self.db.write() as conn:
            conn.execute(f.delete().where(f.c.id == flow_id))

    # -- the HTTP client's batches -----------------------------------------------------------------
    def write_batch(self, batch: Any) -> int:
        """Write a client's batch (a validated :class:`~legato.schemas.api.HistoryBatch`) in
        one transaction: all of it, or (on a conflict) none of it."""
        buf = Buffer()
        buf.flows = [r.model_dump() for r in batch.flows]
        buf.flow_run_inserts = {r.id: r.model_dump() for r in batch.flow_run_inserts}
        buf.flow_run_updates = {k: v.model_dump(exclude_unset=True)
                                for k, v in batch.flow_run_updates.items()}
        buf.task_run_inserts = {r.id: r.model_dump() for r in batch.task_run_inserts}
        buf.task_run_updates = {k: v.model_dump(exclude_unset=True)
                                for k, v in batch.task_run_updates.items()}
        buf.flow_run_states = [r.model_dump() for r in batch.flow_run_states]
        buf.task_run_states = [r.model_dump() for r in batch.task_run_states]
        buf.logs = [r.model_dump() for r in batch.logs]
        buf.cache = {r.key: r.model_dump() for r in batch.cache}
        count = buf.row_count()
        if count:
            try:
                self._writer.write_buffer(buf)
            except ConflictError:
                # a client that timed out waiting for our answer sends the batch again: rows
                # written the first time are skipped, the rest written (still all-or-nothing)
                if not self._drop_written(buf):
                    raise
                self._writer.write_buffer(buf)
        return count

    def _drop_written(self, buf: Buffer) -> bool:
        """Remove rows already in the store (by id) from ``buf``; True if any were."""
        dropped = False
        with self.db.read() as conn:
            def existing(table: sa.Table, ids: list[str]) -> set[str]:
                found: set[str] = set()
                for chunk in _chunks(ids):
                    found.update(str(i) for i in conn.execute(
                        sa.select(table.c.id).where(table.c.id.in_(chunk))).scalars())
                return found

            for table, inserts in ((models.flow_run, buf.flow_run_inserts),
                                   (models.task_run, buf.task_run_inserts)):
                for run_id in existing(table, list(inserts)):
                    del inserts[run_id]
                    dropped = True
            for table, name in ((models.flow, "flows"), (models.flow_run_state, "flow_run_states"),
                                (models.task_run_state, "task_run_states"), (models.log, "logs")):
                rows = getattr(buf, name)
                seen = existing(table, [r["id"] for r in rows])
                if seen:
                    setattr(buf, name, [r for r in rows if r["id"] not in seen])
                    dropped = True
        return dropped

    # -- cache -----------------------------------------------------------------------------------
    def read_cache(self, key: str) -> dict[str, Any] | None:
        c = models.cache_entry
        with self.db.read() as conn:
            row = conn.execute(sa.select(c).where(c.c.key == key)).mappings().first()
        if row is None or (row["expiration"] is not None and row["expiration"] <= _now()):
            return None
        return dict(row)

    # -- tag concurrency limits --------------------------------------------------------------------
    def set_concurrency_limit(self, tag: str, limit: int) -> dict[str, Any]:
        cl = models.concurrency_limit
        now = _now()
        with self.db.write() as conn:
            row = conn.execute(sa.select(cl).where(cl.c.tag == tag)).mappings().first()
            if row is None:
                insert = _insert_for(conn.dialect.name)(cl).values(
                    id=new_id(), tag=tag, concurrency_limit=limit, active_slots=[], created=now,
                    updated=now)
                conn.execute(insert.on_conflict_do_update(
                    index_elements=["tag"], set_={"concurrency_limit": limit, "updated": now}))
            else:
                conn.execute(cl.update().where(cl.c.tag == tag).values(
                    concurrency_limit=limit, updated=now))
            return dict(conn.execute(sa.select(cl).where(cl.c.tag == tag)).mappings().one())

    def read_concurrency_limit(self, tag: str) -> dict[str, Any]:
        cl = models.concurrency_limit
        with self.db.read() as conn:
            row = conn.execute(sa.select(cl).where(cl.c.tag == tag)).mappings().first()
        if row is None:
            raise ObjectNotFound(f"No concurrency limit for tag {tag!r}.")
        return dict(row)

    def read_concurrency_limits(self, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
        cl = models.concurrency_limit
        with self.db.read() as conn:
            rows = conn.execute(sa.select(cl).order_by(cl.c.tag).limit(limit).offset(offset))
            return [dict(r) for r in rows.mappings()]

    def reset_concurrency_limit(self, tag: str) -> dict[str, Any]:
        cl = models.concurrency_limit
        with self.db.write() as conn:
            n = conn.execute(cl.update().where(cl.c.tag == tag).values(
                active_slots=[], updated=_now())).rowcount
        if not n:
            raise ObjectNotFound(f"No concurrency limit for tag {tag!r}.")
        return self.read_concurrency_limit(tag)

    def delete_concurrency_limit(self, tag: str) -> None:
        cl = models.concurrency_limit
        with self.db.write() as conn:
            n = conn.execute(cl.delete().where(cl.c.tag == tag)).rowcount
        if not n:
            raise ObjectNotFound(f"No concurrency limit for tag {tag!r}.")


def _chunks(items: list[str], size: int = 500) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]
